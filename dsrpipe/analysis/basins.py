"""Basins of attraction and multistability of a trained map.

Initial conditions (a grid in a 2-D plane of state space, by default the
data's first two principal components, or points sampled from the data) are
each iterated to their limit set; limit sets are clustered by a point-set
distance into attractors, and each attractor is typed from its period and
its largest finite-time Lyapunov exponent. The result is a label per
initial condition (a label grid for a plane) and a table of attractors
(Göring et al. 2024 use such maps to show multistability and
out-of-domain generalisation of reconstructions).

References
----------
Göring, N. A., Hess, F., Brenner, M., Monfared, Z. & Durstewitz, D. (2024).
Out-of-domain generalization in dynamical systems reconstruction. ICML.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from dsrpipe import DsrpipeError
from dsrpipe.analysis.divergence import DIVERGENCE_NORM, OrbitDivergedError
from dsrpipe.analysis.lyapunov import (
    classify_attractor,
    float64_model,
    lyapunov_spectrum,
    model_device,
    orbit_period,
    single_threaded,
)

logger = logging.getLogger(__name__)

__all__ = ["BasinResult", "pca_plane", "plane_grid", "limit_sets", "cluster_limit_sets", "basins",
           "basin_map"]


@dataclass(eq=False)
class BasinResult:
    """Which attractor each initial condition reaches.

    Attributes
    ----------
    inits : ndarray, shape (K, M)
        Initial conditions.
    labels : ndarray, shape (K,)
        Attractor index per initial condition (row of ``attractors``); -1 for diverging orbits.
    attractors : DataFrame
        One row per attractor: ``label``, ``n_inits``, ``fraction`` (of all K),
        ``class`` (``fixed_point``, ``cycle``, ``quasi_periodic``, ``chaotic``,
        ``unknown``, ``unbounded``: see :func:`basins`), ``period`` (steps; 0 when aperiodic),
        ``max_lyapunov`` (largest exponent per step; NaN when not computed), ``size`` (RMS distance of its points from their centroid) and the
        centroid ``c0 .. c{M-1}``.
    limit_sets : list of ndarray, shape (n_keep, M)
        One representative recorded orbit per attractor.
    grid : ndarray, shape (n_v, n_u), optional
        ``labels`` on the plane grid (row j: ``v[j]``; column i: ``u[i]``).
    u, v : ndarray, optional
        Grid coordinates along the plane's two axes.
    """

    inits: np.ndarray
    labels: np.ndarray
    attractors: pd.DataFrame
    limit_sets: list = field(default_factory=list)
    grid: np.ndarray | None = None
    u: np.ndarray | None = None
    v: np.ndarray | None = None

    @property
    def n_attractors(self) -> int:
        return int(len(self.attractors))

    def grid_table(self) -> pd.DataFrame:
        """The label grid in long form: columns ``u``, ``v``, ``label`` (one row per grid point)."""
        if self.grid is None:
            raise DsrpipeError("this basin result has no grid (initial conditions were not a plane grid)")
        uu, vv = np.meshgrid(self.u, self.v)
        return pd.DataFrame({"u": uu.ravel(), "v": vv.ravel(), "label": self.grid.ravel().astype(np.int64)})


def pca_plane(x, latent_dim: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plane through the data mean spanned by its first two principal components.

    Parameters
    ----------
    x : array_like, shape (T, N)
        Data (standardised).
    latent_dim : int, optional
        M >= N: the plane is embedded in latent space with the extra M - N
        coordinates 0 (identity readout: the first N units are the data).

    Returns
    -------
    center : ndarray, shape (M,)
    basis : ndarray, shape (D, M)
        Orthonormal axes, D = min(2, N).
    scores : ndarray, shape (T, D)
        The data's coordinates in the plane.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or len(x) < 2:
        raise DsrpipeError(f"x must be a (T, N) array with T >= 2, got shape {x.shape}")
    N = x.shape[1]
    M = N if latent_dim is None else int(latent_dim)
    if M < N:
        raise DsrpipeError(f"latent_dim {M} < data dimension {N}")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    axes = vt[: min(2, N)]
    axes = axes * np.where(axes.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)  # deterministic signs
    scores = (x - mean) @ axes.T
    center = np.concatenate([mean, np.zeros(M - N)])
    basis = np.hstack([axes, np.zeros((len(axes), M - N))])
    return center, basis, scores


def plane_grid(center, basis, u, v=None) -> np.ndarray:
    """States ``center + u_i basis[0] + v_j basis[1]`` on a grid, shape (n_v * n_u, M), row-major in v.

    With a single axis (``basis`` (1, M)) ``v`` is ignored and the states are ``center + u_i basis[0]``.
    """
    center, basis, u = np.asarray(center, float), np.atleast_2d(np.asarray(basis, float)), np.asarray(u, float)
    if len(basis) == 1 or v is None:
        return center + u[:, None] * basis[0]
    uu, vv = np.meshgrid(u, np.asarray(v, float))
    return center + uu.ravel()[:, None] * basis[0] + vv.ravel()[:, None] * basis[1]


def limit_sets(model, inits, n_transient: int = 1000, n_record: int = 1000, n_keep: int = 200,
               n_tail: int = 101, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Iterate all initial conditions as one batch and record their limit sets.

    Parameters
    ----------
    model : object with ``step``
    inits : array_like, shape (K, M)
    n_transient : int
        Steps discarded.
    n_record : int
        Steps recorded after the transient: long enough for an orbit to
        cover a chaotic attractor (a few tens of its Lyapunov times).
    n_keep : int
        Recorded states kept per orbit, at random times (the same for every
        orbit) among the ``n_record`` steps, sorted.
    seed : int
        Seed of those times.
    n_tail : int
        Consecutive final states kept per orbit (for the period).

    Returns
    -------
    samples : ndarray, shape (K, min(n_keep, n_record), M)
        Non-finite for diverging orbits (norm above ``DIVERGENCE_NORM``).
    tails : ndarray, shape (K, min(n_tail, n_record), M)
        The last consecutive states.
    """
    model = float64_model(model)
    z = torch.as_tensor(np.asarray(inits, dtype=np.float64), device=model_device(model))
    if z.ndim != 2:
        raise DsrpipeError(f"inits must have shape (K, M), got {tuple(z.shape)}")
    if n_transient < 0 or n_record < 1 or n_keep < 1 or n_tail < 1:
        raise DsrpipeError("need n_transient >= 0 and n_record, n_keep, n_tail >= 1")
    # random (seeded) recording times: an even stride could alias with a cycle's period
    keep = set(np.random.default_rng(seed).choice(n_record, min(n_keep, n_record), replace=False).tolist())
    n_tail = min(n_tail, n_record)
    samples, tails = [], []
    with torch.no_grad(), single_threaded():
        for t in range(n_transient + n_record):
            z = model.step(z)
            if t % 50 == 0:  # diverging orbits become NaN (checked now and then: it costs two ops)
                z = torch.where(torch.linalg.vector_norm(z, dim=-1, keepdim=True) < DIVERGENCE_NORM, z, torch.nan)
            r = t - n_transient
            if r in keep:
                samples.append(z)
            if r >= n_record - n_tail:
                tails.append(z)
    return torch.stack(samples, 1).cpu().numpy(), torch.stack(tails, 1).cpu().numpy()


