"""The batched PyTorch path (R models on a model axis) against the per-model PyTorch path."""

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

from dsrpipe import DsrpipeError
from dsrpipe.config import TrainConfig
from dsrpipe.models import build_model
from dsrpipe.models.readout import Readout
from dsrpipe.systems import simulate_lorenz63
from dsrpipe.training import train
from dsrpipe.training.batched import train_many
from dsrpipe.training.batched_torch import BatchedTorchStepper, train_many_torch
from dsrpipe.training.forcing import forcing_weights
from dsrpipe.training.loop import TorchStepper, TrainingDivergedError

SEEDS = [0, 5, 2]


@pytest.fixture(scope="module")
def lorenz():
    x = simulate_lorenz63(1500, dt=0.01, seed=4)
    return (x - x.mean(0)) / x.std(0)


def assert_same_model(a, b, atol=1e-10):
    """Histories and every parameter (model and readout) of two TrainResults."""
    for col in ("epoch", "alpha", "lr"):
        np.testing.assert_array_equal(a.history[col], b.history[col], err_msg=col)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-12)
    sa = {**a.model.state_dict(), **{f"readout.{k}": v for k, v in a.readout.state_dict().items()}}
    sb = {**b.model.state_dict(), **{f"readout.{k}": v for k, v in b.readout.state_dict().items()}}
    assert sa.keys() == sb.keys()
    for k, value in sa.items():
        np.testing.assert_allclose(value.numpy(), sb[k].numpy(), rtol=0, atol=atol, err_msg=k)


SETTINGS = {  # TrainConfig overrides, and whether to pass inputs
    "gtf": ({}, False),
    "stf-affine-inputs-regularised-noise": ({"forcing": "stf", "stf_tau": 4, "readout": "affine", "latent_dim": 4,
                                             "l2": 1e-2, "mar_fraction": 0.5, "teacher_noise": 0.05}, True),
    "PLRNN-identity-M>N": ({"model": "PLRNN", "latent_dim": 5, "lr_schedule": "cosine"}, False),
    "adaptive-ALRNN": ({"model": "ALRNN", "latent_dim": 4, "alpha_mode": "adaptive", "alpha_every": 3}, False),
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_batched_models_equal_each_trained_alone(lorenz, setting):
    """R = 3 seeds on one model axis follow, per model, the parameters of the per-model torch
    path (same seeds, batches, clipping (0.5: active), RAdam steps past the rectification at
    step 5, lr decay, each model's own adaptive alpha) to rounding."""
    overrides, with_inputs = SETTINGS[setting]
    cfg = TrainConfig(hidden_dim=8, epochs=2, batches_per_epoch=4, seq_len=12, batch_size=3, grad_clip_norm=0.5,
                      lr=1e-2, **overrides)
    inputs = np.sin(np.arange(len(lorenz)) * 0.05)[:, None] if with_inputs else None
    many = train_many_torch(lorenz, cfg, SEEDS, inputs=inputs)
    assert [m.seed for m in many] == SEEDS
    for item in many:
        assert item.error is None and item.result.backend == "torch-many"
        alone = train(lorenz, dataclasses.replace(cfg, seed=item.seed, backend="torch"), inputs=inputs)
        assert_same_model(item.result, alone)
    # the seeds give different models (the comparison above is not between copies of one model)
    assert not torch.equal(many[0].result.model.A, many[1].result.model.A)
    if cfg.alpha_mode == "adaptive":  # alpha moved, differently per model
        final = [m.result.history["alpha"].iloc[-1] for m in many]
        assert 1.0 not in final and len(set(final)) == len(SEEDS), final


def test_gradient_clipping_is_per_model():
    """Clip between the models' gradient norms: only the model above it is scaled, as each
    model's own clip_grad_norm_ does (a global norm over the stack would scale all three)."""
    cfg = TrainConfig(hidden_dim=6, latent_dim=3, lr=1e-2)
    weights = forcing_weights("gtf", 10, 0.2)
    batches = torch.randn(3, 4, 11, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    batches[1] *= 5  # model 1 gets a much larger gradient

    def build():
        out = []
        for seed in range(3):
            torch.manual_seed(seed)
            out.append((build_model("shPLRNN", M=3, L=6).double(), Readout("identity", 3, 3).double()))
        return out

    norms = []
    for r, (model, readout) in enumerate(build()):
        TorchStepper(model, readout, dataclasses.replace(cfg, grad_clip_norm=None)).step(batches[r], 1e-2, weights)
        norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()
                                                                  if p.grad is not None]))))
    top, second = sorted(norms)[-1], sorted(norms)[-2]
    clip = 0.5 * (top + second)
    assert sum(n > clip for n in norms) == 1  # exactly one model is clipped
    cfg = dataclasses.replace(cfg, grad_clip_norm=clip)
    pairs = build()
    stack = BatchedTorchStepper([m for m, _ in pairs], [r for _, r in pairs], cfg)
    for _ in range(2):
        stack.step(batches, 1e-2, weights, torch.ones(3, dtype=torch.bool))
    unclipped = build()
    for r, (model, readout) in enumerate(build()):
        stepper = TorchStepper(model, readout, cfg)
        free = TorchStepper(*unclipped[r], dataclasses.replace(cfg, grad_clip_norm=None))
        for _ in range(2):
            stepper.step(batches[r], 1e-2, weights)
            free.step(batches[r], 1e-2, weights)
        stack.unpack(r)
        changed_by_clipping = False
        for (k, a), (_, b), (_, c) in zip(pairs[r][0].named_parameters(), model.named_parameters(),
                                          unclipped[r][0].named_parameters()):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=0, atol=1e-12, err_msg=k)
            changed_by_clipping |= not torch.allclose(b, c, rtol=0, atol=1e-9)
        assert changed_by_clipping == (norms[r] > clip), r


