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

import contextlib
import copy
import functools
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from dsrpipe import DsrpipeError
from dsrpipe.analysis.divergence import OrbitDivergedError, first_divergence
from dsrpipe.models.kernels import has_orbit_kernel, orbit

logger = logging.getLogger(__name__)

__all__ = ["LyapunovResult", "lyapunov_spectrum", "lyapunov_analysis", "kaplan_yorke_dimension",
           "classify_attractor", "orbit_period", "ATTRACTOR_CLASSES"]

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


@contextlib.contextmanager
def single_threaded():
    """Run torch single-threaded inside the block (restored after).

    The analysis loops issue thousands of small batched ops (K x M by M x L);
    intra-op threading only adds synchronisation to those, and on a shared or
    oversubscribed machine the spinning threads slow them down by 10-100x.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def model_device(model) -> torch.device:
    """Device of an nn.Module's parameters; CPU for anything else."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def _torch_orbit(model, z, n_steps, n_transient, bound=None):
    M = z.shape[0]
    traj = torch.empty((n_steps, M), dtype=torch.float64, device=z.device)
    limit = math.inf if bound is None else bound
    with torch.inference_mode():  # cheaper than no_grad for small per-step ops
        for t in range(n_transient):
            z = model.step(z)
            if not (bool(torch.isfinite(z).all()) and float(torch.linalg.vector_norm(z)) <= limit):
                raise _diverged(t + 1, bound)
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


def _diverged(step: int, bound: float | None) -> OrbitDivergedError:
    return OrbitDivergedError(f"the orbit diverged at step {step} (a non-finite state"
                              + ("" if bound is None else f" or one of norm above {bound:g}")
                              + "); no Lyapunov spectrum", step)


@dataclass(eq=False)
class LyapunovResult:
    """A Lyapunov spectrum with its convergence trace.

    Attributes
    ----------
    exponents : ndarray, shape (M,)
        Largest first; per time unit when ``dt`` was given, else per step.
    trace_steps : ndarray, shape (P,)
        Steps (after the transient) at which the running estimate was taken.
    trace : ndarray, shape (P, M)
        Running estimate ``log|diag R|`` accumulated up to ``trace_steps[p]``
        divided by those steps (same units as ``exponents``, each row sorted
        decreasingly); its last row equals ``exponents`` up to a final partial QR.
    orbit : ndarray, shape (n_steps, M) or None
        The states whose Jacobians were used (``keep_orbit=True``).
    """

    exponents: np.ndarray
    trace_steps: np.ndarray
    trace: np.ndarray
    orbit: np.ndarray | None = None


def lyapunov_spectrum(model, z0, n_steps: int, n_transient: int = 1000, dt: float | None = None,
                      qr_every: int = 1) -> np.ndarray:
    """Lyapunov spectrum (M,), largest first: :func:`lyapunov_analysis` without the trace."""
    return lyapunov_analysis(model, z0, n_steps, n_transient, dt, qr_every).exponents


