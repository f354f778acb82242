"""Basins of attraction on maps with known attractors and separatrices; symbolic dynamics."""

import numpy as np
import pytest
import torch

from dsrpipe import DsrpipeError
from dsrpipe.analysis.basins import basin_map, basins, cluster_limit_sets, pca_plane, plane_grid
from dsrpipe.analysis.symbolic import symbolic_dynamics, visited_regions
from dsrpipe.models import build_model
from dsrpipe.systems import HenonMap

THETA = 0.6
Q0 = np.array([np.cos(THETA), np.sin(THETA)])
Q1 = np.array([-np.sin(THETA), np.cos(THETA)])


def bistable_model():
    """shPLRNN F(z) = Q0 clip(2 Q0.z, -1, 1) + 0.5 Q1 (Q1.z): stable nodes at +-Q0, a saddle at 0, and the
    separatrix Q0.z = 0 (a line at angle THETA + 90 degrees).

    clip(2s, -1, 1) = relu(2s + 1) - relu(2s - 1) - 1 and Q1.z = relu(Q1.z) - relu(-Q1.z).
    """
    model = build_model("shPLRNN", M=2, L=4).double().requires_grad_(False)
    with torch.no_grad():
        model.A.zero_()
        model.W2.copy_(torch.tensor(np.stack([2 * Q0, 2 * Q0, Q1, -Q1])))
        model.h2.copy_(torch.tensor([1.0, -1.0, 0.0, 0.0]))
        model.W1.copy_(torch.tensor(np.stack([Q0, -Q0, 0.5 * Q1, -0.5 * Q1], axis=1)))
        model.h1.copy_(torch.tensor(-Q0))
    return model


def test_bistable_map_basins_follow_the_separatrix():
    u = v = np.linspace(-2, 2, 20)  # the origin (the saddle) is not a grid point
    inits = plane_grid(np.zeros(2), np.eye(2), u, v)
    result = basins(bistable_model(), inits, n_transient=100, n_record=20)
    assert result.n_attractors == 2
    table = result.attractors.set_index("label")
    assert list(table["class"]) == ["fixed_point", "fixed_point"]
    centroids = table[["c0", "c1"]].to_numpy()
    side = inits @ Q0  # which side of the separatrix
    for label in (0, 1):
        expected = Q0 if centroids[label] @ Q0 > 0 else -Q0
        np.testing.assert_allclose(centroids[label], expected, atol=1e-12)
    plus = int(np.argmax(centroids @ Q0))
    away = np.abs(side) > 0.05  # every grid point off the boundary
    assert away.sum() > 350
    np.testing.assert_array_equal(result.labels[away], np.where(side[away] > 0, plus, 1 - plus))
    assert table["n_inits"].sum() == 400 and table["fraction"].sum() == pytest.approx(1.0)
    assert (table["max_lyapunov"] < 0).all()


def test_chaotic_attractor_is_one_cluster_and_far_points_diverge():
    on_attractor = HenonMap().step(torch.tensor([0.1, 0.1], dtype=torch.float64))
    states = [on_attractor]
    for _ in range(1000):
        states.append(HenonMap().step(states[-1]))
    inits = np.vstack([torch.stack(states[100::25]).numpy()[:36], [[3.0, 3.0], [-4.0, 0.0]]])
    result = basins(HenonMap(), inits, n_transient=200, n_record=300)
    assert result.n_attractors == 1
    assert result.attractors.loc[0, "class"] == "chaotic"
    assert result.attractors.loc[0, "max_lyapunov"] == pytest.approx(0.42, abs=0.1)
    np.testing.assert_array_equal(result.labels, [0] * 36 + [-1, -1])


def test_two_cycle_and_fixed_point_are_told_apart():
    from test_cycles import two_cycle_model

    model = two_cycle_model()
    # on the line z1 = 0 orbits go to the saddle at 0; elsewhere to the stable 2-cycle
    inits = np.array([[0.7, 1.0], [-2.0, 0.5], [0.0, 3.0], [0.0, -1.0]])
    result = basins(model, inits, n_transient=200, n_record=10)
    table = result.attractors
    assert list(table["class"]) == ["cycle", "fixed_point"] and list(table["period"]) == [2, 1]
    np.testing.assert_array_equal(result.labels, [0, 0, 1, 1])


def test_basin_map_in_the_data_plane():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2)) * [2.0, 0.3]
    x = x @ np.stack([Q0, Q1])  # main axis along Q0
    _, basis, _ = pca_plane(x, latent_dim=3)
    assert basis.shape == (2, 3) and np.allclose(basis[:, 2], 0)
    np.testing.assert_allclose(np.abs(basis[0, :2] @ Q0), 1.0, atol=0.01)
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-12)
    result = basin_map(bistable_model(), x, n_grid=12, n_transient=100, n_record=10)
    assert result.grid.shape == (12, 12) and len(result.u) == len(result.v) == 12
    table = result.grid_table()
    assert len(table) == 144 and set(table["label"]) == {0, 1}
    # grid points far from the separatrix get the attractor on their side
    pts = plane_grid(*pca_plane(x, 2)[:2], result.u, result.v)
    side = pts @ Q0
    centroids = result.attractors[["c0", "c1"]].to_numpy()
    plus = int(np.argmax(centroids @ Q0))
    away = np.abs(side) > 0.1
    np.testing.assert_array_equal(result.grid.ravel()[away], np.where(side[away] > 0, plus, 1 - plus))


