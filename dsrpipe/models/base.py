"""The interface every latent model implements.

A model is a ``torch.nn.Module`` defining a map ``z_t = F(z_{t-1}) + C s_t``
on the latent space R^M, with optional external inputs s_t in R^K. Training,
orbit generation, Lyapunov spectra and fixed points all call the model's own
:meth:`step` and :meth:`jacobian`; the equations are written once, in the
model class.

Piecewise-linear models also describe their linear subregions: :meth:`region`
gives the symbolic code of the region a state lies in (a boolean vector, one
entry per ReLU switch) and :meth:`affine` the affine map ``F(z) = J z + c``
that holds in a region. SCYFI, exhaustive fixed-point search and symbolic
dynamics use these two; the Jacobian of a PL model is ``affine(region(z))[0]``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LatentModel(nn.Module):
    """Base class: subclasses implement ``_map`` (the autonomous step), ``jacobian``
    (or ``region`` + ``affine`` for PL models), ``norm_bound`` and ``hyperparameters``.

    Parameters
    ----------
    latent_dim : int
        M.
    input_dim : int
        K, the number of external input channels (0: autonomous). With inputs the
        model has a parameter ``C`` (M, K), initialised U(+-1/sqrt(K)).
    """

    #: registry name, set by subclasses
    name: str = ""
    #: True when the map is piecewise linear (``region`` and ``affine`` exist)
    piecewise_linear: bool = False

    def __init__(self, latent_dim: int, input_dim: int = 0) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.input_dim = int(input_dim)
        if self.input_dim:
            bound = 1 / math.sqrt(self.input_dim)
            self.C = nn.Parameter(torch.empty(self.latent_dim, self.input_dim).uniform_(-bound, bound))

    def _map(self, z: torch.Tensor) -> torch.Tensor:
        """The autonomous map F(z): (..., M) -> (..., M)."""
        raise NotImplementedError

    def step(self, z: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        """One step ``F(z) + C s``. ``z``: (..., M), ``s``: (..., K) or None -> (..., M)."""
        out = self._map(z)
        if s is not None and self.input_dim:
            out = out + s @ self.C.T
        return out

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """Analytic Jacobian dF/dz at ``z``: (..., M) -> (..., M, M)."""
        if not self.piecewise_linear:
            raise NotImplementedError
        return self.affine(self.region(z))[0]

    def region(self, z: torch.Tensor) -> torch.Tensor:
        """Symbolic code of the linear subregion of ``z``: (..., M) -> bool (..., R)."""
        raise NotImplementedError

    def affine(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The affine map ``F(z) = J z + c`` in the region ``code`` (..., R): J (..., M, M), c (..., M)."""
        raise NotImplementedError

    @property
    def region_size(self) -> int:
        """R, the length of a region code (there are at most 2^R linear subregions)."""
        return int(self.region(torch.zeros(self.latent_dim, dtype=next(self.parameters()).dtype)).shape[-1])

    def norm_bound(self) -> float:
        """An upper bound on the spectral norm of the Jacobian anywhere."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        return self.step(z, s)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hyperparameters(self) -> dict:
        """Constructor keyword arguments, enough to rebuild the model with ``build_model``."""
        out = {"M": self.latent_dim, **self._shape()}
        if self.input_dim:
            out["K"] = self.input_dim
        return out

    def _shape(self) -> dict:
        """Model-specific size arguments (besides M and K)."""
        return {}

    @torch.no_grad()
    def generate(self, z0: torch.Tensor, n_steps: int, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Iterate the map ``n_steps`` times from ``z0`` (..., M); returns (n_steps, ..., M).

        The first row is ``F(z0) + C s_0``; ``inputs`` (n_steps, ..., K) drives the
        model when given. A single float64 state on the CPU without inputs goes
        through the model's compiled orbit kernel when it has one
        (:mod:`dsrpipe.models.kernels`).
        """
        from dsrpipe.models.kernels import has_orbit_kernel, orbit

        if (inputs is None and z0.ndim == 1 and z0.dtype == torch.float64 and z0.device.type == "cpu"
                and has_orbit_kernel(self)):
            return orbit(self, z0, n_steps)
        out = torch.empty((n_steps, *z0.shape), dtype=z0.dtype, device=z0.device)
        z = z0
        for t in range(n_steps):
            z = self.step(z, None if inputs is None else inputs[t])
            out[t] = z
        return out


def lab_initialisation(M: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The lab's PLRNN initialisation: diagonal A and off-diagonal W from
    ``K = (R^T R / M + I) / lambda_max``, R ~ N(0, 1) (M x M); K is positive definite
    with spectral radius 1."""
    R = torch.randn(M, M)
    K = R.T @ R / M + torch.eye(M)
    K = K / torch.linalg.eigvalsh(K).max()
    return torch.diagonal(K).clone(), K - torch.diag(torch.diagonal(K))


def off_diagonal(W: torch.Tensor) -> torch.Tensor:
    """W with its diagonal set to zero (the diagonal belongs to A)."""
    return W - torch.diag_embed(torch.diagonal(W, dim1=-2, dim2=-1))
