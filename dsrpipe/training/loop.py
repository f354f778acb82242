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
from dsrpipe.models.readout import Readout
from dsrpipe.models.registry import size_arguments
from dsrpipe.training.data import SubsequenceSampler
from dsrpipe.training.forcing import AdaptiveAlpha, estimate_stf_tau, forced_loss, forcing_weights
from dsrpipe.training.regularisation import regularisation

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
    readout: Readout | None = None
    #: the STF interval used (None under GTF)
    stf_tau: int | None = None


def build_from_config(cfg: TrainConfig, n_channels: int, n_inputs: int = 0) -> tuple[LatentModel, Readout]:
    """The configured model and readout for ``n_channels`` data and ``n_inputs`` input channels."""
    M = cfg.latent_dim or n_channels
    if cfg.model == "ALRNN" and cfg.n_relu > M:
        raise DsrpipeError(f"train.n_relu = {cfg.n_relu} is larger than the latent dimension {M}")
    readout = Readout(cfg.readout, n_channels, M)
    model = build_model(cfg.model, M=M, K=n_inputs, **size_arguments(cfg.model, cfg))
    return model, readout


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (1-based) under ``cfg.lr_schedule``."""
    frac = (epoch - 1) / max(cfg.epochs - 1, 1)
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return cfg.lr_end + 0.5 * (cfg.lr - cfg.lr_end) * (1 + math.cos(math.pi * frac))
    return cfg.lr * (cfg.lr_end / cfg.lr) ** frac


class TorchStepper:
    """The reference path: autograd through ``model.step`` and ``torch.optim.RAdam``."""

    name = "torch"

    def __init__(self, model: LatentModel, readout: Readout, cfg: TrainConfig) -> None:
        self.model, self.readout, self.cfg = model, readout, cfg
        self.optimiser = torch.optim.RAdam(list(model.parameters()) + list(readout.parameters()), lr=cfg.lr)
        self.states: torch.Tensor | None = None

    def step(self, batch: torch.Tensor, lr: float, weights: torch.Tensor, inputs: torch.Tensor | None = None) -> float:
        for group in self.optimiser.param_groups:
            group["lr"] = lr
        self.optimiser.zero_grad(set_to_none=True)
        loss, self.states = forced_loss(self.model, self.readout, batch, weights, inputs)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value
        cfg = self.cfg
        (loss + regularisation(self.model, cfg.l2, cfg.mar_fraction, cfg.mar_lambda)).backward()
        if cfg.grad_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for g in self.optimiser.param_groups for p in g["params"]],
                                           cfg.grad_clip_norm)
        self.optimiser.step()
        return value

    def finish(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {"optimiser": self.optimiser.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimiser.load_state_dict(state["optimiser"])


def select_stepper(model: LatentModel, readout: Readout, cfg: TrainConfig):
    """Pick the training path: ``cfg.backend`` = auto | numba | torch (the only one on a GPU)."""
    from dsrpipe.training.fast import NumbaStepper, fast_path_available

    if cfg.device != "cpu" and cfg.backend == "numba":
        raise DsrpipeError(f"train.backend = numba runs on the CPU only; use auto or torch with device {cfg.device}")
    available, why = fast_path_available(model, readout, cfg)
    if cfg.backend == "torch" or cfg.device != "cpu" or not available:
        if cfg.backend == "numba":
            raise DsrpipeError(f"train.backend = numba has no kernel for this setting ({why}); use auto or torch")
        if cfg.backend == "auto" and cfg.device == "cpu":
            log.info("no fused kernel for this setting (%s); using the PyTorch path", why)
        return TorchStepper(model, readout, cfg)
    return NumbaStepper(model, readout, cfg)


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
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("threads", "models_per_job", "log_every", "checkpoint_every")}


def train(
    x_train: np.ndarray,
    cfg: TrainConfig,
    *,
    inputs: np.ndarray | None = None,
    callbacks: Sequence[Callable[[EpochRecord, LatentModel], None]] = (),
    checkpoint: str | os.PathLike | None = None,
) -> TrainResult:
    """Train a model on a standardised trajectory with teacher forcing.

    Both training paths (fused Numba kernel and PyTorch autograd) compute in
    float64 from the same seeded batches, so they follow the same parameter
    trajectory up to rounding.

    Parameters
    ----------
    x_train : ndarray, shape (T, N)
    cfg : TrainConfig
    inputs : ndarray, shape (T, K), optional
        External inputs aligned with ``x_train`` (``inputs[t]`` drives the step into ``x_train[t]``).
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
    x_train = np.asarray(x_train)
    if inputs is not None:
        inputs = np.asarray(inputs)
        if inputs.ndim != 2 or len(inputs) != len(x_train):
            raise DsrpipeError(f"inputs must have shape ({len(x_train)}, K), got {inputs.shape}")
    n_inputs = 0 if inputs is None else inputs.shape[1]
    series = np.concatenate([x_train, inputs], axis=1) if n_inputs else x_train
    data = torch.tensor(series, dtype=torch.float64, device=device)
    N = x_train.shape[1]
    model, readout = build_from_config(cfg, N, n_inputs)
    model, readout = model.double().to(device), readout.double().to(device)
    readout.init_from_data(x_train)
    sampler = SubsequenceSampler(data, cfg.seq_len, cfg.batch_size, generator)
    tau = None
    if cfg.forcing == "stf":
        tau = cfg.stf_tau or estimate_stf_tau(x_train)
        log.info("sparse teacher forcing every %d steps%s", tau, "" if cfg.stf_tau else " (estimated from the data)")
    schedule = AdaptiveAlpha(start=1.0, every=cfg.alpha_every) if cfg.alpha_mode == "adaptive" else None
    records: list[EpochRecord] = []
    first_epoch, elapsed_before, n_steps = 1, 0.0, 0
    state = _load_checkpoint(checkpoint, cfg)
    if state is not None:
        model.load_state_dict(state["model"])
        readout.load_state_dict(state["readout"])
        generator.set_state(state["generator"])
        records = [EpochRecord(**r) for r in state["history"]]
        first_epoch, elapsed_before, n_steps = state["epoch"] + 1, state["elapsed"], state["n_steps"]
        if schedule is not None:
            schedule.load_state_dict(state["alpha"])
        log.info("resuming from %s at epoch %d", checkpoint, first_epoch)
    stepper = select_stepper(model, readout, cfg)
    if state is not None:
        stepper.load_state_dict(state["stepper"])
    log.info("training %s (%d parameters, %s readout, %s%s) on %d x %d samples%s with the %s path", model.name,
             model.n_params, cfg.readout, cfg.forcing, " adaptive alpha" if schedule else "", data.shape[0], N,
             f" and {n_inputs} inputs" if n_inputs else "",
             stepper.name + (f" (batch chunks on {stepper.threads} threads)" if getattr(stepper, "threads", 1) > 1
                             else ""))

    def weights_now() -> torch.Tensor:
        alpha = schedule.alpha if schedule is not None else cfg.alpha
        return forcing_weights(cfg.forcing, cfg.seq_len, alpha, tau)

    def save(epoch: int, elapsed: float) -> None:
        if checkpoint is None:
            return
        with atomic_path(checkpoint) as tmp:
            torch.save({"key": _resume_key(cfg), "epoch": epoch, "model": model.state_dict(),
                        "readout": readout.state_dict(), "stepper": stepper.state_dict(),
                        "generator": generator.get_state(), "history": [r.__dict__ for r in records],
                        "elapsed": elapsed, "n_steps": n_steps,
                        "alpha": schedule.state_dict() if schedule is not None else None}, tmp)

    weights = weights_now()
    start = time.perf_counter() - elapsed_before
    with _StopSignal() as stop:
        for epoch in range(first_epoch, cfg.epochs + 1):
            lr = learning_rate(cfg, epoch)
            total = 0.0
            for b in range(cfg.batches_per_epoch):
                window = sampler.sample()
                batch, batch_inputs = (window[..., :N], window[..., N:]) if n_inputs else (window, None)
                if cfg.teacher_noise > 0:
                    noise = torch.randn(batch.shape, generator=generator, dtype=batch.dtype)
                    batch = batch + cfg.teacher_noise * noise.to(device)
                n_steps += 1
                value = stepper.step(batch, lr, weights, batch_inputs)
                if not math.isfinite(value):
                    raise TrainingDivergedError(
                        f"training diverged: loss = {value} at epoch {epoch}, batch {b + 1} "
                        f"(try a smaller train.lr or a larger train.alpha)"
                    )
                if schedule is not None and schedule.due(n_steps):
                    stepper.finish()
                    schedule.update(schedule.estimate(model, stepper.states))
                    weights = weights_now()
                total += value
            stepper.finish()
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                raise TrainingDivergedError(f"training diverged: non-finite parameters after epoch {epoch}")
            alpha = schedule.alpha if schedule is not None else (cfg.alpha if cfg.forcing == "gtf" else 1.0 / tau)
            record = EpochRecord(epoch, total / cfg.batches_per_epoch, alpha, lr, time.perf_counter() - start)
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
    return TrainResult(model=model.cpu(), history=history, train_time_s=elapsed, backend=name,
                       readout=readout.cpu(), stf_tau=tau)


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