def test_a_diverging_model_stops_alone(lorenz):
    """A huge outlier in the data: the seeds whose batches reach it stop with the error the
    per-model path raises (same epoch and batch); the others equal their training alone."""
    x = lorenz[:400].copy()
    x[300:310] = 1e200  # its squared error is inf; seeds 2 and 5 reach it (torch 2.13's generator)
    cfg = TrainConfig(hidden_dim=6, epochs=2, batches_per_epoch=3, seq_len=12, batch_size=2)
    seeds = [0, 1, 2, 3, 4, 5]
    many = train_many_torch(x, cfg, seeds)
    outcome = []
    for item in many:
        try:
            alone = train(x, dataclasses.replace(cfg, seed=item.seed, backend="torch"))
        except TrainingDivergedError as exc:
            assert item.result is None and str(item.error) == str(exc), item.seed
            outcome.append("diverged")
        else:
            assert item.error is None, item.seed
            assert_same_model(item.result, alone)
            outcome.append("ok")
    assert set(outcome) == {"diverged", "ok"}, outcome  # both cases happened in one run


def test_unsupported_settings_are_refused(lorenz):
    cfg = TrainConfig(hidden_dim=6, epochs=1, batches_per_epoch=1, seq_len=12, batch_size=2)
    with pytest.raises(DsrpipeError, match="no batched PyTorch path for train.method mtf"):
        train_many_torch(lorenz, dataclasses.replace(cfg, method="mtf"), [0, 1])
    with pytest.raises(DsrpipeError, match="numba"):
        train_many_torch(lorenz, dataclasses.replace(cfg, backend="numba"), [0, 1])
    if not torch.cuda.is_available():  # train_many dispatches device cuda to the PyTorch path
        with pytest.raises(DsrpipeError, match="cuda"):
            train_many(lorenz, dataclasses.replace(cfg, device="cuda"), [0, 1])


def test_train_file_many_dispatch(lorenz, tmp_path, caplog):
    """backend torch: the seeds train together on the batched PyTorch path (and equal
    train_file alone), and the log says so; one seed trains alone."""
    from dsrpipe.training.run import train_file, train_file_many

    path = tmp_path / "x.npy"
    np.save(path, lorenz[:600])
    cfg = TrainConfig(hidden_dim=6, epochs=1, batches_per_epoch=3, seq_len=12, batch_size=2, backend="torch",
                      validation_fraction=0.0)
    caplog.set_level(logging.INFO)
    train_file_many(path, {0: tmp_path / "a0", 1: tmp_path / "a1"}, cfg)
    assert "together with the batched PyTorch path" in caplog.text
    info = json.loads((tmp_path / "a1" / "config.json").read_text())
    assert info["backend"] == "torch-many"
    train_file(path, tmp_path / "alone", dataclasses.replace(cfg, seed=1))
    a = torch.load(tmp_path / "a1" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "alone" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=1e-12) for k in a)

    caplog.clear()
    train_file_many(path, {3: tmp_path / "b3"}, cfg)
    assert "training 1 seeds one after another (one seed)" in caplog.text
    assert json.loads((tmp_path / "b3" / "config.json").read_text())["backend"] == "torch"
