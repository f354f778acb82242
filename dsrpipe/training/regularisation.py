"""Parameter regularisation: L2 on coupling weights, manifold-attractor regularisation.

Manifold-attractor regularisation (Schmidt et al. 2021, ICLR) pushes a
fraction of the latent units towards a line attractor: their auto-regression
weights towards 1, their incoming couplings and biases towards 0. It is
applied to the last ``round(fraction * M)`` units (the first units carry the
readout under an identity readout).
"""

from __future__ import annotations

import torch

from dsrpipe.models.base import LatentModel

#: parameters whose rows are the incoming weights of latent units (target unit first)
COUPLINGS = ("W", "W1")
#: per-unit biases of the latent update
BIASES = ("h", "h1")
#: all weight matrices under plain L2
L2_WEIGHTS = ("W", "W1", "W2", "C")


def n_regularised(model: LatentModel, fraction: float) -> int:
    return int(round(fraction * model.latent_dim))


def regularisation(model: LatentModel, l2: float = 0.0, mar_fraction: float = 0.0,
                   mar_lambda: float = 1.0) -> torch.Tensor | float:
    """The penalty added to the training loss (0.0 when both are off)."""
    total: torch.Tensor | float = 0.0
    params = dict(model.named_parameters())
    if l2 > 0:
        total = total + l2 * sum((params[n] ** 2).sum() for n in L2_WEIGHTS if n in params)
    k = n_regularised(model, mar_fraction)
    if mar_lambda > 0 and k > 0:
        units = slice(model.latent_dim - k, model.latent_dim)
        mar = ((1 - params["A"][units]) ** 2).sum()
        for n in COUPLINGS:
            if n in params:
                mar = mar + (params[n][units] ** 2).sum()
        for n in BIASES:
            if n in params:
                mar = mar + (params[n][units] ** 2).sum()
        total = total + mar_lambda * mar
    return total
