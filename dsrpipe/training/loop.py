"""The training loop: GTF, RAdam, exponential lr decay, explicit seed.

``train`` trains and returns; it does not evaluate, plot or choose paths.
Progress goes to callbacks (see :mod:`dsrpipe.training.progress`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import pandas as pd
import torch

from dsrpipe import DsrpipeError
from dsrpipe.config import TrainConfig
from dsrpipe.models import LatentModel, build_model
from dsrpipe.training.data import SubsequenceSampler
from dsrpipe.training.forcing import gtf_loss

log = logging.getLogger(__name__)


class TrainingDivergedError(DsrpipeError):
    """The loss or the latent states became NaN/inf."""


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    alpha: float
    lr: float
    wall_time_s: float


class Callback(Protocol):
    def __call__(self, record: EpochRecord, model: LatentModel) -> None: ...


@dataclass
class TrainResult:
    model: LatentModel
    history: pd.DataFrame
    train_time_s: float
    backend: str = "torch"


def model_from_config(cfg: TrainConfig, n_channels: int) -> LatentModel:
    """Build the configured model for data with ``n_channels`` channels (identity readout)."""
    M = cfg.latent_dim or n_channels
    if M < n_channels:
        raise DsrpipeError(
            f"train.latent_dim = {M} is smaller than the {n_channels} data channels; "
            "the identity readout needs latent_dim >= channels"
        )
    return build_model(cfg.model, M=M, L=cfg.hidden_dim)


class TorchStepper:
    """The reference path: autograd through ``model.step`` and ``torch.optim.RAdam``."""

    name = "torch"

    def __init__(self, model: LatentModel, cfg: TrainConfig) -> None:
        self.model, self.cfg = model, cfg
        self.optimiser = torch.optim.RAdam(model.parameters(), lr=cfg.lr)

    def step(self, batch: torch.Tensor, lr: float) -> float:
        for group in self.optimiser.param_groups:
            group["lr"] = lr
        self.optimiser.zero_grad(set_to_none=True)
        loss = gtf_loss(self.model, batch, self.cfg.alpha)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value
        loss.backward()
        if self.cfg.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip_norm)
        self.optimiser.step()
        return value

    def finish(self) -> None:
        pass


class NumbaStepper:
    """The fused Numba kernel of :mod:`dsrpipe.training.fast` (shPLRNN family, GTF)."""

    name = "numba"
    _names = ("A", "W1", "W2", "h1", "h2")

    def __init__(self, model: LatentModel, cfg: TrainConfig) -> None:
        self.model, self.cfg = model, cfg
        self.params = tuple(getattr(model, n).detach().numpy().astype(np.float64).copy() for n in self._names)
        self.grads = tuple(np.zeros_like(p) for p in self.params)
        self.m = tuple(np.zeros_like(p) for p in self.params)
        self.v = tuple(np.zeros_like(p) for p in self.params)
        self.n_steps = 0

    def step(self, batch: torch.Tensor, lr: float) -> float:
        from dsrpipe.training.fast import shplrnn_gtf_train_step

        self.n_steps += 1
        clip = self.cfg.grad_clip_norm if self.cfg.grad_clip_norm is not None else -1.0
        return shplrnn_gtf_train_step(self.params, self.grads, self.m, self.v, batch.numpy(),
                                      float(self.cfg.alpha), bool(self.model.clipped), float(lr),
                                      float(self.n_steps), float(clip))

    def finish(self) -> None:
        with torch.no_grad():
            for name, value in zip(self._names, self.params):
                getattr(self.model, name).copy_(torch.from_numpy(value))


def fast_path_available(model: LatentModel) -> bool:
    """True when a fused kernel covers this model (shPLRNN and clipped shPLRNN under GTF)."""
    from dsrpipe.models.shallow import ShallowPLRNN

    return isinstance(model, ShallowPLRNN)


def select_stepper(model: LatentModel, cfg: TrainConfig):
    """Pick the training path: ``cfg.backend`` = auto | numba | torch."""
    if cfg.backend == "torch" or (cfg.backend == "auto" and not fast_path_available(model)):
        return TorchStepper(model, cfg)
    if not fast_path_available(model):
        raise DsrpipeError(f"train.backend = numba has no kernel for model {model.name!r}; use auto or torch")
    return NumbaStepper(model, cfg)


def train(
    x_train: np.ndarray,
    cfg: TrainConfig,
    *,
    callbacks: Sequence[Callable[[EpochRecord, LatentModel], None]] = (),
) -> TrainResult:
    """Train a model on a standardised trajectory with generalized teacher forcing.

    Both training paths (fused Numba kernel and PyTorch autograd) compute in
    float64 from the same seeded batches, so they follow the same parameter
    trajectory up to rounding.

    Parameters
    ----------
    x_train : ndarray, shape (T, N)
    cfg : TrainConfig
    callbacks : called after every epoch with the epoch record and the model.

    Raises
    ------
    TrainingDivergedError
        When the loss or the parameters become NaN or inf.
    """
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    data = torch.tensor(np.asarray(x_train), dtype=torch.float64)
    model = model_from_config(cfg, data.shape[1]).double()
    sampler = SubsequenceSampler(data, cfg.seq_len, cfg.batch_size, generator)
    stepper = select_stepper(model, cfg)
    log.info("training %s (%d parameters) on %d x %d samples with the %s path", model.name,
             model.n_params, data.shape[0], data.shape[1], stepper.name)
    gamma = math.exp(math.log(cfg.lr_end / cfg.lr) / max(cfg.epochs - 1, 1))

    records: list[EpochRecord] = []
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        lr = cfg.lr * gamma ** (epoch - 1)
        total = 0.0
        for b in range(cfg.batches_per_epoch):
            batch = sampler.sample()
            if cfg.teacher_noise > 0:
                batch = batch + cfg.teacher_noise * torch.randn(batch.shape, generator=generator, dtype=batch.dtype)
            value = stepper.step(batch, lr)
            if not math.isfinite(value):
                raise TrainingDivergedError(
                    f"training diverged: loss = {value} at epoch {epoch}, batch {b + 1} "
                    f"(try a smaller train.lr or a larger train.alpha)"
                )
            total += value
        stepper.finish()
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise TrainingDivergedError(f"training diverged: non-finite parameters after epoch {epoch}")
        record = EpochRecord(epoch, total / cfg.batches_per_epoch, cfg.alpha, lr, time.perf_counter() - start)
        records.append(record)
        for callback in callbacks:
            callback(record, model)
    elapsed = time.perf_counter() - start
    history = pd.DataFrame([r.__dict__ for r in records])
    return TrainResult(model=model, history=history, train_time_s=elapsed, backend=stepper.name)
