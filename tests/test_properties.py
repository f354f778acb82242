"""Property-based tests (hypothesis) of the preprocessing shared by every modality:
check_data, standardise, split_train_test and prepare on random shapes and values."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dsrpipe import DsrpipeError
from dsrpipe.config import PrepareConfig
from dsrpipe.preprocessing.common import check_data, prepare, split_train_test, standardise

SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
shapes = st.tuples(st.integers(12, 200), st.integers(1, 6))
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def tables(draw, min_rows=12):
    """A T x N table whose columns all vary: random values plus a random scale and offset."""
    t, n = draw(shapes.filter(lambda s: s[0] >= min_rows))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(arrays(np.float64, n, elements=st.floats(1e-3, 1e3)))
    offset = draw(arrays(np.float64, n, elements=finite))
    kind = draw(st.sampled_from(["normal", "uniform", "counts"]))
    base = {"normal": lambda: rng.normal(size=(t, n)), "uniform": lambda: rng.uniform(size=(t, n)),
            "counts": lambda: rng.poisson(2.0, size=(t, n)).astype(float)}[kind]()
    base[0] += 1.0  # no column is constant, whatever the draw
    return base * scale + offset


def tolerance(x):
    """Rounding error of centring: grows with offset/spread (cancellation) and the number of rows."""
    return 1e-12 + 1e-14 * len(x) * (1 + np.abs(x).max(axis=0) / x.std(axis=0))


def names(n):
    return [f"c{j}" for j in range(n)]


@SETTINGS
@given(tables())
def test_standardise_gives_zero_mean_unit_variance(x):
    z, mean, std = standardise(x)
    assert z.shape == x.shape and mean.shape == std.shape == (x.shape[1],)
    assert np.isfinite(z).all()
    assert np.all(np.abs(z.mean(axis=0)) <= tolerance(x))
    assert np.all(np.abs(z.std(axis=0) - 1.0) <= tolerance(x))
    np.testing.assert_allclose(z * std + mean, x, rtol=1e-9, atol=1e-9 * np.abs(x).max())


@SETTINGS
@given(tables(), st.data())
def test_standardise_only_the_chosen_columns(x, data):
    which = np.array(data.draw(st.lists(st.booleans(), min_size=x.shape[1], max_size=x.shape[1])))
    z, mean, std = standardise(x, which=which)
    np.testing.assert_array_equal(z[:, ~which], x[:, ~which])
    if which.any():
        assert np.all(np.abs(z[:, which].mean(axis=0)) <= tolerance(x[:, which]))


@SETTINGS
@given(arrays(np.float64, shapes, elements=finite), st.floats(0.01, 0.99))
def test_split_is_a_partition_in_time(x, fraction):
    train, test = split_train_test(x, fraction)
    assert len(train) + len(test) == len(x) and train.shape[1:] == test.shape[1:] == x.shape[1:]
    np.testing.assert_array_equal(np.concatenate([train, test]), x)  # in order, no overlap, nothing lost
    assert abs(len(test) - fraction * len(x)) <= 0.5 + 1e-9


@SETTINGS
@given(tables(min_rows=20), st.floats(0.1, 0.5))
def test_prepare_standardises_with_training_statistics_only(x, fraction):
    assume(round(len(x) * fraction) >= 1)
    train, test = prepare(x, names(x.shape[1]), subject="01", cfg=PrepareConfig(test_fraction=fraction,
                                                                                  min_samples=10))
    assert train.data.shape[0] + test.data.shape[0] == len(x)
    assume(np.all(x[: len(train.data)].std(axis=0) > 1e-9 * (1 + np.abs(x).max(axis=0))))
    assert np.all(np.abs(train.data.mean(axis=0)) <= tolerance(x[: len(train.data)]))
    mean = np.array(train.meta["standardisation"]["mean"])
    std = np.array(train.meta["standardisation"]["std"])
    np.testing.assert_allclose(test.data * std + mean, x[len(train.data):], rtol=1e-9,
                               atol=1e-9 * np.abs(x).max())
    assert np.isfinite(train.data).all() and np.isfinite(test.data).all()


@SETTINGS
@given(tables(), st.data())
def test_check_data_names_every_non_finite_channel(x, data):
    n = x.shape[1]
    bad_cols = data.draw(st.sets(st.integers(0, n - 1), min_size=1))
    value = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    for j in bad_cols:
        x[data.draw(st.integers(0, len(x) - 1)), j] = value
    with pytest.raises(DsrpipeError, match="NaN/inf") as exc:
        check_data(x, names(n), source="rec.csv", min_samples=2)
    message = str(exc.value)
    assert message.startswith("rec.csv:")
    listed = message.split("channel(s) ")[1].split(";")[0].split(", ")
    assert listed == [f"c{j}" for j in sorted(bad_cols)]


@SETTINGS
@given(tables(), st.data(), finite)
def test_check_data_rejects_constant_channels(x, data, level):
    j = data.draw(st.integers(0, x.shape[1] - 1))
    x[:, j] = level
    with pytest.raises(DsrpipeError, match=f"constant channel\\(s\\) c{j}\\b"):
        check_data(x, names(x.shape[1]), source="rec.csv", min_samples=2)


@SETTINGS
@given(tables())
def test_check_data_accepts_varying_finite_tables(x):
    check_data(x, names(x.shape[1]), source="rec.csv", min_samples=len(x))
    with pytest.raises(DsrpipeError, match="too few samples"):
        check_data(x, names(x.shape[1]), source="rec.csv", min_samples=len(x) + 1)
