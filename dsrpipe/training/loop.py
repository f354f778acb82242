"""The training loop: GTF, RAdam, exponential lr decay, explicit seed.

``train`` trains and returns; it does not evaluate, plot or choose paths.
Progress goes to callbacks (see :mod:`dsrpipe.training.progress`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import pandas as pd
import torch

from dsrpipe import DsrpipeError
from dsrpipe.config import TrainConfig
from dsrpipe.io.atomic import atomic_path
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

    def state_dict(self) -> dict:
        return {"optimiser": self.optimiser.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimiser.load_state_dict(state["optimiser"])


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

    def state_dict(self) -> dict:
        return {"m": [a.copy() for a in self.m], "v": [a.copy() for a in self.v], "n_steps": self.n_steps}

    def load_state_dict(self, state: dict) -> None:
        for dst, src in zip(self.m + self.v, list(state["m"]) + list(state["v"])):
            dst[...] = src
        self.n_steps = int(state["n_steps"])


def fast_path_available(model: LatentModel) -> bool:
    """True when a fused kernel covers this model (shPLRNN and clipped shPLRNN under GTF)."""
    from dsrpipe.models.shallow import ShallowPLRNN

    return isinstance(model, ShallowPLRNN)


def select_stepper(model: LatentModel, cfg: TrainConfig):
    """Pick the training path: ``cfg.backend`` = auto | numba | torch (the only one on a GPU)."""
    if cfg.device != "cpu" and cfg.backend == "numba":
        raise DsrpipeError(f"train.backend = numba runs on the CPU only; use auto or torch with device {cfg.device}")
    if cfg.backend == "torch" or cfg.device != "cpu" or not fast_path_available(model):
        if cfg.backend == "numba":
            raise DsrpipeError(f"train.backend = numba has no kernel for model {model.name!r}; use auto or torch")
        return TorchStepper(model, cfg)
    return NumbaStepper(model, cfg)


class TrainingInterrupted(DsrpipeError):
    """SIGTERM/SIGINT arrived (e.g. a SLURM time limit); a checkpoint was saved."""


class _StopSignal:
    """Turn SIGTERM/SIGINT into a flag checked between epochs (main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict = {}

    def __enter__(self) -> "_StopSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _resume_key(cfg: TrainConfig) -> dict:
    """Settings that must match for a checkpoint to be resumed (not threads or logging)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("threads", "log_every", "checkpoint_every")}


def train(
    x_train: np.ndarray,
    cfg: TrainConfig,
    *,
    callbacks: Sequence[Callable[[EpochRecord, LatentModel], None]] = (),
    checkpoint: str | os.PathLike | None = None,
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
    checkpoint : path of a checkpoint file. Written every ``cfg.checkpoint_every``
        epochs and when SIGTERM/SIGINT arrives; if it exists and was written with
        the same settings, training resumes from it and ends with exactly the
        result an uninterrupted run gives.

    Raises
    ------
    TrainingDivergedError
        When the loss or the parameters become NaN or inf.
    TrainingInterrupted
        When SIGTERM/SIGINT arrived (after saving the checkpoint, if one is set).
    """
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    device = _device(cfg)
    data = torch.tensor(np.asarray(x_train), dtype=torch.float64, device=device)
    model = model_from_config(cfg, data.shape[1]).double().to(device)
    sampler = SubsequenceSampler(data, cfg.seq_len, cfg.batch_size, generator)
    records: list[EpochRecord] = []
    first_epoch, elapsed_before = 1, 0.0
    state = _load_checkpoint(checkpoint, cfg)
    if state is not None:
        model.load_state_dict(state["model"])
        generator.set_state(state["generator"])
        records = [EpochRecord(**r) for r in state["history"]]
        first_epoch, elapsed_before = state["epoch"] + 1, state["elapsed"]
        log.info("resuming from %s at epoch %d", checkpoint, first_epoch)
    stepper = select_stepper(model, cfg)
    if state is not None:
        stepper.load_state_dict(state["stepper"])
    log.info("training %s (%d parameters) on %d x %d samples with the %s path", model.name,
             model.n_params, data.shape[0], data.shape[1], stepper.name)
    gamma = math.exp(math.log(cfg.lr_end / cfg.lr) / max(cfg.epochs - 1, 1))

    def save(epoch: int, elapsed: float) -> None:
        if checkpoint is None:
            return
        with atomic_path(checkpoint) as tmp:
            torch.save({"key": _resume_key(cfg), "epoch": epoch, "model": model.state_dict(),
                        "stepper": stepper.state_dict(), "generator": generator.get_state(),
                        "history": [r.__dict__ for r in records], "elapsed": elapsed}, tmp)

    start = time.perf_counter() - elapsed_before
    with _StopSignal() as stop:
        for epoch in range(first_epoch, cfg.epochs + 1):
            lr = cfg.lr * gamma ** (epoch - 1)
            total = 0.0
            for b in range(cfg.batches_per_epoch):
                batch = sampler.sample()
                if cfg.teacher_noise > 0:
                    noise = torch.randn(batch.shape, generator=generator, dtype=batch.dtype)
                    batch = batch + cfg.teacher_noise * noise.to(device)
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
            if stop.received is not None:
                save(epoch, record.wall_time_s)
                raise TrainingInterrupted(
                    f"stopped by signal {stop.received} after epoch {epoch}"
                    + (f"; checkpoint saved to {checkpoint}, rerun to resume" if checkpoint else "")
                )
            if cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0 and epoch < cfg.epochs:
                save(epoch, record.wall_time_s)
    elapsed = time.perf_counter() - start
    history = pd.DataFrame([r.__dict__ for r in records])
    name = stepper.name if device.type == "cpu" else f"{stepper.name} ({device.type})"
    return TrainResult(model=model.cpu(), history=history, train_time_s=elapsed, backend=name)


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise DsrpipeError("train.device = cuda, but PyTorch sees no CUDA GPU here; use device: cpu")
    return torch.device(cfg.device)


def _load_checkpoint(path: str | os.PathLike | None, cfg: TrainConfig) -> dict | None:
    if path is None or not Path(path).exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated checkpoint: start over rather than fail
        log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
        return None
    if state.get("key") != _resume_key(cfg):
        log.warning("ignoring checkpoint %s: it was written with other training settings", path)
        return None
    return state
