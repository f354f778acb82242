"""Training methods: forcing schedules, adaptive alpha, STF interval, readouts, inputs,
regularisation, learning-rate schedules, restart selection."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from dsrpipe import DsrpipeError
from dsrpipe.config import TrainConfig
from dsrpipe.models import PLRNN, build_model
from dsrpipe.models.readout import Readout, generate_observations
from dsrpipe.models.registry import MODELS, size_arguments
from dsrpipe.systems import simulate_lorenz63
from dsrpipe.training import train
from dsrpipe.training.checkpoint import load_reconstruction, save_run
from dsrpipe.training.forcing import (
    AdaptiveAlpha,
    estimate_stf_tau,
    forced_rollout,
    forcing_weights,
    gtf_predictions,
)
from dsrpipe.training.loop import learning_rate
from dsrpipe.training.regularisation import regularisation
from dsrpipe.training.selection import select_restart, validation_scores

SMALL = dict(epochs=3, batches_per_epoch=4, seq_len=20, batch_size=4, hidden_dim=10, validation_fraction=0.0)


@pytest.fixture(scope="module")
def lorenz():
    x = simulate_lorenz63(4000, dt=0.01, seed=4)
    return (x - x.mean(0)) / x.std(0)


# ------------------------------------------------------------------ forcing schedules


def test_forcing_weights():
    np.testing.assert_array_equal(forcing_weights("gtf", 4, 0.3).numpy(), [0.3] * 4)
    np.testing.assert_array_equal(forcing_weights("stf", 7, tau=3).numpy(), [0, 0, 1, 0, 0, 1, 0])
    with pytest.raises(DsrpipeError, match="tau"):
        forcing_weights("stf", 5, tau=None)


def test_stf_rollout_replaces_readout_units_every_tau_steps():
    """With STF the state after a forced step equals the data on the readout units, and the
    prediction of the next step is F(data) (hand-checked against model.step)."""
    torch.manual_seed(0)
    model = build_model("PLRNN", M=4).double()
    readout = Readout("identity", 2, 4).double()
    batch = torch.randn(3, 7, 2, dtype=torch.float64)
    preds, states = forced_rollout(model, readout, batch, forcing_weights("stf", 6, tau=2))
    # step 2 is forced: the state step 3 starts from has the data x_2 on the readout units
    np.testing.assert_allclose(states[:, 2, :2].detach().numpy(), batch[:, 2].numpy())
    np.testing.assert_allclose(preds[:, 2].detach().numpy(), model.step(states[:, 2])[:, :2].detach().numpy())
    # step 1 is not forced: the state is the free prediction
    np.testing.assert_allclose(states[:, 1].detach().numpy(), model.step(states[:, 0]).detach().numpy())


def test_gtf_alpha_one_is_one_step_prediction_from_data():
    torch.manual_seed(1)
    model = build_model("shPLRNN", M=3, L=5).double()
    batch = torch.randn(2, 6, 3, dtype=torch.float64)
    preds = gtf_predictions(model, batch, 1.0)
    np.testing.assert_allclose(preds.detach().numpy(), model.step(batch[:, :-1]).detach().numpy(), atol=1e-14)


# ------------------------------------------------------------------ adaptive alpha


def _diagonal_plrnn(a):
    """A PLRNN whose Jacobian is diag(a) everywhere (W = 0): ||J|| = max|a|."""
    model = PLRNN(len(a)).double()
    with torch.no_grad():
        model.A.copy_(torch.tensor(a))
        model.W.zero_()
    return model


def test_adaptive_alpha_estimate_from_known_jacobian_norms():
    states = torch.randn(4, 10, 3, dtype=torch.float64)
    assert AdaptiveAlpha.estimate(_diagonal_plrnn([2.0, 0.5, 0.1]), states) == pytest.approx(0.5)
    assert AdaptiveAlpha.estimate(_diagonal_plrnn([4.0, 0.5, 0.1]), states) == pytest.approx(0.75)
    assert AdaptiveAlpha.estimate(_diagonal_plrnn([0.5, 0.2, 0.1]), states) == 0.0  # contracting: no forcing


def test_adaptive_alpha_geometric_mean_and_max_over_sequences():
    """A PLRNN with A = 3 on unit 0 when it is positive... here J depends on the region:
    J = diag(A) + W diag(z > 0); with one sequence in the positive and one in the negative
    orthant, kappa is the larger of the two sequences' geometric means."""
    model = PLRNN(2).double()
    with torch.no_grad():
        model.A.copy_(torch.tensor([0.5, 0.5]))
        model.W.copy_(torch.tensor([[0.0, 3.5], [0.0, 0.0]]))  # couples unit 1 into unit 0 when z_1 > 0
    pos = torch.ones(1, 4, 2, dtype=torch.float64)
    neg = -torch.ones(1, 4, 2, dtype=torch.float64)
    mixed = torch.cat([pos[:, :2], neg[:, :2]], dim=1)  # half the steps in each region
    norm_pos = float(torch.linalg.matrix_norm(torch.tensor([[0.5, 3.5], [0.0, 0.5]]), ord=2))
    assert AdaptiveAlpha.estimate(model, torch.cat([pos, neg])) == pytest.approx(1 - 1 / norm_pos)
    geo = math.sqrt(norm_pos * 0.5)
    assert AdaptiveAlpha.estimate(model, mixed) == pytest.approx(max(0.0, 1 - 1 / geo))


