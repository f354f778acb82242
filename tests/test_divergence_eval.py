"""A model that explodes during evaluation is reported as diverged, with every output written.

Hand-made maps with known orbits: ``F(z) = a z`` (W = 0, h = 0) in the shPLRNN and
PLRNN parametrisations, so ``|z_t| = a^t |z_0|`` and the step at which an orbit passes
the divergence bound is known in closed form.
"""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from dsrpipe import DsrpipeError
from dsrpipe.analysis.divergence import DIVERGENCE_NORM, OrbitDivergedError, first_divergence
from dsrpipe.analysis.lyapunov import lyapunov_analysis
from dsrpipe.config import EvaluateConfig
from dsrpipe.evaluation import evaluate_run
from dsrpipe.io import TimeSeries, write_timeseries
from dsrpipe.models import build_model
from dsrpipe.paths import BASINS_FILE, CYCLES_FILE, LYAPUNOV_FILE
from dsrpipe.reporting.group import collect_metrics
from dsrpipe.training.checkpoint import save_run

SMALL = dict(lyapunov_steps=2000, lyapunov_transient=100, fixed_point_inits=20, basin_grid=5,
             basin_transient=100, basin_record=100, n_bins=10)
T = 200  # test samples: the orbit runs 1.25 T = 250 steps
TRUTH = {"lyapunov_spectrum": [0.0, -1.0], "max_lyapunov": 0.0, "kaplan_yorke_dimension": 1.0,
         "fixed_points_raw": [[0.0, 0.0]]}


def scaling_model(name: str, a: float):
    """``F(z) = a z`` on M = 2 (every coupling and bias 0)."""
    model = build_model(name, M=2, **({"L": 3} if name == "shPLRNN" else {})).double().requires_grad_(False)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.A.fill_(a)
    return model


def crossing_step(a: float, norm0: float) -> int:
    """First t with ``a^t norm0 > DIVERGENCE_NORM``."""
    t = math.ceil(math.log(DIVERGENCE_NORM / norm0) / math.log(a))
    return t + 1 if a**t * norm0 <= DIVERGENCE_NORM else t


