"""The fused Numba training kernels against the PyTorch reference (float64), for every model."""

import dataclasses

import numpy as np
import pytest
import torch

from dsrpipe.config import TrainConfig
from dsrpipe.models import MODELS, build_model
from dsrpipe.models.readout import Readout
from dsrpipe.models.registry import size_arguments
from dsrpipe.systems import simulate_lorenz63
from dsrpipe.training import train
from dsrpipe.training.fast import fast_path_available, loss_and_grads
from dsrpipe.training.forcing import forced_loss, forcing_weights

SIZES = {"hidden_dim": 12, "n_bases": 3, "n_relu": 2}
#: (forcing weights, latent_dim, inputs K, readout): GTF with M = N, STF, GTF with inputs and
#: M > N; the affine readout with M > N, M < N and M = N; M >= DOT_MIN_M (the shallow
#: kernels' tiled reductions over M instead of rank-4 updates)
SETTINGS = {
    "gtf": (forcing_weights("gtf", 20, 0.3), 3, 0, "identity"),
    "stf": (forcing_weights("stf", 20, tau=6), 3, 0, "identity"),
    "inputs-M>N": (forcing_weights("gtf", 20, 0.2), 5, 2, "identity"),
    "stf-inputs-M>N": (forcing_weights("stf", 20, tau=4), 6, 1, "identity"),
    "affine-inputs-M>N": (forcing_weights("gtf", 20, 0.3), 5, 2, "affine"),
    "affine-stf-M<N": (forcing_weights("stf", 20, tau=6), 2, 0, "affine"),
    "affine-inputs-M=N": (forcing_weights("gtf", 20, 0.2), 3, 1, "affine"),
    "inputs-M>=8": (forcing_weights("gtf", 20, 0.3), 9, 1, "identity"),
}


@pytest.fixture(scope="module")
def lorenz():
    x = simulate_lorenz63(6000, dt=0.01, seed=4)
    return (x - x.mean(0)) / x.std(0)


def make(name, M, K, N=3, readout="identity"):
    torch.manual_seed(1)
    model = build_model(name, M=M, K=K, **size_arguments(name, SIZES)).double()
    readout = Readout(readout, N, M).double()
    with torch.no_grad():  # off the initial zeros, so every term of the gradient is exercised
        for p in model.parameters():
            if p.ndim == 1 and p.shape[0] == M and not torch.equal(p, model.A):
                p.normal_(std=0.3)
        if readout.kind == "identity":
            readout.init_map.normal_(std=0.5)  # (the affine B starts random and full-rank)
    return model, readout


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_fast_loss_and_gradients_match_autograd(name, setting):
    weights, M, K, kind = SETTINGS[setting]
    model, readout = make(name, M, K, readout=kind)
    gen = torch.Generator().manual_seed(2)
    batch = torch.randn(4, 21, 3, dtype=torch.float64, generator=gen)
    inputs = torch.randn(4, 21, K, dtype=torch.float64, generator=gen) if K else None
    loss, _ = forced_loss(model, readout, batch, weights, inputs)
    loss.backward()
    fast_loss, grads = loss_and_grads(model, readout, batch, weights, inputs)
    assert fast_loss == pytest.approx(float(loss.detach()), rel=1e-12)
    reference = dict(model.named_parameters())
    reference.update({f"readout.{k}": p for k, p in readout.named_parameters()})
    assert set(grads) == set(reference)
    for k, p in reference.items():
        expected = p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape))
        assert p.numel() == 0 or np.abs(expected).max() > 0, f"{k}: the test reaches no gradient"
        np.testing.assert_allclose(grads[k], expected, rtol=1e-10, atol=1e-13, err_msg=k)


