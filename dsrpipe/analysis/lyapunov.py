"""Lyapunov spectra of maps by QR re-orthonormalisation, and the Kaplan-Yorke dimension.

The map only needs ``step(z)`` and ``jacobian(z)`` on float64 torch tensors
of shape (..., M): any :class:`~dsrpipe.models.base.LatentModel` or one of
the reference systems in :mod:`dsrpipe.systems`.

References
----------
Benettin, G., Galgani, L., Giorgilli, A. & Strelcyn, J.-M. (1980). Lyapunov
characteristic exponents for smooth dynamical systems. Meccanica 15, 9-30.
Kaplan, J. L. & Yorke, J. A. (1979). Chaotic behavior of multidimensional
difference equations. Lecture Notes in Mathematics 730, 204-227.
"""

from __future__ import annotations

import copy
import functools
import logging
import time

import numpy as np
import torch

from dsrpipe import DsrpipeError
from dsrpipe.models.kernels import has_orbit_kernel, orbit

logger = logging.getLogger(__name__)

__all__ = ["lyapunov_spectrum", "kaplan_yorke_dimension"]

#: rows per batched ``model.jacobian`` call (fewer for large M, see lyapunov_spectrum)
CHUNK = 10_000


def _qr_accumulate_py(J, Q, log_sum, count, every):
    """Apply ``Q <- J[t] Q`` for every t, QR-ing every ``every`` products.

    ``J`` (n, M, M), ``Q`` (M, M); ``log_sum`` (M,) is updated in place with
    ``log|diag R|``; ``count`` is the number of products since the last QR.
    Returns the new ``(Q, count)``. Written so that numba can compile it.
    """
    M = Q.shape[0]
    for t in range(J.shape[0]):
        Q = J[t] @ Q
        count += 1
        if count >= every:
            q, R = np.linalg.qr(Q)
            Q = np.ascontiguousarray(q)
            for i in range(M):
                log_sum[i] += np.log(np.abs(R[i, i]))
            count = 0
    return Q, count


@functools.cache
def _qr_kernel():
    """The numba-compiled QR loop (cached on disk), or the Python one without numba."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is installed in the dev env
        logger.info("numba not available; using the (slower) pure NumPy QR loop")
        return _qr_accumulate_py
    return numba.njit(cache=True)(_qr_accumulate_py)


def float64_model(model):
    """``model`` itself, or a float64 deep copy if it is an nn.Module of another dtype.

    Shared by the analysis modules, which all work in float64.
    """
    if isinstance(model, torch.nn.Module):
        tensors = [*model.parameters(), *model.buffers()]
        if any(t.is_floating_point() and t.dtype != torch.float64 for t in tensors):
            model = copy.deepcopy(model).double()
    return model


def model_device(model) -> torch.device:
    """Device of an nn.Module's parameters; CPU for anything else."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def _torch_orbit(model, z, n_steps, n_transient):
    M = z.shape[0]
    traj = torch.empty((n_steps, M), dtype=torch.float64, device=z.device)
    with torch.inference_mode():  # cheaper than no_grad for small per-step ops
        for _ in range(n_transient):
            z = model.step(z)
        # states go to a short list, stacked every CHUNK (cheaper than row writes)
        states = [z]
        filled = 0
        for _ in range(1, n_steps):
            z = model.step(z)
            states.append(z)
            if len(states) == CHUNK:
                traj[filled : filled + CHUNK] = torch.stack(states)
                filled += CHUNK
                states = []
        if states:
            traj[filled:] = torch.stack(states)
    return traj


