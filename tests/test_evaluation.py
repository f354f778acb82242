"""The evaluate stage on a hand-made model with known invariants: metrics JSON and Parquet outputs,
and every analysis config branch."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dsrpipe.analysis.baselines import VAR1Baseline
from dsrpipe.config import EvaluateConfig
from dsrpipe.evaluation import evaluate, evaluate_run
from dsrpipe.io import TimeSeries
from dsrpipe.paths import BASINS_FILE, CYCLES_FILE, LYAPUNOV_FILE
from dsrpipe.reporting.group import collect_metrics
from dsrpipe.training.checkpoint import save_run

from test_cycles import two_cycle_model

SMALL = dict(lyapunov_steps=2000, lyapunov_transient=100, fixed_point_inits=20, basin_grid=6,
             basin_transient=100, basin_record=100, n_bins=10)


def two_cycle_data(T=400, noise=0.01, seed=0):
    """The model's own stable 2-cycle (+-1, 0) with a little noise: (T, 2)."""
    rng = np.random.default_rng(seed)
    x = np.stack([(-1.0) ** np.arange(T), np.zeros(T)], axis=1)
    return x + noise * rng.standard_normal(x.shape)


def test_evaluate_run_writes_cycles_basins_and_lyapunov_trace(tmp_path):
    model = two_cycle_model()
    run = tmp_path / "run"
    save_run(run, model, pd.DataFrame({"epoch": [0], "loss": [0.0]}),
             {"train": {"seed": 3}, "data": {"subject": "x"}})
    test = TimeSeries(two_cycle_data(), ["a", "b"], dt=0.5, subject="x")
    train = TimeSeries(two_cycle_data(seed=1), ["a", "b"], dt=0.5, subject="x")
    metrics = evaluate_run(run, test, EvaluateConfig(**SMALL), run / "metrics.json", train=train)

    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["attractor_class"] == "cycle" and on_disk["attractor"]["period"] == 2
    assert on_disk["attractor"]["n_negative"] == 2  # a stable 2-cycle of the map: both exponents < 0
    np.testing.assert_allclose(on_disk["lyapunov_spectrum"], np.log([0.5, 0.3]) / 0.5, atol=1e-9)
    # SCYFI: the saddle at 0 and the 2-cycle, nothing else
    assert [fp["type"] for fp in on_disk["fixed_points"]] == ["saddle"]
    assert on_disk["n_cycles"] == {"1": 1, "2": 1}
    (cycle,) = on_disk["cycles"]
    assert cycle["order"] == 2 and cycle["type"] == "stable_node"
    np.testing.assert_allclose(cycle["states"], [[-1.0, 0.0], [1.0, 0.0]], atol=1e-12)
    assert on_disk["n_visited_regions"] == 2 and sorted(on_disk["symbolic_dynamics"]["top_codes"]) == ["00", "11"]
    # PE(n): the model predicts the noiseless cycle, so the error is the noise (twice its variance)
    assert len(on_disk["pe_curve"]) == 20 and on_disk["pe_curve"][19] == pytest.approx(on_disk["pe_20"])
    assert max(on_disk["pe_curve"]) < 5e-4
    assert len(on_disk["baselines"]["mean"]["pe_curve"]) == 20
    assert on_disk["pe_curve"][0] < on_disk["baselines"]["mean"]["pe_curve"][0]
    # basins on the PCA plane: one attractor (the 2-cycle) from every grid point off z1 = 0
    basins = on_disk["basins"]
    assert basins["n_inits"] == 36 and basins["n_diverging"] == 0
    assert basins["attractors"][0]["class"] == "cycle" and basins["attractors"][0]["period"] == 2
    assert basins["attractors"][0]["fraction"] > 0.8 and on_disk["n_attractors"] == basins["n_attractors"]

    cycles = pd.read_parquet(run / CYCLES_FILE)
    assert cycles[["cycle", "order", "point"]].values.tolist() == [[0, 1, 0], [1, 2, 0], [1, 2, 1]]
    assert cycles["type"].tolist() == ["saddle", "stable_node", "stable_node"]
    grid = pd.read_parquet(run / BASINS_FILE)
    assert list(grid.columns) == ["u", "v", "label"] and len(grid) == 36
    trace = pd.read_parquet(run / LYAPUNOV_FILE)
    assert list(trace.columns) == ["step", "lambda_1", "lambda_2"] and trace["step"].iloc[-1] == 2000
    np.testing.assert_allclose(trace.iloc[-1, 1:].to_numpy(float), on_disk["lyapunov_spectrum"], rtol=1e-9)
    # the group table still reads it
    table = collect_metrics([run / "metrics.json"])
    assert table.loc[0, "n_fixed_points"] == 1 and metrics["seed"] == 3


@pytest.mark.parametrize("options", [
    dict(fixed_point_method="exhaustive", virtual_fixed_points=True, max_cycle_order=3),
    dict(basin_inits="data"),
    dict(basin_grid=0, max_cycle_order=1),
])
def test_config_branches(options):
    test = TimeSeries(two_cycle_data(), ["a", "b"], dt=None)
    result = evaluate(two_cycle_model(), test, EvaluateConfig(**{**SMALL, **options}))
    m = result.metrics
    assert [fp["state"] for fp in m["fixed_points"]] == [[0.0, 0.0]]
    assert m["lyapunov_units"] == "per step"
    if options.get("virtual_fixed_points"):
        # the regions the cycle visits, |z1| > 1/2: affine fixed points at z1 = -3 and +3, both outside
        assert sorted(v["states"][0][0] for v in m["virtual_fixed_points"]) == pytest.approx([-3.0, 3.0])
        assert m["n_cycles"] == {"1": 1, "2": 1, "3": 0}
    else:
        assert "virtual_fixed_points" not in m
    if options.get("basin_inits") == "data":
        assert m["basins"]["inits"] == "data" and m["basins"]["n_inits"] == 36
        assert list(result.tables["basins"].columns) == ["z0", "z1", "label"]
    if options.get("basin_grid") == 0:
        assert "basins" not in m and len(result.tables["basins"]) == 0
        assert m["cycles"] == [] and m["n_cycles"] == {"1": 1}


def test_smooth_model_has_no_regions_or_cycles():
    R = 0.9 * np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    test = TimeSeries(two_cycle_data(), ["a", "b"], dt=1.0)
    m = evaluate(VAR1Baseline(R, np.zeros(2)), test, EvaluateConfig(**SMALL)).metrics
    assert m["n_visited_regions"] is None and m["cycles"] == []
    assert m["attractor_class"] == "fixed_point"
    assert m["basins"]["n_attractors"] == 1 and m["basins"]["attractors"][0]["class"] == "fixed_point"
    assert torch.get_num_threads() >= 1
