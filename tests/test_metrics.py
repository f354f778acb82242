"""D_stsp (binned and GMM), D_H and PE(n) against hand-computed values and known behaviour."""

import numpy as np
import pytest
import torch

from dsrpipe import DsrpipeError
from dsrpipe.analysis.metrics import (
    METRICS,
    power_spectrum_distance,
    prediction_error,
    prediction_error_curve,
    state_space_divergence,
    state_space_divergence_gmm,
)
from dsrpipe.models.shallow import ShallowPLRNN
from dsrpipe.systems import LinearMap, simulate_lorenz63


@pytest.fixture(scope="module")
def lorenz():
    x = simulate_lorenz63(6000, n_transient=500)
    return (x - x.mean(0)) / x.std(0)


# ---------------------------------------------------------------- D_stsp, binned


def test_dstsp_1d_two_bins_by_hand():
    x_true = np.array([0.0, 0.2, 0.9, 1.0])  # range [0, 1]; bins [0, .5), [.5, 1]: h = (2, 2)
    x_gen = np.array([0.1, 0.3, 0.4, 0.8, 1.5, -0.2])  # 1.5 and -0.2 dropped: h = (3, 1)
    a = 0.1
    p = np.array([2 + a, 2 + a]) / (4 + 2 * a)
    q = np.array([3 + a, 1 + a]) / (4 + 2 * a)
    expected = np.sum(p * np.log(p / q))
    got = state_space_divergence(x_true[:, None], x_gen[:, None], n_bins=2, smoothing=a)
    assert got == pytest.approx(expected, rel=1e-12)


def test_dstsp_1d_three_bins_unequal_counts_by_hand():
    x_true = np.array([0.0, 0.5, 0.6, 2.9, 3.0])  # bins of width 1 on [0, 3]: h = (3, 0, 2)
    x_gen = np.array([1.5, 1.2, 2.5])  # h = (0, 2, 1)
    a = 1e-5
    p = (np.array([3, 0, 2]) + a) / (5 + 3 * a)
    q = (np.array([0, 2, 1]) + a) / (3 + 3 * a)
    expected = np.sum(p * np.log(p / q))
    assert state_space_divergence(x_true, x_gen, n_bins=3) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n_dim, n_bins", [(2, 7), (3, 5)])
def test_dstsp_matches_dense_histogramdd(n_dim, n_bins):
    rng = np.random.default_rng(n_dim)
    x_true = rng.normal(size=(500, n_dim))
    x_gen = 1.3 * rng.normal(size=(400, n_dim)) + 0.2
    lo, hi = x_true.min(0), x_true.max(0)
    inside = x_gen[np.all((x_gen >= lo) & (x_gen <= hi), axis=1)]
    edges = [np.linspace(lo[i], hi[i], n_bins + 1) for i in range(n_dim)]
    h_true = np.histogramdd(x_true, bins=edges)[0].ravel()
    h_gen = np.histogramdd(inside, bins=edges)[0].ravel()
    a = 1e-3
    p = (h_true + a) / (h_true.sum() + a * h_true.size)
    q = (h_gen + a) / (h_gen.sum() + a * h_gen.size)
    expected = np.sum(p * np.log(p / q))
    got = state_space_divergence(x_true, x_gen, n_bins=n_bins, smoothing=a)
    assert got == pytest.approx(expected, rel=1e-10)


def test_dstsp_zero_for_itself_and_grows_with_shift(lorenz):
    assert state_space_divergence(lorenz, lorenz) == pytest.approx(0.0, abs=1e-12)
    values = [state_space_divergence(lorenz, lorenz + [s, 0, 0]) for s in (0.1, 0.4, 0.8)]
    assert 0 < values[0] < values[1] < values[2]


def test_dstsp_refuses_too_many_bins():
    x = np.zeros((10, 6))
    with pytest.raises(DsrpipeError, match="gmm"):
        state_space_divergence(x, x, n_bins=30)


