"""Fixed points of piecewise-linear maps: SCYFI iteration and exhaustive search.

In a linear region a PLRNN is affine, ``F(z) = J z + c`` with
``J = model.jacobian(z)`` and ``c = F(z) - J z``, so the region's candidate
fixed point solves ``(I - J) z* = c``. It is a true fixed point when
``F(z*) = z*`` (z* lies in the region it was computed for); otherwise the
search restarts from the region z* lies in (SCYFI, Eisenmann et al. 2023).
Only the model's own ``step`` and ``jacobian`` are used. For a smooth map the
same update is Newton's method on ``F(z) - z``, so it also works there,
converging over several iterations instead of one.

References
----------
Eisenmann, L., Monfared, Z., Göring, N. & Durstewitz, D. (2023). Bifurcations
and loss jumps in RNN training. NeurIPS (SCYFI).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from dsrpipe import DsrpipeError
from dsrpipe.analysis.lyapunov import float64_model, model_device
from dsrpipe.models.shallow import ShallowPLRNN

logger = logging.getLogger(__name__)

__all__ = ["FixedPoint", "fixed_points", "METHODS"]

METHODS = ("scyfi", "exhaustive")
#: linear systems (I - J) with a larger condition number count as singular
MAX_CONDITION = 1e12
#: largest hidden dimension for the exhaustive search (2^L linear regions)
MAX_EXHAUSTIVE_L = 20


@dataclass(eq=False)
class FixedPoint:
    """A fixed point ``z = F(z)`` and its linear stability.

    Attributes
    ----------
    z : ndarray, shape (M,)
    eigenvalues : complex ndarray, shape (M,)
        Eigenvalues of the Jacobian at ``z``.
    stable : bool
        All eigenvalues inside the unit circle.
    """

    z: np.ndarray
    eigenvalues: np.ndarray
    stable: bool

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "state": [float(v) for v in self.z],
            "eigenvalues_real": [float(v) for v in self.eigenvalues.real],
            "eigenvalues_imag": [float(v) for v in self.eigenvalues.imag],
            "stable": bool(self.stable),
            "max_abs_eigenvalue": float(np.max(np.abs(self.eigenvalues))),
        }


def _solve_affine(J: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve ``(I - J) z = c`` batched; returns ``(z, ok)`` with singular systems flagged."""
    eye = torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
    lhs = eye - J
    z, info = torch.linalg.solve_ex(lhs, c.unsqueeze(-1))
    z = z.squeeze(-1)
    ok = (info == 0) & torch.isfinite(z).all(dim=-1)
    if ok.any():
        ok &= torch.linalg.cond(lhs) < MAX_CONDITION
    return z, ok


def _residual_ok(model, z: torch.Tensor, tol: float) -> torch.Tensor:
    """``||F(z) - z|| < tol (1 + ||z||)`` per row."""
    return torch.linalg.vector_norm(model.step(z) - z, dim=-1) < tol * (
        1.0 + torch.linalg.vector_norm(z, dim=-1)
    )


def _polish(model, z: torch.Tensor, tol: float, n_steps: int = 3) -> torch.Tensor:
    """A few more solves at accepted points: a no-op for a piecewise-linear map (z* is
    already exact), Newton refinement for a smooth one, where a small residual
    ``F(z) - z`` does not yet mean an accurate ``z``. Returns the rows still accepted."""
    for _ in range(n_steps):
        J = model.jacobian(z)
        c = model.step(z) - (J @ z.unsqueeze(-1)).squeeze(-1)
        z_new, ok = _solve_affine(J, c)
        z = torch.where(ok.unsqueeze(-1), z_new, z)
    return z[_residual_ok(model, z, tol)]


def _scyfi(model, inits: torch.Tensor, max_iter: int, tol: float) -> torch.Tensor:
    found = []
    z = inits
    for it in range(max_iter):
        if len(z) == 0:
            break
        J = model.jacobian(z)
        c = model.step(z) - (J @ z.unsqueeze(-1)).squeeze(-1)
        z_new, ok = _solve_affine(J, c)
        z_new = z_new[ok]
        accept = _residual_ok(model, z_new, tol)
        found.append(z_new[accept])
        z = z_new[~accept]
        logger.debug("SCYFI iteration %d: %d accepted, %d active", it, int(accept.sum()), len(z))
    if len(z):
        logger.debug("SCYFI: %d initial points did not converge in %d iterations", len(z), max_iter)
    return _polish(model, torch.cat(found), tol) if found else inits[:0]