def series(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((T, 2))


def run_evaluation(tmp_path, model, x=None, **options):
    run = tmp_path / "run"
    save_run(run, model, pd.DataFrame({"epoch": [0], "loss": [0.0]}),
             {"train": {"seed": 4}, "data": {"subject": "x"}, "train_time_s": 1.5})
    test = tmp_path / "test.parquet"
    write_timeseries(TimeSeries(series(0) if x is None else x, ["a", "b"], dt=0.5, subject="x"), test)
    train = TimeSeries(series(1), ["a", "b"], dt=0.5, subject="x")
    out = {k: run / f"{k}.parquet" for k in ("generated", "fixed_points", "cycles", "basins", "lyapunov")}
    metrics = evaluate_run(run, test, EvaluateConfig(**{**SMALL, **options}), run / "metrics.json",
                           generated_out=out["generated"], fixed_points_out=out["fixed_points"],
                           cycles_out=out["cycles"], basins_out=out["basins"], lyapunov_out=out["lyapunov"],
                           train=train, truth=TRUTH)
    return run, out, metrics


@pytest.mark.parametrize("name", ["shPLRNN", "PLRNN"])
def test_exploding_model_is_reported_as_diverged(tmp_path, name):
    run, out, returned = run_evaluation(tmp_path, scaling_model(name, 1.5))
    assert all(p.exists() for p in out.values())
    m = json.loads((run / "metrics.json").read_text())
    assert m == json.loads(json.dumps(returned))
    step = crossing_step(1.5, float(np.linalg.norm(series(0)[0])))
    assert m["diverged"] is True and m["diverged_stage"] == "generation" and m["diverged_at_step"] == step
    assert m["divergence"] == {"bound": DIVERGENCE_NORM, "generation": step, "lyapunov": step, "prediction": None}
    assert m["d_stsp"] == math.inf and m["d_h"] == math.inf and m["generated_finite"] is True
    # no attractor: no spectrum, no dimension, no class, no symbolic dynamics -- NaN / 'diverged', not huge numbers
    assert all(math.isnan(v) for v in m["lyapunov_spectrum"]) and len(m["lyapunov_spectrum"]) == 2
    assert math.isnan(m["max_lyapunov"]) and math.isnan(m["kaplan_yorke_dimension"])
    assert m["attractor_class"] == "diverged" and m["attractor"]["class"] == "diverged"
    assert m["n_visited_regions"] is None and m["symbolic_dynamics"] is None
    assert math.isnan(m["truth_comparison"]["max_lyapunov_error"])
    # the map's own invariants stay exact: the one fixed point 0, an unstable node with eigenvalues 1.5
    (fp,) = m["fixed_points"]
    assert fp["type"] == "unstable_node" and fp["eigenvalues_real"] == [1.5, 1.5]
    np.testing.assert_allclose(fp["state"], [0.0, 0.0], atol=1e-12)
    assert m["truth_comparison"]["fixed_point_errors"] == pytest.approx([0.0], abs=1e-12)
    # PE(1) is the hand-computed one-step error of z -> 1.5 z
    x = series(0)
    assert m["pe_curve"][0] == pytest.approx(np.mean((1.5 * x[:-1] - x[1:]) ** 2), rel=1e-12)
    # every basin grid point diverges; the baselines are unaffected
    assert m["basins"]["n_diverging"] == m["basins"]["n_inits"] == 25 and m["n_attractors"] == 0
    assert pd.read_parquet(out["basins"])["label"].eq(-1).all()
    assert m["baselines"]["mean"]["diverged"] is False and np.isfinite(m["baselines"]["var1"]["d_stsp"])
    trace = pd.read_parquet(out["lyapunov"])
    assert list(trace.columns) == ["step", "lambda_1", "lambda_2"] and trace.empty
    assert pd.read_parquet(out["cycles"])["type"].tolist() == ["unstable_node"]
    assert len(pd.read_parquet(out["generated"])) == T
    # the group table shows the run as diverged
    row = collect_metrics([run / "metrics.json"]).iloc[0]
    assert row["diverged"] and row["attractor_class"] == "diverged" and row["diverged_at_step"] == step
    assert row["diverged_stage"] == "generation" and math.isnan(row["lyap_1"]) and row["d_stsp"] == math.inf
    assert row["n_fixed_points_unstable_node"] == 1 and row["train_time_s"] == 1.5


def test_slow_divergence_seen_by_the_lyapunov_orbit_only(tmp_path):
    # |z| grows by 1.01 per step: bounded over the 250 generated steps, past the bound in the 2100 of the spectrum
    run, _, m = run_evaluation(tmp_path, scaling_model("shPLRNN", 1.01))
    step = crossing_step(1.01, float(np.linalg.norm(series(0)[0])))
    assert 250 < step <= 2100
    assert m["diverged"] and m["diverged_stage"] == "lyapunov" and m["diverged_at_step"] == step
    assert m["divergence"]["generation"] is None and np.isfinite(m["d_stsp"]) and np.isfinite(m["d_h"])
    assert m["attractor_class"] == "diverged" and math.isnan(m["max_lyapunov"])


def test_nan_weights_diverge_at_the_first_step(tmp_path):
    model = scaling_model("shPLRNN", 0.5)
    with torch.no_grad():
        model.W1[0, 0] = math.nan
    run, out, m = run_evaluation(tmp_path, model)
    assert all(p.exists() for p in out.values())
    assert m["diverged"] and m["diverged_at_step"] == 1 and m["generated_finite"] is False
    assert m["divergence"]["prediction"] == 1 and math.isnan(m["pe_20"])
    assert m["attractor_class"] == "diverged" and m["basins"]["n_attractors"] == 0


def test_bounded_model_is_not_flagged(tmp_path):
    _, _, m = run_evaluation(tmp_path, scaling_model("PLRNN", 0.5), basin_grid=0)
    assert m["diverged"] is False and m["diverged_stage"] is None and m["diverged_at_step"] is None
    assert m["divergence"] == {"bound": DIVERGENCE_NORM, "generation": None, "lyapunov": None, "prediction": None}
    np.testing.assert_allclose(m["lyapunov_spectrum"], [math.log(0.5) / 0.5] * 2, rtol=1e-12)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_test_data_names_file_sample_and_channel(tmp_path, bad):
    x = series(0)
    x[17, 1] = bad
    with pytest.raises(DsrpipeError, match=r"test\.parquet: 1 non-finite value.*sample 17, channel 'b'"):
        run_evaluation(tmp_path, scaling_model("PLRNN", 0.5), x=x)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_first_divergence_and_lyapunov_divergence_step():
    assert first_divergence(np.array([[0.0], [1e6], [1.1e6]])) == 2
    assert first_divergence(np.array([[1.0, 0.0], [np.nan, 0.0]]), bound=np.inf) == 1
    assert first_divergence(np.ones((3, 2))) is None
    model = scaling_model("PLRNN", 2.0)
    with pytest.raises(OrbitDivergedError, match="step 20") as err:  # 2^20 > 1e6 >= 2^19
        lyapunov_analysis(model, torch.tensor([1.0, 0.0]), 100, n_transient=10, bound=DIVERGENCE_NORM)
    assert err.value.step == 20
    with pytest.raises(OrbitDivergedError) as err:  # without a bound: the first inf, 2^1024
        lyapunov_analysis(model, torch.tensor([1.0, 0.0]), 2000, n_transient=0)
    assert err.value.step == 1024


@pytest.mark.parametrize("n_transient", [0, 10, 30])
def test_lyapunov_divergence_step_without_compiled_orbit(n_transient):
    from dsrpipe.analysis.baselines import VAR1Baseline

    model = VAR1Baseline(2.0 * np.eye(2), np.zeros(2))  # a torch-only map: z -> 2 z
    with pytest.raises(OrbitDivergedError) as err:
        lyapunov_analysis(model, torch.tensor([1.0, 0.0]), 100, n_transient=n_transient, bound=DIVERGENCE_NORM)
    assert err.value.step == 20


def test_diverged_model_through_the_other_config_branches(tmp_path):
    opts = dict(fixed_point_method="exhaustive", virtual_fixed_points=True, basin_inits="data", max_cycle_order=3)
    run, out, m = run_evaluation(tmp_path, scaling_model("shPLRNN", 1.5), **opts)
    assert m["diverged"] and m["virtual_fixed_points"] == [] and m["n_cycles"] == {"1": 1, "2": 0, "3": 0}
    assert m["basins"]["inits"] == "data" and m["basins"]["n_diverging"] == 25
    assert list(pd.read_parquet(out["basins"]).columns) == ["z0", "z1", "label"]
