"""When an orbit has left every bounded set: the one divergence criterion of the analyses.

A trained map can explode (``|z_t|`` grows without bound, eventually to inf
and NaN). No finite run proves unboundedness, so an orbit counts as
diverged from the first state that is non-finite or whose Euclidean norm
exceeds :data:`DIVERGENCE_NORM`. The data are standardised (unit variance per
channel), so that bound is a million standard deviations: no attractor of a
useful reconstruction comes near it, and an exploding piecewise-linear map
(growth factor > 1 per step) passes it within tens of steps, long before
float64 overflows (~1e308) and the metrics computed on it become huge
numbers instead of a flag.
"""

from __future__ import annotations

import numpy as np

from dsrpipe import DsrpipeError

__all__ = ["DIVERGENCE_NORM", "OrbitDivergedError", "first_divergence"]

#: orbits whose state norm exceeds this (or that hold inf/NaN) count as diverging
DIVERGENCE_NORM = 1e6


class OrbitDivergedError(DsrpipeError):
    """An orbit left the bounded states (see :func:`first_divergence`).

    Attributes
    ----------
    step : int
        Index of the first diverged state, counted from the orbit's initial
        state (index 0), transient included.
    """

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = int(step)


def first_divergence(states, bound: float = DIVERGENCE_NORM) -> int | None:
    """Index of the first state that is non-finite or has norm above ``bound``; None if there is none.

    Parameters
    ----------
    states : array_like, shape (T, M) or (T,)
        An orbit (rows are states; a 1-D array is T scalar states).
    bound : float
        Largest admissible Euclidean norm of a state.

    Returns
    -------
    int or None
    """
    z = np.asarray(states, dtype=float)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2:
        raise DsrpipeError(f"states must have shape (T, M), got {z.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(z).all(axis=1) | ~(np.linalg.norm(np.nan_to_num(z, nan=0.0), axis=1) <= bound)
    idx = np.flatnonzero(bad)
    return int(idx[0]) if idx.size else None