TRAJECTORIES = {  # TrainConfig overrides, and whether to pass inputs
    "gtf": ({}, False),
    "adaptive": ({"alpha_mode": "adaptive", "alpha_every": 3}, False),
    "stf-inputs-M>N": ({"forcing": "stf", "stf_tau": 5, "latent_dim": 5}, True),
    "regularised": ({"l2": 1e-2, "mar_fraction": 0.4, "mar_lambda": 0.5, "latent_dim": 4}, False),
    "M>=8": ({"latent_dim": 9}, False),
    "affine-inputs-M>N": ({"readout": "affine", "latent_dim": 4}, True),
    "affine-adaptive-M<N": ({"readout": "affine", "latent_dim": 2, "alpha_mode": "adaptive", "alpha_every": 3},
                            False),
}


@pytest.mark.parametrize("setting", sorted(TRAJECTORIES))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameter_trajectories_match(lorenz, name, setting):
    """Same seed and batches: both paths follow the same parameters over many RAdam steps
    (including the rectified phase after step 5, clipping, lr decay and alpha updates)."""
    overrides, with_inputs = TRAJECTORIES[setting]
    cfg = TrainConfig(model=name, hidden_dim=16, n_bases=3, n_relu=2, epochs=3, batches_per_epoch=10, seq_len=20,
                      batch_size=4, grad_clip_norm=0.5, **overrides)
    inputs = np.sin(np.arange(len(lorenz)) * 0.05)[:, None] if with_inputs else None
    fast = train(lorenz, dataclasses.replace(cfg, backend="numba"), inputs=inputs)
    ref = train(lorenz, dataclasses.replace(cfg, backend="torch"), inputs=inputs)
    assert fast.backend == "numba" and ref.backend == "torch"
    np.testing.assert_allclose(fast.history["loss"], ref.history["loss"], rtol=1e-9)
    np.testing.assert_allclose(fast.history["alpha"], ref.history["alpha"], rtol=1e-9)
    if setting == "adaptive":
        assert ref.history["alpha"].iloc[-1] != 1.0  # alpha moved
    pairs = list(zip(fast.model.named_parameters(), ref.model.named_parameters()))
    pairs += list(zip(fast.readout.named_parameters(), ref.readout.named_parameters()))
    for (k, a), (_, b) in pairs:
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-8, atol=1e-10, err_msg=k)


def test_fast_path_coverage():
    model, readout = make("PLRNN", 3, 0)
    assert fast_path_available(model, readout, TrainConfig()) == (True, "")
    assert fast_path_available(model, Readout("affine", 3, 3), TrainConfig()) == (True, "")
    assert fast_path_available(model, readout, TrainConfig(method="mtf")) == (False, "no kernel for train.method mtf")


@pytest.mark.parametrize("overrides", [{}, {"model": "ALRNN", "alpha_mode": "adaptive", "alpha_every": 4,
                                            "latent_dim": 4, "teacher_noise": 0.05},
                                       {"readout": "affine", "latent_dim": 2},
                                       {"hidden_dim": 400, "alpha_mode": "adaptive", "alpha_every": 3}])
def test_train_many_equals_training_each_alone(lorenz, overrides):
    from dsrpipe.training.batched import train_many

    cfg = TrainConfig(**{"hidden_dim": 10, "epochs": 2, "batches_per_epoch": 6, "seq_len": 15, "batch_size": 3, **overrides})
    seeds = [0, 5, 2]
    many = train_many(lorenz, cfg, seeds, threads=2)
    assert [m.seed for m in many] == seeds
    for item in many:
        assert item.error is None
        alone = train(lorenz, dataclasses.replace(cfg, seed=item.seed, backend="numba"))
        # threads: 2 (with hidden_dim 400, the batch's two chunks of 1 and 2 windows on two threads,
        # train_step_split): the same bits
        split = train(lorenz, dataclasses.replace(cfg, seed=item.seed, backend="numba", threads=2))
        for other in (alone, split):
            for col in ("epoch", "loss", "alpha", "lr"):
                np.testing.assert_array_equal(item.result.history[col], other.history[col], err_msg=col)
            pairs = list(zip(item.result.model.state_dict().items(), other.model.state_dict().items()))
            pairs += list(zip(item.result.readout.state_dict().items(), other.readout.state_dict().items()))
            for (k, a), (_, b) in pairs:
                np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    # different seeds, different models
    assert not np.array_equal(many[0].result.model.A.detach().numpy(), many[1].result.model.A.detach().numpy())


