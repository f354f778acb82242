"""The Snakemake workflow end to end on a tiny dataset, lint, and reruns of only what changed."""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from report_checks import check_snakemake_report
from workflow_helpers import (REPO, SNAKEMAKE, change_subject_input, copy_repo, make_tiny_dataset, planned_jobs,
                              snakemake)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A private copy of workflow and package: one test edits the analysis code."""
    return copy_repo(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, repo):
    wd = make_tiny_dataset(tmp_path_factory.mktemp("wf"), covariate=True)
    proc = snakemake(wd, "--cores", "2", repo=repo)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd


def test_full_run_writes_group_outputs(workdir):
    runs = pd.read_parquet(workdir / "results/group/runs.parquet")
    assert sorted(runs["subject"]) == ["01", "02"]
    assert np.isfinite(runs["d_h"]).all()
    summary = pd.read_parquet(workdir / "results/group/summary.parquet")
    assert {"d_stsp", "d_h", "pe_20", "max_lyapunov"} <= set(summary["metric"])
    html = (workdir / "results/group/report.html").read_text()
    assert "sub-01" in html or "01" in html
    assert "data:image/png;base64," in html
    # the subjects table's extra column is a covariate: in the group table and plotted against the metrics
    assert sorted(runs["rho"]) == [28.0, 35.0]
    assert "Metrics vs covariates" in html
    assert sorted(p.name for p in (workdir / "results/group/scatter").glob("*.png")) == [
        "d_stsp_vs_rho.png", "max_lyapunov_vs_rho.png"]
    for sid in ("01", "02"):
        run = workdir / f"results/sub-{sid}/model-shPLRNN_seed-0"
        assert (run / "metrics.json").exists() and (run / "config.json").exists()
        assert (workdir / f"logs/sub-{sid}/model-shPLRNN_seed-0_train.log").read_text().strip()
    # the invariants per run in the group table, and no temporary file left anywhere
    assert {"diverged", "attractor_class", "n_visited_regions", "n_attractors", "n_fixed_points_saddle",
            "n_cycles_2"} <= set(runs.columns)
    assert not runs["diverged"].any()
    assert not list((workdir / "results").rglob("*.tmp"))


def test_snakemake_report_holds_every_run_figure_and_the_group_page(workdir):
    check_snakemake_report(workdir)


def test_nothing_to_do_after_a_run(workdir, repo):
    proc = snakemake(workdir, "-n", repo=repo)
    assert proc.returncode == 0
    assert planned_jobs(proc) == [], proc.stdout


def test_changed_input_reruns_only_that_subject(workdir, repo):
    raw = workdir / "raw" / "s02.csv"
    backup = raw.read_bytes()
    try:
        change_subject_input(workdir, "02")
        jobs = planned_jobs(snakemake(workdir, "-n", repo=repo))
    finally:
        raw.write_bytes(backup)
    assert sorted(jobs) == sorted([("preprocess_recording", "02"), ("prepare_data", "02"), ("train_model", "02"),
                                   ("evaluate_model", "02"), ("report_group", ""), ("all", "")])


def test_changed_training_parameter_reruns_training_not_preparation(workdir, repo, tmp_path):
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["train"]["epochs"] += 1
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(workdir, "-n", "--configfile", str(tmp_path / "changed.yaml"), repo=repo))
    rules = sorted(r for r, _ in jobs)
    assert "prepare_data" not in rules
    assert rules.count("train_model") == 2 and rules.count("evaluate_model") == 2


def test_cuda_training_requests_one_gpu_per_training_job(workdir, repo, tmp_path):
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["train"]["device"] = "cuda"
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "-n", "--configfile", str(tmp_path / "gpu.yaml"), repo=repo)
    resources, rule = [], None
    for line in proc.stdout.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif line.strip().startswith("resources:"):
            resources.append((rule, line))
    train = [line for r, line in resources if r == "train_model"]
    assert len(train) == 2 and all("gpu=1" in line for line in train), proc.stdout[-3000:]
    assert not any("gpu=" in line for r, line in resources if r != "train_model")


def test_changed_analysis_code_reruns_only_evaluation(workdir, repo):
    source = repo / "dsrpipe" / "analysis" / "metrics.py"
    backup = source.read_text()
    try:
        source.write_text(backup + "\n# an edit to the analysis code\n")
        jobs = planned_jobs(snakemake(workdir, "-n", repo=repo))
    finally:
        source.write_text(backup)
    assert sorted(jobs) == sorted([("evaluate_model", "01"), ("evaluate_model", "02"), ("report_group", ""),
                                   ("all", "")])


def test_lint_has_no_findings_beyond_conda_envs():
    """`snakemake --lint` exits 1 on any finding; we accept only the per-rule conda/container
    advice (dsrpipe is pip-installed) and fail on anything else."""
    proc = subprocess.run([*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=REPO, timeout=300)
    findings = [line.strip() for line in proc.stdout.splitlines() + proc.stderr.splitlines()
                if line.startswith("    * ")]
    assert findings, proc.stdout + proc.stderr  # the lint ran
    other = [f for f in findings if "Specify a conda environment or container" not in f]
    assert other == [], other


def test_demo_dry_run_plans_the_whole_demo(tmp_path):
    """With no config argument the default config runs the 4-subject demo."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    proc = snakemake(tmp_path, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rules = [r for r, _ in planned_jobs(proc)]
    for rule in ("simulate_demo", "prepare_data", "train_model", "evaluate_model"):
        assert rules.count(rule) == 4, (rule, rules)
