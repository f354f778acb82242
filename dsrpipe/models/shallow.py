"""Shallow PLRNN (Hess et al. 2023) and its clipped form.

``F(z) = A * z + W1 relu(W2 z + h2) + h1``; the clipped variant replaces the
ReLU term by ``relu(W2 z + h2) - relu(W2 z)``, which keeps orbits bounded when
``max|A| < 1``. Parameter names and shapes follow the CNS 2023 tutorial's
checkpoints, so a state dict trained there loads with ``load_state_dict``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dsrpipe.models.base import LatentModel


class ShallowPLRNN(LatentModel):
    """Shallow PLRNN with M latent and L hidden units.

    Parameters
    ----------
    M : int
        Latent dimension.
    L : int
        Hidden (ReLU) dimension.

    Attributes
    ----------
    A : (M,)  diagonal auto-regression weights, init U(0.5, 0.9)
    W1 : (M, L)  init U(+-1/sqrt(L))
    W2 : (L, M)  init U(+-1/sqrt(M))
    h1 : (M,)  init 0
    h2 : (L,)  init U(+-1/sqrt(L))
    """

    name = "shPLRNN"
    piecewise_linear = True
    clipped = False

    def __init__(self, M: int, L: int) -> None:
        super().__init__(M)
        self.hidden_dim = int(L)
        self.A = nn.Parameter(torch.empty(M).uniform_(0.5, 0.9))
        self.W1 = nn.Parameter(torch.empty(M, L).uniform_(-1 / math.sqrt(L), 1 / math.sqrt(L)))
        self.W2 = nn.Parameter(torch.empty(L, M).uniform_(-1 / math.sqrt(M), 1 / math.sqrt(M)))
        self.h1 = nn.Parameter(torch.zeros(M))
        self.h2 = nn.Parameter(torch.empty(L).uniform_(-1 / math.sqrt(L), 1 / math.sqrt(L)))

    def hyperparameters(self) -> dict:
        return {"M": self.latent_dim, "L": self.hidden_dim}

    def _pre(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W2.T + self.h2

    def step(self, z: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        pre = self._pre(z)
        hidden = torch.relu(pre)
        if self.clipped:
            hidden = hidden - torch.relu(pre - self.h2)
        return self.A * z + hidden @ self.W1.T + self.h1

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        # J = diag(A) + W1 diag(d) W2, d = 1[W2 z + h2 > 0] (minus 1[W2 z > 0] if clipped)
        pre = self._pre(z)
        d = (pre > 0).to(z.dtype)
        if self.clipped:
            d = d - (pre - self.h2 > 0).to(z.dtype)
        J = (self.W1 * d.unsqueeze(-2)) @ self.W2
        return J + torch.diag_embed(self.A.expand_as(z))

    def norm_bound(self) -> float:
        with torch.no_grad():
            w = torch.linalg.matrix_norm(self.W1, ord=2) * torch.linalg.matrix_norm(self.W2, ord=2)
            return float(self.A.abs().max() + (2 * w if self.clipped else w))


class ClippedShallowPLRNN(ShallowPLRNN):
    """Clipped shPLRNN: ``A*z + W1 [relu(W2 z + h2) - relu(W2 z)] + h1``."""

    name = "clipped-shPLRNN"
    clipped = True
