"""Many models per job: restarts of one setting trained together in one process.

:func:`train_many` trains R models on the same data with different seeds. Every
optimiser step draws each model's batch from its own seeded sampler (as
:func:`dsrpipe.training.train` does) and runs the fused kernel of
:mod:`dsrpipe.training.fast` for all models at once, a Numba ``prange`` over
the model axis. Each model's result is the one ``train`` gives with the same
seed and ``backend: numba`` (``tests/test_fast.py`` checks it). A model whose
loss turns non-finite stops there and reports its error; the others go on.
With ``device: cuda`` or ``backend: torch`` the same call trains the models on a
model axis in PyTorch instead (:mod:`dsrpipe.training.batched_torch`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
import torch

from dsrpipe import DsrpipeError
from dsrpipe.config import TrainConfig
from dsrpipe.models.kernels import FlatLayout
from dsrpipe.training.data import SubsequenceSampler
from dsrpipe.training.fast import (
    Workspace,
    fast_path_available,
    gradient_buffers,
    regularisation_vector,
    train_steps,
)
from dsrpipe.training.forcing import AdaptiveAlpha, estimate_stf_tau, forcing_weights
from dsrpipe.training.loop import (
    EpochRecord,
    TrainingDivergedError,
    TrainResult,
    build_from_config,
    learning_rate,
)

log = logging.getLogger(__name__)


@dataclass
class RestartResult:
    """One model of :func:`train_many`: its seed and either its result or its error."""

    seed: int
    result: TrainResult | None
    error: TrainingDivergedError | None = None


class _Models:
    """R models of one setting: their parameters, RAdam moments and work arrays, stacked."""

    def __init__(self, models, readouts, cfg: TrainConfig) -> None:
        self.models, self.readouts = models, readouts
        self.layouts = [FlatLayout(m, r) for m, r in zip(models, readouts)]
        lay = self.layouts[0]
        R, S, T = len(models), cfg.batch_size, cfg.seq_len
        self.dims, self.off = lay.dims, lay.offsets
        self.theta = np.stack([layout.pack() for layout in self.layouts])
        self.grad = gradient_buffers(lay, R=R)
        self.m, self.v = (np.zeros_like(self.theta) for _ in range(2))
        self.workspace = Workspace(lay, S, T, R=R)
        self.reg = regularisation_vector(models[0], cfg)
        self.clip = float(cfg.grad_clip_norm) if cfg.grad_clip_norm is not None else -1.0

    def states(self, r: int) -> torch.Tensor:
        """The forced states (S, T, M) of model r's last step."""
        return torch.from_numpy(self.workspace.states(r))

    def unpack(self, r: int) -> None:
        self.layouts[r].unpack(self.theta[r])

    def step(self, X, U, W, lr: float, n_steps: int, active, losses) -> None:
        train_steps(self.dims, self.off, self.theta, self.grad, self.m, self.v, X, U, W, self.reg, float(lr),
                    float(n_steps), self.clip, active, *self.workspace.arrays(), losses)