def chunked_model():
    """A shPLRNN big enough (M x L >= CHUNK_MIN_WORK) for the kernel to split its batches."""
    torch.manual_seed(2)
    model = build_model("shPLRNN", M=9, K=1, L=120).double()
    with torch.no_grad():
        model.h1.normal_(std=0.3)
    return model, Readout("identity", 3, 9).double()


def test_chunked_batch_matches_autograd():
    """A batch in two chunks (3 + 4 windows), each with its own gradient buffer: the summed loss and
    gradient equal autograd's on the whole batch, and the small models keep one chunk."""
    from dsrpipe.models.kernels import FlatLayout
    from dsrpipe.training.fast import n_chunks

    model, readout = chunked_model()
    assert n_chunks(FlatLayout(model, readout).dims, 7) == 2
    assert n_chunks(FlatLayout(*make("shPLRNN", 3, 0)).dims, 7) == 1  # 3 x 12 multiply-adds
    gen = torch.Generator().manual_seed(5)
    batch = torch.randn(7, 21, 3, dtype=torch.float64, generator=gen)
    inputs = torch.randn(7, 21, 1, dtype=torch.float64, generator=gen)
    weights = forcing_weights("gtf", 20, 0.2)
    fast_loss, grads = loss_and_grads(model, readout, batch, weights, inputs)
    loss, _ = forced_loss(model, readout, batch, weights, inputs)
    loss.backward()
    assert fast_loss == pytest.approx(float(loss.detach()), rel=1e-12)
    params = dict(model.named_parameters()) | {f"readout.{k}": v for k, v in readout.named_parameters()}
    for name, g in grads.items():
        np.testing.assert_allclose(g, params[name].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("S", [5, 16])
def test_split_step_equals_serial_step(S):
    """train_step_split (the batch's chunks in a prange) against train_steps (the chunks one after
    the other), called directly so the check holds whatever thread count Numba has here: same
    loss, parameters, moments and forced states, bit for bit; the second chunk has a gradient of
    its own, and Workspace.states puts every window back in its place (z_0 = x_0 on the observed
    units)."""
    from dsrpipe.training.fast import FlatLayout, Workspace, gradient_buffers, n_chunks, train_step_split, train_steps

    model, readout = chunked_model()
    layout = FlatLayout(model, readout)
    assert n_chunks(layout.dims, S) == 2
    gen = np.random.default_rng(3)
    X = gen.standard_normal((1, S, 21, 3))
    U = gen.standard_normal((1, S, 21, 1))
    W = forcing_weights("gtf", 20, 0.2).numpy()[None].copy()
    reg = np.array([1e-3, 0.0, 0.0])
    outs = []
    for kernel in ("serial", "split"):
        theta = layout.pack()[None].copy()
        G = gradient_buffers(layout, R=1)
        m, v = np.zeros_like(theta), np.zeros_like(theta)
        work = Workspace(layout, S, 20, R=1)
        loss = np.zeros(1)
        for step in (1.0, 2.0):
            args = (layout.dims, layout.offsets, theta, G, m, v, X, U, W, reg, 1e-3, step, 0.5)
            if kernel == "serial":
                train_steps(*args, np.ones(1, dtype=np.bool_), *work.arrays(), loss)
            else:
                train_step_split(*args, *work.arrays(), loss)
        outs.append((loss.copy(), theta, m, v, work.states(0), G[0, 1].copy()))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    assert np.abs(outs[0][5]).max() > 0  # the second chunk had a gradient of its own
    assert outs[0][4].shape == (S, 20, 9)
    np.testing.assert_array_equal(outs[0][4][:, 0, :3], X[0, :, 0])