def lyapunov_analysis(
    model,
    z0,
    n_steps: int,
    n_transient: int = 1000,
    dt: float | None = None,
    qr_every: int = 1,
    n_trace: int = 100,
    keep_orbit: bool = False,
    bound: float | None = None,
) -> LyapunovResult:
    """Lyapunov spectrum of the map ``model.step`` along the orbit from ``z0``, with a convergence trace.

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
    n_trace : int
        Points of the convergence trace, evenly spaced in steps (at most
        ``n_steps``; each costs one extra call of the compiled loop).
    keep_orbit : bool
        Return the (n_steps, M) orbit too (e.g. for symbolic dynamics).
    bound : float, optional
        An orbit with a state of norm above ``bound`` (transient included)
        counts as diverged (e.g. :data:`~dsrpipe.analysis.divergence.DIVERGENCE_NORM`);
        default: only non-finite states do.

    Returns
    -------
    LyapunovResult

    Raises
    ------
    OrbitDivergedError
        A :class:`DsrpipeError` with the index ``step`` (from ``z0`` = 0) of the
        first diverged state, when the orbit leaves the finite numbers or ``bound``:
        an unbounded orbit has no Lyapunov spectrum.
    DsrpipeError
        For bad arguments.
    """
    if n_steps < 1 or n_transient < 0 or qr_every < 1 or n_trace < 1:
        raise DsrpipeError("need n_steps >= 1, n_transient >= 0, qr_every >= 1 and n_trace >= 1")
    if dt is not None and dt <= 0:
        raise DsrpipeError(f"dt must be positive, got {dt}")
    model = float64_model(model)
    z = torch.as_tensor(z0, dtype=torch.float64).detach().clone().to(model_device(model))
    if z.ndim != 1:
        raise DsrpipeError(f"z0 must have shape (M,), got {tuple(z.shape)}")
    M = z.shape[0]

    if not bool(torch.isfinite(z).all()):
        raise DsrpipeError(f"z0 must be finite, got {z.tolist()}")
    limit = math.inf if bound is None else float(bound)

    t_start = time.perf_counter()
    if has_orbit_kernel(model):  # compiled orbit of the model's map (tested against its step)
        z = z.cpu()
        full = torch.cat([z[None], orbit(model, z, n_transient + n_steps - 1)])
        bad = first_divergence(full.numpy(), limit)
        traj = full[n_transient:]
    else:
        with single_threaded():
            traj = _torch_orbit(model, z, n_steps, n_transient, bound)
        bad = first_divergence(traj.cpu().numpy(), limit)
        bad = None if bad is None else n_transient + bad
    if bad is not None:
        raise _diverged(bad, bound)
    t_orbit = time.perf_counter()

    kernel = _qr_kernel()
    Q = np.eye(M)
    log_sum = np.zeros(M)
    count = 0
    chunk = max(1, min(CHUNK, 2**24 // (M * M)))  # at most ~128 MB of Jacobians at once
    # the trace is read at the QR after each of these steps (multiples of qr_every)
    marks = np.unique(np.linspace(0, n_steps, min(n_trace, n_steps) + 1).astype(np.int64)[1:])
    marks = np.unique(np.maximum(qr_every, marks // qr_every * qr_every))
    marks = marks[marks <= n_steps]
    trace_steps, trace = [], []
    done = 0
    with torch.no_grad():
        for start in range(0, n_steps, chunk):
            J = model.jacobian(traj[start : start + chunk])
            J = np.ascontiguousarray(J.detach().cpu().numpy(), dtype=np.float64)
            pos = 0
            for mark in marks[(marks > done) & (marks <= done + len(J))]:
                Q, count = kernel(J[pos : mark - done], Q, log_sum, count, qr_every)
                pos = mark - done
                trace_steps.append(int(mark - count))
                trace.append(np.sort(log_sum / max(1, mark - count))[::-1])
            Q, count = kernel(J[pos:], Q, log_sum, count, qr_every)
            done += len(J)
    if count:
        _, R = np.linalg.qr(Q)
        log_sum += np.log(np.abs(np.diag(R)))
    exponents = np.sort(log_sum / n_steps)[::-1]
    trace = np.array(trace).reshape(-1, M)
    if dt is not None:
        exponents = exponents / dt
        trace = trace / dt
    logger.debug(
        "Lyapunov spectrum, M=%d, %d steps: orbit %.2fs, tangent dynamics %.2fs",
        M,
        n_steps,
        t_orbit - t_start,
        time.perf_counter() - t_orbit,
    )
    return LyapunovResult(exponents=exponents.copy(), trace_steps=np.array(trace_steps, dtype=np.int64),
                          trace=trace, orbit=traj.cpu().numpy() if keep_orbit else None)


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


#: classes returned by :func:`classify_attractor`
ATTRACTOR_CLASSES = ("fixed_point", "cycle", "quasi_periodic", "chaotic")


def classify_attractor(exponents, *, rel_tol: float = 0.01, abs_tol: float = 0.0, period: int | None = None) -> dict:
    """Type of the attractor an orbit lies on, from its Lyapunov spectrum.

    The models emulate sampled flows, so the spectrum is read as a flow's:
    exponents within ``tol = max(abs_tol, rel_tol * max_i |lambda_i|)`` of 0
    are neutral, and

    - ``chaotic``: the largest exponent exceeds ``tol`` (hyperchaotic when
      ``n_positive > 1``);
    - ``cycle``: none positive, exactly one neutral (the direction along a
      limit cycle); also an orbit with all exponents negative that is a
      k-cycle of the map, ``period > 1``;
    - ``quasi_periodic``: none positive, two or more neutral (a torus);
    - ``fixed_point``: all exponents below ``-tol`` and ``period`` None or 1.

    Tolerances. The estimate of a zero exponent from n steps errs by
    ``O(1/n)`` on a regular attractor (the log growth of a tangent vector
    along the flow stays bounded) and ``O(1/sqrt(n))`` on a chaotic one, in
    units of the map's own rates; the tolerance is therefore relative to the
    spectrum's scale ``max|lambda|`` (usually the strongest contraction),
    which makes the class independent of the sampling interval (exponents
    per step or per time unit give the same answer). ``rel_tol = 0.01`` puts
    the Lorenz-63 exponent 0.906 at 6 times the tolerance (scale 14.57) and
    Hénon's 0.419 at 26 times, while the zero exponent of a limit cycle
    estimated over 10^5 steps sits around 1e-4 of the scale. ``abs_tol``
    adds a floor for short runs; the evaluate stage passes ``10 / n_steps``
    per step (the ``O(1/n)`` error with a margin).

    Parameters
    ----------
    exponents : array_like, shape (M,)
        Any order, any time unit; -inf allowed (a direction contracted to a point).
    rel_tol, abs_tol : float
        See above; ``abs_tol`` in the units of ``exponents``.
    period : int, optional
        Period (in steps) of the orbit when it is periodic, e.g. from :func:`orbit_period`.

    Returns
    -------
    dict
        ``class`` (one of ``ATTRACTOR_CLASSES``), ``n_positive``, ``n_zero``,
        ``n_negative``, ``tolerance``.
    """
    lam = np.sort(np.asarray(exponents, dtype=float).ravel())[::-1]
    if lam.size == 0 or np.any(np.isnan(lam)) or np.any(lam == np.inf):
        raise DsrpipeError(f"need a non-empty Lyapunov spectrum without NaN or +inf, got {lam.tolist()}")
    if rel_tol < 0 or abs_tol < 0:
        raise DsrpipeError("rel_tol and abs_tol must be >= 0")
    finite = lam[np.isfinite(lam)]  # -inf (a superstable direction, J singular) counts as negative
    tol = max(abs_tol, rel_tol * float(np.max(np.abs(finite), initial=0.0)))
    n_pos, n_zero = int(np.sum(lam > tol)), int(np.sum(np.abs(lam) <= tol))
    if n_pos:
        kind = "chaotic"
    elif n_zero == 1 or (n_zero == 0 and period is not None and period > 1):
        kind = "cycle"
    elif n_zero >= 2:
        kind = "quasi_periodic"
    else:
        kind = "fixed_point"
    return {"class": kind, "n_positive": n_pos, "n_zero": n_zero, "n_negative": int(lam.size - n_pos - n_zero),
            "tolerance": float(tol)}


def orbit_period(orbit, max_period: int = 100, rtol: float = 1e-6) -> int | None:
    """Smallest p <= ``max_period`` with ``z_{T-1-p} = z_{T-1}`` (to ``rtol (1 + max|z|)``), else None.

    Parameters
    ----------
    orbit : array_like, shape (T, M)
        States after a transient; T > max_period for every p to be tested.

    Returns
    -------
    int or None
        1 for an orbit resting on a fixed point, k for a k-cycle, None otherwise.
    """
    z = np.asarray(orbit, dtype=float)
    if z.ndim != 2 or len(z) < 2:
        raise DsrpipeError(f"orbit must be a (T, M) array with T >= 2, got shape {z.shape}")
    last = z[-1]
    scale = 1.0 + np.abs(z[-max_period - 1:]).max()
    for p in range(1, min(max_period, len(z) - 1) + 1):
        if np.max(np.abs(z[-1 - p] - last)) <= rtol * scale:
            return p
    return None