def _exhaustive(model, tol: float) -> torch.Tensor:
    if not isinstance(model, ShallowPLRNN) or model.clipped:
        raise DsrpipeError(
            "method='exhaustive' is implemented for ShallowPLRNN (unclipped) only; "
            f"got {type(model).__name__}; use method='scyfi'"
        )
    L, M = model.hidden_dim, model.latent_dim
    if L > MAX_EXHAUSTIVE_L:
        raise DsrpipeError(
            f"exhaustive search over 2^{L} ReLU masks is too large (L <= {MAX_EXHAUSTIVE_L}); "
            "use method='scyfi'"
        )
    A, W1, W2, h1, h2 = (p.detach() for p in (model.A, model.W1, model.W2, model.h1, model.h2))
    bits = torch.arange(L, device=A.device)
    chunk = int(min(2**16, max(1, 2**22 // (M * (M + L)))))
    found = []
    for start in range(0, 2**L, chunk):
        codes = torch.arange(start, min(start + chunk, 2**L), device=A.device)
        d = ((codes.unsqueeze(-1) >> bits) & 1).to(A.dtype)  # (B, L) ReLU masks
        J = torch.diag_embed(A.expand(len(d), M)) + (W1 * d.unsqueeze(-2)) @ W2
        c = (d * h2) @ W1.T + h1
        z, ok = _solve_affine(J, c)
        z, d = z[ok], d[ok]
        consistent = ((z @ W2.T + h2 > 0).to(A.dtype) == d).all(dim=-1)
        # on a region boundary the mask is ambiguous; F(z) = z decides
        found.append(z[consistent | _residual_ok(model, z, tol)])
    return torch.cat(found)


def _deduplicate(points: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """Unique rows (equal if ``max|a - b| <= rtol (1 + max|a|, |b|)``), sorted lexicographically."""
    if len(points) == 0:
        return points
    points = points[np.lexsort(points.T[::-1])]
    kept: list[np.ndarray] = []
    for p in points:
        if not any(np.max(np.abs(p - q)) <= rtol * (1.0 + max(np.abs(p).max(), np.abs(q).max()))
                   for q in kept):
            kept.append(p)
    return np.array(kept)


def fixed_points(
    model,
    *,
    method: str = "scyfi",
    n_inits: int = 200,
    max_iter: int = 50,
    seed: int = 0,
    init_points=None,
    tol: float = 1e-7,
    init_scale: float = 3.0,
) -> list[FixedPoint]:
    """Fixed points of a (piecewise-linear) map and their stability.

    Parameters
    ----------
    model : object with ``step``, ``jacobian`` and ``latent_dim``
        The map; an nn.Module of another dtype is evaluated on a float64
        deep copy.
    method : {"scyfi", "exhaustive"}
        ``"scyfi"``: from each initial point solve the affine fixed-point
        equation of its linear region and move there until ``F(z*) = z*``
        (all initial points batched). Finds fixed points reachable this way
        from the initial points; not guaranteed complete.
        ``"exhaustive"``: every one of the 2^L ReLU masks of a
        :class:`~dsrpipe.models.shallow.ShallowPLRNN` with ``L <= 20``; complete.
    n_inits : int
        Random initial points, N(0, init_scale^2) per coordinate (scyfi).
    max_iter : int
        Region changes per initial point (scyfi).
    seed : int
        Seed of ``np.random.default_rng`` for the initial points.
    init_points : array_like, shape (K, M), optional
        Extra initial points, e.g. states along data or a generated orbit.
    tol : float
        Accept z* if ``||F(z*) - z*|| < tol (1 + ||z*||)``.
    init_scale : float
        Standard deviation of the random initial points.

    Returns
    -------
    list of FixedPoint
        Distinct fixed points (rows equal to relative 1e-6 merged), sorted
        lexicographically by state.
    """
    if method not in METHODS:
        raise DsrpipeError(f"unknown fixed-point method {method!r}; choose one of {list(METHODS)}")
    model = float64_model(model)
    device = model_device(model)
    M = int(model.latent_dim)
    with torch.no_grad():
        if method == "exhaustive":
            candidates = _exhaustive(model, tol)
        else:
            if n_inits < 0 or max_iter < 1:
                raise DsrpipeError("need n_inits >= 0 and max_iter >= 1")
            inits = np.random.default_rng(seed).normal(0.0, init_scale, size=(n_inits, M))
            if init_points is not None:
                extra = np.asarray(init_points, dtype=np.float64)
                if extra.ndim != 2 or extra.shape[1] != M:
                    raise DsrpipeError(f"init_points must have shape (K, {M}), got {extra.shape}")
                inits = np.vstack((extra, inits))
            candidates = _scyfi(model, torch.as_tensor(inits, device=device), max_iter, tol)
        points = _deduplicate(candidates.cpu().numpy())
        if len(points) == 0:
            logger.info("no fixed points found (method=%s)", method)
            return []
        jac = model.jacobian(torch.as_tensor(points, device=device)).cpu().numpy()
    result = []
    for z, J in zip(points, jac):
        eig = np.linalg.eigvals(J).astype(complex)
        result.append(FixedPoint(z=z, eigenvalues=eig, stable=bool(np.all(np.abs(eig) < 1.0))))
    logger.info("%d fixed points (method=%s), %d stable", len(result), method,
                sum(fp.stable for fp in result))
    return result
