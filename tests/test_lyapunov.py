"""Lyapunov spectra and Kaplan-Yorke dimension against known answers; Jacobians against autograd."""

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian as autograd_jacobian

from dsrpipe import DsrpipeError
from dsrpipe.analysis.lyapunov import (
    classify_attractor,
    kaplan_yorke_dimension,
    lyapunov_analysis,
    lyapunov_spectrum,
    orbit_period,
)
from dsrpipe.models.shallow import ClippedShallowPLRNN, ShallowPLRNN
from dsrpipe.systems import (
    HenonMap,
    LinearMap,
    Lorenz63Map,
    lorenz63_fixed_points,
    simulate_lorenz63,
)

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0


@pytest.fixture(scope="module")
def lorenz_spectrum():
    return lyapunov_spectrum(Lorenz63Map(), [1.0, 1.0, 20.0], 20_000, n_transient=500, dt=0.01)


# ---------------------------------------------------------------- spectra


def non_normal_matrix(eigenvalues, seed=0):
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(len(eigenvalues), len(eigenvalues))) + 2 * np.eye(len(eigenvalues))
    return V @ np.diag(eigenvalues) @ np.linalg.inv(V)


@pytest.mark.parametrize("qr_every", [1, 7])
def test_linear_map_gives_log_abs_eigenvalues(qr_every):
    A = non_normal_matrix([1.05, -0.6, 0.25])
    assert not np.allclose(A @ A.T, A.T @ A)  # non-normal
    exponents = lyapunov_spectrum(
        LinearMap(A), [1.0, 0.5, -0.3], 3000, n_transient=0, qr_every=qr_every
    )
    expected = np.sort(np.log(np.abs(np.linalg.eigvals(A))))[::-1]
    np.testing.assert_allclose(exponents, expected, atol=3e-3)


def test_per_time_unit_divides_by_dt():
    A = non_normal_matrix([0.9, 0.5])
    per_step = lyapunov_spectrum(LinearMap(A), [1.0, 1.0], 500, n_transient=10)
    per_time = lyapunov_spectrum(LinearMap(A), [1.0, 1.0], 500, n_transient=10, dt=0.25)
    np.testing.assert_allclose(per_time, per_step / 0.25, rtol=1e-12)


def test_henon():
    exponents = lyapunov_spectrum(HenonMap(), [0.1, 0.1], 50_000)
    np.testing.assert_allclose(exponents, [0.419, -1.623], atol=0.01)
    assert exponents.sum() == pytest.approx(np.log(0.3), abs=1e-9)  # |det J| = b


def test_lorenz63_spectrum(lorenz_spectrum):
    np.testing.assert_allclose(lorenz_spectrum, [0.906, 0.0, -14.572], atol=0.05)
    # sum = trace of the vector field's Jacobian (up to the RK4 error)
    assert lorenz_spectrum.sum() == pytest.approx(-(SIGMA + 1 + BETA), abs=1e-3)


def test_lorenz63_kaplan_yorke(lorenz_spectrum):
    assert kaplan_yorke_dimension(lorenz_spectrum) == pytest.approx(2.06, abs=0.01)


def test_plrnn_without_coupling_is_diagonal_linear():
    model = ShallowPLRNN(3, 5).double()
    with torch.no_grad():
        model.A.copy_(torch.tensor([0.5, -0.9, 0.2], dtype=torch.float64))
        model.W1.zero_()
    exponents = lyapunov_spectrum(model, [1.0, 1.0, 1.0], 200, n_transient=5)
    np.testing.assert_allclose(exponents, np.log([0.9, 0.5, 0.2]), atol=1e-12)


def test_float32_model_is_evaluated_in_float64_without_changing_it():
    torch.manual_seed(0)
    model = ShallowPLRNN(3, 20)
    ref = lyapunov_spectrum(_double_copy(model), np.ones(3), 2000)
    got = lyapunov_spectrum(model, np.ones(3), 2000)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert model.A.dtype == torch.float32


def _double_copy(model):
    copy = type(model)(**model.hyperparameters()).double()
    copy.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    return copy


def test_diverging_orbit_and_bad_arguments_raise():
    with pytest.raises(DsrpipeError, match="diverged"):
        lyapunov_spectrum(LinearMap(np.diag([1e10, 0.5])), [1.0, 1.0], 100, n_transient=0)
    with pytest.raises(DsrpipeError, match="z0"):
        lyapunov_spectrum(HenonMap(), np.zeros((2, 2)), 10)
    with pytest.raises(DsrpipeError):
        lyapunov_spectrum(HenonMap(), [0.1, 0.1], 0)