def test_dstsp_rejects_mismatched_dimensions():
    with pytest.raises(DsrpipeError, match="dimension"):
        state_space_divergence(np.zeros((10, 2)), np.zeros((10, 3)))


# ---------------------------------------------------------------- D_stsp, GMM


def test_gmm_single_components_match_gaussian_kl():
    # KL(N(0, s) || N(d, s)) = d^2 / (2 s) in 1-D
    d, s = 1.5, 0.7
    got = state_space_divergence_gmm([[0.0]], [[d]], scaling=s, n_samples=200_000)
    assert got == pytest.approx(d**2 / (2 * s), rel=0.02)


def test_gmm_identical_is_zero_and_deterministic(lorenz):
    assert state_space_divergence_gmm(lorenz, lorenz) == pytest.approx(0.0, abs=1e-12)
    shifted = lorenz + 0.3
    assert state_space_divergence_gmm(lorenz, shifted, seed=3) == state_space_divergence_gmm(
        lorenz, shifted, seed=3
    )


def test_gmm_subsamples_evenly():
    x = np.arange(100.0)[:, None]
    # with two components (rows 0 and 99), a series of just those two rows is identical
    assert state_space_divergence_gmm(x, x[[0, 99]], max_points=2) == pytest.approx(0.0, abs=1e-12)


def test_gmm_grows_with_shift_and_orders_like_binning(lorenz):
    shifts = (0.2, 0.5, 1.0)
    gmm = [state_space_divergence_gmm(lorenz, lorenz + [s, 0, 0], max_points=2000) for s in shifts]
    assert 0 < gmm[0] < gmm[1] < gmm[2]
    rng = np.random.default_rng(0)
    # clearly separated distortions of different kinds: small noise, dilation, large shift
    candidates = [lorenz + 0.1 * rng.normal(size=lorenz.shape), 1.3 * lorenz, lorenz + 1.5]
    binned = [state_space_divergence(lorenz, c) for c in candidates]
    gmm = [state_space_divergence_gmm(lorenz, c, max_points=2000) for c in candidates]
    assert np.argsort(binned).tolist() == np.argsort(gmm).tolist()


# ---------------------------------------------------------------- D_H


def test_dh_by_hand_without_smoothing():
    # sigma tiny: no smoothing. z-scored spectra (|rfft|^2, bins 0..2):
    alternating = np.array([1.0, -1.0, 1.0, -1.0])  # -> (0, 0, 16) -> p = (0, 0, 1)
    pair = np.array([1.0, 1.0, -1.0, -1.0])  # -> (0, 8, 0) -> q = (0, 1, 0)
    spike = np.array([2.0, 0.0, 0.0, 0.0])  # -> (0, 16/3, 16/3) -> (0, 1/2, 1/2)
    x = np.stack([alternating, alternating, alternating], axis=1)
    y = np.stack([alternating, pair, spike], axis=1)
    expected = np.mean([0.0, 1.0, np.sqrt(1 - np.sqrt(0.5))])
    assert power_spectrum_distance(x, y, sigma=1e-9) == pytest.approx(expected, abs=1e-12)


def test_dh_identical_zero_and_invariant_to_scale():
    t = np.arange(2000)
    x = np.stack([np.sin(0.05 * t), np.cos(0.11 * t) + 0.1 * np.sin(0.3 * t)], axis=1)
    assert power_spectrum_distance(x, x) == pytest.approx(0.0, abs=1e-7)
    assert power_spectrum_distance(x, 3 * x + 1) == pytest.approx(0.0, abs=1e-7)


def test_dh_other_frequency_further_than_noise():
    rng = np.random.default_rng(1)
    t = np.arange(4000)
    x = np.sin(2 * np.pi * t / 50)[:, None]
    noisy = x + 0.3 * rng.normal(size=x.shape)
    other = np.sin(2 * np.pi * t / 20)[:, None]
    d_noise, d_other = power_spectrum_distance(x, noisy), power_spectrum_distance(x, other)
    assert 0 < d_noise < d_other <= 1


