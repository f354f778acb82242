"""The interface every latent model implements.

A model is a ``torch.nn.Module`` defining a map ``z_t = F(z_{t-1}, s_t)`` on
the latent space R^M. Training, orbit generation, Lyapunov spectra and fixed
points all call the model's own :meth:`step` and :meth:`jacobian`; the
equations are written once, in the model class.
"""

from __future__ import annotations

import torch
from torch import nn


class LatentModel(nn.Module):
    """Base class: subclasses implement ``step``, ``jacobian`` and ``norm_bound``."""

    #: registry name, set by subclasses
    name: str = ""
    #: True when the map is piecewise linear (exact fixed points by linear solves)
    piecewise_linear: bool = False

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)

    def step(self, z: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        """One step of the map. ``z``: (..., M) -> (..., M)."""
        raise NotImplementedError

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """Analytic Jacobian dF/dz at ``z``: (..., M) -> (..., M, M)."""
        raise NotImplementedError

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
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, z0: torch.Tensor, n_steps: int) -> torch.Tensor:
        """Iterate the map ``n_steps`` times from ``z0`` (..., M); returns (n_steps, ..., M).

        The first row is ``F(z0)``. A single float64 state on the CPU goes through the
        model's compiled orbit kernel when it has one (:mod:`dsrpipe.models.kernels`).
        """
        from dsrpipe.models.kernels import has_orbit_kernel, orbit

        if z0.ndim == 1 and z0.dtype == torch.float64 and z0.device.type == "cpu" and has_orbit_kernel(self):
            return orbit(self, z0, n_steps)
        out = torch.empty((n_steps, *z0.shape), dtype=z0.dtype)
        z = z0
        for t in range(n_steps):
            z = self.step(z)
            out[t] = z
        return out
