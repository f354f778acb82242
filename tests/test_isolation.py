"""Per-subject isolation and concurrency: one broken subject fails only its own jobs, the group
report of what is available lists it with the reason, and two subjects training at once never
share a file (no global temporary paths)."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsrpipe import DsrpipeError
from dsrpipe.cli import logged
from dsrpipe.reporting.failures import describe_missing_run, log_error
from workflow_helpers import REPO, copy_repo, make_tiny_dataset, planned_jobs, snakemake

GOOD, BROKEN = ("01", "03"), "02"
RUN_FILES = {"model.pt", "config.json", "training_log.parquet", "metrics.json", "generated.parquet",
             "fixed_points.parquet"}  # at least these; evaluation may add more tables


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A frozen copy of workflow and package (code is an input: edits elsewhere must not rerun jobs)."""
    return copy_repo(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, repo):
    """Three subjects, sub-02's recording has a flat channel. Preparation first, then the rest with
    --keep-going: both good subjects' training jobs are ready at once and run side by side."""
    wd = make_tiny_dataset(tmp_path_factory.mktemp("iso"), subjects=(("01", 28.0), ("02", 35.0), ("03", 45.0)))
    raw = wd / "raw" / f"s{BROKEN}.csv"
    df = pd.read_csv(raw)
    df["z"] = 1.5
    df.to_csv(raw, index=False)
    first = snakemake(wd, "--cores", "2", "--keep-going", "--until", "prepare_data", repo=repo)
    assert first.returncode != 0  # sub-02's preprocessing failed
    for sid in GOOD:
        assert (wd / f"results/sub-{sid}/data/sub-{sid}_split-train.parquet").exists(), first.stderr[-3000:]
    rest = snakemake(wd, "--cores", "2", "--keep-going", repo=repo)
    assert rest.returncode != 0, rest.stderr[-3000:]  # the full group report needs sub-02
    return wd


@pytest.mark.slow
def test_the_broken_subject_fails_only_its_own_jobs(workdir):
    for sid in GOOD:
        run = workdir / f"results/sub-{sid}/model-shPLRNN_seed-0"
        assert (run / "metrics.json").exists()
    assert not (workdir / f"results/sub-{BROKEN}/data").exists() or not any(
        (workdir / f"results/sub-{BROKEN}/data").iterdir())
    log = (workdir / f"logs/sub-{BROKEN}/preprocess_timeseries.log").read_text()
    assert f"raw/s{BROKEN}.csv" in log and "constant channel(s) z" in log
    assert not (workdir / "results/group/report.html").exists()  # not a group report missing a subject silently