def test_dh_smoothing_brings_nearby_frequencies_closer():
    t = np.arange(4000)
    x = np.sin(2 * np.pi * t / 50)[:, None]
    y = np.sin(2 * np.pi * t / 48)[:, None]
    assert power_spectrum_distance(x, y, sigma=20) < power_spectrum_distance(x, y, sigma=1)


def test_dh_constant_series_and_length_mismatch():
    x = np.sin(np.arange(100.0))[:, None]
    assert power_spectrum_distance(x, np.ones_like(x)) == 1.0
    with pytest.raises(DsrpipeError, match="equal length"):
        power_spectrum_distance(x, x[:50])


# ---------------------------------------------------------------- PE(n)


def scaling_plrnn(M, a, dtype=torch.float64):
    """z -> a * z exactly (W1 = 0, h1 = 0)."""
    model = ShallowPLRNN(M, 4).to(dtype)
    with torch.no_grad():
        model.A.fill_(a)
        model.W1.zero_()
        model.h1.zero_()
    return model


@pytest.mark.parametrize("M", [2, 3])
def test_prediction_error_closed_form(M):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    a, n = 0.9, 5
    expected = np.mean((a**n * x[:-n] - x[n:]) ** 2)
    assert prediction_error(scaling_plrnn(M, a), x, n=n) == pytest.approx(expected, rel=1e-12)


def test_prediction_error_float32_model():
    x = np.random.default_rng(1).normal(size=(40, 2))
    expected = np.mean((0.5**3 * x[:-3] - x[3:]) ** 2)
    got = prediction_error(scaling_plrnn(2, 0.5, torch.float32), x, n=3)
    assert got == pytest.approx(expected, rel=1e-5)


def test_prediction_error_extra_units_start_at_zero():
    # a hidden third unit feeds the readout; it starts at 0 from every test point
    A = np.array([[0.5, 0.0, 1.0], [0.0, 0.8, 0.0], [0.0, 0.0, 0.9]])
    x = np.random.default_rng(2).normal(size=(30, 2))
    n = 4
    z0 = np.hstack((x[:-n], np.zeros((len(x) - n, 1))))
    pred = z0 @ np.linalg.matrix_power(A, n).T
    expected = np.mean((pred[:, :2] - x[n:]) ** 2)
    assert prediction_error(LinearMap(A), x, n=n) == pytest.approx(expected, rel=1e-12)
    A[0, 2] = 5.0  # the hidden unit's coupling does not matter when it starts at 0
    assert prediction_error(LinearMap(A), x, n=1) == pytest.approx(
        np.mean((x[:-1] @ A[:2, :2].T - x[1:]) ** 2), rel=1e-12
    )


def test_prediction_error_curve_closed_form_and_agrees_with_single_horizons():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 2))
    a = 0.8
    model = scaling_plrnn(3, a)
    curve = prediction_error_curve(model, x, n_max=20)
    assert curve.shape == (20,)
    expected = [np.mean((a**n * x[:-n] - x[n:]) ** 2) for n in range(1, 21)]
    np.testing.assert_allclose(curve, expected, rtol=1e-12)
    for n in (1, 7, 20):
        assert prediction_error(model, x, n=n) == pytest.approx(curve[n - 1], rel=1e-12)
    with pytest.raises(DsrpipeError, match="n < T"):
        prediction_error_curve(model, x, n_max=50)


def test_prediction_error_bad_input():
    with pytest.raises(DsrpipeError, match="latent_dim"):
        prediction_error(scaling_plrnn(2, 0.5), np.zeros((30, 3)))
    with pytest.raises(DsrpipeError, match="n < T"):
        prediction_error(scaling_plrnn(2, 0.5), np.zeros((10, 2)), n=10)


def test_registry():
    assert set(METRICS) >= {"D_stsp", "D_stsp_gmm", "D_H"}
