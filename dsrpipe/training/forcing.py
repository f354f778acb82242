"""Teacher forcing: generalized (Hess et al. 2023, fixed or adaptive alpha) and sparse
(Mikhaeil et al. 2022), written once as a per-step forcing weight.

A batch of windows ``x`` (S, T + 1, N) is rolled out from ``z_0 = readout.initial_state(x_0)``::

    z_t  = F(z~_{t-1}) + C s_t                     (prediction, t = 1..T)
    z~_t = z_t + a_t * (teacher(x_t) - z_t)         on the first n_forced units

with ``a_t = alpha`` for GTF and ``a_t = 1`` every ``tau`` steps (0 otherwise)
for STF. The loss is the mean squared error of ``readout.observe(z_t)``
against ``x_t``. This function is the reference every fast kernel is tested
against (:mod:`dsrpipe.training.fast`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dsrpipe import DsrpipeError
from dsrpipe.models.base import LatentModel
from dsrpipe.models.readout import Readout

try:  # private in torch 2.13 (the pinned version); without it the batched path's vmap says why it fails
    from torch._C._functorch import is_batchedtensor
except ImportError:  # pragma: no cover - other torch versions
    def is_batchedtensor(tensor) -> bool:
        return False


def forcing_weights(kind: str, n_steps: int, alpha: float = 0.0, tau: int | None = None) -> torch.Tensor:
    """Per-step forcing weights ``a_t`` for t = 1..n_steps: (n_steps,) float64.

    ``gtf``: alpha every step. ``stf``: 1 at t = tau, 2 tau, ... and 0 elsewhere.
    """
    if kind == "gtf":
        return torch.full((n_steps,), float(alpha), dtype=torch.float64)
    if kind == "stf":
        if tau is None or tau < 1:
            raise DsrpipeError(f"sparse teacher forcing needs an interval tau >= 1, got {tau}")
        t = torch.arange(1, n_steps + 1)
        return (t % int(tau) == 0).to(torch.float64)
    raise DsrpipeError(f"unknown teacher forcing {kind!r}; choose gtf or stf")


def initial_state(x0: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """Latent state from the first observation for an identity readout with an untrained
    (zero) initial map: data in the first N units, zeros elsewhere."""
    n = x0.shape[-1]
    if latent_dim == n:
        return x0
    return torch.cat([x0, x0.new_zeros((*x0.shape[:-1], latent_dim - n))], dim=-1)


def forced_rollout(
    model: LatentModel,
    readout: Readout | None,
    batch: torch.Tensor,
    weights: torch.Tensor,
    inputs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced rollout of a batch.

    Parameters
    ----------
    model : LatentModel
    readout : Readout or None (None: identity readout with zero initial map)
    batch : Tensor, shape (S, T + 1, N)
    weights : Tensor, shape (T,)
        Forcing weight a_t of each step (:func:`forcing_weights`).
    inputs : Tensor, shape (S, T + 1, K), optional
        External inputs; ``inputs[:, t]`` drives the step that predicts ``batch[:, t]``.

    Returns
    -------
    predictions : Tensor, shape (S, T, N), the observations of z_1..z_T
    states : Tensor, shape (S, T, M), the forced states z~_0..z~_{T-1} each step started from
    """
    M = model.latent_dim
    if readout is None:
        z = initial_state(batch[:, 0], M)
        observe, teacher, k = (lambda v: v[..., : batch.shape[-1]]), (lambda x: x), batch.shape[-1]
    else:
        z = readout.initial_state(batch[:, 0])
        observe, teacher, k = readout.observe, readout.teacher, readout.n_forced
    targets = teacher(batch)
    preds, states = [], []
    for t in range(1, batch.shape[1]):
        states.append(z)
        z = model.step(z, None if inputs is None else inputs[:, t])
        preds.append(observe(z))
        a = weights[t - 1]
        # per-model weights under torch.func.vmap (training/batched_torch.py) cannot be branched
        # on: every step is forced there, and a = 0 then leaves z unchanged (z + 0 (x - z) = z)
        if is_batchedtensor(a) or a != 0:
            forced = z[:, :k] + a * (targets[:, t] - z[:, :k])
            z = forced if k == M else torch.cat([forced, z[:, k:]], dim=-1)
    return torch.stack(preds, dim=1), torch.stack(states, dim=1)


