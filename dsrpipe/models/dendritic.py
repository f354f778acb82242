"""Dendritic PLRNN (Brenner et al. 2022, ICML) and its clipped form.

``F(z) = A * z + W phi(z) + h`` with the dendritic basis expansion
``phi(z)_i = sum_b alpha_b relu(z_i - H_ib)``; the clipped form uses the basis
``relu(z_i - H_ib) - relu(z_i)``, bounded for every z, so orbits stay bounded
when ``max|A| < 1``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dsrpipe.models.base import LatentModel, lab_initialisation, off_diagonal


class DendriticPLRNN(LatentModel):
    """dendPLRNN with M latent units and B bases.

    Attributes
    ----------
    A : (M,), W : (M, M) off-diagonal  -- the lab's PLRNN initialisation
    h : (M,)  init 0
    alpha : (B,)  init U(+-1/sqrt(B))
    H : (M, B)  thresholds, init N(0, 1)

    The region code is ``z_i > H_ib`` flattened (M*B), followed for the clipped
    form by ``z > 0`` (M).
    """

    name = "dendPLRNN"
    piecewise_linear = True
    clipped = False

    def __init__(self, M: int, B: int, K: int = 0) -> None:
        super().__init__(M, K)
        self.n_bases = int(B)
        A, W = lab_initialisation(M)
        self.A = nn.Parameter(A)
        self.W = nn.Parameter(W)
        self.h = nn.Parameter(torch.zeros(M))
        self.alpha = nn.Parameter(torch.empty(B).uniform_(-1 / math.sqrt(B), 1 / math.sqrt(B)))
        self.H = nn.Parameter(torch.randn(M, B))

    def _shape(self) -> dict:
        return {"B": self.n_bases}

    def _phi(self, z: torch.Tensor) -> torch.Tensor:
        basis = torch.relu(z.unsqueeze(-1) - self.H)
        if self.clipped:
            basis = basis - torch.relu(z).unsqueeze(-1)
        return basis @ self.alpha

    def _map(self, z: torch.Tensor) -> torch.Tensor:
        return self.A * z + self._phi(z) @ off_diagonal(self.W).T + self.h

    def region(self, z: torch.Tensor) -> torch.Tensor:
        code = (z.unsqueeze(-1) - self.H > 0).flatten(-2)
        return torch.cat([code, z > 0], dim=-1) if self.clipped else code

    def affine(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        M, B = self.latent_dim, self.n_bases
        d = code[..., : M * B].unflatten(-1, (M, B)).to(self.A.dtype)
        slope = d @ self.alpha  # (..., M)
        if self.clipped:
            slope = slope - code[..., M * B:].to(self.A.dtype) * self.alpha.sum()
        offset = -(d * self.H) @ self.alpha  # phi = slope * z + offset in the region
        W = off_diagonal(self.W)
        J = W * slope.unsqueeze(-2) + torch.diag_embed(self.A.expand(*code.shape[:-1], -1))
        return J, offset @ W.T + self.h

    def norm_bound(self) -> float:
        with torch.no_grad():
            # |phi'| <= sum_b |alpha_b| for both forms (slopes d - e lie in [-1, 1])
            w = torch.linalg.matrix_norm(off_diagonal(self.W), ord=2)
            return float(self.A.abs().max() + w * self.alpha.abs().sum())


class ClippedDendriticPLRNN(DendriticPLRNN):
    """Clipped dendPLRNN: basis ``relu(z - H_b) - relu(z)``."""

    name = "clipped-dendPLRNN"
    clipped = True
