"""Multimodal teacher forcing (MTF): train one latent PLRNN on several views of a subject.

``train_multimodal`` fits the :class:`~dsrpipe.training.mtf_model.MultimodalPLRNN`
(encoder, latent model, one decoder per view) with the published loss

``L = w_rec * sum_v w_v NLL_v(x_t | enc_t) + w_pred * sum_v w_v NLL_v(x_t | F(z~_{t-1}))
     + w_latent * mean ||enc_t - F(z~_{t-1})[:K]||^2``

on subsequence windows, with RAdam, an exponential lr decay, float64 and an
explicit seed (``torch.manual_seed`` for the initialisation, a
``torch.Generator`` for batches and teacher noise), like the unimodal
:func:`dsrpipe.training.train`. ``generate_views`` iterates the trained model
from the encoder state of a first observation and decodes every view.

References
----------
Brenner, M., Hess, F., Koppe, G. & Durstewitz, D. (2024). ICML (MTF).
Kramer, D. et al. (2022). ICML (multimodal PLRNN).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dsrpipe import DsrpipeError
from dsrpipe.io.atomic import atomic_path
from dsrpipe.models import build_model
from dsrpipe.models.registry import size_arguments
from dsrpipe.training.data import SubsequenceSampler
from dsrpipe.training.mtf_model import Layout, MultimodalPLRNN, View, as_view

log = logging.getLogger(__name__)

__all__ = ["MTFConfig", "MTFRecord", "MultimodalResult", "View", "generate_views", "train_multimodal"]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise DsrpipeError(message)


@dataclass(frozen=True)
class MTFConfig:
    """Model and multimodal-teacher-forcing settings (the ``train`` section keys they would map to
    are named alike; ``mtf_*`` ones are new).

    latent_dim, forcing_dim : M and K (K <= M latent units are forced and decoded).
    encoder_kernel : 1 = linear encoder; odd k > 1 = temporal convolution over k steps.
    alpha, forcing_interval : GTF weight toward the encoder signals, applied every
        ``forcing_interval`` steps (alpha = 1 and interval tau: the lab's sparse MTF).
    w_rec, w_pred, w_latent : loss weights (the lab's alpha_rec, alpha_obs, alpha_latent).
    teacher_noise : sd of Gaussian noise added to the standardised encoder features.
    """

    model: str = "shPLRNN"
    latent_dim: int = 10
    forcing_dim: int = 3
    hidden_dim: int = 50
    n_bases: int = 20
    n_relu: int = 2
    encoder_kernel: int = 1
    alpha: float = 0.2
    forcing_interval: int = 1
    w_rec: float = 1.0
    w_pred: float = 1.0
    w_latent: float = 1.0
    epochs: int = 200
    batches_per_epoch: int = 50
    batch_size: int = 16
    seq_len: int = 50
    lr: float = 1e-3
    lr_end: float = 1e-5
    grad_clip_norm: float | None = 10.0
    teacher_noise: float = 0.0
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        _check(0 < self.alpha <= 1, "mtf alpha must be in (0, 1]")
        for key in ("latent_dim", "forcing_dim", "hidden_dim", "forcing_interval", "epochs",
                    "batches_per_epoch", "batch_size", "seq_len", "threads"):
            _check(getattr(self, key) >= 1, f"mtf {key} must be >= 1")
        _check(self.forcing_dim <= self.latent_dim, "mtf forcing_dim must be <= latent_dim")
        _check(self.encoder_kernel >= 1 and self.encoder_kernel % 2 == 1, "mtf encoder_kernel must be odd and >= 1")
        _check(min(self.w_rec, self.w_pred, self.w_latent) >= 0, "mtf loss weights must be >= 0")
        _check(self.lr > 0 and self.lr_end > 0, "mtf lr and lr_end must be positive")
        _check(self.teacher_noise >= 0, "mtf teacher_noise must be >= 0")


@dataclass
class MTFRecord:
    epoch: int
    loss: float
    rec: float
    pred: float
    latent: float
    lr: float
    wall_time_s: float


@dataclass
class MultimodalResult:
    """The trained model, per-epoch history (epoch, loss, rec, pred, latent, lr, wall_time_s),
    the views' names and kinds, and the training time."""

    model: MultimodalPLRNN
    history: pd.DataFrame
    kinds: dict[str, str]
    train_time_s: float


def train_multimodal(
    views: Mapping[str, View | tuple],
    cfg: MTFConfig = MTFConfig(),
    *,
    inputs: np.ndarray | None = None,
    callbacks: Sequence[Callable[[MTFRecord, MultimodalPLRNN], None]] = (),
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
) -> MultimodalResult:
    """Train a multimodal PLRNN with MTF on the views of one recording.

    Parameters
    ----------
    views : mapping name -> View or (data, kind[, options])
        All of the same length T; see :class:`~dsrpipe.training.mtf_model.View`.
    cfg : MTFConfig
    inputs : ndarray, shape (T, K_s), optional
        External inputs s_t driving the latent model (``+ C s_t``).
    callbacks : called after every epoch with the record and the model.
    checkpoint : path of a checkpoint file, written every ``checkpoint_every`` epochs (0: never)
        and when SIGTERM/SIGINT arrives; if it exists and was written with the same settings,
        training resumes from it (model, optimiser, generator, history) and ends as an
        uninterrupted run would.

    Returns
    -------
    MultimodalResult

    Raises
    ------
    DsrpipeError
        For malformed views or settings.
    TrainingDivergedError
        When the loss or the parameters become NaN or inf.
    TrainingInterrupted
        When SIGTERM/SIGINT arrived (after saving the checkpoint, if one is set).
    """
    from dsrpipe.training.loop import TrainingInterrupted, _StopSignal

    if not views:
        raise DsrpipeError("train_multimodal needs at least one view")
    views = {name: as_view(v) for name, v in views.items()}
    layout, stacked = Layout.stack(views, inputs)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    data = torch.tensor(stacked, dtype=torch.float64)
    n_inputs = 0 if inputs is None else layout.columns["inputs"].stop - layout.columns["inputs"].start
    sizes = size_arguments(cfg.model, cfg)
    latent = build_model(cfg.model, M=cfg.latent_dim, K=n_inputs, **sizes)
    model = MultimodalPLRNN(latent, views, layout, cfg.forcing_dim, cfg.encoder_kernel).double()
    model.initialise(data)
    sampler = SubsequenceSampler(data, cfg.seq_len, cfg.batch_size, generator)
    optimiser = torch.optim.RAdam(model.parameters(), lr=cfg.lr)
    gamma = math.exp(math.log(cfg.lr_end / cfg.lr) / max(cfg.epochs - 1, 1))
    n_features = model.feature_mean.shape[0]
    log.info("MTF: %s (%d parameters incl. encoder and decoders) on %d views, %d samples",
             cfg.model, sum(p.numel() for p in model.parameters()), len(views), len(data))
    records: list[MTFRecord] = []
    first_epoch, elapsed_before = 1, 0.0
    key = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "threads"}
    state = _load_checkpoint(checkpoint, key)
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        records = [MTFRecord(**r) for r in state["history"]]
        first_epoch, elapsed_before = state["epoch"] + 1, state["elapsed"]
        log.info("MTF: resuming from %s at epoch %d", checkpoint, first_epoch)

    def save(epoch: int, elapsed: float) -> None:
        if checkpoint is not None:
            with atomic_path(checkpoint) as tmp:
                torch.save({"key": key, "epoch": epoch, "model": model.state_dict(),
                            "optimiser": optimiser.state_dict(), "generator": generator.get_state(),
                            "history": [r.__dict__ for r in records], "elapsed": elapsed}, tmp)

    start = time.perf_counter() - elapsed_before
    with _StopSignal() as stop:
        for epoch in range(first_epoch, cfg.epochs + 1):
            _epoch(model, optimiser, sampler, generator, cfg, epoch, gamma, n_features, records, start)
            for callback in callbacks:
                callback(records[-1], model)
            if stop.received is not None:
                save(epoch, records[-1].wall_time_s)
                raise TrainingInterrupted(f"stopped by signal {stop.received} after epoch {epoch}"
                                          + (f"; checkpoint saved to {checkpoint}, rerun to resume"
                                             if checkpoint else ""))
            if checkpoint_every and epoch % checkpoint_every == 0 and epoch < cfg.epochs:
                save(epoch, records[-1].wall_time_s)
    history = pd.DataFrame([r.__dict__ for r in records])
    kinds = {name: v.kind for name, v in views.items()}
    return MultimodalResult(model, history, kinds, time.perf_counter() - start)


def _load_checkpoint(path, key: dict) -> dict | None:
    if path is None or not Path(path).exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated checkpoint: start over rather than fail
        log.warning("ignoring unreadable MTF checkpoint %s (%s)", path, exc)
        return None
    if state.get("key") != key:
        log.warning("ignoring MTF checkpoint %s: it was written with other training settings", path)
        return None
    return state


def _epoch(model, optimiser, sampler, generator, cfg: MTFConfig, epoch: int, gamma: float, n_features: int,
           records: list, start: float) -> None:
    """One epoch of MTF updates; appends its record."""
    from dsrpipe.training.loop import TrainingDivergedError

    lr = cfg.lr * gamma ** (epoch - 1)
    for group in optimiser.param_groups:
        group["lr"] = lr
    sums = np.zeros(4)
    for b in range(cfg.batches_per_epoch):
        batch = sampler.sample()
        noise = None
        if cfg.teacher_noise > 0:
            noise = cfg.teacher_noise * torch.randn((*batch.shape[:-1], n_features), generator=generator,
                                                    dtype=batch.dtype)
        optimiser.zero_grad(set_to_none=True)
        terms = model.loss_terms(batch, cfg.alpha, cfg.forcing_interval, noise)
        loss = cfg.w_rec * terms["rec"] + cfg.w_pred * terms["pred"] + cfg.w_latent * terms["latent"]
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDivergedError(f"MTF training diverged: loss = {value} at epoch {epoch}, batch {b + 1} "
                                        "(try a smaller lr or a larger alpha)")
        loss.backward()
        if cfg.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
        optimiser.step()
        sums += [value, float(terms["rec"].detach()), float(terms["pred"].detach()), float(terms["latent"].detach())]
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise TrainingDivergedError(f"MTF training diverged: non-finite parameters after epoch {epoch}")
    means = sums / cfg.batches_per_epoch
    records.append(MTFRecord(epoch, *means.tolist(), lr, time.perf_counter() - start))


@torch.no_grad()
def generate_views(
    result: MultimodalResult | MultimodalPLRNN,
    first: Mapping[str, np.ndarray | View | tuple],
    n_steps: int,
    *,
    inputs: np.ndarray | None = None,
    nuisance: Mapping[str, np.ndarray] | None = None,
    sample: bool = False,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Generate ``n_steps`` latent states from the encoder state of a first observation and
    decode every view.

    Parameters
    ----------
    result : MultimodalResult or MultimodalPLRNN
    first : mapping name -> data (T0, N) of every view (T0 >= 1; with a temporal
        encoder give at least ``encoder_kernel // 2 + 1`` points). Only row 0's
        encoder state starts the orbit.
    n_steps : int
    inputs : ndarray (n_steps, K_s), optional
        External inputs for the generated steps.
    nuisance : mapping view name -> (n_steps, R), optional
        fMRI nuisance regressors for the generated steps (zero if missing).
    sample : bool
        Decode samples (counts, labels, noisy values) instead of expected values.
    seed : int
        Seed of the sampling generator.

    Returns
    -------
    dict
        ``latent``: (n_steps, M); per view its decoded series (n_steps, N)
        (categorical means are class probabilities (n_steps, C)).
    """
    model = result.model if isinstance(result, MultimodalResult) else result
    names = list(model.decoders)
    if set(first) != set(names):
        raise DsrpipeError(f"generate_views needs a first observation of every view {names}, got {sorted(first)}")
    cols = []
    for name in names:
        v = first[name]
        data = np.asarray(v.data if isinstance(v, View) else v[0] if isinstance(v, tuple) else v, dtype=np.float64)
        cols.append(data.reshape(len(data), -1))
    length = min(len(c) for c in cols)
    layout = model.layout
    stacked = torch.zeros(length, max(sl.stop for sl in layout.columns.values()), dtype=torch.float64)
    for name, c in zip(names, cols):
        stacked[:, layout.columns[name]] = torch.tensor(c[:length])
    z0 = model.initial_state(stacked)
    s = None if inputs is None else torch.tensor(np.asarray(inputs, dtype=np.float64)).reshape(n_steps, 1, -1)
    if (s is None) != (model.latent.input_dim == 0):
        raise DsrpipeError("generate_views: pass inputs exactly when the model was trained with inputs")
    # a batch of one runs the plain PyTorch loop (no compiled-kernel start-up)
    z = model.latent.generate(z0[None], n_steps, s)[:, 0]
    r = {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in (nuisance or {}).items()}
    decoded = model.decode(z, r, sample=sample, generator=torch.Generator().manual_seed(seed))
    out = {"latent": z.numpy()}
    out.update({name: value.numpy() for name, value in decoded.items()})
    return out
