import os
import sys
from pathlib import Path

import pytest

# tests import shared helpers (workflow_helpers) from this folder
sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config):
    """Compile the Numba kernels once, before the xdist workers start: otherwise both workers and
    the first Snakemake jobs of every workflow test compile the same kernels side by side, which
    costs minutes of CPU on a 2-core CI machine. Only for parallel (xdist) runs of the suite; set
    DSRPIPE_NO_WARM_UP=1 to skip it."""
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        return
    if os.environ.get("DSRPIPE_NO_WARM_UP") == "1":
        return
    from dsrpipe.jit import warm_up

    config.dsrpipe_warm_up_s = warm_up()


def pytest_report_header(config):
    seconds = getattr(config, "dsrpipe_warm_up_s", None)
    return None if seconds is None else f"dsrpipe: Numba kernels compiled or loaded from cache in {seconds:.1f} s"


def pytest_collection_modifyitems(config, items):
    """Slow tests (workflow and SLURM runs) first: with two xdist workers the long runs start at
    once, side by side, and the many short tests fill in after them (a stable sort keeps each
    file's order)."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (tests of many tiny tensor ops)."""
    from dsrpipe.analysis.lyapunov import single_threaded

    with single_threaded():
        yield
