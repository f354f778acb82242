"""Compiled (Numba) orbit kernels for the piecewise-linear models.

A second, compiled copy of a model's ``step`` for long orbits (generation,
Lyapunov spectra), where one torch call per step costs ~40 us of overhead.
``tests/test_models.py`` checks every kernel against the model's own ``step``.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit


@njit(cache=True, error_model="numpy")
def _shplrnn_orbit(A, W1, W2, h1, h2, clipped, z0, n_steps):
    M = A.shape[0]
    L = h2.shape[0]
    out = np.empty((n_steps, M))
    z = z0.copy()
    hid = np.empty(L)
    for t in range(n_steps):
        for k in range(L):
            p = h2[k]
            for j in range(M):
                p += W2[k, j] * z[j]
            v = p if p > 0.0 else 0.0
            if clipped:
                q = p - h2[k]
                if q > 0.0:
                    v -= q
            hid[k] = v
        for i in range(M):
            acc = A[i] * z[i] + h1[i]
            for k in range(L):
                acc += W1[i, k] * hid[k]
            out[t, i] = acc
        z[:] = out[t]
    return out


def has_orbit_kernel(model) -> bool:
    from dsrpipe.models.shallow import ShallowPLRNN

    return isinstance(model, ShallowPLRNN)


def orbit(model, z0: torch.Tensor, n_steps: int) -> torch.Tensor:
    """``n_steps`` iterates of ``model.step`` from ``z0`` (M,), float64: (n_steps, M).

    Uses the compiled kernel when the model has one, else a torch loop.
    """
    z0 = torch.as_tensor(z0, dtype=torch.float64)
    if has_orbit_kernel(model):
        p = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in model.named_parameters()}
        out = _shplrnn_orbit(p["A"], p["W1"], p["W2"], p["h1"], p["h2"], bool(model.clipped),
                             z0.detach().cpu().numpy().copy(), int(n_steps))
        return torch.from_numpy(out)
    return model.generate(z0, n_steps)  # the model's own torch loop
