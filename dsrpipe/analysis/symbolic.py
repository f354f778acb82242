"""Symbolic dynamics of piecewise-linear models: which linear subregions an orbit visits.

Each state of a piecewise-linear model lies in one linear subregion, named
by its symbolic code ``model.region(z)`` (a boolean vector of length R). The
sequence of codes along an orbit on the attractor is its symbolic
trajectory; the number of distinct codes measures how much of the model's
(up to 2^R) linear pieces the attractor actually uses (Brenner et al. 2024
report it for ALRNNs, where a handful of regions typically carry the dynamics).

References
----------
Brenner, M., Hemmer, C. J., Monfared, Z. & Durstewitz, D. (2024). Almost-linear
RNNs yield highly interpretable symbolic codes in dynamical systems
reconstruction. NeurIPS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dsrpipe import DsrpipeError
from dsrpipe.analysis.lyapunov import float64_model, model_device, single_threaded

__all__ = ["SymbolicDynamics", "symbolic_dynamics", "visited_regions"]


@dataclass(eq=False)
class SymbolicDynamics:
    """Distinct linear subregions along an orbit.

    Attributes
    ----------
    codes : bool ndarray, shape (U, R)
        The distinct region codes, most visited first.
    counts : ndarray, shape (U,)
        Number of states in each.
    sequence : ndarray, shape (T,)
        Index into ``codes`` of each state: the symbolic trajectory.
    """

    codes: np.ndarray
    counts: np.ndarray
    sequence: np.ndarray

    @property
    def n_regions(self) -> int:
        return int(len(self.codes))

    @property
    def region_size(self) -> int:
        return int(self.codes.shape[1])

    def to_dict(self, max_codes: int = 20) -> dict:
        """JSON-ready summary: counts and the ``max_codes`` most visited codes as 0/1 strings."""
        n = int(self.counts.sum())
        return {
            "n_regions": self.n_regions,
            "region_size": self.region_size,
            "n_states": n,
            "top_codes": ["".join("1" if b else "0" for b in c) for c in self.codes[:max_codes]],
            "top_fractions": [float(k / n) for k in self.counts[:max_codes]],
        }


def symbolic_dynamics(model, orbit) -> SymbolicDynamics:
    """Symbolic trajectory of an orbit of a piecewise-linear model.

    Parameters
    ----------
    model : piecewise-linear model (with ``region``)
    orbit : array_like, shape (T, M)
        Latent states, e.g. after a transient on the attractor.

    Returns
    -------
    SymbolicDynamics
    """
    if not hasattr(model, "region") or not getattr(model, "piecewise_linear", True):
        raise DsrpipeError(f"{type(model).__name__} is not piecewise linear (no region codes)")
    model = float64_model(model)
    z = torch.as_tensor(np.asarray(orbit, dtype=np.float64), device=model_device(model))
    if z.ndim != 2 or z.shape[1] != model.latent_dim or len(z) == 0:
        raise DsrpipeError(f"orbit must have shape (T, {model.latent_dim}), got {tuple(z.shape)}")
    with torch.no_grad():
        bits = model.region(z).cpu().numpy()
    packed = np.packbits(bits, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -counts))  # most visited first, ties by first visit
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return SymbolicDynamics(codes=bits[first[order]], counts=counts[order], sequence=rank[inverse.ravel()])


def visited_regions(model, z0, n_steps: int = 10_000, n_transient: int = 1000) -> SymbolicDynamics:
    """Symbolic dynamics of the orbit from ``z0`` (M,) after ``n_transient`` steps, over ``n_steps`` states."""
    if n_steps < 1 or n_transient < 0:
        raise DsrpipeError("need n_steps >= 1 and n_transient >= 0")
    model = float64_model(model)
    z0 = torch.as_tensor(np.asarray(z0, dtype=np.float64), device=model_device(model))
    with single_threaded():
        orbit = model.generate(z0, n_transient + n_steps)[n_transient:]
    if not torch.isfinite(orbit).all():
        raise DsrpipeError("the orbit diverged (non-finite states); no symbolic dynamics")
    return symbolic_dynamics(model, orbit.cpu().numpy())
