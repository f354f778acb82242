"""Reproducibility and interruption through the real command line and the workflow.

Same config and seed give identical models and metrics in two processes; a
training process killed with SIGKILL after its first checkpoint resumes on
rerun and ends bit-identical to an uninterrupted run; a Snakemake run killed
mid-training finishes with ``--rerun-incomplete``, and a changed training
setting reruns training but not preparation. (SIGTERM and in-process crashes:
tests/test_training.py.)
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch
import yaml

from bad_inputs import lorenz_table
from dsrpipe.cli import main
from workflow_helpers import copy_repo, make_tiny_dataset, planned_jobs, snakemake

TRAIN = ["epochs=30", "batches_per_epoch=10", "hidden_dim=16", "seq_len=20", "batch_size=8", "checkpoint_every=1",
         "log_every=1"]
EVALUATE = ["lyapunov_steps=2000", "fixed_point_inits=20", "n_bins=10"]
RUN_SCRIPT = ("import json, sys\nfrom dsrpipe.cli import main\n"
              "sys.exit(next((rc for rc in map(main, json.loads(sys.argv[1])) if rc), 0))")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    lorenz_table(1500).to_csv(d / "s01.csv", index=False)
    assert main(["prepare", str(d / "s01.csv"), "--subject", "01", "--train-out", str(d / "train.parquet"),
                 "--test-out", str(d / "test.parquet"), "--set", "dt=0.01"]) == 0
    return d


def train_argv(data: Path, run: Path) -> list[str]:
    return ["train", str(data / "train.parquet"), "--out", str(run), "--set", *TRAIN]


def cli_process(*commands: list[str]) -> subprocess.Popen:
    """One fresh interpreter running ``dsrpipe`` commands in order (stops at the first failure)."""
    return subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, json.dumps(commands)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def two_runs(data):
    """Two independent processes, side by side: train + evaluate with the same config and seed."""
    procs = []
    for name in ("a", "b"):
        run = data / f"run-{name}"
        procs.append(cli_process(train_argv(data, run),
                                 ["evaluate", str(run), "--test", str(data / "test.parquet"), "--out",
                                  str(run / "metrics.json"), "--train", str(data / "train.parquet"), "--set",
                                  *EVALUATE]))
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    return data / "run-a", data / "run-b"


def state(run: Path) -> dict:
    return torch.load(run / "model.pt", map_location="cpu", weights_only=True)


def assert_same_model(a: Path, b: Path) -> None:
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def without_times(obj):
    """Drop wall-clock fields (the only thing allowed to differ between identical runs)."""
    if isinstance(obj, dict):
        return {k: without_times(v) for k, v in obj.items() if "time" not in k}
    if isinstance(obj, list):
        return [without_times(v) for v in obj]
    return obj


def test_same_config_and_seed_give_identical_models_and_metrics(two_runs):
    a, b = two_runs
    assert_same_model(a, b)
    la, lb = (pd.read_parquet(r / "training_log.parquet") for r in two_runs)
    pd.testing.assert_frame_equal(la.drop(columns=[c for c in la if "time" in c]),
                                  lb.drop(columns=[c for c in lb if "time" in c]))
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in two_runs)
    assert without_times(ma) == without_times(mb)
    assert isinstance(ma["d_stsp"], float) and ma["lyapunov_spectrum"]
    ca, cb = (json.loads((r / "config.json").read_text()) for r in two_runs)
    assert ca["config_hash"] == cb["config_hash"] and ca["software"] == cb["software"]
    assert {"python", "torch", "numpy", "dsrpipe"} <= set(ca["software"])


def kill_tree(pid: int) -> None:
    """SIGKILL a process we started and everything it started (by id)."""
    parent = psutil.Process(pid)
    for child in parent.children(recursive=True):
        child.send_signal(signal.SIGKILL)
    parent.send_signal(signal.SIGKILL)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    start = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, f"ended before writing {path}: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() - start < timeout, f"no {path} after {timeout} s"
        time.sleep(0.02)


def test_sigkill_after_a_checkpoint_resumes_bit_identical(data, two_runs, tmp_path):
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "dsrpipe.cli", *train_argv(data, run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(run / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (run / "model.pt").exists() and not (run / "config.json").exists()
    killed_at = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["epoch"]
    assert 1 <= killed_at < 30

    rerun = subprocess.run([sys.executable, "-m", "dsrpipe.cli", *train_argv(data, run)], capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming from" in rerun.stderr and f"at epoch {killed_at + 1}" in rerun.stderr, rerun.stderr[-3000:]
    assert not (run / "checkpoint.pt").exists()
    assert_same_model(run, two_runs[0])
    pd.testing.assert_series_equal(pd.read_parquet(run / "training_log.parquet")["loss"],
                                   pd.read_parquet(two_runs[0] / "training_log.parquet")["loss"])


@pytest.mark.slow
def test_killed_workflow_finishes_with_rerun_incomplete_and_reruns_on_changed_settings(tmp_path):
    (tmp_path / "repo").mkdir()
    repo = copy_repo(tmp_path / "repo")  # frozen code: edits elsewhere must not rerun jobs
    wd = make_tiny_dataset(tmp_path / "wd", subjects=(("01", 28.0),))
    config = yaml.safe_load((wd / "config/config.yaml").read_text())
    config["train"].update(epochs=60, batches_per_epoch=10, checkpoint_every=1, log_every=1)
    (wd / "config/config.yaml").write_text(yaml.safe_dump(config))
    run = wd / "results/sub-01/model-shPLRNN_seed-0"
    target = str(run.relative_to(wd) / "model.pt")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--directory", str(wd),
           "--cores", "1", target]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, cwd=wd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(run / "checkpoint.pt", proc)
    kill_tree(proc.pid)  # a node that vanished: no cleanup by Snakemake or dsrpipe
    proc.wait(timeout=60)
    assert not (run / "model.pt").exists()

    assert snakemake(wd, "--unlock", repo=repo).returncode == 0
    resumed = snakemake(wd, "--cores", "1", "--rerun-incomplete", target, repo=repo)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = (wd / "logs/sub-01/model-shPLRNN_seed-0_train.log").read_text()
    assert "resuming from" in log, log[-2000:]
    assert (run / "config.json").exists() and not (run / "checkpoint.pt").exists()
    dry = snakemake(wd, "-n", target, repo=repo)
    assert dry.returncode == 0 and planned_jobs(dry) == [], dry.stdout[-2000:] + dry.stderr[-2000:]

    config["train"]["lr"] = config["train"]["lr"] / 2
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(wd, "-n", target, "--configfile", str(tmp_path / "changed.yaml"), repo=repo)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert [r for r, _ in planned_jobs(dry)] == ["train_model"], dry.stdout[-2000:]  # not preprocess/prepare