def forced_loss(model, readout, batch, weights, inputs=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared one-step prediction error under teacher forcing, and the forced states."""
    preds, states = forced_rollout(model, readout, batch, weights, inputs)
    return torch.mean((preds - batch[:, 1:]) ** 2), states


def gtf_predictions(model: LatentModel, batch: torch.Tensor, alpha: float) -> torch.Tensor:
    """One-step predictions under GTF with a fixed alpha and an identity readout: (S, T, N)."""
    return forced_rollout(model, None, batch, forcing_weights("gtf", batch.shape[1] - 1, alpha))[0]


class AdaptiveAlpha:
    """The adaptive GTF schedule of Hess et al. (2023).

    Every ``every`` optimiser steps, ``kappa`` = the largest (over the batch's
    sequences) geometric mean of the spectral norms ``||J_t||`` of the model's
    Jacobians along the forced states; ``alpha^ = max(0, 1 - 1/kappa)``. An
    ``alpha^`` above the current alpha is taken at once (upward jump); otherwise
    alpha decays slowly, ``alpha <- 0.999 alpha + 0.001 alpha^``. Training starts
    at ``alpha = start`` (1 in the paper).
    """

    def __init__(self, start: float = 1.0, every: int = 5, decay: float = 0.999) -> None:
        self.alpha, self.every, self.decay = float(start), int(every), float(decay)
        self.n_updates = 0

    @staticmethod
    def estimate(model: LatentModel, states: torch.Tensor) -> float:
        """``alpha^`` from the forced states (S, T, M) the rollout started each step from."""
        with torch.no_grad():
            J = model.jacobian(states.detach())
            norms = torch.linalg.matrix_norm(J, ord=2).clamp_min(1e-300)  # (S, T)
            kappa = float(torch.exp(torch.log(norms).mean(dim=1)).max())
        return max(0.0, 1.0 - 1.0 / kappa) if kappa > 0 else 0.0

    def due(self, step: int) -> bool:
        """Whether optimiser step ``step`` (1-based) should re-estimate alpha."""
        return (step - 1) % self.every == 0

    def update(self, alpha_hat: float) -> float:
        if alpha_hat > self.alpha:
            self.alpha = alpha_hat
        else:
            self.alpha = self.decay * self.alpha + (1 - self.decay) * alpha_hat
        self.n_updates += 1
        return self.alpha

    def state_dict(self) -> dict:
        return {"alpha": self.alpha, "n_updates": self.n_updates}

    def load_state_dict(self, state: dict) -> None:
        self.alpha, self.n_updates = float(state["alpha"]), int(state["n_updates"])


def estimate_stf_tau(x: np.ndarray, max_lag: int | None = None) -> int:
    """STF interval from the data: the first local minimum of the autocorrelation
    function, averaged over channels (Mikhaeil et al. 2022 use the predictability time;
    the first ACF minimum is its data-only estimate).

    Parameters
    ----------
    x : ndarray, shape (T, N)
    max_lag : int, optional
        Largest lag searched (default T // 4); when the averaged ACF has no local
        minimum up to there, its first zero crossing, else ``max_lag``.

    Returns
    -------
    int >= 1
    """
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    T = x.shape[0]
    max_lag = int(max_lag or max(T // 4, 2))
    xc = x - x.mean(0)
    var = (xc ** 2).sum(0)
    var[var == 0] = np.inf
    n_fft = 1 << int(math.ceil(math.log2(2 * T)))
    spec = np.fft.rfft(xc, n=n_fft, axis=0)
    acf = np.fft.irfft(spec * np.conj(spec), n=n_fft, axis=0)[: max_lag + 2] / var
    acf = acf.mean(axis=1)
    for lag in range(1, len(acf) - 1):
        if acf[lag] < acf[lag - 1] and acf[lag] <= acf[lag + 1]:
            return lag
    below = np.nonzero(acf <= 0)[0]
    return int(below[0]) if len(below) else max_lag
