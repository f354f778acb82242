"""Parquet time series round trip, plain-table readers, their errors, atomic writes."""

import numpy as np
import pandas as pd
import pytest

from dsrpipe import DsrpipeError
from dsrpipe.io import TimeSeries, atomic_path, load_series, read_table, read_timeseries, write_timeseries


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