def test_adaptive_alpha_schedule_jumps_up_and_decays_slowly():
    schedule = AdaptiveAlpha(start=1.0, every=5)
    assert [schedule.due(s) for s in range(1, 12)] == [True, False, False, False, False, True] + [False] * 4 + [True]
    assert schedule.update(0.5) == pytest.approx(0.999 + 0.0005)  # below: slow decay
    schedule.alpha = 0.2
    assert schedule.update(0.6) == 0.6  # above: jump


def test_adaptive_training_logs_a_changing_alpha(lorenz):
    result = train(lorenz, TrainConfig(**SMALL, alpha_mode="adaptive", alpha_every=2, backend="torch"))
    alphas = result.history["alpha"].to_numpy()
    assert alphas[0] <= 1.0 and len(set(alphas.round(12))) > 1


# ------------------------------------------------------------------ STF interval


def test_stf_tau_of_a_sine_is_half_its_period():
    t = np.arange(4000)
    x = np.column_stack([np.sin(2 * np.pi * t / 40), np.cos(2 * np.pi * t / 40)])
    assert estimate_stf_tau(x) == 20


def test_stf_tau_of_lorenz_matches_a_direct_autocorrelation(lorenz):
    """Against a brute-force ACF (np.corrcoef per lag, averaged over channels)."""
    x = lorenz[:3000]

    def acf(lag):
        return np.mean([np.corrcoef(x[:-lag, j], x[lag:, j])[0, 1] for j in range(3)])

    values = [1.0] + [acf(lag) for lag in range(1, 400)]
    expected = next(k for k in range(1, 399) if values[k] < values[k - 1] and values[k] <= values[k + 1])
    assert abs(estimate_stf_tau(x) - expected) <= 1  # corrcoef re-centres per lag: off by one at most
    assert 10 < expected < 200


def test_stf_training_uses_the_estimated_tau(lorenz):
    result = train(lorenz, TrainConfig(**SMALL, forcing="stf", backend="torch"))
    assert result.stf_tau == estimate_stf_tau(lorenz)
    fixed = train(lorenz, TrainConfig(**SMALL, forcing="stf", stf_tau=7, backend="torch"))
    assert fixed.stf_tau == 7


# ------------------------------------------------------------------ readouts and inputs


def test_identity_readout_learns_the_initial_map_of_hidden_units(lorenz):
    result = train(lorenz, TrainConfig(**SMALL, latent_dim=5, backend="torch"))
    assert result.readout.init_map.shape == (2, 3)
    assert result.readout.init_map.abs().sum() > 0  # trained away from its zero start