def test_cluster_limit_sets_by_hand():
    fixed_a = np.zeros((5, 2))
    fixed_b = np.ones((5, 2)) * 0.5
    cycle = np.array([[1.0, 0.0], [-1.0, 0.0]] * 3)[:5]
    shifted = np.roll(cycle, 1, axis=0)  # same cycle, other phase
    labels, reps = cluster_limit_sets(np.stack([fixed_a, cycle, fixed_b, shifted, fixed_a + 1e-3,
                                                np.full((5, 2), np.nan)]), dist_tol=0.01)
    assert labels.tolist() == [0, 1, 2, 1, 0, -1] and reps == [0, 1, 2]
    # a fixed point on one of the points of a 2-cycle: as periodic sets they differ (both directions
    # count); read as aperiodic samples (partial coverage allowed) the point lies on the cycle
    on_cycle = np.tile([1.0, 0.0], (5, 1))
    sets = np.stack([cycle, on_cycle])
    assert cluster_limit_sets(sets, 0.01, periodic=[True, True])[0].tolist() == [0, 1]
    assert cluster_limit_sets(sets, 0.01)[0].tolist() == [0, 0]
    assert cluster_limit_sets(sets, 0.01, periodic=[False, True])[0].tolist() == [0, 1]
    # part of a chaotic set joins the set; spacing absorbs the sampling density
    def ring(a, b, r=1.0):
        t = np.linspace(a, b, 40)
        return r * np.stack([np.cos(t), np.sin(t)], axis=1)

    assert cluster_limit_sets(np.stack([ring(0, 6), ring(0, 3, 1.02)]), 0.01)[0].tolist() == [0, 0]
    assert cluster_limit_sets(np.stack([ring(0, 6), ring(0, 6, 0.5)]), 0.01)[0].tolist() == [0, 1]


def test_bad_arguments():
    with pytest.raises(DsrpipeError):
        basin_map(bistable_model(), np.zeros((10, 2)), n_grid=1)
    with pytest.raises(DsrpipeError):
        pca_plane(np.zeros((10, 3)), latent_dim=2)
    with pytest.raises(DsrpipeError):
        basins(bistable_model(), np.zeros(2))


# ---------------------------------------------------------------- symbolic dynamics


def test_symbolic_dynamics_of_the_two_cycle_and_the_bistable_map():
    from test_cycles import two_cycle_model

    model = two_cycle_model()
    sym = visited_regions(model, [0.3, 1.0], n_steps=100, n_transient=50)
    assert sym.n_regions == 2 and sym.counts.tolist() == [50, 50]
    assert sorted(map(tuple, sym.codes.tolist())) == [(False, False), (True, True)]
    # the symbolic sequence alternates
    assert np.all(np.diff(sym.sequence) != 0)
    d = sym.to_dict()
    assert d["n_regions"] == 2 and sorted(d["top_codes"]) == ["00", "11"] and d["top_fractions"] == [0.5, 0.5]
    # a transient orbit passes through more regions than its attractor uses
    orbit = model.generate(torch.tensor([0.1, 1.0], dtype=torch.float64), 30).numpy()
    assert symbolic_dynamics(model, orbit).n_regions == 3
    # a fixed point uses one region
    rest = visited_regions(bistable_model(), [1.0, 1.0], n_steps=20, n_transient=20)
    assert rest.n_regions == 1 and rest.region_size == 4


def test_symbolic_dynamics_counts_by_hand():
    model = build_model("PLRNN", M=2).double()
    orbit = np.array([[1.0, 1.0], [-1.0, 1.0], [1.0, 2.0], [2.0, 2.0], [-1.0, -1.0]])
    sym = symbolic_dynamics(model, orbit)  # codes z > 0: 11, 01, 11, 11, 00
    assert sym.codes.tolist() == [[True, True], [False, True], [False, False]]
    assert sym.counts.tolist() == [3, 1, 1] and sym.sequence.tolist() == [0, 1, 0, 0, 2]
    with pytest.raises(DsrpipeError, match="piecewise linear"):
        symbolic_dynamics(HenonMap(), orbit)


def test_slowly_growing_set_is_unbounded_not_an_error():
    # z -> 1.2 z recorded for 2 steps only (norm ~1.4 < DIVERGENCE_NORM); its 5000-step spectrum overflows
    model = build_model("PLRNN", M=2).double().requires_grad_(False)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.A.fill_(1.2)
    result = basins(model, np.array([[1.0, 0.0]]), n_transient=0, n_record=2, lyapunov_steps=5000)
    assert result.labels.tolist() == [0]
    row = result.attractors.iloc[0]
    assert row["class"] == "unbounded" and np.isnan(row["max_lyapunov"])