@pytest.mark.slow
def test_available_report_lists_the_failure_with_its_reason(workdir, repo):
    dry = snakemake(workdir, "-n", "report_available", repo=repo)
    assert [r for r, _ in planned_jobs(dry)] == ["report_available"], dry.stdout[-2000:]
    proc = snakemake(workdir, "--cores", "1", "report_available", repo=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = pd.read_parquet(workdir / "results/group/available_runs.parquet")
    assert sorted(runs["subject"]) == list(GOOD) and np.isfinite(runs["d_h"]).all()
    html = (workdir / "results/group/available_report.html").read_text()
    assert "Failed: 1" in html
    listing = re.search(r"sub-02 shPLRNN seed 0: preprocess failed: (.*?) \(logs/sub-02/preprocess_timeseries.log\)",
                        html)
    assert listing, html[:3000]
    assert "raw/s02.csv" in listing.group(1) and "constant channel(s) z" in listing.group(1)
    for sid in GOOD:
        assert f"sub-{sid} shPLRNN seed 0:" not in html


@pytest.mark.slow
def test_two_subjects_trained_side_by_side_each_wrote_only_its_own_files(workdir):
    # They ran at once: Snakemake started both training jobs before either finished (its own log;
    # the jobs' log stamps cannot show this when one process is slower to start than the other)
    events = []
    for log in sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log")):
        rule = None
        for line in log.read_text().splitlines():
            if m := re.match(r"^Finished jobid: (\d+) \(Rule: train_model\)", line):
                events.append(("end", m.group(1)))
            elif m := re.match(r"^(?:local)?rule (\w+):", line):
                rule = m.group(1)
            elif not line.startswith((" ", "\t")):  # another block ("Error in rule ...:" repeats a jobid)
                rule = None
            elif (m := re.match(r"^\s+jobid: (\d+)", line)) and rule == "train_model":
                events.append(("start", m.group(1)))
    starts = [i for i, (kind, _) in enumerate(events) if kind == "start"]
    ends = [i for i, (kind, _) in enumerate(events) if kind == "end"]
    assert len(starts) == len(GOOD) and len(ends) == len(GOOD), events
    assert max(starts) < min(ends), f"the training jobs did not run at once: {events}"
    for sid in GOOD:
        run = workdir / f"results/sub-{sid}/model-shPLRNN_seed-0"
        names = {p.name for p in run.iterdir()}
        assert RUN_FILES <= names, names
        strays = [n for n in names if n.startswith(".") or n.endswith(".tmp") or n == "checkpoint.pt"
                  or not (n.endswith((".pt", ".json", ".parquet")) or n == "figures")]
        assert not strays, strays  # no checkpoint, no temporary file, nothing else
        config = json.loads((run / "config.json").read_text())
        assert config["data"]["subject"] == sid
        assert config["data"]["path"] == f"results/sub-{sid}/data/sub-{sid}_split-train.parquet"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["subject"] == sid
    leftovers = [p for p in workdir.rglob("*.tmp")]
    assert not leftovers, leftovers


# --- without Snakemake -------------------------------------------------------------------------------

# a write and where it writes: the receiver (x.write_text), the first argument (.to_parquet(x)) or the
# second (torch.save(obj, x))
WRITES = [(re.compile(r"([\w.]+)\.(?:write_text|write_bytes)\("), None),
          (re.compile(r"\.(?:to_parquet|to_csv|savefig)\("), 0),
          (re.compile(r"(?:torch\.save|np\.save|nib\.save|write_table)\("), 1)]


def _arguments(text: str, open_paren: int) -> list[str]:
    """The top-level arguments of the call whose '(' is at ``open_paren`` (calls may span lines)."""
    depth, args, current = 0, [], ""
    for ch in text[open_paren + 1:]:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                return args + [current.strip()]
            depth -= 1
        if ch == "," and depth == 0:
            args, current = args + [current.strip()], ""
        else:
            current += ch
    return args


def test_no_global_temporary_paths_and_every_write_is_atomic():
    """Static: no fixed or global temporary names anywhere in the package or workflow, and every file write
    goes to the unique temporary path of dsrpipe.io.atomic (``tmp``) or to an in-memory buffer."""
    sources = [*sorted((REPO / "dsrpipe").rglob("*.py")), *sorted((REPO / "workflow").rglob("*.py")),
               *sorted((REPO / "workflow").rglob("*.smk")), REPO / "Snakefile"]
    fixed, direct, seen = [], [], 0
    for path in sources:
        text = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())
        for n, line in enumerate(text.splitlines(), 1):
            # a mkdtemp beside the output (dir=...) is unique and local: the atomic write of a folder
            if re.search(r"['\"]/tmp|gettempdir|NamedTemporaryFile|TMPDIR", line) or (
                    "mkdtemp" in line and "dir=" not in line):
                fixed.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
        for pattern, position in WRITES:
            for m in pattern.finditer(text):
                seen += 1
                target = m.group(1) if position is None else _arguments(text, m.end() - 1)[position]
                if target.strip() not in ("tmp", "buf", "buffer"):
                    direct.append(f"{path.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}: {target}")
    assert seen >= 8  # the scan finds the writers (model, log, series, metrics, tables, report)
    assert not fixed, fixed
    assert not direct, direct


def test_failure_reason_comes_from_the_first_failed_stage(tmp_path):
    logs = tmp_path / "logs"
    folder = logs / "sub-07"
    folder.mkdir(parents=True)
    with pytest.raises(SystemExit):
        with logged(str(folder / "prepare.log")):
            raise DsrpipeError("raw/s07.csv: constant channel(s) y; drop them")
    with pytest.raises(ZeroDivisionError):
        with logged(str(folder / "model-shPLRNN_seed-1_train.log")):
            1 / 0
    (folder / "preprocess_eeg.log").write_text("10:00:00 INFO dsrpipe: fine\n")
    assert log_error(folder / "preprocess_eeg.log") is None
    assert log_error(folder / "model-shPLRNN_seed-1_train.log") == "unexpected error: ZeroDivisionError: division by zero"
    assert describe_missing_run("07", "shPLRNN", 1, "eeg", logs=logs) == (
        f"sub-07 shPLRNN seed 1: prepare failed: raw/s07.csv: constant channel(s) y; drop them "
        f"({folder / 'prepare.log'})")
    assert describe_missing_run("08", "shPLRNN", 0, "eeg", logs=logs).startswith(
        "sub-08 shPLRNN seed 0: no results and no error")
    # a multimodal subject: its behaviour recording preprocessed fine, the merge failed
    folder = logs / "sub-09"
    folder.mkdir()
    (folder / "preprocess_fmri.log").write_text("10:00:00 INFO dsrpipe: fine\n")
    (folder / "preprocess_behaviour.log").write_text("10:00:01 INFO dsrpipe: fine\n")
    with pytest.raises(SystemExit):
        with logged(str(folder / "merge.log")):
            raise DsrpipeError("b.parquet: 300 samples, a.parquet: 150; put them on one grid")
    assert describe_missing_run("09", "shPLRNN", 0, "fmri", logs=logs) == (
        f"sub-09 shPLRNN seed 0: merge failed: b.parquet: 300 samples, a.parquet: 150; put them on one grid "
        f"({folder / 'merge.log'})")
    (folder / "preprocess_behaviour.log").write_text("10:00:01 ERROR dsrpipe: beh.tsv: no data rows\n")
    assert describe_missing_run("09", "shPLRNN", 0, "fmri", logs=logs).startswith(
        "sub-09 shPLRNN seed 0: preprocess failed: beh.tsv: no data rows")
