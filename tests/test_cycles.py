"""SCYFI fixed points and k-cycles against exhaustive search, an independent brute force and a
hand-made model with a known stable 2-cycle."""

import itertools

import numpy as np
import pytest
import torch

from dsrpipe import DsrpipeError
from dsrpipe.analysis.cycles import (
    Cycle,
    eigenvalue_type,
    exhaustive_cycles,
    scyfi,
    virtual_fixed_points,
)
from dsrpipe.models import build_model
from dsrpipe.models.registry import size_arguments
from dsrpipe.systems import HenonMap


def random_model(name, M, seed, L=5, B=2, P=2):
    """A registered model with every parameter N(0, 1) (seeded), float64."""
    model = build_model(name, M=M, **size_arguments(name, {"hidden_dim": L, "n_bases": B, "n_relu": P}))
    model = model.double().requires_grad_(False)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.normal(size=tuple(p.shape))))
    return model


# (name, M, L, seeds, has_stable): every seed has a fixed point; over the seeds there are at least
# two 2-cycles, unstable ones and (has_stable) stable ones; checked in the test, so the cases cannot
# silently become trivial
CASES = [
    ("shPLRNN", 2, 6, (15, 10, 22), True),
    ("clipped-shPLRNN", 2, 3, (18, 14), True),
    ("PLRNN", 3, None, (10, 8, 5), True),
    ("ALRNN", 3, None, (16, 10), True),
    ("dendPLRNN", 2, None, (18, 15), False),
    ("clipped-dendPLRNN", 2, None, (8, 5), False),
]


def same_cycles(a, b, atol=1e-8):
    """True when the two lists hold the same cycles (states in the same canonical order)."""
    if len(a) != len(b):
        return False
    return all(
        sum(x.order == y.order and np.allclose(x.states, y.states, atol=atol) for y in b) == 1 for x in a
    )


def check_is_cycle(model, cycle):
    """Independently of the region/affine code: the orbit closes after exactly `order` steps and the
    eigenvalues are those of the product of autograd Jacobians along it."""
    z = torch.as_tensor(cycle.states[0])
    product = torch.eye(len(z), dtype=torch.float64)
    for i in range(cycle.order):
        np.testing.assert_allclose(z.numpy(), cycle.states[i], atol=1e-9)
        product = torch.autograd.functional.jacobian(model.step, z) @ product
        z = model.step(z)
        if i < cycle.order - 1:
            assert np.abs(z.numpy() - cycle.states[0]).max() > 1e-6  # not a shorter cycle
    np.testing.assert_allclose(z.numpy(), cycle.states[0], atol=1e-9)
    np.testing.assert_allclose(np.sort_complex(cycle.eigenvalues), np.sort_complex(np.linalg.eigvals(product)),
                               atol=1e-9)


@pytest.mark.parametrize("name, M, L, seeds, has_stable", CASES)
def test_scyfi_matches_exhaustive_search_for_every_model(name, M, L, seeds, has_stable):
    n_cycles, stable = 0, []
    for seed in seeds:
        model = random_model(name, M, seed, L=L or 5)
        expected = exhaustive_cycles(model, 1) + exhaustive_cycles(model, 2)
        found = scyfi(model, max_order=2, n_inits=100)
        assert same_cycles(found, expected), f"{name} seed {seed}: {len(found)} vs {len(expected)}"
        assert any(c.order == 1 for c in expected)
        for c in expected:
            check_is_cycle(model, c)
        n_cycles += sum(c.order == 2 for c in expected)
        stable += [c.stable for c in expected]
    assert n_cycles >= 2 and any(stable) == has_stable and not all(stable)


def brute_force_shplrnn(p, order):
    """All cycles of A*z + W1 relu(W2 z + h2) + h1 of the given order from the equations (NumPy),
    as sets of points: every sequence of ReLU masks, solve, keep consistent solutions."""
    A, W1, W2, h1, h2 = p["A"], p["W1"], p["W2"], p["h1"], p["h2"]
    M, L = W1.shape
    masks = [np.array(m, dtype=float) for m in itertools.product((0, 1), repeat=L)]
    found = []
    for seq in itertools.product(masks, repeat=order):
        P, q = np.eye(M), np.zeros(M)
        for d in seq:
            J = np.diag(A) + W1 @ np.diag(d) @ W2
            P, q = J @ P, J @ q + W1 @ (d * h2) + h1
        try:
            z = np.linalg.solve(np.eye(M) - P, q)
        except np.linalg.LinAlgError:
            continue
        orbit = [z]
        for d in seq:
            if not np.array_equal((W2 @ orbit[-1] + h2 > 0).astype(float), d):
                break
            orbit.append(A * orbit[-1] + W1 @ np.maximum(W2 @ orbit[-1] + h2, 0) + h1)
        else:
            pts = np.array(orbit[:-1])
            if order == 1 or np.abs(pts[1] - pts[0]).max() > 1e-9:
                found.append(pts)
    return found


@pytest.mark.parametrize("seed", [15, 10])
def test_exhaustive_search_matches_an_independent_brute_force(seed):
    model = random_model("shPLRNN", 2, seed, L=6)
    params = {k: v.detach().numpy() for k, v in model.named_parameters()}
    for order in (1, 2):
        expected = brute_force_shplrnn(params, order)
        found = exhaustive_cycles(model, order)
        # every expected point set is found once; each cycle appears `order` times in the brute force
        assert len(found) * order == len(expected)
        for pts in expected:
            matches = [c for c in found if all(np.abs(c.states - z).max(axis=1).min() < 1e-8 for z in pts)]
            assert len(matches) == 1