def test_sum_of_exponents_is_the_mean_log_abs_det_jacobian():
    torch.manual_seed(5)
    model = ShallowPLRNN(3, 20).double().requires_grad_(False)
    result = lyapunov_analysis(model, np.ones(3), 3000, n_transient=100, keep_orbit=True)
    logdet = np.log(np.abs(np.linalg.det(model.jacobian(torch.as_tensor(result.orbit)).numpy())))
    assert result.exponents.sum() == pytest.approx(logdet.mean(), abs=1e-9)


@pytest.mark.parametrize("qr_every", [1, 4])
def test_convergence_trace(qr_every):
    result = lyapunov_analysis(HenonMap(), [0.1, 0.1], 20_000, n_transient=100, qr_every=qr_every, n_trace=50,
                               dt=0.5)
    assert result.trace.shape == (len(result.trace_steps), 2) and 40 <= len(result.trace_steps) <= 50
    assert np.all(np.diff(result.trace_steps) > 0) and result.trace_steps[-1] == 20_000
    assert np.all(result.trace_steps % qr_every == 0)
    np.testing.assert_allclose(result.trace[-1], result.exponents, rtol=1e-12)
    # the running estimate at step s is the spectrum of the first s steps
    s = int(result.trace_steps[9])
    np.testing.assert_allclose(result.trace[9], lyapunov_spectrum(HenonMap(), [0.1, 0.1], s, n_transient=100,
                                                                  qr_every=qr_every, dt=0.5), rtol=1e-9)
    # and it converges: late estimates close to the final one (per time unit: / dt)
    np.testing.assert_allclose(result.trace[-10:], np.tile([0.419, -1.623], (10, 1)) / 0.5, atol=0.05)
    assert result.orbit is None


# ---------------------------------------------------------------- attractor classification


@pytest.mark.parametrize("spectrum, period, expected", [
    ([0.9, 0.0, -14.6], None, "chaotic"),
    ([0.42, -1.62], None, "chaotic"),
    ([1e-5, -0.3, -2.0], None, "cycle"),
    ([-0.1, -2.0], 3, "cycle"),  # a 3-cycle of the map
    ([-0.1, -2.0], None, "fixed_point"),
    ([-0.1, -2.0], 1, "fixed_point"),
    ([2e-4, -1e-4, -1.0], None, "quasi_periodic"),
    ([0.05, -10.0], None, "cycle"),  # 0.05 < 0.01 * 10: neutral
    ([0.2, 0.1, -10.0], None, "chaotic"),
])
def test_classification_by_hand(spectrum, period, expected):
    result = classify_attractor(spectrum, period=period)
    assert result["class"] == expected
    assert result["n_positive"] + result["n_zero"] + result["n_negative"] == len(spectrum)


def test_classification_is_independent_of_dt_and_has_an_absolute_floor():
    spec = np.array([0.0009, -0.05, -0.2])
    assert classify_attractor(spec)["class"] == classify_attractor(spec / 0.01)["class"] == "cycle"
    assert classify_attractor([0.003, -0.1], abs_tol=0.0)["class"] == "chaotic"
    assert classify_attractor([0.003, -0.1], abs_tol=0.005)["class"] == "cycle"
    assert classify_attractor([-0.5, -np.inf])["class"] == "fixed_point"
    assert classify_attractor([0.0, -np.inf])["class"] == "cycle"
    with pytest.raises(DsrpipeError):
        classify_attractor([np.nan, 1.0])


def test_classification_of_known_systems(lorenz_spectrum):
    assert classify_attractor(lorenz_spectrum)["class"] == "chaotic"
    assert classify_attractor(lyapunov_spectrum(HenonMap(), [0.1, 0.1], 5000))["class"] == "chaotic"
    contraction = lyapunov_analysis(LinearMap(np.diag([0.5, -0.8])), [1.0, 1.0], 500, n_transient=0,
                                    keep_orbit=True)
    assert classify_attractor(contraction.exponents, abs_tol=10 / 500)["class"] == "fixed_point"
    # Lorenz-63 at rho = 160: a stable limit cycle of the flow, one zero exponent
    limit = lyapunov_analysis(Lorenz63Map(rho=160.0), [1.0, 1.0, 150.0], 30_000, n_transient=5000)
    assert classify_attractor(limit.exponents, abs_tol=10 / 30_000)["class"] == "cycle"