def lyapunov_spectrum(
    model,
    z0,
    n_steps: int,
    n_transient: int = 1000,
    dt: float | None = None,
    qr_every: int = 1,
) -> np.ndarray:
    """Lyapunov spectrum of the map ``model.step`` along the orbit from ``z0``.

    The orbit runs ``n_transient`` steps, then ``n_steps`` states are
    recorded; all their Jacobians come from batched ``model.jacobian`` calls
    (``CHUNK`` rows at a time, fewer for large M). Tangent vectors evolve as
    ``Q <- J(z_t) Q`` with a QR decomposition every ``qr_every`` steps
    (compiled with numba when available); the exponents are the
    accumulated ``log|diag R|`` divided by ``n_steps`` (and by ``dt``).
    Everything runs in float64. The orbit is iterated under
    ``torch.inference_mode`` (``step`` must not need autograd).

    Parameters
    ----------
    model : object with ``step`` and ``jacobian``
        The map; an ``nn.Module`` of another dtype is evaluated on a float64
        deep copy.
    z0 : array_like or Tensor, shape (M,)
        Initial state.
    n_steps : int
        Steps over which the exponents are averaged (Jacobians used).
    n_transient : int
        Steps discarded before averaging.
    dt : float, optional
        Time per step; if given, exponents are per time unit, else per step.
    qr_every : int
        Steps between re-orthonormalisations (1 is safest; larger values
        are faster but may overflow for strongly expanding maps).

    Returns
    -------
    ndarray, shape (M,)
        Exponents, largest first.

    Raises
    ------
    DsrpipeError
        For bad arguments, or an orbit that leaves the finite numbers.
    """
    if n_steps < 1 or n_transient < 0 or qr_every < 1:
        raise DsrpipeError("need n_steps >= 1, n_transient >= 0 and qr_every >= 1")
    if dt is not None and dt <= 0:
        raise DsrpipeError(f"dt must be positive, got {dt}")
    model = float64_model(model)
    z = torch.as_tensor(z0, dtype=torch.float64).detach().clone().to(model_device(model))
    if z.ndim != 1:
        raise DsrpipeError(f"z0 must have shape (M,), got {tuple(z.shape)}")
    M = z.shape[0]

    t_start = time.perf_counter()
    if has_orbit_kernel(model):  # compiled orbit of the model's map (tested against its step)
        z = z.cpu()
        traj = torch.cat([z[None], orbit(model, z, n_transient + n_steps - 1)])[n_transient:]
    else:
        traj = _torch_orbit(model, z, n_steps, n_transient)
    if not torch.isfinite(traj).all():
        raise DsrpipeError("the orbit diverged (non-finite states); no Lyapunov spectrum")
    t_orbit = time.perf_counter()

    kernel = _qr_kernel()
    Q = np.eye(M)
    log_sum = np.zeros(M)
    count = 0
    chunk = max(1, min(CHUNK, 2**24 // (M * M)))  # at most ~128 MB of Jacobians at once
    with torch.no_grad():
        for start in range(0, n_steps, chunk):
            J = model.jacobian(traj[start : start + chunk])
            J = np.ascontiguousarray(J.detach().cpu().numpy(), dtype=np.float64)
            Q, count = kernel(J, Q, log_sum, count, qr_every)
    if count:
        _, R = np.linalg.qr(Q)
        log_sum += np.log(np.abs(np.diag(R)))
    exponents = np.sort(log_sum / n_steps)[::-1]
    if dt is not None:
        exponents = exponents / dt
    logger.debug(
        "Lyapunov spectrum, M=%d, %d steps: orbit %.2fs, tangent dynamics %.2fs",
        M,
        n_steps,
        t_orbit - t_start,
        time.perf_counter() - t_orbit,
    )
    return exponents.copy()


def kaplan_yorke_dimension(exponents) -> float:
    """Kaplan-Yorke (Lyapunov) dimension of a spectrum.

    ``D = k + sum_{i<=k} lambda_i / |lambda_{k+1}|`` with k the largest
    number of exponents (sorted decreasingly) whose sum is >= 0.

    Parameters
    ----------
    exponents : array_like, shape (M,)
        Lyapunov exponents, any order.

    Returns
    -------
    float
        0 if the largest exponent is negative; M if the sum of all is >= 0.
    """
    lam = np.sort(np.asarray(exponents, dtype=float).ravel())[::-1]
    if lam.size == 0:
        raise DsrpipeError("empty Lyapunov spectrum")
    if lam[0] < 0:
        return 0.0
    csum = np.cumsum(lam)
    if csum[-1] >= 0:
        return float(lam.size)
    k = int(np.nonzero(csum >= 0)[0][-1]) + 1  # number of exponents summed
    return float(k + csum[k - 1] / abs(lam[k]))
