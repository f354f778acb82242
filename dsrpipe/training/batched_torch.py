"""Many models per job in PyTorch: restarts of one setting trained together on a model axis.

The GPU counterpart of :func:`dsrpipe.training.batched.train_many` (whose fused kernel runs
on the CPU only), and the path for settings without a kernel. The R models keep their own
classes: their parameters are stacked (``torch.func.stack_module_state``) and the loss of
the per-model path, :func:`~dsrpipe.training.forcing.forced_loss` plus
:func:`~dsrpipe.training.regularisation.regularisation` on the model's own ``step``, is
mapped over the leading model axis with ``torch.func.vmap(functional_call(...))``: there is
no second copy of the equations.

Each model draws its batches (and teacher noise) from its own seeded generator exactly as
:func:`dsrpipe.training.train` does, clips its own gradient norm (the norm of that model's
gradients only, as ``clip_grad_norm_`` in the per-model path computes it) and is updated by
``torch.optim.RAdam`` on the stacked tensors, which equals one RAdam per model: RAdam is
elementwise, and its step count (bias correction, rectification) and the lr schedule are
shared by models that step together. So model r's result equals
``train(x, replace(cfg, seed=seeds[r], backend="torch"))`` up to rounding
(``tests/test_batched_torch.py``). A model whose loss turns non-finite stops there and
reports its error; its gradients are zeroed from then on and the others go on.

Covered: every registered model with the identity or affine readout, GTF with a fixed or
adaptive alpha (each model its own schedule, its forcing weights a row of a per-model weight
array), STF, external inputs, teacher noise, L2 and manifold-attractor regularisation, on
``device: cpu`` or ``cuda``. Not covered: MTF (its own trainer). No checkpoints (like
``train_many``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from dsrpipe import DsrpipeError
from dsrpipe.config import TrainConfig
from dsrpipe.training.batched import diverged_loss, draw_batch
from dsrpipe.training.data import SubsequenceSampler
from dsrpipe.training.forcing import AdaptiveAlpha, estimate_stf_tau, forced_loss, forcing_weights
from dsrpipe.training.loop import (
    EpochRecord,
    TrainingDivergedError,
    TrainResult,
    _device,
    build_from_config,
    learning_rate,
)
from dsrpipe.training.regularisation import regularisation

log = logging.getLogger(__name__)

#: what ``TrainResult.backend`` says for a model trained here (``" (cuda)"`` appended on a GPU)
BACKEND = "torch-many"


def torch_many_available(cfg: TrainConfig) -> tuple[bool, str]:
    """Whether :func:`train_many_torch` covers ``cfg``, and if not, why."""
    if getattr(cfg, "method", "gtf") != "gtf":
        return False, f"no batched PyTorch path for train.method {cfg.method}"
    return True, ""


class _Pair(nn.Module):
    """One model and its readout as one module, so that one ``functional_call`` swaps both."""

    def __init__(self, model: nn.Module, readout: nn.Module, cfg: TrainConfig) -> None:
        super().__init__()
        self.model, self.readout = model, readout
        self.l2, self.mar_fraction, self.mar_lambda = cfg.l2, cfg.mar_fraction, cfg.mar_lambda

    def forward(self, batch, weights, inputs=None):
        """The reported loss, the objective differentiated (loss plus regularisation, exactly
        as ``TorchStepper.step`` forms them) and the forced states (for adaptive alpha)."""
        loss, states = forced_loss(self.model, self.readout, batch, weights, inputs)
        return loss, loss + regularisation(self.model, self.l2, self.mar_fraction, self.mar_lambda), states


class BatchedTorchStepper:
    """R models of one setting with stacked parameters and one RAdam over the stack.

    Parameters
    ----------
    models, readouts : the R models and readouts (float64 or float32, all on one device);
        they are not modified until :meth:`unpack`.
    cfg : TrainConfig
        ``grad_clip_norm``, ``l2``, ``mar_*`` and ``lr`` are read.
    """

    def __init__(self, models, readouts, cfg: TrainConfig) -> None:
        self.models, self.readouts = list(models), list(readouts)
        pairs = [_Pair(m, r, cfg) for m, r in zip(self.models, self.readouts)]
        self._template = pairs[0]  # functional_call only borrows its structure
        self.params, _ = stack_module_state(pairs)  # name -> (R, ...) leaf tensors
        self.R = len(pairs)
        self.clip = cfg.grad_clip_norm
        self.optimiser = torch.optim.RAdam(list(self.params.values()), lr=cfg.lr)
        #: the forced states (R, S, T, M) of the last step's rollouts
        self.states: torch.Tensor | None = None

        def one(params, batch, weights, inputs):
            return functional_call(self._template, params, (batch, weights, inputs))

        # weights: shared (T,) or one row per model (R, T); inputs: (R, ...) or none
        self._losses = {
            (per_model, True): vmap(one, in_dims=(0, 0, 0 if per_model else None, 0)) for per_model in (False, True)}
        self._losses.update({
            (per_model, False): vmap(lambda p, b, w: one(p, b, w, None), in_dims=(0, 0, 0 if per_model else None))
            for per_model in (False, True)})

    def _per_model(self, mask: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return mask.reshape(self.R, *([1] * (grad.ndim - 1)))

    def step(self, batches: torch.Tensor, lr: float, weights: torch.Tensor, active: torch.Tensor,
             inputs: torch.Tensor | None = None) -> np.ndarray:
        """One optimiser step of every model; returns the R losses (non-finite for a model
        that diverged at this step). Models with ``active`` False (a bool (R,) tensor on the
        parameters' device) get zero gradients.

        batches : (R, S, T + 1, N); weights : (T,) shared by all models (may stay on the CPU),
        or (R, T) one row per model (on the parameters' device); inputs : (R, S, T + 1, K)
        """
        for group in self.optimiser.param_groups:
            group["lr"] = lr
        self.optimiser.zero_grad(set_to_none=True)
        vmapped = self._losses[(weights.ndim == 2, inputs is not None)]
        args = (self.params, batches, weights) + (() if inputs is None else (inputs,))
        loss, objective, states = vmapped(*args)
        self.states = states.detach()
        ok = active & torch.isfinite(loss.detach())
        objective.sum().backward()  # model r's slice of every gradient is d(objective_r)
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        grads = [torch.where(self._per_model(ok, g), g, 0.0) for g in grads]
        if self.clip is not None and grads:
            # clip_grad_norm_ per model: the 2-norm over that model's gradients, then
            # grad * min(clip / (norm + 1e-6), 1), as the per-model path does it
            norms = torch.stack([torch.linalg.vector_norm(g.reshape(self.R, -1), dim=1) for g in grads])
            total = torch.linalg.vector_norm(norms, dim=0)
            coef = torch.clamp(float(self.clip) / (total + 1e-6), max=1.0)
            grads = [g * self._per_model(coef, g) for g in grads]
        it = iter(grads)
        for p in self.params.values():
            if p.grad is not None:
                p.grad = next(it)
        self.optimiser.step()
        return loss.detach().cpu().numpy()

    def finite(self) -> np.ndarray:
        """(R,) bool: whether all of model r's parameters are finite."""
        ok = torch.ones(self.R, dtype=torch.bool, device=next(iter(self.params.values())).device)
        for p in self.params.values():
            ok &= torch.isfinite(p.detach().reshape(self.R, -1)).all(dim=1)
        return ok.cpu().numpy()

    @torch.no_grad()
    def unpack(self, r: int) -> None:
        """Copy model r's slice of the stack into its model and readout."""
        targets = dict(self.models[r].named_parameters(prefix="model"))
        targets.update(self.readouts[r].named_parameters(prefix="readout"))
        for name, value in self.params.items():
            targets[name].copy_(value[r])


def train_many_torch(
    x_train: np.ndarray,
    cfg: TrainConfig,
    seeds: Sequence[int],
    *,
    inputs: np.ndarray | None = None,
    threads: int | None = None,
):
    """Train one model per seed on the same data together, in PyTorch on ``cfg.device``.

    Parameters
    ----------
    x_train : ndarray, shape (T, N)
    cfg : TrainConfig
        The setting; ``cfg.seed`` is replaced by each of ``seeds``. It must be one this path
        covers (:func:`torch_many_available`); no checkpoints.
    seeds : the R seeds
    inputs : ndarray, shape (T, K), optional
    threads : torch CPU threads (default ``cfg.threads``).

    Returns
    -------
    list of :class:`~dsrpipe.training.batched.RestartResult`, in the order of ``seeds``;
    ``result`` equals ``train(x_train, replace(cfg, seed=seed, backend="torch"), inputs=inputs)``
    up to rounding, except for wall times.

    Raises
    ------
    DsrpipeError
        For settings this path does not cover, ``backend: numba``, or ``device: cuda`` without a GPU.
    """
    from dsrpipe.training.batched import RestartResult

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise DsrpipeError("train_many_torch needs at least one seed")
    available, why = torch_many_available(cfg)
    if not available:
        raise DsrpipeError(f"{why}; train these seeds one after another (dsrpipe.training.train)")
    if cfg.backend == "numba":
        raise DsrpipeError("train.backend = numba asks for the fused CPU kernel (train_many), not the PyTorch path")
    device = _device(cfg)
    torch.set_num_threads(threads or cfg.threads)
    x_train = np.asarray(x_train)
    n_inputs = 0 if inputs is None else np.asarray(inputs).shape[1]
    if n_inputs and np.asarray(inputs).shape[0] != len(x_train):
        raise DsrpipeError(f"inputs must have shape ({len(x_train)}, K), got {np.asarray(inputs).shape}")
    series = np.concatenate([x_train, np.asarray(inputs)], axis=1) if n_inputs else x_train
    data = torch.tensor(series, dtype=torch.float64, device=device)
    N = x_train.shape[1]
    models, readouts, samplers, generators = [], [], [], []
    for seed in seeds:  # the order of train(): global seed, generator, model, readout
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model, readout = build_from_config(dataclasses.replace(cfg, seed=seed), N, n_inputs)
        model, readout = model.double().to(device), readout.double().to(device)
        readout.init_from_data(x_train)
        models.append(model)
        readouts.append(readout)
        generators.append(generator)
        samplers.append(SubsequenceSampler(data, cfg.seq_len, cfg.batch_size, generator))
    tau = None
    if cfg.forcing == "stf":
        tau = cfg.stf_tau or estimate_stf_tau(x_train)
    R, S, T = len(seeds), cfg.batch_size, cfg.seq_len
    schedules = [AdaptiveAlpha(start=1.0, every=cfg.alpha_every) for _ in seeds] if cfg.alpha_mode == "adaptive" \
        else None

    def weights_of(r: int) -> torch.Tensor:
        alpha = schedules[r].alpha if schedules is not None else cfg.alpha
        return forcing_weights(cfg.forcing, T, alpha, tau)

    # fixed alpha: one (T,) row for all, on the CPU as in train(); adaptive: a row per model
    weights = weights_of(0) if schedules is None else torch.stack([weights_of(r) for r in range(R)]).to(device)
    stack = BatchedTorchStepper(models, readouts, cfg)
    X = torch.zeros((R, S, T + 1, N), dtype=torch.float64, device=device)
    U = torch.zeros((R, S, T + 1, n_inputs), dtype=torch.float64, device=device) if n_inputs else None
    active = np.ones(R, dtype=np.bool_)
    errors: list[TrainingDivergedError | None] = [None] * R
    records: list[list[EpochRecord]] = [[] for _ in seeds]
    log.info("training %d %s models together with the batched PyTorch path (vmap over models, device %s, "
             "%d torch threads%s)", R, models[0].name, device.type, torch.get_num_threads(),
             ", adaptive alpha per model" if schedules else "")
    start = time.perf_counter()
    n_steps = 0
    for epoch in range(1, cfg.epochs + 1):
        lr = learning_rate(cfg, epoch)
        totals = [0.0] * R
        for b in range(cfg.batches_per_epoch):
            for r in np.flatnonzero(active):
                X[r], inputs = draw_batch(samplers[r], generators[r], cfg, N, n_inputs)
                if n_inputs:
                    U[r] = inputs
            n_steps += 1
            losses = stack.step(X, lr, weights, torch.from_numpy(active).to(device), U)
            for r in np.flatnonzero(active):
                value = float(losses[r])
                if not math.isfinite(value):
                    errors[r] = diverged_loss(value, epoch, b)
                    active[r] = False
                    continue
                totals[r] += value
                if schedules is not None and schedules[r].due(n_steps):
                    # as train(): the updated parameters, the forced states of this step's rollout
                    stack.unpack(r)
                    schedules[r].update(schedules[r].estimate(models[r], stack.states[r]))
                    weights[r] = weights_of(r).to(device)
        wall = time.perf_counter() - start
        finite = stack.finite()
        for r in np.flatnonzero(active):
            if not finite[r]:
                errors[r] = TrainingDivergedError(f"training diverged: non-finite parameters after epoch {epoch}")
                active[r] = False
                continue
            alpha = schedules[r].alpha if schedules is not None else (cfg.alpha if cfg.forcing == "gtf" else 1.0 / tau)
            records[r].append(EpochRecord(epoch, totals[r] / cfg.batches_per_epoch, alpha, lr, wall))
        if not active.any():
            break
    elapsed = time.perf_counter() - start
    name = BACKEND if device.type == "cpu" else f"{BACKEND} ({device.type})"
    out = []
    for r, seed in enumerate(seeds):
        if errors[r] is not None:
            out.append(RestartResult(seed, None, errors[r]))
            continue
        stack.unpack(r)
        history = pd.DataFrame([rec.__dict__ for rec in records[r]])
        out.append(RestartResult(seed, TrainResult(model=models[r].cpu(), history=history, train_time_s=elapsed,
                                                   backend=name, readout=readouts[r].cpu(), stf_tau=tau)))
    return out