def draw_batch(sampler: SubsequenceSampler, generator: torch.Generator, cfg: TrainConfig, n_obs: int,
               n_inputs: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One model's next batch as :func:`dsrpipe.training.train` draws it: the sampled windows'
    observed channels (plus teacher noise from the model's ``generator``) and their input channels."""
    window = sampler.sample()
    batch = window[..., :n_obs] if n_inputs else window
    if cfg.teacher_noise > 0:
        noise = torch.randn(batch.shape, generator=generator, dtype=batch.dtype)
        batch = batch + cfg.teacher_noise * noise.to(batch.device)
    return batch, (window[..., n_obs:] if n_inputs else None)


def diverged_loss(value: float, epoch: int, batch: int) -> TrainingDivergedError:
    """The error of a model whose loss turned non-finite at 0-based ``batch`` of ``epoch``."""
    return TrainingDivergedError(f"training diverged: loss = {value} at epoch {epoch}, batch {batch + 1} "
                                 f"(try a smaller train.lr or a larger train.alpha)")


def train_many(
    x_train: np.ndarray,
    cfg: TrainConfig,
    seeds: Sequence[int],
    *,
    inputs: np.ndarray | None = None,
    threads: int | None = None,
) -> list[RestartResult]:
    """Train one model per seed on the same data, all in one process (fused CPU kernel).

    Parameters
    ----------
    x_train : ndarray, shape (T, N)
    cfg : TrainConfig
        The setting; ``cfg.seed`` is replaced by each of ``seeds``. It must be one
        the fused kernel covers (:func:`dsrpipe.training.fast.fast_path_available`);
        no checkpoints.
    seeds : the R seeds
    inputs : ndarray, shape (T, K), optional
    threads : Numba threads for the loop over models (default ``cfg.threads``; torch threads
        on the PyTorch path).

    Returns
    -------
    list of RestartResult, in the order of ``seeds``; ``result`` equals
    ``train(x_train, replace(cfg, seed=seed, backend="numba"), inputs=inputs)``
    except for wall times.

    With ``device: cuda`` or ``backend: torch`` (or, under ``backend: auto``, a setting
    the fused kernel does not cover) the models are trained by the batched PyTorch path
    instead, :func:`dsrpipe.training.batched_torch.train_many_torch` (equal to
    ``train(..., backend="torch")`` per seed up to rounding).

    Raises
    ------
    DsrpipeError
        When ``backend: numba`` is asked for a setting the fused kernel does not cover,
        or ``device: cuda`` without a GPU.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise DsrpipeError("train_many needs at least one seed")
    if cfg.device != "cpu" or cfg.backend == "torch":
        from dsrpipe.training.batched_torch import train_many_torch

        return train_many_torch(x_train, cfg, seeds, inputs=inputs, threads=threads)
    torch.set_num_threads(cfg.threads)
    numba.set_num_threads(min(threads or cfg.threads, numba.config.NUMBA_NUM_THREADS))
    x_train = np.asarray(x_train)
    n_inputs = 0 if inputs is None else np.asarray(inputs).shape[1]
    series = np.concatenate([x_train, np.asarray(inputs)], axis=1) if n_inputs else x_train
    data = torch.tensor(series, dtype=torch.float64)
    N = x_train.shape[1]
    models, readouts, samplers, generators = [], [], [], []
    for seed in seeds:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model, readout = build_from_config(dataclasses.replace(cfg, seed=seed), N, n_inputs)
        model, readout = model.double(), readout.double()
        readout.init_from_data(x_train)
        models.append(model)
        readouts.append(readout)
        generators.append(generator)
        samplers.append(SubsequenceSampler(data, cfg.seq_len, cfg.batch_size, generator))
    available, why = fast_path_available(models[0], readouts[0], cfg)
    if not available:
        if cfg.backend == "numba":
            raise DsrpipeError(f"train_many needs the fused kernel, which does not cover this setting ({why})")
        from dsrpipe.training.batched_torch import train_many_torch

        log.info("no fused kernel for this setting (%s); training the %d models with the batched PyTorch path",
                 why, len(seeds))
        return train_many_torch(x_train, cfg, seeds, inputs=inputs, threads=threads)
    tau = None
    if cfg.forcing == "stf":
        tau = cfg.stf_tau or estimate_stf_tau(x_train)
    R, S, T = len(seeds), cfg.batch_size, cfg.seq_len
    schedules = [AdaptiveAlpha(start=1.0, every=cfg.alpha_every) for _ in seeds] if cfg.alpha_mode == "adaptive" \
        else None

    def weights_of(r: int) -> np.ndarray:
        alpha = schedules[r].alpha if schedules is not None else cfg.alpha
        return forcing_weights(cfg.forcing, T, alpha, tau).numpy()

    stack = _Models(models, readouts, cfg)
    W = np.stack([weights_of(r) for r in range(R)])
    X = np.zeros((R, S, T + 1, N))
    U = np.zeros((R, S, T + 1, n_inputs))
    active = np.ones(R, dtype=np.bool_)
    losses = np.zeros(R)
    errors: list[TrainingDivergedError | None] = [None] * R
    records: list[list[EpochRecord]] = [[] for _ in seeds]
    log.info("training %d %s models together (%d Numba threads)", R, models[0].name, numba.get_num_threads())
    start = time.perf_counter()
    n_steps = 0
    for epoch in range(1, cfg.epochs + 1):
        lr = learning_rate(cfg, epoch)
        totals = [0.0] * R
        for b in range(cfg.batches_per_epoch):
            for r in np.flatnonzero(active):
                batch, inputs = draw_batch(samplers[r], generators[r], cfg, N, n_inputs)
                X[r] = batch.numpy()
                if n_inputs:
                    U[r] = inputs.numpy()
            n_steps += 1
            stack.step(X, U, W, lr, n_steps, active, losses)
            for r in np.flatnonzero(active):
                value = float(losses[r])
                if not math.isfinite(value):
                    errors[r] = diverged_loss(value, epoch, b)
                    active[r] = False
                    continue
                totals[r] += value
                if schedules is not None and schedules[r].due(n_steps):
                    stack.unpack(r)
                    schedules[r].update(schedules[r].estimate(models[r], stack.states(r)))
                    W[r] = weights_of(r)
        wall = time.perf_counter() - start
        for r in np.flatnonzero(active):
            stack.unpack(r)
            if not all(torch.isfinite(p).all() for p in models[r].parameters()):
                errors[r] = TrainingDivergedError(f"training diverged: non-finite parameters after epoch {epoch}")
                active[r] = False
                continue
            alpha = schedules[r].alpha if schedules is not None else (cfg.alpha if cfg.forcing == "gtf" else 1.0 / tau)
            records[r].append(EpochRecord(epoch, totals[r] / cfg.batches_per_epoch, alpha, lr, wall))
        if not active.any():
            break
    elapsed = time.perf_counter() - start
    out = []
    for r, seed in enumerate(seeds):
        if errors[r] is not None:
            out.append(RestartResult(seed, None, errors[r]))
            continue
        history = pd.DataFrame([rec.__dict__ for rec in records[r]])
        out.append(RestartResult(seed, TrainResult(model=models[r], history=history, train_time_s=elapsed,
                                                   backend="numba-many", readout=readouts[r], stf_tau=tau)))
    return out
