"""The workflow through a real SLURM cluster (``--executor slurm`` with profiles/slurm).

CI (.ci/run) starts a one-node SLURM cluster first and sets DSRPIPE_REQUIRE_SLURM=1, so
there this test fails instead of skipping when SLURM is not reachable. Elsewhere (a laptop
without SLURM) it is skipped with the reason.
"""

import os
import re
import shutil
import subprocess

import pandas as pd
import pytest

from workflow_helpers import REPO, change_subject_input, make_tiny_dataset, planned_jobs, snakemake

pytestmark = pytest.mark.slow
TIMEOUT = 900


def slurm_available() -> str | None:
    """None when a SLURM controller answers and a node is usable, else the reason."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "SLURM client commands (sbatch, sinfo) are not installed"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 10 s"
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s.rstrip("*") in ("idle", "mix", "alloc") for s in states):
        return f"no usable SLURM node (sinfo: {proc.stdout.strip() or proc.stderr.strip()})"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    return None


@pytest.fixture(scope="module")
def slurm():
    reason = slurm_available()
    if reason:
        if os.environ.get("DSRPIPE_REQUIRE_SLURM") == "1":
            pytest.fail(f"SLURM is required here (DSRPIPE_REQUIRE_SLURM=1) but {reason}")
        pytest.skip(reason)


def run_on_slurm(wd, *args):
    return snakemake(wd, "--workflow-profile", str(REPO / "profiles" / "slurm"),
                     "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs",
                     "--jobs", "4", *args, timeout=TIMEOUT)


def submitted(proc) -> dict[int, str]:
    """SLURM job id -> rule, from Snakemake's log of a run."""
    text = proc.stdout + proc.stderr
    jobs = {}
    current_rule = None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            current_rule = m.group(1)
        m = re.search(r"submitted with SLURM jobid (\d+)", line)
        if m:
            jobs[int(m.group(1))] = current_rule
    return jobs


def slurm_state(job_id: int) -> str:
    out = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True, text=True, timeout=10)
    m = re.search(r"JobState=(\w+)", out.stdout)
    return m.group(1) if m else f"unknown ({out.stderr.strip()})"


def test_workflow_runs_through_slurm_and_plans_a_rerun_of_only_the_changed_subject(slurm, tmp_path):
    wd = make_tiny_dataset(tmp_path, subjects=(("01", 28.0), ("02", 35.0)))
    first = run_on_slurm(wd)
    assert first.returncode == 0, (first.stdout + first.stderr)[-5000:]
    jobs = submitted(first)
    # 2 subjects x (preprocess, prepare, train, evaluate) went through sbatch; the report is a local rule
    assert sorted(jobs.values()) == sorted(["preprocess_recording", "prepare_data", "train_model",
                                            "evaluate_model"] * 2), jobs
    for job_id in jobs:
        assert slurm_state(job_id) == "COMPLETED", job_id
    runs = pd.read_parquet(wd / "results/group/runs.parquet")
    assert sorted(runs["subject"]) == ["01", "02"]

    # The rerun plan through the same executor and profile: only the changed subject's chain. (A dry
    # run: submitting those four jobs again would prove nothing the first run did not, at minutes of CI.)
    change_subject_input(wd, "02")
    second = run_on_slurm(wd, "-n")
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]
    assert not submitted(second)
    rerun = [(r, s) for r, s in planned_jobs(second) if s]
    assert sorted(r for r, _ in rerun) == ["evaluate_model", "prepare_data", "preprocess_recording",
                                          "train_model"], rerun
    assert {s for _, s in rerun} == {"02"}
