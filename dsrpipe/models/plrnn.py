"""The vanilla PLRNN (Koppe et al. 2019) and the almost-linear RNN (Brenner et al. 2024).

PLRNN: ``F(z) = A * z + W relu(z) + h`` with diagonal A and off-diagonal W.
ALRNN: the same map with the ReLU on the last P of the M units only, the
first M - P units pass through linearly; it has only 2^P linear subregions,
so its sign pattern is a short symbolic code.
"""

from __future__ import annotations

import torch
from torch import nn

from dsrpipe.models.base import LatentModel, lab_initialisation, off_diagonal


class PLRNN(LatentModel):
    """Vanilla PLRNN with M latent units.

    Attributes
    ----------
    A : (M,)  diagonal of the lab's initialisation matrix (see :func:`lab_initialisation`)
    W : (M, M)  off-diagonal part of it (the diagonal of W is masked out in the map)
    h : (M,)  init 0

    The region code is ``z > 0`` (M).
    """

    name = "PLRNN"
    piecewise_linear = True

    def __init__(self, M: int, K: int = 0) -> None:
        super().__init__(M, K)
        A, W = lab_initialisation(M)
        self.A = nn.Parameter(A)
        self.W = nn.Parameter(W)
        self.h = nn.Parameter(torch.zeros(M))

    def _slope(self, code: torch.Tensor) -> torch.Tensor:
        """Derivative of the nonlinearity phi per unit in the region ``code``."""
        return code.to(self.A.dtype)

    def _phi(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z)

    def _map(self, z: torch.Tensor) -> torch.Tensor:
        return self.A * z + self._phi(z) @ off_diagonal(self.W).T + self.h

    def region(self, z: torch.Tensor) -> torch.Tensor:
        return z > 0

    def affine(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slope = self._slope(code)
        J = off_diagonal(self.W) * slope.unsqueeze(-2) + torch.diag_embed(self.A.expand(*code.shape[:-1], -1))
        return J, self.h.expand(*code.shape[:-1], -1)

    def norm_bound(self) -> float:
        with torch.no_grad():
            return float(self.A.abs().max() + torch.linalg.matrix_norm(off_diagonal(self.W), ord=2))


class ALRNN(PLRNN):
    """Almost-linear RNN: ``A*z + W phi(z) + h``, phi = identity on the first M - P units
    and ReLU on the last P. The region code is ``z[M-P:] > 0`` (P)."""

    name = "ALRNN"

    def __init__(self, M: int, P: int, K: int = 0) -> None:
        if not 0 <= P <= M:
            raise ValueError(f"ALRNN needs 0 <= P <= M, got P = {P}, M = {M}")
        super().__init__(M, K)
        self.n_relu = int(P)

    def _shape(self) -> dict:
        return {"P": self.n_relu}

    def _phi(self, z: torch.Tensor) -> torch.Tensor:
        linear = self.latent_dim - self.n_relu
        return torch.cat([z[..., :linear], torch.relu(z[..., linear:])], dim=-1)

    def region(self, z: torch.Tensor) -> torch.Tensor:
        return z[..., self.latent_dim - self.n_relu:] > 0

    def _slope(self, code: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(*code.shape[:-1], self.latent_dim - self.n_relu, dtype=self.A.dtype, device=code.device)
        return torch.cat([ones, code.to(self.A.dtype)], dim=-1)
