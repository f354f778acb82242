"""The bad-input corpus (tests/bad_inputs.py): every broken recording or config fails loudly.

Each case runs the real command line (``dsrpipe.cli.main`` in-process: a fresh
interpreter per case would import torch and MNE 30 times; three cases also run
as real subprocesses) and must exit non-zero with a one-paragraph message that
names the file or config key (and the fix where the case says so), and leave
no output file and no temporary file behind. The subjects-table cases run
Snakemake (slow).
"""

import re
import subprocess
import sys

import pandas as pd
import pytest

from bad_inputs import CASES, Built
from dsrpipe.cli import main
from workflow_helpers import make_tiny_dataset, snakemake


def _error_message(stderr: str) -> str:
    """The text of the single ERROR record (everything after it belongs to it)."""
    starts = [m.end() for m in re.finditer(r"ERROR dsrpipe: ", stderr)]
    assert len(starts) == 1, f"expected one error record:\n{stderr[-3000:]}"
    return stderr[starts[0]:].strip()


def _check_failure(built: Built, stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    message = _error_message(stderr)
    assert "\n" not in message, f"not one paragraph:\n{message}"
    for fragment in built.names + built.fix:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    for out in built.outputs:
        assert not out.exists(), f"{out} left behind"
        if out.parent.exists():
            leftovers = [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]
            assert not leftovers, leftovers
    return message


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_with_a_clear_message_and_no_output(case, tmp_path, capsys):
    built = case.build(tmp_path)
    capsys.readouterr()
    rc = main(built.argv)
    stderr = capsys.readouterr().err
    assert rc != 0, stderr[-3000:]
    _check_failure(built, stderr)


def test_corpus_covers_modalities_and_config():
    assert len(CASES) >= 25
    kinds = {c.id.split("-")[0] for c in CASES}
    assert {"eeg", "fmri", "spikes"} <= kinds
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id", ["eeg-truncated-edf", "nan-samples", "alpha-outside"])
def test_real_process_exits_non_zero(case_id, tmp_path):
    """The same as a separate process: exit status, stderr, nothing written."""
    case = next(c for c in CASES if c.id == case_id)
    built = case.build(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "dsrpipe.cli", *built.argv], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode != 0
    _check_failure(built, proc.stderr)


# --- subjects table cases: the workflow itself -------------------------------------------------------

@pytest.mark.slow
def test_duplicate_subject_ids_stop_the_workflow_before_any_job(tmp_path):
    wd = make_tiny_dataset(tmp_path)
    table = pd.read_csv(wd / "subjects.tsv", sep="\t", dtype=str)
    pd.concat([table, table.iloc[[0]]]).to_csv(wd / "subjects.tsv", sep="\t", index=False)
    proc = snakemake(wd, "-n")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "subjects.tsv" in out and "sub-01 timeseries: rows 1, 3 (raw/s01.csv, raw/s01.csv)" in out, out[-3000:]
    assert "one recording per modality" in out and "Keep one of the rows" in out, out[-3000:]
    assert not (wd / "results").exists()


@pytest.mark.slow
def test_subjects_table_pointing_to_a_missing_file_fails_that_subject(tmp_path):
    wd = make_tiny_dataset(tmp_path)
    (wd / "raw" / "s01.csv").unlink()
    target = "results/sub-01/data/sub-01_desc-preproc_timeseries.parquet"
    proc = snakemake(wd, "--cores", "1", target)
    assert proc.returncode != 0
    log = (wd / "logs/sub-01/preprocess_timeseries.log").read_text()
    message = _error_message(log)
    assert "raw/s01.csv" in message and "not found" in message and "\n" not in message, log
    assert not (wd / target).exists()
