"""Generalized teacher forcing (Hess et al. 2023) with a fixed alpha."""

from __future__ import annotations

import torch

from dsrpipe.models.base import LatentModel


def initial_state(x0: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """Latent state from the first observation: data in the first N units, zeros elsewhere."""
    n = x0.shape[-1]
    if latent_dim == n:
        return x0
    pad = x0.new_zeros((*x0.shape[:-1], latent_dim - n))
    return torch.cat([x0, pad], dim=-1)


def gtf_predictions(model: LatentModel, batch: torch.Tensor, alpha: float) -> torch.Tensor:
    """One-step predictions under generalized teacher forcing.

    ``z_t = F(z~_{t-1})``, ``z~_t = (1 - alpha) z_t + alpha x_t`` on the
    first N (observed) latent units, identity readout.

    Parameters
    ----------
    batch : Tensor, shape (S, T + 1, N)

    Returns
    -------
    Tensor, shape (S, T, N): predictions of ``batch[:, 1:]``.
    """
    n = batch.shape[-1]
    z = initial_state(batch[:, 0], model.latent_dim)
    preds = []
    for t in range(1, batch.shape[1]):
        z = model.step(z)
        preds.append(z[:, :n])
        forced = (1 - alpha) * z[:, :n] + alpha * batch[:, t]
        z = forced if z.shape[-1] == n else torch.cat([forced, z[:, n:]], dim=-1)
    return torch.stack(preds, dim=1)


def gtf_loss(model: LatentModel, batch: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mean squared one-step prediction error under GTF."""
    return torch.mean((gtf_predictions(model, batch, alpha) - batch[:, 1:]) ** 2)