def test_affine_readout_trains_with_fewer_latent_units_than_channels(lorenz):
    x = np.column_stack([lorenz, lorenz @ np.array([[1.0, 0.5], [0.0, 1.0], [0.3, 0.0]])])  # N = 5, rank 3
    cfg = TrainConfig(**{**SMALL, "epochs": 40, "batches_per_epoch": 5, "batch_size": 8, "hidden_dim": 20},
                      latent_dim=3, readout="affine", lr=1e-2, lr_end=1e-3, backend="torch")
    result = train(x, cfg)
    loss = result.history["loss"].to_numpy()
    assert result.readout.B.shape == (5, 3)
    assert loss[-3:].mean() < 0.3 * loss[0]  # measured: 0.71 -> 0.06


def test_identity_readout_rejects_too_few_latent_units(lorenz):
    with pytest.raises(DsrpipeError, match="readout: affine"):
        train(lorenz, TrainConfig(**SMALL, latent_dim=2))


def test_external_inputs_are_learned():
    """A driven linear system: x_{t+1} = 0.9 x_t + s_{t+1} with random pulses s. The model with
    inputs predicts it far better than the same model without them."""
    rng = np.random.default_rng(0)
    s = (rng.random((3000, 1)) < 0.05).astype(float) * 2.0
    x = np.zeros((3000, 1))
    for t in range(1, 3000):
        x[t] = 0.9 * x[t - 1] + s[t]
    x = (x - x.mean()) / x.std()
    cfg = TrainConfig(**{**SMALL, "epochs": 30, "batch_size": 8}, model="PLRNN", latent_dim=2, alpha=0.2, lr=3e-2,
                      lr_schedule="constant", backend="torch")
    driven = train(x, cfg, inputs=s)
    blind = train(x, cfg)
    assert driven.model.C.shape == (2, 1)
    assert driven.history["loss"].iloc[-5:].mean() < 0.5 * blind.history["loss"].iloc[-5:].mean()


def test_inputs_of_the_wrong_length_are_rejected(lorenz):
    with pytest.raises(DsrpipeError, match="inputs must have shape"):
        train(lorenz, TrainConfig(**SMALL), inputs=np.zeros((10, 1)))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_and_round_trips_through_a_run_directory(lorenz, tmp_path, name):
    cfg = TrainConfig(**SMALL, model=name, latent_dim=4, n_bases=3, n_relu=2, backend="torch")
    result = train(lorenz, cfg)
    save_run(tmp_path, result.model, result.history, {"train": {}}, readout=result.readout)
    model, readout, _ = load_reconstruction(tmp_path)
    for (k, a), (_, b) in zip(model.named_parameters(), result.model.named_parameters()):
        assert torch.equal(a, b.double()), k  # exact: trained in float64, loaded in float64
    assert torch.equal(readout.init_map, result.readout.init_map)
    a = generate_observations(model, readout, lorenz[0], 50)
    b = generate_observations(result.model, result.readout, lorenz[0], 50)
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ regularisation, schedules


def test_regularisation_values_by_hand():
    model = PLRNN(4).double()
    with torch.no_grad():
        model.A.copy_(torch.tensor([0.5, 0.5, 0.8, 0.6]))
        model.W.copy_(torch.arange(16, dtype=torch.float64).reshape(4, 4) / 10)
        model.h.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert float(regularisation(model, l2=0.1).detach()) == pytest.approx(0.1 * sum((np.arange(16) / 10) ** 2))
    # MAR on the last half (units 2, 3): (1-A)^2 + W rows^2 + h^2
    W = np.arange(16).reshape(4, 4) / 10
    expected = (0.2 ** 2 + 0.4 ** 2) + (W[2:] ** 2).sum() + (9 + 16)
    assert float(regularisation(model, mar_fraction=0.5, mar_lambda=2.0).detach()) == pytest.approx(2 * expected)
    assert regularisation(model) == 0.0


