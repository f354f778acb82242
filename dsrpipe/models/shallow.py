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
    K : int
        External inputs (0: none).

    Attributes
    ----------
    A : (M,)  diagonal auto-regression weights, init U(0.5, 0.9)
    W1 : (M, L)  init U(+-1/sqrt(L))
    W2 : (L, M)  init U(+-1/sqrt(M))
    h1 : (M,)  init 0
    h2 : (L,)  init U(+-1/sqrt(L))

    The region code is ``W2 z + h2 > 0`` (L), followed for the clipped form by
    ``W2 z > 0`` (L).
    """

    name = "shPLRNN"
    piecewise_linear = True
    clipped = False

    def __init__(self, M: int, L: int, K: int = 0) -> None:
        super().__init__(M, K)
        self.hidden_dim = int(L)
        self.A = nn.Parameter(torch.empty(M).uniform_(0.5, 0.9))
        self.W1 = nn.Parameter(torch.empty(M, L).uniform_(-1 / math.sqrt(L), 1 / math.sqrt(L)))
        self.W2 = nn.Parameter(torch.empty(L, M).uniform_(-1 / math.sqrt(M), 1 / math.sqrt(M)))
        self.h1 = nn.Parameter(torch.zeros(M))
        self.h2 = nn.Parameter(torch.empty(L).uniform_(-1 / math.sqrt(L), 1 / math.sqrt(L)))

    def _shape(self) -> dict:
        return {"L": self.hidden_dim}

    def _pre(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W2.T + self.h2

    def _map(self, z: torch.Tensor) -> torch.Tensor:
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

    def region(self, z: torch.Tensor) -> torch.Tensor:
        pre = self._pre(z)
        if self.clipped:
            return torch.cat([pre > 0, pre - self.h2 > 0], dim=-1)
        return pre > 0

    def affine(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # hidden = (d - e) * W2 z + d * h2 in the region (e = 0 unless clipped)
        L = self.hidden_dim
        d = code[..., :L].to(self.A.dtype)
        slope = d - code[..., L:].to(self.A.dtype) if self.clipped else d
        J = (self.W1 * slope.unsqueeze(-2)) @ self.W2 + torch.diag_embed(self.A.expand(*code.shape[:-1], -1))
        c = (d * self.h2) @ self.W1.T + self.h1
        return J, c

    def norm_bound(self) -> float:
        with torch.no_grad():
            w = torch.linalg.matrix_norm(self.W1, ord=2) * torch.linalg.matrix_norm(self.W2, ord=2)
            # the ReLU slopes (d - e) lie in [-1, 1] for both forms
            return float(self.A.abs().max() + w)


class ClippedShallowPLRNN(ShallowPLRNN):
    """Clipped shPLRNN: ``A*z + W1 [relu(W2 z + h2) - relu(W2 z)] + h1``."""

    name = "clipped-shPLRNN"
    clipped = True
