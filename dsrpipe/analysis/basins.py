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
from dsrpipe.analysis.lyapunov import float64_model, model_device, orbit_period, single_threaded

logger = logging.getLogger(__name__)

__all__ = ["BasinResult", "pca_plane", "plane_grid", "limit_sets", "cluster_limit_sets", "basins",
           "basin_map"]

#: orbits whose state norm exceeds this count as diverging (label -1)
DIVERGENCE_NORM = 1e6


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
        ``class`` (``fixed_point``, ``cycle``, ``chaotic``: see :func:`basins`),
        ``period`` (steps; 0 when aperiodic), ``max_lyapunov`` (per step, mean over
        its orbits), ``size`` (RMS distance of its points from their centroid) and the
        centroid ``c0 .. c{M-1}``.
    limit_sets : list of ndarray, shape (n_record, M)
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


def limit_sets(model, inits, n_transient: int = 1000, n_record: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Iterate all initial conditions as one batch and record their limit sets.

    Parameters
    ----------
    model : object with ``step`` and ``jacobian``
    inits : array_like, shape (K, M)
    n_transient : int
        Steps discarded.
    n_record : int
        Steps recorded after the transient.

    Returns
    -------
    orbits : ndarray, shape (K, n_record, M)
        Non-finite for diverging orbits.
    max_lyapunov : ndarray, shape (K,)
        Largest finite-time Lyapunov exponent per step over the recorded
        steps (a tangent vector through the model's Jacobians); NaN for diverging orbits.
    """
    model = float64_model(model)
    z = torch.as_tensor(np.asarray(inits, dtype=np.float64), device=model_device(model))
    if z.ndim != 2:
        raise DsrpipeError(f"inits must have shape (K, M), got {tuple(z.shape)}")
    if n_transient < 0 or n_record < 1:
        raise DsrpipeError("need n_transient >= 0 and n_record >= 1")
    K, M = z.shape
    out = torch.empty((n_record, K, M), dtype=torch.float64, device=z.device)
    tangent = torch.ones((K, M), dtype=torch.float64, device=z.device) / np.sqrt(M)
    log_growth = torch.zeros(K, dtype=torch.float64, device=z.device)
    with torch.no_grad(), single_threaded():
        for _ in range(n_transient):
            z = model.step(z)
            z = torch.where(torch.linalg.vector_norm(z, dim=-1, keepdim=True) < DIVERGENCE_NORM, z, torch.nan)
        for t in range(n_record):
            tangent = (model.jacobian(z) @ tangent.unsqueeze(-1)).squeeze(-1)
            norm = torch.linalg.vector_norm(tangent, dim=-1)
            log_growth += torch.log(norm)
            tangent = tangent / norm.clamp_min(1e-300).unsqueeze(-1)
            z = model.step(z)
            z = torch.where(torch.linalg.vector_norm(z, dim=-1, keepdim=True) < DIVERGENCE_NORM, z, torch.nan)
            out[t] = z
    orbits = out.transpose(0, 1).cpu().numpy()
    lam = (log_growth / n_record).cpu().numpy()
    lam[~np.isfinite(orbits).all(axis=(1, 2))] = np.nan
    return orbits, lam


def _directed(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over the points of ``a`` of the distance to the nearest point of ``b``."""
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return float(np.sqrt(np.maximum(d2.min(axis=1), 0.0)).mean())


def _spacing(a: np.ndarray) -> float:
    """Mean distance of each point of ``a`` to its nearest *other* point (0 on a fixed point or cycle)."""
    d2 = (a**2).sum(1)[:, None] + (a**2).sum(1)[None, :] - 2 * a @ a.T
    np.fill_diagonal(d2, np.inf)
    return float(np.sqrt(np.maximum(d2.min(axis=1), 0.0)).mean()) if len(a) > 1 else 0.0


def cluster_limit_sets(orbits, dist_tol: float, max_points: int = 100) -> tuple[np.ndarray, list[int]]:
    """Group recorded limit sets into attractors by a symmetric point-set distance.

    Greedy in the order given: an orbit joins the first attractor whose
    representative (its first orbit) lies within
    ``dist_tol + 2 * spacing(representative)`` by the symmetric mean
    nearest-neighbour distance ``max(d(A, B), d(B, A))``, else it founds a new
    one. ``spacing`` (the mean distance between neighbouring recorded points,
    0 for fixed points and cycles) absorbs the sampling density of chaotic
    attractors; ``dist_tol`` is absolute.

    Parameters
    ----------
    orbits : ndarray, shape (K, n_record, M)
    dist_tol : float
    max_points : int
        Recorded points used per orbit (the last ones), bounding the cost.

    Returns
    -------
    labels : ndarray, shape (K,)
        -1 for non-finite orbits.
    representatives : list of int
        Index of each attractor's founding orbit.
    """
    orbits = np.asarray(orbits, dtype=float)[:, -max_points:]
    labels = np.full(len(orbits), -1, dtype=np.int64)
    reps: list[int] = []
    spacings: list[float] = []
    for i, pts in enumerate(orbits):
        if not np.isfinite(pts).all():
            continue
        for label, (r, s) in enumerate(zip(reps, spacings)):
            if max(_directed(pts, orbits[r]), _directed(orbits[r], pts)) <= dist_tol + 2 * s:
                labels[i] = label
                break
        else:
            labels[i] = len(reps)
            reps.append(i)
            spacings.append(_spacing(pts))
    return labels, reps


def basins(
    model,
    inits,
    *,
    n_transient: int = 1000,
    n_record: int = 200,
    dist_tol: float = 0.05,
    scale: float | None = None,
    lyapunov_tol: float = 1e-3,
) -> BasinResult:
    """Attractors reached from the initial conditions ``inits`` and their basins.

    Each initial condition runs ``n_transient`` steps, then ``n_record``
    steps are recorded (:func:`limit_sets`); limit sets closer than
    ``dist_tol * scale`` (:func:`cluster_limit_sets`) are one attractor.
    An attractor's class: ``fixed_point`` (its orbit has period 1) or
    ``cycle`` (period k > 1, a k-cycle of the map); an aperiodic one is
    ``chaotic`` when its mean finite-time largest Lyapunov exponent (per
    step) exceeds ``lyapunov_tol``, else ``cycle`` (a closed invariant curve
    such as a sampled limit cycle, or a torus). A periodic limit set with a
    positive exponent is an unstable object reached on its stable manifold
    (e.g. a saddle from its separatrix). The exponent only types an
    attractor and does not split clusters: finite-time estimates from one
    short orbit on a chaotic set fluctuate in sign.

    Parameters
    ----------
    model : object with ``step`` and ``jacobian``
    inits : array_like, shape (K, M)
    n_transient, n_record : int
    dist_tol : float
        Relative distance tolerance.
    scale : float, optional
        Length scale of ``dist_tol``; default: the RMS spread of all finite
        recorded points around their mean (1 if that is 0).
    lyapunov_tol : float
        Per-step exponent above which an attractor is chaotic.

    Returns
    -------
    BasinResult
        Without a grid (see :func:`basin_map`).
    """
    inits = np.asarray(inits, dtype=float)
    orbits, lam = limit_sets(model, inits, n_transient, n_record)
    finite = np.isfinite(orbits).all(axis=(1, 2))
    if scale is None:
        pts = orbits[finite].reshape(-1, orbits.shape[-1])
        scale = float(np.sqrt(((pts - pts.mean(0)) ** 2).sum(1).mean())) if len(pts) else 1.0
        scale = scale if scale > 0 else 1.0
    labels, reps = cluster_limit_sets(orbits, dist_tol * scale)
    rows = []
    for label, r in enumerate(reps):
        members = labels == label
        pts = orbits[members].reshape(-1, orbits.shape[-1])
        centroid = pts.mean(axis=0)
        lam_mean = float(np.nanmean(lam[members]))
        period = orbit_period(orbits[r], max_period=min(100, n_record - 1)) if n_record > 1 else None
        if period:  # exactly periodic: a fixed point or k-cycle (unstable if lam_mean > 0: reached on its
            kind = "fixed_point" if period == 1 else "cycle"  # stable manifold only, e.g. a saddle)
        else:
            kind = "chaotic" if lam_mean > lyapunov_tol else "cycle"
        rows.append({"label": label, "n_inits": int(members.sum()), "fraction": float(members.mean()),
                     "class": kind, "period": int(period or 0), "max_lyapunov": lam_mean,
                     "size": float(np.sqrt(((pts - centroid) ** 2).sum(1).mean())),
                     **{f"c{i}": float(v) for i, v in enumerate(centroid)}})
    n_div = int((labels < 0).sum())
    logger.info("basins: %d attractor(s) from %d initial conditions, %d diverging", len(reps), len(inits), n_div)
    table = pd.DataFrame(rows, columns=["label", "n_inits", "fraction", "class", "period", "max_lyapunov", "size",
                                        *[f"c{i}" for i in range(orbits.shape[-1])]])
    return BasinResult(inits=inits, labels=labels, attractors=table, limit_sets=[orbits[r] for r in reps])


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
