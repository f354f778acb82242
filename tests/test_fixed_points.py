"""Fixed points (SCYFI and exhaustive) against a brute force written here from the equations."""

import itertools

import numpy as np
import pytest
import torch

from dsrpipe import DsrpipeError
from dsrpipe.analysis.fixed_points import FixedPoint, fixed_points
from dsrpipe.models.shallow import ClippedShallowPLRNN, ShallowPLRNN
from dsrpipe.systems import HenonMap, Lorenz63Map, lorenz63_fixed_points

# (M, L, seed): configurations with several fixed points, stable and unstable
CONFIGS = [(2, 8, 1), (2, 8, 22), (3, 5, 13), (3, 8, 38)]


def random_params(M, L, seed, scale=3.0):
    rng = np.random.default_rng(seed)
    return {
        "A": rng.uniform(-0.5, 0.9, M),
        "W1": rng.uniform(-1, 1, (M, L)) * scale / np.sqrt(L),
        "W2": rng.uniform(-1, 1, (L, M)) * scale / np.sqrt(M),
        "h1": rng.normal(size=M),
        "h2": rng.uniform(-1, 1, L) * scale / np.sqrt(L),
    }


def build(cls, params, dtype=torch.float64):
    M, L = params["W1"].shape
    model = cls(M, L).to(dtype)
    with torch.no_grad():
        for name, value in params.items():
            getattr(model, name).copy_(torch.from_numpy(value))
    return model


def brute_force(p, clipped=False):
    """All fixed points of A*z + W1 relu(W2 z + h2) [- W1 relu(W2 z)] + h1, with Jacobians.

    Enumerates every ReLU mask (pairs of masks when clipped), solves the affine
    fixed-point equation and keeps solutions whose own masks are the guessed ones.
    """
    A, W1, W2, h1, h2 = p["A"], p["W1"], p["W2"], p["h1"], p["h2"]
    M, L = W1.shape
    masks = [np.array(m, dtype=float) for m in itertools.product((0, 1), repeat=L)]
    pairs = itertools.product(masks, masks) if clipped else ((d, np.zeros(L)) for d in masks)
    found = []
    for d1, d2 in pairs:
        J = np.diag(A) + W1 @ np.diag(d1 - d2) @ W2
        c = W1 @ (d1 * h2) + h1
        try:
            z = np.linalg.solve(np.eye(M) - J, c)
        except np.linalg.LinAlgError:
            continue
        if np.array_equal((W2 @ z + h2 > 0).astype(float), d1) and (
            not clipped or np.array_equal((W2 @ z > 0).astype(float), d2)
        ):
            found.append((z, J))
    return found


def assert_same_points(result, expected):
    assert len(result) == len(expected)
    for z, J in expected:
        matches = [fp for fp in result if np.allclose(fp.z, z, rtol=1e-8, atol=1e-8)]
        assert len(matches) == 1, f"fixed point {z} found {len(matches)} times"
        eig = np.linalg.eigvals(J)
        fp = matches[0]
        np.testing.assert_allclose(np.sort_complex(fp.eigenvalues), np.sort_complex(eig), atol=1e-9)
        assert fp.stable == bool(np.all(np.abs(eig) < 1))


@pytest.mark.parametrize("M, L, seed", CONFIGS)
@pytest.mark.parametrize("method", ["scyfi", "exhaustive"])
def test_shallow_plrnn_matches_brute_force(M, L, seed, method):
    params = random_params(M, L, seed)
    expected = brute_force(params)
    assert len(expected) >= 3  # the configurations are chosen to be interesting
    result = fixed_points(build(ShallowPLRNN, params), method=method)
    assert_same_points(result, expected)
    for fp in result:  # really fixed, independently of the model code
        z = fp.z
        p = params
        F = p["A"] * z + p["W1"] @ np.maximum(p["W2"] @ z + p["h2"], 0) + p["h1"]
        np.testing.assert_allclose(F, z, atol=1e-9)


def test_stable_and_unstable_points_are_both_present():
    flags = [
        fp.stable
        for M, L, s in CONFIGS
        for fp in fixed_points(build(ShallowPLRNN, random_params(M, L, s)), method="exhaustive")
    ]
    assert any(flags) and not all(flags)


@pytest.mark.parametrize("method", ["scyfi", "exhaustive"])
def test_clipped_model_matches_brute_force(method):
    params = random_params(2, 4, 3, scale=4.0)
    expected = brute_force(params, clipped=True)
    assert len(expected) >= 1
    assert_same_points(fixed_points(build(ClippedShallowPLRNN, params), method=method, n_inits=400), expected)


def test_float32_model_is_evaluated_in_float64_without_changing_it():
    params = random_params(2, 8, 22)
    model = build(ShallowPLRNN, params, dtype=torch.float32)
    with torch.no_grad():  # make the float32 parameters exactly representable
        for name in params:
            params[name] = getattr(model, name).double().numpy()
    assert_same_points(fixed_points(model), brute_force(params))
    assert model.A.dtype == torch.float32


def test_results_are_sorted_and_deterministic():
    model = build(ShallowPLRNN, random_params(3, 8, 38))
    first = fixed_points(model, seed=1)
    again = fixed_points(model, seed=1)
    assert [fp.z.tolist() for fp in first] == [fp.z.tolist() for fp in again]
    firsts = [fp.z[0] for fp in first]
    assert firsts == sorted(firsts)


def test_init_points_alone_find_the_point_they_start_near():
    params = random_params(2, 8, 22)
    target = brute_force(params)[0][0]
    result = fixed_points(build(ShallowPLRNN, params), n_inits=0, init_points=target[None] + 1e-3)
    assert len(result) == 1
    np.testing.assert_allclose(result[0].z, target, atol=1e-10)


def test_smooth_maps_converge_to_exact_points():
    # the same update is Newton's method for a smooth map
    result = fixed_points(Lorenz63Map())
    expected = lorenz63_fixed_points()
    assert len(result) == len(expected)
    for z in expected:
        assert min(np.abs(fp.z - z).max() for fp in result) < 1e-8
    henon = fixed_points(HenonMap())
    # x = 1 - a x^2 + b x  ->  a x^2 + (1 - b) x - 1 = 0
    roots = np.sort(np.roots([1.4, 0.7, -1.0]))
    np.testing.assert_allclose([fp.z[0] for fp in henon], roots, atol=1e-10)
    np.testing.assert_allclose([fp.z[1] for fp in henon], 0.3 * roots, atol=1e-10)


def test_to_dict():
    eig = np.array([0.5 + 0.5j, 0.5 - 0.5j])
    d = FixedPoint(z=np.array([1.0, 2.0]), eigenvalues=eig, stable=True).to_dict()
    assert d == {
        "state": [1.0, 2.0],
        "eigenvalues_real": [0.5, 0.5],
        "eigenvalues_imag": [0.5, -0.5],
        "stable": True,
        "max_abs_eigenvalue": pytest.approx(np.sqrt(0.5)),
        "type": "stable_spiral",
    }


def test_bad_requests_raise():
    model = build(ShallowPLRNN, random_params(2, 8, 1))
    with pytest.raises(DsrpipeError, match="scyfi"):
        fixed_points(model, method="newton")
    with pytest.raises(DsrpipeError, match="piecewise-linear"):
        fixed_points(HenonMap(), method="exhaustive")
    with pytest.raises(DsrpipeError, match="2\\^21"):
        fixed_points(ShallowPLRNN(2, 21), method="exhaustive")
    with pytest.raises(DsrpipeError, match="init_points"):
        fixed_points(model, init_points=np.zeros((3, 5)))