def test_manifold_attractor_regularisation_pulls_units_to_a_line_attractor(lorenz):
    cfg = TrainConfig(**{**SMALL, "epochs": 10}, model="PLRNN", latent_dim=6, mar_fraction=0.5, mar_lambda=10.0,
                      lr=1e-2, lr_schedule="constant", backend="torch")
    model = train(lorenz, cfg).model
    free = train(lorenz, dataclasses.replace(cfg, mar_fraction=0.0)).model
    assert (1 - model.A[3:]).abs().max() < 0.5 * (1 - free.A[3:]).abs().max()
    assert model.h[3:].abs().max() < free.h[3:].abs().max() + 1e-12


def test_learning_rate_schedules():
    cfg = TrainConfig(epochs=11, lr=1e-2, lr_end=1e-4)
    assert learning_rate(cfg, 1) == pytest.approx(1e-2) and learning_rate(cfg, 11) == pytest.approx(1e-4)
    assert learning_rate(cfg, 6) == pytest.approx(1e-3)  # exponential: geometric midpoint
    cos = dataclasses.replace(cfg, lr_schedule="cosine")
    assert learning_rate(cos, 6) == pytest.approx((1e-2 + 1e-4) / 2)
    assert learning_rate(cos, 11) == pytest.approx(1e-4)
    assert learning_rate(dataclasses.replace(cfg, lr_schedule="constant"), 11) == 1e-2


def test_resume_is_bit_identical_with_adaptive_alpha_and_inputs(lorenz, tmp_path):
    s = np.sin(np.arange(len(lorenz)) / 20.0)[:, None]
    cfg = TrainConfig(**{**SMALL, "epochs": 6}, alpha_mode="adaptive", alpha_every=3, checkpoint_every=2,
                      backend="torch", teacher_noise=0.01)
    reference = train(lorenz, cfg, inputs=s)

    class Crash(Exception):
        pass

    def crash(record, model):
        if record.epoch == 4:
            raise Crash

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(Crash):
        train(lorenz, cfg, inputs=s, checkpoint=ckpt, callbacks=[crash])
    resumed = train(lorenz, cfg, inputs=s, checkpoint=ckpt)
    for (k, a), (_, b) in zip(resumed.model.named_parameters(), reference.model.named_parameters()):
        assert torch.equal(a, b), k
    assert resumed.history["alpha"].tolist() == reference.history["alpha"].tolist()


# ------------------------------------------------------------------ restart selection


def _run(tmp_path, name, seed, d_stsp, d_h=0.1):
    d = tmp_path / name
    d.mkdir()
    validation = None if d_stsp is None else {"d_stsp": d_stsp, "d_h": d_h}
    (d / "config.json").write_text(json.dumps({"train": {"seed": seed}, "validation": validation}))
    return d


def test_select_restart_by_validation_d_stsp(tmp_path):
    runs = [_run(tmp_path, "a", 0, 0.9), _run(tmp_path, "b", 1, 0.3), _run(tmp_path, "c", 2, math.inf),
            _run(tmp_path, "d", 3, None), _run(tmp_path, "e", 4, 0.3, d_h=0.05)]
    result = select_restart(runs, tmp_path / "selected.json")
    assert result["seed"] == 4  # ties on D_stsp broken by D_H
    assert json.loads((tmp_path / "selected.json").read_text())["selected"] == str(runs[4])
    assert result["candidates"][2]["val_d_stsp"] is None  # inf is written as null


def _linear_plrnn(a: float) -> PLRNN:
    model = PLRNN(2).double()
    with torch.no_grad():
        model.A.fill_(a)
        model.W.zero_()
        model.h.zero_()
    return model


