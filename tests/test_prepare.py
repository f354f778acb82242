"""Check, split in time and standardise with training statistics; bad input writes nothing."""

import hashlib
import logging

import numpy as np
import pandas as pd
import pytest

from dsrpipe import DsrpipeError
from dsrpipe.cli import main
from dsrpipe.config import PrepareConfig
from dsrpipe.io import TimeSeries, read_timeseries, write_timeseries
from dsrpipe.preprocessing import check_data, prepare, prepare_file

CHANNELS = ["a", "b", "c"]


@pytest.fixture
def raw():
    """1000 x 3 with a trend and offsets, so train, test and whole-record statistics all differ."""
    rng = np.random.default_rng(42)
    t = np.arange(1000)[:, None]
    return rng.normal(size=(1000, 3)) * [1.0, 3.0, 0.2] + [5.0, -2.0, 100.0] + t * [0.01, 0.0, -0.002]


@pytest.fixture(autouse=True)
def _restore_logging():
    """dsrpipe.cli.main reconfigures the root logger; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# ---------------------------------------------------------------- prepare


def test_split_in_time_without_overlap(raw):
    train, test = prepare(raw, CHANNELS, subject="01", cfg=PrepareConfig())
    assert train.n_samples == 800 and test.n_samples == 200
    mean = np.asarray(train.meta["standardisation"]["mean"])
    std = np.asarray(train.meta["standardisation"]["std"])
    np.testing.assert_allclose(train.data * std + mean, raw[:800], rtol=0, atol=1e-10)
    np.testing.assert_allclose(test.data * std + mean, raw[800:], rtol=0, atol=1e-10)
    assert (train.meta["split"], train.meta["first_sample"]) == ("train", 0)
    assert (test.meta["split"], test.meta["first_sample"]) == ("test", 800)


def test_split_follows_test_fraction(raw):
    train, test = prepare(raw, CHANNELS, subject="01", cfg=PrepareConfig(test_fraction=0.35))
    assert (train.n_samples, test.n_samples) == (650, 350)


def test_standardises_with_training_statistics_only(raw):
    train, test = prepare(raw, CHANNELS, subject="01", cfg=PrepareConfig())
    np.testing.assert_allclose(train.data.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(train.data.std(axis=0), 1, rtol=1e-12)
    mean, std = raw[:800].mean(axis=0), raw[:800].std(axis=0)
    np.testing.assert_allclose(test.data, (raw[800:] - mean) / std, rtol=1e-12)
    # the trend moves the test segment away from the training mean; whole-record statistics would not
    assert abs(test.data[:, 0].mean()) > 0.5
    for ts in (train, test):
        np.testing.assert_allclose(ts.meta["standardisation"]["mean"], mean, rtol=1e-12)
        np.testing.assert_allclose(ts.meta["standardisation"]["std"], std, rtol=1e-12)
        assert ts.meta["prepare"]["test_fraction"] == 0.2


def test_standardise_off_keeps_raw_values(raw):
    train, test = prepare(raw, CHANNELS, subject="01", cfg=PrepareConfig(standardise=False))
    np.testing.assert_array_equal(np.vstack([train.data, test.data]), raw)
    assert train.meta["standardisation"] == {"mean": [0.0] * 3, "std": [1.0] * 3}


def test_keeps_dt_subject_channels(raw):
    train, test = prepare(raw, CHANNELS, subject="09", cfg=PrepareConfig(dt=0.5), dt=0.002, modality="eeg")
    for ts in (train, test):
        assert (ts.dt, ts.subject, ts.modality, ts.channels) == (0.002, "09", "eeg", CHANNELS)
    # without an explicit dt the config's is used
    train, _ = prepare(raw, CHANNELS, subject="09", cfg=PrepareConfig(dt=0.5))
    assert train.dt == 0.5


# ---------------------------------------------------------------- check_data


def _bad_arrays():
    rng = np.random.default_rng(1)
    good = rng.normal(size=(300, 2))
    nan, inf, const = good.copy(), good.copy(), good.copy()
    nan[17, 1] = np.nan
    inf[200, 0] = -np.inf
    const[:, 1] = 3.7
    return {
        "nan": (nan, "NaN"),
        "inf": (inf, "inf"),
        "constant": (const, "constant"),
        "short": (good[:50], "too few samples"),
        "no_channels": (np.empty((300, 0)), "N >= 1"),
    }


BAD = _bad_arrays()


@pytest.mark.parametrize("kind", sorted(BAD))
def test_check_data_rejects(kind):
    arr, message = BAD[kind]
    channels = [f"ch{j}" for j in range(arr.shape[1])]
    with pytest.raises(DsrpipeError, match=message) as err:
        check_data(arr, channels, source="rec-42.csv", min_samples=200)
    assert "rec-42.csv" in str(err.value)


def test_check_data_names_bad_channel():
    arr, _ = BAD["nan"]
    with pytest.raises(DsrpipeError, match="ch1"):
        check_data(arr, ["ch0", "ch1"], source="s", min_samples=10)
    arr, _ = BAD["constant"]
    with pytest.raises(DsrpipeError, match="ch1"):
        check_data(arr, ["ch0", "ch1"], source="s", min_samples=10)


def test_check_data_accepts_good(raw):
    check_data(raw, CHANNELS, source="s", min_samples=1000)


def test_channel_constant_only_in_training_segment_is_rejected():
    x = np.random.default_rng(3).normal(size=(500, 2))
    x[:400, 1] = 1.0  # varies only in the last 20 %: the whole record passes, the training std is 0
    check_data(x, ["a", "b"], source="s", min_samples=200)
    with pytest.raises(DsrpipeError, match="constant") as err:
        prepare(x, ["a", "b"], subject="01", cfg=PrepareConfig(), source="step.csv")
    assert "step.csv" in str(err.value)


def test_split_leaving_an_empty_segment_is_rejected():
    x = np.random.default_rng(4).normal(size=(10, 1))
    with pytest.raises(DsrpipeError, match="test_fraction"):
        prepare(x, ["a"], subject="01", cfg=PrepareConfig(min_samples=10, test_fraction=0.01))
    with pytest.raises(DsrpipeError, match="test_fraction"):
        prepare(x, ["a"], subject="01", cfg=PrepareConfig(min_samples=10, test_fraction=0.99))


# ---------------------------------------------------------------- prepare_file


def _write_bad(tmp_path, kind):
    """One bad input file per kind; returns its path."""
    if kind in BAD:
        path = tmp_path / f"bad-{kind}.npy"
        np.save(path, BAD[kind][0])
        return path
    good = np.random.default_rng(2).normal(size=(300, 2))
    if kind == "missing":
        return tmp_path / "bad-missing.csv"
    if kind == "text_column":
        path = tmp_path / "bad-text.csv"
        df = pd.DataFrame(good, columns=["x", "y"])
        df["y"] = "n/a"
        df.to_csv(path, index=False)
        return path
    if kind == "nan_csv":
        path = tmp_path / "bad-nan.csv"
        df = pd.DataFrame(good, columns=["x", "y"])
        df.loc[5, "x"] = np.nan
        df.to_csv(path, index=False)
        return path
    if kind in ("truncated_npy", "truncated_parquet"):
        path = tmp_path / f"bad-{kind}.{kind.split('_')[1]}"
        if path.suffix == ".npy":
            np.save(path, good)
        else:
            pd.DataFrame(good, columns=["x", "y"]).to_parquet(path)
        path.write_bytes(path.read_bytes()[:200])
        return path
    if kind == "suffix":
        path = tmp_path / "bad-suffix.xlsx"
        path.write_bytes(b"x")
        return path
    raise AssertionError(kind)


BAD_FILES = sorted(BAD) + ["missing", "text_column", "nan_csv", "truncated_npy", "truncated_parquet", "suffix"]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_prepare_file_bad_input_writes_nothing(tmp_path, kind):
    src = _write_bad(tmp_path, kind)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DsrpipeError) as err:
        prepare_file(src, out / "train.parquet", out / "test.parquet", subject="01", cfg=PrepareConfig())
    assert src.name in str(err.value)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_prepare_file_writes_segments_with_provenance(tmp_path, raw, suffix):
    src = tmp_path / f"rec{suffix}"
    if suffix == ".npy":
        np.save(src, raw)
    elif suffix == ".csv":
        pd.DataFrame(raw, columns=CHANNELS).to_csv(src, index=False)
    else:
        pd.DataFrame(raw, columns=CHANNELS).to_parquet(src)
    out = tmp_path / "out"
    prepare_file(src, out / "train.parquet", out / "test.parquet", subject="05", cfg=PrepareConfig(dt=0.01))
    assert sorted(p.name for p in out.iterdir()) == ["test.parquet", "train.parquet"]
    train, test = read_timeseries(out / "train.parquet"), read_timeseries(out / "test.parquet")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    for ts in (train, test):
        assert ts.meta["provenance"] == {"source": str(src), "sha256": digest}
        assert ts.dt == 0.01 and ts.subject == "05"
    std = np.asarray(train.meta["standardisation"]["std"])
    mean = np.asarray(train.meta["standardisation"]["mean"])
    np.testing.assert_allclose(np.vstack([train.data, test.data]) * std + mean, raw, atol=1e-9)


def test_prepare_file_keeps_dt_and_modality_of_dsrpipe_parquet(tmp_path, raw):
    src = tmp_path / "sub-01_eeg.parquet"
    write_timeseries(TimeSeries(data=raw, channels=CHANNELS, dt=0.004, subject="01", modality="eeg"), src)
    train, test = prepare_file(src, tmp_path / "tr.parquet", tmp_path / "te.parquet", subject="01",
                               cfg=PrepareConfig())
    assert (train.dt, train.modality, test.dt, test.modality) == (0.004, "eeg", 0.004, "eeg")
    train, _ = prepare_file(src, tmp_path / "tr.parquet", tmp_path / "te.parquet", subject="01",
                            cfg=PrepareConfig(dt=0.008))
    assert train.dt == 0.008


# ---------------------------------------------------------------- CLI


def _cli(src, out, *extra):
    return main(["prepare", str(src), "--subject", "01", "--train-out", str(out / "train.parquet"),
                 "--test-out", str(out / "test.parquet"), *extra])


@pytest.mark.parametrize("kind", ["nan", "constant", "truncated_parquet", "missing"])
def test_cli_prepare_bad_input_exit_code_2(tmp_path, capsys, kind):
    src = _write_bad(tmp_path, kind)
    out = tmp_path / "out"
    out.mkdir()
    assert _cli(src, out) == 2
    assert src.name in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_cli_prepare_good_input(tmp_path, raw):
    src = tmp_path / "rec.npy"
    np.save(src, raw)
    out = tmp_path / "out"
    assert _cli(src, out, "--set", "test_fraction=0.25", "dt=0.1") == 0
    train, test = read_timeseries(out / "train.parquet"), read_timeseries(out / "test.parquet")
    assert (train.n_samples, test.n_samples, train.dt) == (750, 250, 0.1)


def test_cli_prepare_bad_override_exit_code_2(tmp_path, raw, capsys):
    src = tmp_path / "rec.npy"
    np.save(src, raw)
    out = tmp_path / "out"
    out.mkdir()
    assert _cli(src, out, "--set", "test_fraction=1.5") == 2
    assert "test_fraction" in capsys.readouterr().err
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------- smoothing (prepare.smooth_sigma)


def test_smooth_time_damps_a_sine_and_white_noise_by_the_gaussian_filter_gains():
    """Known answers: a Gaussian of width sigma multiplies a sine of angular frequency w (per sample) by
    exp(-sigma^2 w^2 / 2), and white noise's std by sqrt(sum k^2) ~ (2 sigma sqrt(pi))^-1/2."""
    from dsrpipe.preprocessing.common import smooth_time

    sigma, t = 2.0, np.arange(4000)
    w = 2 * np.pi / 25  # a period of 25 samples: gain exp(-2 w^2) = 0.881
    out = smooth_time(np.sin(w * t)[:, None], sigma)
    inner = slice(100, -100)  # away from the mirrored edges
    np.testing.assert_allclose(out[inner, 0], np.exp(-(sigma * w) ** 2 / 2) * np.sin(w * t[inner]), atol=2e-3)
    noise = np.random.default_rng(0).normal(size=(200_000, 1))
    ratio = smooth_time(noise, sigma).std() / noise.std()
    assert abs(ratio - (2 * sigma * np.sqrt(np.pi)) ** -0.5) < 0.01  # 0.376
    np.testing.assert_array_equal(smooth_time(noise[:50], 0.0), noise[:50])  # 0: off


