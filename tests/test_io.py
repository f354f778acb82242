"""Parquet time series round trip, plain-table readers, their errors, atomic writes."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsrpipe import DsrpipeError
from dsrpipe.io import TimeSeries, atomic, atomic_path, load_series, read_table, read_timeseries, write_json, \
    write_timeseries


@pytest.fixture
def data():
    return np.random.default_rng(0).normal(size=(50, 3))


def _truncate(path, keep=0.5):
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


# ---------------------------------------------------------------- Parquet round trip


def test_timeseries_round_trip(tmp_path, data):
    meta = {"standardisation": {"mean": [0.5, -1.0, 2.0], "std": [1.0, 2.0, 3.0]},
            "provenance": {"source": "raw.csv", "sha256": "ab" * 32}, "split": "train", "first_sample": 0}
    ts = TimeSeries(data=data, channels=["a", "b", "c"], dt=0.025, subject="07", modality="eeg", meta=meta)
    path = tmp_path / "sub-07.parquet"
    write_timeseries(ts, path)
    back = read_timeseries(path)
    np.testing.assert_array_equal(back.data, data)
    assert back.data.dtype == np.float64
    assert back.channels == ["a", "b", "c"]
    assert back.dt == 0.025
    assert back.subject == "07"
    assert back.modality == "eeg"
    assert back.meta == meta


def test_timeseries_round_trip_unknown_dt(tmp_path, data):
    write_timeseries(TimeSeries(data=data, channels=["x", "y", "z"]), tmp_path / "t.parquet")
    back = read_timeseries(tmp_path / "t.parquet")
    assert back.dt is None
    assert (back.subject, back.modality, back.meta) == ("unknown", "timeseries", {})


def test_timeseries_rejects_bad_shapes():
    with pytest.raises(DsrpipeError, match="2-D"):
        TimeSeries(data=np.zeros(5), channels=["a"])
    with pytest.raises(DsrpipeError, match="channel names"):
        TimeSeries(data=np.zeros((5, 2)), channels=["a"])


def test_read_timeseries_on_plain_parquet_says_no_metadata(tmp_path, data):
    path = tmp_path / "plain.parquet"
    pd.DataFrame(data, columns=["a", "b", "c"]).to_parquet(path)
    with pytest.raises(DsrpipeError, match="no dsrpipe metadata") as err:
        read_timeseries(path)
    assert str(path) in str(err.value)


def test_read_timeseries_missing_and_corrupt(tmp_path, data):
    with pytest.raises(DsrpipeError, match="not found") as err:
        read_timeseries(tmp_path / "nope.parquet")
    assert "nope.parquet" in str(err.value)
    path = tmp_path / "t.parquet"
    write_timeseries(TimeSeries(data=data, channels=["a", "b", "c"]), path)
    _truncate(path)
    with pytest.raises(DsrpipeError, match="not a readable Parquet") as err:
        read_timeseries(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------- plain tables


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_read_table_named_columns(tmp_path, data, suffix):
    path = tmp_path / f"table{suffix}"
    df = pd.DataFrame(data, columns=["ch1", "ch2", "ch3"])
    if suffix == ".parquet":
        df.to_parquet(path)  # plain pandas Parquet, no dsrpipe metadata
    else:
        df.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    arr, channels = read_table(path)
    assert channels == ["ch1", "ch2", "ch3"]
    assert arr.dtype == np.float64
    np.testing.assert_allclose(arr, data, rtol=1e-15)


def test_read_table_npy_2d_and_1d(tmp_path, data):
    np.save(tmp_path / "m.npy", data.astype(np.float32))
    arr, channels = read_table(tmp_path / "m.npy")
    assert channels == ["x0", "x1", "x2"]
    assert arr.dtype == np.float64
    np.testing.assert_array_equal(arr, data.astype(np.float32))

    np.save(tmp_path / "v.npy", data[:, 1])
    arr, channels = read_table(tmp_path / "v.npy")
    assert arr.shape == (50, 1)
    assert channels == ["x0"]
    np.testing.assert_array_equal(arr[:, 0], data[:, 1])


def test_read_table_missing_file(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(DsrpipeError, match="not found") as err:
        read_table(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["data.txt", "data.h5", "data"])
def test_read_table_unsupported_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_text("1,2\n3,4\n")
    with pytest.raises(DsrpipeError, match="unsupported file type") as err:
        read_table(path)
    assert str(path) in str(err.value)


def test_read_table_truncated_npy(tmp_path, data):
    path = tmp_path / "cut.npy"
    np.save(path, data)
    _truncate(path)
    with pytest.raises(DsrpipeError) as err:
        read_table(path)
    assert str(path) in str(err.value)


def test_read_table_garbage_npy(tmp_path):
    path = tmp_path / "garbage.npy"
    path.write_bytes(b"this is not a numpy file at all")
    with pytest.raises(DsrpipeError) as err:
        read_table(path)
    assert str(path) in str(err.value)


def test_read_table_truncated_parquet(tmp_path, data):
    path = tmp_path / "cut.parquet"
    pd.DataFrame(data, columns=["a", "b", "c"]).to_parquet(path)
    _truncate(path)
    with pytest.raises(DsrpipeError) as err:
        read_table(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_read_table_non_numeric_column(tmp_path, suffix):
    path = tmp_path / f"labels{suffix}"
    sep = "\t" if suffix == ".tsv" else ","
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "label": ["rest", "task", "rest"]}).to_csv(path, sep=sep, index=False)
    with pytest.raises(DsrpipeError, match="non-numeric") as err:
        read_table(path)
    assert str(path) in str(err.value)
    assert "label" in str(err.value)


def test_read_table_3d_npy(tmp_path):
    path = tmp_path / "cube.npy"
    np.save(path, np.zeros((4, 3, 2)))
    with pytest.raises(DsrpipeError, match="2-D") as err:
        read_table(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------- load_series


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_load_series_plain_table(tmp_path, data, suffix):
    path = tmp_path / f"sub01{suffix}"
    if suffix == ".npy":
        np.save(path, data)
    elif suffix == ".csv":
        pd.DataFrame(data, columns=["x0", "x1", "x2"]).to_csv(path, index=False)
    else:
        pd.DataFrame(data, columns=["x0", "x1", "x2"]).to_parquet(path)
    ts = load_series(path, dt=0.5)
    np.testing.assert_allclose(ts.data, data, rtol=1e-15)
    assert ts.channels == ["x0", "x1", "x2"]
    assert ts.dt == 0.5
    assert ts.subject == "sub01"
    assert ts.meta["provenance"]["source"] == str(path)
    assert load_series(path).dt is None


def test_load_series_dsrpipe_parquet_keeps_or_overrides_dt(tmp_path, data):
    path = tmp_path / "t.parquet"
    write_timeseries(TimeSeries(data=data, channels=["a", "b", "c"], dt=0.1, subject="03", modality="fmri"), path)
    ts = load_series(path)
    assert (ts.dt, ts.subject, ts.modality) == (0.1, "03", "fmri")
    assert load_series(path, dt=2.0).dt == 2.0


def test_load_series_corrupt_parquet_is_an_error(tmp_path, data):
    path = tmp_path / "cut.parquet"
    write_timeseries(TimeSeries(data=data, channels=["a", "b", "c"]), path)
    _truncate(path)
    with pytest.raises(DsrpipeError) as err:
        load_series(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------- atomic writes


def test_atomic_path_success_leaves_only_the_target(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_atomic_outputs_get_the_umask_mode_not_mkstemps(tmp_path, monkeypatch, umask, file_mode, dir_mode):
    # mkstemp/mkdtemp create 0600/0700: results a colleague on the cluster could not read
    from dsrpipe.reporting.run_figures import write_pngs

    monkeypatch.setattr(atomic, "_UMASK", umask)
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("done")
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == file_mode
    write_pngs({"a": b"png"}, tmp_path / "figures")
    assert (tmp_path / "figures").stat().st_mode & 0o777 == dir_mode


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_failure_keeps_previous_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise RuntimeError
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_atomic_temporaries_are_unique_per_process(tmp_path):
    target = tmp_path / "out.json"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        assert first.name.startswith(f".out.json.{atomic._host()}.{os.getpid()}.") and first.suffix == ".tmp"
        first.write_text("1")
        second.write_text("2")
    # the outer block renames last, so its content wins; no temporary is left
    assert target.read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_stale_temporaries_removed_by_next_write(tmp_path):
    target = tmp_path / "metrics.json"
    host = atomic._host()
    dead = tmp_path / f".metrics.json.{host}.{_dead_pid()}.abc_12.tmp"  # killed writer on this host
    alive = tmp_path / f".metrics.json.{host}.{os.getppid()}.xyz.tmp"  # a writer still running
    old_other = tmp_path / ".metrics.json.othernode.123.q1.tmp"  # another node, long ago
    new_other = tmp_path / ".metrics.json.othernode.124.q2.tmp"  # another node, maybe still writing
    old_style = tmp_path / ".metrics.json.k3j_x9.tmp"  # an older dsrpipe's name, long ago
    other_target = tmp_path / f".metrics.json.bak.{host}.{_dead_pid()}.r.tmp"  # not ours: target metrics.json.bak
    for p in (dead, alive, old_other, new_other, old_style, other_target):
        p.write_text("half")
    long_ago = time.time() - atomic.STALE_AFTER_S - 10
    for p in (old_other, old_style):
        os.utime(p, (long_ago, long_ago))
    write_json({"a": 1}, target)
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (target, alive, new_other, other_target))


def test_writer_killed_mid_write_leaves_no_output_and_next_write_cleans(tmp_path):
    target = tmp_path / "model.pt"
    code = textwrap.dedent(f"""
        import sys, time
        from dsrpipe.io.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("half written")
            print(tmp, flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.exists() and tmp.parent == tmp_path
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists() and tmp.exists()  # no output; a leftover the next write removes
    with atomic_path(target) as new:
        new.write_text("complete")
    assert target.read_text() == "complete" and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