def test_orbit_period():
    t = np.arange(300)
    two = np.stack([(-1.0) ** t, np.zeros(300)], axis=1)
    assert orbit_period(two) == 2
    assert orbit_period(np.ones((50, 2))) == 1
    assert orbit_period(np.stack([np.cos(t), np.sin(t)], axis=1)) is None  # irrational rotation
    assert orbit_period(np.stack([np.cos(2 * np.pi * t / 7), np.sin(2 * np.pi * t / 7)], axis=1)) == 7


# ---------------------------------------------------------------- Kaplan-Yorke


@pytest.mark.parametrize(
    "spectrum, expected",
    [
        ([0.5, 0.0, -1.0], 2.5),
        ([1.0, -2.0, -3.0], 1.5),
        ([-2.0, 1.0, -3.0], 1.5),  # any order
        ([0.3, 0.1, -0.2, -1.0], 3.2),  # k = 3: 3 + 0.2 / 1
        ([-0.1, -1.0], 0.0),
        ([1.0, 0.5, -0.2], 3.0),
        ([0.0, -1.0], 1.0),
    ],
)
def test_kaplan_yorke_hand_made(spectrum, expected):
    assert kaplan_yorke_dimension(spectrum) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- Jacobians vs autograd


def check_jacobian(system, points):
    z = torch.as_tensor(points, dtype=torch.float64)
    analytic = system.jacobian(z)
    assert analytic.shape == (*z.shape, z.shape[-1])
    for zi, Ji in zip(z, analytic):
        expected = autograd_jacobian(system.step, zi)
        np.testing.assert_allclose(Ji.numpy(), expected.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("substeps", [1, 3])
def test_lorenz63_map_jacobian_is_exact(substeps):
    points = np.random.default_rng(0).normal(scale=[8, 8, 10], size=(5, 3)) + [0, 0, 25]
    check_jacobian(Lorenz63Map(dt=0.02, substeps=substeps), points)


def test_henon_and_linear_jacobians():
    rng = np.random.default_rng(1)
    check_jacobian(HenonMap(), rng.normal(size=(4, 2)))
    check_jacobian(LinearMap(rng.normal(size=(3, 3))), rng.normal(size=(4, 3)))


@pytest.mark.parametrize("cls", [ShallowPLRNN, ClippedShallowPLRNN])
def test_shallow_plrnn_jacobians(cls):
    torch.manual_seed(0)
    model = cls(3, 16).double().requires_grad_(False)
    points = np.random.default_rng(2).normal(scale=2.0, size=(6, 3))
    check_jacobian(model, points)
    batched = model.jacobian(torch.as_tensor(points.reshape(2, 3, 3)))
    assert batched.shape == (2, 3, 3, 3)


# ---------------------------------------------------------------- Lorenz-63 helpers


def test_lorenz63_fixed_points_are_equilibria():
    points = lorenz63_fixed_points(SIGMA, RHO, BETA)
    assert points.shape == (3, 3)
    f = Lorenz63Map().vector_field(torch.as_tensor(points))
    np.testing.assert_allclose(f.numpy(), 0.0, atol=1e-12)
    assert lorenz63_fixed_points(SIGMA, 0.5, BETA).shape == (1, 3)


def test_simulated_lorenz63_agrees_with_the_rk4_map():
    x = simulate_lorenz63(300, dt=0.01, n_transient=100, seed=3)
    assert x.shape == (300, 3)
    np.testing.assert_array_equal(x, simulate_lorenz63(300, dt=0.01, n_transient=100, seed=3))
    one_step = Lorenz63Map(dt=0.01).step(torch.as_tensor(x[:-1])).numpy()
    np.testing.assert_allclose(one_step, x[1:], atol=1e-4)  # RK4 local error at dt = 0.01
    assert 10 < np.abs(x).max() < 60


def test_compiled_and_python_qr_loops_agree():
    from dsrpipe.analysis.lyapunov import _qr_accumulate_py, _qr_kernel

    J = np.random.default_rng(4).normal(size=(50, 3, 3))
    results = []
    for loop in (_qr_accumulate_py, _qr_kernel()):
        log_sum = np.zeros(3)
        Q, count = loop(J, np.eye(3), log_sum, 0, 3)
        results.append((Q, count, log_sum))
    (Q1, c1, s1), (Q2, c2, s2) = results
    assert c1 == c2 == 50 % 3
    np.testing.assert_allclose(Q1, Q2, atol=1e-12)
    np.testing.assert_allclose(s1, s2, atol=1e-12)