def test_smooth_time_keeps_a_line_and_touches_only_the_chosen_columns():
    from dsrpipe.preprocessing.common import smooth_time

    x = np.column_stack([np.linspace(-3, 5, 300), np.tile([0.0, 1.0], 150)])
    out = smooth_time(x, 1.5, which=np.array([True, False]))
    np.testing.assert_allclose(out[20:-20, 0], x[20:-20, 0], atol=1e-12)  # symmetric kernel: a line stays
    np.testing.assert_array_equal(out[:, 1], x[:, 1])  # an input or label column is never smoothed
    with pytest.raises(DsrpipeError, match="sigma"):
        smooth_time(x, -1.0)


def test_prepare_smooths_each_segment_on_its_own(raw):
    """prepare.smooth_sigma: the training segment is smoothed without any test sample (and vice versa)."""
    from dsrpipe.preprocessing.common import smooth_time

    cfg = PrepareConfig(smooth_sigma=2.0, standardise=False)
    train, test = prepare(raw, CHANNELS, subject="01", cfg=cfg)
    np.testing.assert_allclose(train.data, smooth_time(raw[:800], 2.0), rtol=1e-12)
    np.testing.assert_allclose(test.data, smooth_time(raw[800:], 2.0), rtol=1e-12)
    assert np.diff(train.data[:, 0]).std() < 0.3 * np.diff(raw[:800, 0]).std()  # the white noise is mostly gone
    changed = raw.copy()
    changed[800:] += 100.0
    train2, _ = prepare(changed, CHANNELS, subject="01", cfg=cfg)
    np.testing.assert_array_equal(train2.data, train.data)
    assert train.meta["prepare"]["smooth_sigma"] == 2.0
    with pytest.raises(DsrpipeError, match="prepare.smooth_sigma"):
        PrepareConfig(smooth_sigma=-0.5)


def test_prepare_smooths_only_continuous_channels():
    """Counts stay integer counts (Poisson readout), inputs and labels stay as they are."""
    rng = np.random.default_rng(3)
    data = np.column_stack([rng.normal(size=600), rng.poisson(3.0, 600), rng.integers(0, 2, 600)]).astype(float)
    cfg = PrepareConfig(smooth_sigma=2.0, standardise=False)
    train, _ = prepare(data, CHANNELS, subject="01", cfg=cfg, channel_types=["continuous", "count", "input"])
    assert not np.allclose(train.data[:, 0], data[:480, 0])
    np.testing.assert_array_equal(train.data[:, 1:], data[:480, 1:])