def test_validation_scores_flag_an_orbit_that_diverges_after_the_tail():
    # z -> 1.002 z stays within 2x of the data over the 250 steps of the scored tail, but passes
    # the divergence bound after ~6,900 steps; z -> 0.999 z never does
    x_val = np.tile([[1.0, -1.0]], (200, 1)) + 0.01 * np.random.default_rng(0).standard_normal((200, 2))
    slow_growth = validation_scores(_linear_plrnn(1.002), None, x_val)
    assert slow_growth["d_stsp"] == math.inf and slow_growth["d_h"] == math.inf
    assert 6500 < slow_growth["diverged_at_step"] < 7500  # log(1e6 / sqrt(2)) / log(1.002) = 6,743 steps
    decaying = validation_scores(_linear_plrnn(0.999), None, x_val)
    assert math.isfinite(decaying["d_stsp"]) and "diverged_at_step" not in decaying
    # inputs (repeated past the tail) are accepted by an input-free model's check too
    assert validation_scores(_linear_plrnn(0.999), None, x_val, np.ones((200, 1)))["d_stsp"] == decaying["d_stsp"]


def _bistable_map(bistable: bool):
    """1-D shPLRNN: f(z) = 0.5 z - 0.5 + 1.5 relu(z + 1/3) - 1.5 relu(z - 1/3) has stable fixed points
    at -1 and +1 (slope 0.5) and an unstable one at 0 (slope 2); without the ReLU terms and with
    h1 = +0.5, f(z) = 0.5 z + 0.5 has +1 as its only fixed point."""
    from dsrpipe.models.shallow import ShallowPLRNN

    model = ShallowPLRNN(1, 2).double()
    with torch.no_grad():
        model.A.fill_(0.5)
        model.W2.copy_(torch.ones(2, 1))
        model.h2.copy_(torch.tensor([1 / 3, -1 / 3]))
        model.W1.copy_(torch.tensor([[1.5, -1.5]]) if bistable else torch.zeros(1, 2))
        model.h1.fill_(-0.5 if bistable else 0.5)
    return model


def test_validation_scores_take_the_worst_of_several_starts():
    # the tail sits near +1, except for its last 20 % near -1: from the first point both models settle
    # at +1 and score alike, but from a point in the last stretch the bistable model settles at -1
    rng = np.random.default_rng(0)
    x_val = np.where(np.arange(400)[:, None] < 320, 1.0, -1.0) + 0.05 * rng.standard_normal((400, 1))
    bistable, monostable = _bistable_map(True), _bistable_map(False)
    first_only = validation_scores(bistable, None, x_val, n_starts=1)
    assert first_only["d_stsp_starts"] == [first_only["d_stsp"]]
    assert first_only["d_stsp"] == pytest.approx(validation_scores(monostable, None, x_val, n_starts=1)["d_stsp"])
    worst = validation_scores(bistable, None, x_val)
    assert len(worst["d_stsp_starts"]) == 8 and worst["worst_start"] >= 320
    assert worst["d_stsp"] == max(worst["d_stsp_starts"]) > first_only["d_stsp"] + 1
    assert worst["d_stsp"] > validation_scores(monostable, None, x_val)["d_stsp"] + 1
    # driven by inputs, a model runs one tail length from the tail's first point only
    from dsrpipe.training.selection import score_generated

    driven = validation_scores(bistable, None, x_val, np.zeros((400, 1)))
    assert driven["d_stsp_starts"] == [driven["d_stsp"]]
    assert driven["d_stsp"] == score_generated(x_val, generate_observations(bistable, None, x_val[0], 400, 100))["d_stsp"]