def _directed(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over the points of ``a`` of the distance to the nearest point of ``b``."""
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return float(np.sqrt(np.maximum(d2.min(axis=1), 0.0)).mean())


def _spacing(a: np.ndarray) -> float:
    """Mean distance of each point of ``a`` to its nearest *other* point (0 on a fixed point or cycle)."""
    d2 = (a**2).sum(1)[:, None] + (a**2).sum(1)[None, :] - 2 * a @ a.T
    np.fill_diagonal(d2, np.inf)
    return float(np.sqrt(np.maximum(d2.min(axis=1), 0.0)).mean()) if len(a) > 1 else 0.0


def cluster_limit_sets(orbits, dist_tol: float, periodic=None, max_points: int = 200) -> tuple[np.ndarray, list[int]]:
    """Group recorded limit sets into attractors by point-set distances.

    Greedy in the order given: an orbit joins the first attractor whose
    representative (its founding orbit) is close enough, else it founds a
    new one. With ``d(A, B)`` the mean distance from the points of A to their
    nearest point of B and ``s`` the mean distance between neighbouring
    recorded points of a set (0 for a fixed point or a cycle of the map,
    the sampling density of an extended set), "close" means

    - both exactly periodic (fixed points, k-cycles): ``max(d(A, B), d(B, A)) <= dist_tol``;
    - both aperiodic (chaotic sets, invariant curves): ``min(d(A, B), d(B, A)) <= dist_tol + 2 max(s_A, s_B)``
      (one finite sample may cover only part of a chaotic attractor, but
      lies on the other sample's set);
    - one periodic, one not: never.

    Parameters
    ----------
    orbits : ndarray, shape (K, n, M)
        Recorded points of each limit set.
    dist_tol : float
        Absolute distance tolerance.
    periodic : bool array_like, shape (K,), optional
        Which limit sets are exactly periodic (default: none).
    max_points : int
        Points used per orbit (the last ones), bounding the cost.

    Returns
    -------
    labels : ndarray, shape (K,)
        -1 for non-finite orbits.
    representatives : list of int
        Index of each attractor's founding orbit.
    """
    orbits = np.asarray(orbits, dtype=float)[:, -max_points:]
    periodic = np.zeros(len(orbits), bool) if periodic is None else np.asarray(periodic, bool)
    labels = np.full(len(orbits), -1, dtype=np.int64)
    reps: list[int] = []
    spacings: list[float] = []
    for i, pts in enumerate(orbits):
        if not np.isfinite(pts).all():
            continue
        s_i = None if periodic[i] else _spacing(pts)
        for label, (r, s_r) in enumerate(zip(reps, spacings)):
            if periodic[r] != periodic[i]:
                continue
            if periodic[i]:
                close = max(_directed(pts, orbits[r]), _directed(orbits[r], pts)) <= dist_tol
            else:
                close = min(_directed(pts, orbits[r]), _directed(orbits[r], pts)) <= dist_tol + 2 * max(s_i, s_r)
            if close:
                labels[i] = label
                break
        else:
            labels[i] = len(reps)
            reps.append(i)
            spacings.append(0.0 if periodic[i] else s_i)
    return labels, reps


def basins(
    model,
    inits,
    *,
    n_transient: int = 1000,
    n_record: int = 1000,
    n_keep: int = 200,
    dist_tol: float = 0.05,
    scale: float | None = None,
    lyapunov_steps: int = 5000,
    rel_tol: float = 0.01,
    max_typed: int = 10,
) -> BasinResult:
    """Attractors reached from the initial conditions ``inits`` and their basins.

    Each initial condition runs ``n_transient`` steps, then ``n_record``
    steps are recorded (``n_keep`` of them kept, :func:`limit_sets`); limit
    sets closer than ``dist_tol * scale`` (:func:`cluster_limit_sets`; an
    orbit is periodic when its last 101 states repeat exactly) are one attractor. An attractor's class: ``fixed_point`` or ``cycle`` when
    its orbit is exactly periodic (period 1 or k > 1, a k-cycle of the map);
    otherwise :func:`~dsrpipe.analysis.lyapunov.classify_attractor` of the
    Lyapunov spectrum over ``lyapunov_steps`` steps from the attractor's
    last recorded state (``chaotic``, ``cycle`` for a closed invariant
    curve such as a sampled limit cycle, ``quasi_periodic``). Spectra are
    computed for the ``max_typed`` largest basins only (the others:
    ``unknown``; ``unbounded`` when the orbit of that spectrum diverges: a set
    recorded while still growing slowly, below
    :data:`~dsrpipe.analysis.divergence.DIVERGENCE_NORM`); the exponents type
    attractors and do not split clusters. Orbits above that norm are diverging (label -1).
    A periodic limit set with a positive exponent is an unstable object
    reached on its stable manifold (e.g. a saddle from its separatrix).

    Parameters
    ----------
    model : object with ``step`` and ``jacobian``
    inits : array_like, shape (K, M)
    n_transient, n_record, n_keep : int
    dist_tol : float
        Relative distance tolerance.
    scale : float, optional
        Length scale of ``dist_tol``; default: the RMS spread of the initial
        conditions around their mean, the size of the region mapped (1 if that is 0).
    lyapunov_steps : int
        Steps of each attractor's spectrum (0: no spectra, aperiodic attractors are ``unknown``).
    rel_tol : float
        Relative tolerance of :func:`~dsrpipe.analysis.lyapunov.classify_attractor`.
    max_typed : int
        Attractors (largest basins first) whose spectrum is computed.

    Returns
    -------
    BasinResult
        Without a grid (see :func:`basin_map`).
    """
    inits = np.asarray(inits, dtype=float)
    samples, tails = limit_sets(model, inits, n_transient, n_record, n_keep)
    finite = np.isfinite(samples).all(axis=(1, 2)) & np.isfinite(tails).all(axis=(1, 2))
    samples[~finite] = np.nan
    if scale is None:
        scale = float(np.sqrt(((inits - inits.mean(0)) ** 2).sum(1).mean()))
        scale = scale if scale > 0 else 1.0
    periods = [orbit_period(t, max_period=len(t) - 1) if f and len(t) > 1 else None for t, f in zip(tails, finite)]
    labels, reps = cluster_limit_sets(samples, dist_tol * scale, periodic=[p is not None for p in periods])
    sizes = [int((labels == label).sum()) for label in range(len(reps))]
    typed = set(np.argsort(sizes, kind="stable")[::-1][:max_typed].tolist())
    rows = []
    for label, r in enumerate(reps):
        members = labels == label
        pts = samples[members].reshape(-1, samples.shape[-1])
        centroid = pts.mean(axis=0)
        period = periods[r]
        lam, kind = np.nan, "unknown"
        if lyapunov_steps and label in typed:
            try:
                spectrum = lyapunov_spectrum(model, tails[r, -1], lyapunov_steps, n_transient=0)
            except OrbitDivergedError:  # still growing when recorded (a short record): no limit set
                spectrum, kind = np.full(samples.shape[-1], np.nan), "unbounded"
            lam = float(spectrum[0])
            if not period and np.all(np.isfinite(spectrum)):
                kind = classify_attractor(spectrum, rel_tol=rel_tol, abs_tol=10.0 / lyapunov_steps)["class"]
        if period:
            kind = "fixed_point" if period == 1 else "cycle"
        rows.append({"label": label, "n_inits": int(members.sum()), "fraction": float(members.mean()),
                     "class": kind, "period": int(period or 0), "max_lyapunov": lam,
                     "size": float(np.sqrt(((pts - centroid) ** 2).sum(1).mean())),
                     **{f"c{i}": float(v) for i, v in enumerate(centroid)}})
    n_div = int((labels < 0).sum())
    logger.info("basins: %d attractor(s) from %d initial conditions, %d diverging", len(reps), len(inits), n_div)
    table = pd.DataFrame(rows, columns=["label", "n_inits", "fraction", "class", "period", "max_lyapunov", "size",
                                        *[f"c{i}" for i in range(samples.shape[-1])]])
    return BasinResult(inits=inits, labels=labels, attractors=table, limit_sets=[samples[r] for r in reps])


def basin_map(model, x, *, n_grid: int = 20, margin: float = 0.2, **kwargs) -> BasinResult:
    """Basins on a grid in the PCA plane of the data.

    Parameters
    ----------
    model : object with ``step``, ``jacobian`` and ``latent_dim``
    x : array_like, shape (T, N)
        Data (the first N latent units are the observations).
    n_grid : int
        Grid points per axis.
    margin : float
        The grid spans the data's range along each axis, widened by this
        fraction on each side.
    **kwargs
        Passed to :func:`basins`.

    Returns
    -------
    BasinResult
        With ``grid`` (n_grid, n_grid) (one row for 1-D data), ``u``, ``v``.
    """
    if n_grid < 2:
        raise DsrpipeError(f"n_grid must be >= 2, got {n_grid}")
    center, basis, scores = pca_plane(x, int(model.latent_dim))
    lo, hi = scores.min(axis=0), scores.max(axis=0)
    width = np.where(hi > lo, hi - lo, 1.0)
    axes = [np.linspace(a - margin * w, b + margin * w, n_grid) for a, b, w in zip(lo, hi, width)]
    u, v = axes[0], axes[1] if len(axes) > 1 else np.zeros(1)
    result = basins(model, plane_grid(center, basis, u, v if len(axes) > 1 else None), **kwargs)
    result.grid, result.u, result.v = result.labels.reshape(len(v), len(u)), u, v
    return result
