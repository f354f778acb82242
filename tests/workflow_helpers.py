"""Shared helpers for tests that run the Snakemake workflow on a tiny dataset."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from dsrpipe.systems import simulate_lorenz63

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
TINY = {
    "train": {"epochs": 3, "batches_per_epoch": 5, "hidden_dim": 8, "seq_len": 20},
    "evaluate": {"lyapunov_steps": 2000, "fixed_point_inits": 20, "n_bins": 10},
}


def make_tiny_dataset(wd: Path, subjects=(("01", 28.0), ("02", 35.0)), covariate: bool = False) -> Path:
    """Write raw CSVs, a subjects table and a tiny config (few epochs) into ``wd``; with
    ``covariate``, the table has an extra column ``rho`` (a subject covariate)."""
    (wd / "raw").mkdir(parents=True, exist_ok=True)
    rows = []
    for sid, rho in subjects:
        x = simulate_lorenz63(2000, rho=rho, seed=int(sid))
        pd.DataFrame(x, columns=["x", "y", "z"]).to_csv(wd / "raw" / f"s{sid}.csv", index=False)
        rows.append({"subject": sid, "path": f"raw/s{sid}.csv", "dt": 0.01, **({"rho": rho} if covariate else {})})
    pd.DataFrame(rows).to_csv(wd / "subjects.tsv", sep="\t", index=False)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["subjects"] = "subjects.tsv"
    for section, values in TINY.items():
        config[section].update(values)
    (wd / "config").mkdir(exist_ok=True)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return wd


def change_subject_input(wd: Path, sid: str) -> None:
    """Change the content (not just the mtime) of one subject's raw file."""
    raw = wd / "raw" / f"s{sid}.csv"
    df = pd.read_csv(raw)
    df.iloc[0, 0] += 1.0
    df.to_csv(raw, index=False)


def snakemake(workdir, *args, timeout=900, repo: Path | None = None):
    """Run Snakemake on ``workdir``; with ``repo``, use that copy of the workflow and package."""
    if repo is None:
        cmd, env = SNAKEMAKE, None
    else:
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile")]
        env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # cwd = workdir: `python -m` puts the cwd first on sys.path, which must not be the repo
    return subprocess.run([*cmd, "--directory", str(workdir), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=workdir)


def copy_repo(dest: Path) -> Path:
    """A private copy of the workflow and the package, for tests that edit code."""
    # __pycache__ travels too: Numba's cache is keyed on source content, not path, so the copy
    # loads the kernels compiled for the original instead of compiling them again (tens of seconds)
    for name in ("Snakefile", "workflow", "config", "profiles", "dsrpipe"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy(src, dest / name)
    return dest


def planned_jobs(proc) -> list[tuple[str, str]]:
    """(rule, subject) for every job in a Snakemake run's or dry run's plan."""
    jobs, rule = [], None
    for line in proc.stdout.splitlines() + proc.stderr.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
            jobs.append((rule, ""))
        m = re.search(r"wildcards: .*subject=(\w+)", line)
        if m and rule:
            jobs[-1] = (rule, m.group(1))
    return jobs
