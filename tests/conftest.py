import sys
from pathlib import Path

import pytest

# tests import shared helpers (workflow_helpers) from this folder
sys.path.insert(0, str(Path(__file__).parent))


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