# ---------------------------------------------------------------- a hand-made stable 2-cycle


def two_cycle_model():
    """shPLRNN with F(z)_1 = 0.5 z_1 - 1.5 clip(2 z_1, -1, 1), F(z)_2 = 0.3 z_2.

    clip(2z, -1, 1) = relu(2z + 1) - relu(2z - 1) - 1. The 2-cycle (1, 0) <-> (-1, 0) has the
    Jacobian product diag(0.25, 0.09) (stable node); the only fixed point is 0, with slopes
    -2.5 and 0.3 (a saddle); there are no other cycles of order 2..4.
    """
    model = build_model("shPLRNN", M=2, L=2).double().requires_grad_(False)
    with torch.no_grad():
        model.A.copy_(torch.tensor([0.5, 0.3]))
        model.W1.copy_(torch.tensor([[-1.5, 1.5], [0.0, 0.0]]))
        model.W2.copy_(torch.tensor([[2.0, 0.0], [2.0, 0.0]]))
        model.h2.copy_(torch.tensor([1.0, -1.0]))
        model.h1.copy_(torch.tensor([1.5, 0.0]))
    return model


def test_known_stable_two_cycle():
    model = two_cycle_model()
    cycles = scyfi(model, max_order=4, n_inits=50)
    assert [c.order for c in cycles] == [1, 2]  # order 4 (the 2-cycle twice) and order 3 are empty
    fp, cyc = cycles
    np.testing.assert_allclose(fp.states, [[0.0, 0.0]], atol=1e-12)
    assert fp.kind == "saddle" and not fp.stable
    np.testing.assert_allclose(np.sort(fp.eigenvalues.real), [-2.5, 0.3], atol=1e-12)
    np.testing.assert_allclose(cyc.states, [[-1.0, 0.0], [1.0, 0.0]], atol=1e-12)  # canonical: smallest first
    np.testing.assert_allclose(np.sort(cyc.eigenvalues.real), [0.09, 0.25], atol=1e-12)
    assert cyc.stable and cyc.kind == "stable_node"
    assert cyc.codes.tolist() == [[False, False], [True, True]]
    for order in (2, 3, 4):
        assert len(exhaustive_cycles(model, order)) == (order == 2)
    # an orbit from anywhere but the stable manifold of 0 converges to it
    z = model.generate(torch.tensor([0.3, 2.0], dtype=torch.float64), 200)[-2:]
    np.testing.assert_allclose(np.sort(z[:, 0].numpy()), [-1.0, 1.0], atol=1e-10)


def test_found_once_not_once_per_starting_point():
    model = two_cycle_model()
    # start from both points of the cycle and from the fixed point
    cycles = scyfi(model, max_order=2, n_inits=0, init_points=[[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [5.0, 1.0]])
    assert [c.order for c in cycles] == [1, 2]


# ---------------------------------------------------------------- virtual fixed points, types, errors


def test_virtual_fixed_points():
    model = two_cycle_model()
    # outer regions: z = 0.5 z - 1.5 -> z = -3 for the region z > 1/2 (virtual), and +3 for z < -1/2
    codes = np.array([[True, True], [False, False], [True, False]])
    virtual = virtual_fixed_points(model, codes)
    assert [c.virtual for c in virtual] == [True, True]
    np.testing.assert_allclose([c.states[0, 0] for c in virtual], [-3.0, 3.0], atol=1e-12)
    assert virtual[0].codes.tolist() == [[True, True]]
    assert virtual[0].to_dict()["codes"] == ["11"] and virtual[0].to_dict()["virtual"] is True


@pytest.mark.parametrize("eig, kind", [
    ([0.5, -0.2], "stable_node"),
    ([0.5 + 0.5j, 0.5 - 0.5j], "stable_spiral"),
    ([2.0, -3.0], "unstable_node"),
    ([1 + 1j, 1 - 1j], "unstable_spiral"),
    ([2.0, 0.5], "saddle"),
    ([1.0, 0.5], "non_hyperbolic"),
])
def test_eigenvalue_types(eig, kind):
    assert eigenvalue_type(np.array(eig)) == kind


def test_to_dict():
    c = Cycle(states=np.array([[0.0, 1.0], [2.0, 3.0]]), codes=np.array([[True, False], [False, False]]),
              eigenvalues=np.array([0.5 + 0.5j, 0.5 - 0.5j]))
    d = c.to_dict()
    assert d["order"] == 2 and d["codes"] == ["10", "00"] and d["type"] == "stable_spiral"
    assert d["stable"] is True and d["max_abs_eigenvalue"] == pytest.approx(np.sqrt(0.5))


def test_bad_requests_raise():
    with pytest.raises(DsrpipeError, match="2\\^24"):
        exhaustive_cycles(random_model("shPLRNN", 2, 0, L=12), 2)
    with pytest.raises(DsrpipeError, match="piecewise linear"):
        scyfi(HenonMap())
    with pytest.raises(DsrpipeError, match="init_points"):
        scyfi(two_cycle_model(), init_points=np.zeros((2, 3)))
    with pytest.raises(DsrpipeError, match="max_order"):
        scyfi(two_cycle_model(), max_order=0)
    with pytest.raises(DsrpipeError, match="codes"):
        virtual_fixed_points(two_cycle_model(), np.zeros((2, 5), dtype=bool))