def test_validation_orbits_run_several_tail_lengths(monkeypatch):
    # every start's orbit runs VALIDATION_ORBIT_TAILS tail lengths (the first one at least that, as it
    # also covers the divergence horizon), so a short tail is not scored against a short, noisy orbit
    import dsrpipe.models.readout as readout_module
    from dsrpipe.training.selection import VALIDATION_ORBIT_TAILS

    lengths = []
    original = readout_module.generate_observations

    def spy(model, readout, x0, n_steps, n_drop=0, inputs=None):
        lengths.append(n_steps)
        return original(model, readout, x0, n_steps, n_drop, inputs)

    monkeypatch.setattr(readout_module, "generate_observations", spy)
    x_val = np.tile([[1.0, 1.0], [-1.0, -1.0]], (100, 1)) + 0.01 * np.random.default_rng(1).standard_normal((200, 2))
    result = validation_scores(_linear_plrnn(0.999), None, x_val)
    assert VALIDATION_ORBIT_TAILS >= 2 and len(result["d_stsp_starts"]) == 8
    assert lengths[0] >= VALIDATION_ORBIT_TAILS * 200 and lengths[1:] == [VALIDATION_ORBIT_TAILS * 200] * 7


def test_select_restart_without_scores_and_with_a_broken_run(tmp_path):
    runs = [_run(tmp_path, "a", 0, None), _run(tmp_path, "b", 1, None)]
    assert select_restart(runs)["seed"] == 0
    (tmp_path / "b" / "config.json").write_text("{not json")
    with pytest.raises(DsrpipeError, match="config.json"):
        select_restart(runs)


def test_group_table_marks_the_selected_restart():
    import pandas as pd

    from dsrpipe.reporting.group import add_restart_selection

    df = pd.DataFrame({"subject": ["01", "01", "01", "02"], "model": ["m"] * 4, "seed": [0, 1, 2, 0],
                       "d_stsp": [0.1, 5.0, 0.2, 1.0]})
    scores = {("01", "m", 0): (0.9, 0.1), ("01", "m", 1): (0.4, 0.1), ("01", "m", 2): (math.inf, math.inf)}
    out = add_restart_selection(df, scores)
    # seed 1 has the best validation score although its test D_stsp is the worst: test data never choose
    assert out["selected"].tolist() == [False, True, False, True]
    assert math.isnan(out.loc[3, "val_d_stsp"])


def test_best_setting_across_a_grid():
    import pandas as pd

    from dsrpipe.reporting.group import add_restart_selection

    df = pd.DataFrame({"subject": ["01"] * 4, "model": ["a-1", "a-1", "a-2", "a-2"], "seed": [0, 1, 0, 1]})
    scores = {("01", "a-1", 0): (0.5, 0.0), ("01", "a-1", 1): (0.7, 0.0), ("01", "a-2", 0): (0.9, 0.0),
              ("01", "a-2", 1): (0.2, 0.0)}
    out = add_restart_selection(df, scores)
    assert out["selected"].tolist() == [True, False, False, True]
    assert out["best_setting"].tolist() == [False, False, False, True]


def test_select_command(tmp_path, capsys):
    from dsrpipe.cli import main

    runs = [_run(tmp_path, "a", 0, 0.9), _run(tmp_path, "b", 1, 0.3)]
    assert main(["select", *map(str, runs), "--out", str(tmp_path / "sel.json")]) == 0
    assert json.loads((tmp_path / "sel.json").read_text())["seed"] == 1


# ------------------------------------------------------------------ divergence policy


def _explosive(tmp_path):
    from dsrpipe.io.timeseries import TimeSeries, write_timeseries

    x = simulate_lorenz63(1500, dt=0.01, seed=2)
    path = tmp_path / "data.parquet"
    write_timeseries(TimeSeries((x - x.mean(0)) / x.std(0), ["x", "y", "z"], dt=0.01, subject="01"), path)
    return path


@pytest.mark.parametrize("policy", ["lower_lr", "reseed"])
def test_divergence_policy_retries_then_fails_cleanly(tmp_path, policy):
    from dsrpipe.training import TrainingDivergedError
    from dsrpipe.training.run import train_file

    cfg = TrainConfig(**{**SMALL, "epochs": 2}, lr=1e9, lr_end=1e9, grad_clip_norm=None, alpha=0.0,
                      on_divergence=policy, max_retries=2, backend="torch")
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=r"diverged in 3 attempt\(s\).*Nothing was saved") as err:
        train_file(_explosive(tmp_path), run, cfg)
    if policy == "lower_lr":
        assert "lr 1e+09" in str(err.value) and "lr 2.5e+08" in str(err.value)
    else:
        assert "seed 0" in str(err.value) and "seed 2000" in str(err.value)
    assert not (run / "config.json").exists() and not (run / "model.pt").exists()


