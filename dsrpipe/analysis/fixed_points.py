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
from dsrpipe.analysis.lyapunov import float64_model, model_device, single_threaded

logger = logging.getLogger(__name__)

__all__ = ["FixedPoint", "fixed_points", "METHODS"]

METHODS = ("scyfi", "exhaustive")
#: linear systems (I - J) with a larger condition number count as singular
MAX_CONDITION = 1e12
#: longest region code for the exhaustive search (2^R linear regions)
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

    @property
    def kind(self) -> str:
        """Type from the eigenvalues (:func:`dsrpipe.analysis.cycles.eigenvalue_type`)."""
        from dsrpipe.analysis.cycles import eigenvalue_type

        return eigenvalue_type(self.eigenvalues)

    @classmethod
    def from_cycle(cls, cycle) -> "FixedPoint":
        """The fixed point of an order-1 :class:`~dsrpipe.analysis.cycles.Cycle`."""
        if cycle.order != 1:
            raise DsrpipeError(f"a cycle of order {cycle.order} is not a fixed point")
        return cls(z=cycle.states[0], eigenvalues=cycle.eigenvalues, stable=cycle.stable)

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "state": [float(v) for v in self.z],
            "eigenvalues_real": [float(v) for v in self.eigenvalues.real],
            "eigenvalues_imag": [float(v) for v in self.eigenvalues.imag],
            "stable": bool(self.stable),
            "max_abs_eigenvalue": float(np.max(np.abs(self.eigenvalues))),
            "type": self.kind,
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


def _exhaustive(model) -> torch.Tensor:
    """Every fixed point of a piecewise-linear model: all 2^R region codes (R <= MAX_EXHAUSTIVE_L)."""
    from dsrpipe.analysis.cycles import exhaustive_cycles

    if not getattr(model, "piecewise_linear", False):
        raise DsrpipeError(f"method='exhaustive' needs a piecewise-linear model (region/affine); "
                           f"got {type(model).__name__}; use method='scyfi'")
    cycles = exhaustive_cycles(model, 1, max_codes=2**MAX_EXHAUSTIVE_L)
    device = model_device(model)
    if not cycles:
        return torch.empty((0, model.latent_dim), dtype=torch.float64, device=device)
    return torch.as_tensor(np.stack([c.states[0] for c in cycles]), device=device)


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
        ``"exhaustive"``: every one of the 2^R region codes of a
        piecewise-linear model with ``R = model.region_size <= 20``
        (:func:`dsrpipe.analysis.cycles.exhaustive_cycles`); complete.
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
    with torch.no_grad(), single_threaded():
        if method == "exhaustive":
            candidates = _exhaustive(model)
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