def test_divergence_retry_with_a_lower_lr_recovers(tmp_path):
    """lr 4 diverges (no clipping); lr / 2^k eventually trains: the run is saved with its retries."""
    from dsrpipe.training.run import train_file

    cfg = TrainConfig(**{**SMALL, "epochs": 2}, lr=2.0, lr_end=1e-3, grad_clip_norm=None, alpha=0.0,
                      max_retries=12, backend="torch")
    train_file(_explosive(tmp_path), tmp_path / "run", cfg)
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(info["divergence_retries"]) >= 1
    assert info["effective_train"]["lr"] == pytest.approx(2.0 / 2 ** len(info["divergence_retries"]))


def test_run_config_records_versions_and_a_settings_hash(tmp_path, lorenz):
    from dsrpipe.config import to_dict

    cfg = TrainConfig(**SMALL, backend="torch")
    result = train(lorenz, cfg)
    save_run(tmp_path / "a", result.model, result.history, {"train": to_dict(cfg)}, readout=result.readout)
    save_run(tmp_path / "b", result.model, result.history, {"train": to_dict(dataclasses.replace(cfg, lr=0.1))})
    a, b = (json.loads((tmp_path / d / "config.json").read_text()) for d in "ab")
    assert a["software"]["torch"] == torch.__version__ and "numpy" in a["software"]
    assert len(a["config_hash"]) == 16 and a["config_hash"] != b["config_hash"]


# ------------------------------------------------------------------ evaluation through the readout


def test_evaluation_uses_the_readout_and_the_inputs(lorenz, tmp_path):
    """An affine-readout model with inputs: the evaluate stage generates through B and the
    inputs (its orbit equals generate_observations'), and PE uses them too."""
    from dsrpipe.analysis import prediction_error
    from dsrpipe.config import EvaluateConfig
    from dsrpipe.evaluation import evaluate
    from dsrpipe.io.timeseries import TimeSeries

    x = np.column_stack([lorenz, lorenz[:, :1] * 0.5 + lorenz[:, 1:2]])  # N = 4
    s = np.sin(np.arange(len(x)) / 15.0)[:, None]
    cfg = TrainConfig(**SMALL, latent_dim=3, readout="affine", backend="torch")
    result = train(x[:3000], cfg, inputs=s[:3000])
    test = TimeSeries(x[3000:], ["a", "b", "c", "d"], dt=0.01)
    ecfg = EvaluateConfig(lyapunov_steps=500, fixed_point_inits=10, basin_grid=0, pe_curve_steps=5)
    out = evaluate(result.model, test, ecfg, readout=result.readout, inputs=s[3000:])
    T = len(test.data)
    n_drop = int(round(0.25 * T))
    u = np.concatenate([np.resize(s[3000:], (n_drop, 1)), s[3000:]])
    expected = generate_observations(result.model, result.readout, test.data[0], T, n_drop, u)
    np.testing.assert_allclose(out.generated, expected)
    pe = prediction_error(result.model, test.data, 5, readout=result.readout, inputs=s[3000:])
    assert out.metrics["pe_curve"][4] == pytest.approx(pe)
    blind = prediction_error(result.model, test.data, 5, readout=result.readout)
    assert blind != pytest.approx(pe)  # the inputs matter


def test_generate_observations_from_a_read_only_start():
    # data read from Parquet are read-only views; torch warns when wrapping them without a copy
    import warnings

    x = np.ones((5, 1))
    x.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        orbit = generate_observations(_bistable_map(True), None, x[0], 4)
    assert np.allclose(orbit[:, 0], 1.0)  # +1 is a fixed point of the bistable map
