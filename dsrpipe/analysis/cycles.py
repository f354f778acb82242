"""Fixed points and k-cycles of piecewise-linear maps: SCYFI and an exhaustive oracle.

A piecewise-linear model is affine in each linear subregion,
``F(z) = J_D z + c_D`` for the region with symbolic code ``D``
(``model.region`` / ``model.affine``). For a sequence of codes
``D_1 .. D_k`` the composition ``F_k o ... o F_1`` is affine too,
``z -> P z + q`` with ``P = J_k ... J_1``, so the candidate k-cycle point
solves ``(I - P) z_1 = q``. It is a true k-cycle exactly when the orbit
``z_1, F(z_1), ..., F^{k-1}(z_1)`` visits the regions ``D_1 .. D_k``; its
stability follows from the eigenvalues of the cycle's Jacobian product
``P``. SCYFI (Eisenmann et al. 2023) iterates: when the orbit of the
candidate visits other regions, those become the next guess. The
exhaustive search solves every one of the ``2^(R k)`` code sequences and is
the test oracle for small models.

Everything works on any model with ``region``, ``affine``, ``step`` and
``latent_dim`` (every piecewise-linear model in :mod:`dsrpipe.models`);
no model class is special-cased.

References
----------
Eisenmann, L., Monfared, Z., Göring, N. & Durstewitz, D. (2023). Bifurcations
and loss jumps in RNN training. NeurIPS (SCYFI; code: DurstewitzLab/SCYFI).
Brenner, M. et al. (2024). Almost-linear RNNs yield highly interpretable
symbolic codes in dynamical systems reconstruction. NeurIPS (virtual fixed points).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from dsrpipe import DsrpipeError
from dsrpipe.analysis.lyapunov import float64_model, model_device, single_threaded

logger = logging.getLogger(__name__)

__all__ = ["Cycle", "scyfi", "exhaustive_cycles", "virtual_fixed_points", "eigenvalue_type",
           "MAX_EXHAUSTIVE_CODES"]

#: largest number of code sequences ``2^(R k)`` the exhaustive search enumerates
MAX_EXHAUSTIVE_CODES = 2**20
#: linear systems (I - P) with a larger condition number count as singular
MAX_CONDITION = 1e12
#: eigenvalues with ``| |lambda| - 1 | < HYPERBOLIC_TOL`` make a cycle non-hyperbolic
HYPERBOLIC_TOL = 1e-9


def eigenvalue_type(eigenvalues, tol: float = HYPERBOLIC_TOL) -> str:
    """Type of a fixed point / cycle from the eigenvalues of its Jacobian (product).

    Parameters
    ----------
    eigenvalues : array_like, shape (M,), complex
    tol : float
        ``| |lambda| - 1 | < tol`` counts as on the unit circle; ``|Im lambda| > tol``
        as complex.

    Returns
    -------
    str
        ``"stable_node"`` / ``"stable_spiral"`` (all ``|lambda| < 1``; spiral when
        a complex pair is present), ``"unstable_node"`` / ``"unstable_spiral"`` (all
        ``|lambda| > 1``), ``"saddle"`` (some inside, some outside),
        ``"non_hyperbolic"`` (an eigenvalue on the unit circle).
    """
    eig = np.asarray(eigenvalues, dtype=complex)
    mod = np.abs(eig)
    if np.any(np.abs(mod - 1.0) < tol):
        return "non_hyperbolic"
    spiral = bool(np.any(np.abs(eig.imag) > tol))
    if np.all(mod < 1):
        return "stable_spiral" if spiral else "stable_node"
    if np.all(mod > 1):
        return "unstable_spiral" if spiral else "unstable_node"
    return "saddle"


@dataclass(eq=False)
class Cycle:
    """A k-cycle ``z_1 -> z_2 -> ... -> z_k -> z_1`` of a piecewise-linear map (k = 1: a fixed point).

    Attributes
    ----------
    states : ndarray, shape (k, M)
        The cycle's points in orbit order, starting at the lexicographically
        smallest one.
    codes : bool ndarray, shape (k, R)
        Region code of each state (for a virtual object: the region it was
        computed for, which it does not lie in).
    eigenvalues : complex ndarray, shape (M,)
        Eigenvalues of the Jacobian product ``J_k ... J_1`` along the cycle.
    virtual : bool
        True for a virtual fixed point: the fixed point of a region's affine
        map that lies outside that region (not a fixed point of F).
    """

    states: np.ndarray
    codes: np.ndarray
    eigenvalues: np.ndarray
    virtual: bool = False

    @property
    def order(self) -> int:
        return int(len(self.states))

    @property
    def stable(self) -> bool:
        """All eigenvalues of the Jacobian product inside the unit circle."""
        return bool(np.all(np.abs(self.eigenvalues) < 1.0))

    @property
    def kind(self) -> str:
        """:func:`eigenvalue_type` of the cycle."""
        return eigenvalue_type(self.eigenvalues)

    def to_dict(self) -> dict:
        """JSON-ready summary (codes as 0/1 strings)."""
        return {
            "order": self.order,
            "states": [[float(v) for v in z] for z in self.states],
            "codes": ["".join("1" if b else "0" for b in code) for code in self.codes],
            "eigenvalues_real": [float(v) for v in self.eigenvalues.real],
            "eigenvalues_imag": [float(v) for v in self.eigenvalues.imag],
            "max_abs_eigenvalue": float(np.max(np.abs(self.eigenvalues))),
            "stable": self.stable,
            "type": self.kind,
            "virtual": bool(self.virtual),
        }


# ------------------------------------------------------------------ batched building blocks


def _check_pl(model) -> None:
    if not all(hasattr(model, a) for a in ("region", "affine", "step", "latent_dim")) or not getattr(
            model, "piecewise_linear", True):
        raise DsrpipeError(f"{type(model).__name__} is not piecewise linear (needs region and affine); "
                           "use dsrpipe.analysis.fixed_points for smooth maps")


def cycle_map(model, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine map ``z -> P z + q`` of ``F_k o ... o F_1`` for code sequences.

    Parameters
    ----------
    model : piecewise-linear model
    codes : bool Tensor, shape (B, k, R)

    Returns
    -------
    P : Tensor, shape (B, M, M)
        ``J_k ... J_1``.
    q : Tensor, shape (B, M)
    """
    J, c = model.affine(codes)  # (B, k, M, M), (B, k, M)
    P, q = J[:, 0], c[:, 0]
    for i in range(1, codes.shape[1]):
        P = J[:, i] @ P
        q = (J[:, i] @ q.unsqueeze(-1)).squeeze(-1) + c[:, i]
    return P, q


def _solve(P: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve ``(I - P) z = q`` batched; ``(z, ok)`` with singular rows flagged (see :func:`_well_posed`)."""
    lhs = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device) - P
    z, info = torch.linalg.solve_ex(lhs, q.unsqueeze(-1))
    z = z.squeeze(-1)
    return z, (info == 0) & torch.isfinite(z).all(dim=-1)


def _well_posed(P: torch.Tensor) -> torch.Tensor:
    """``cond(I - P) < MAX_CONDITION`` per row (an SVD: only for rows that passed cheaper tests)."""
    lhs = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device) - P
    return torch.linalg.cond(lhs) < MAX_CONDITION


def _orbit(model, z1: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """States ``z_1 .. z_k`` (B, k, M) of the orbit from ``z1`` (B, M), and ``F^k(z_1)`` (B, M)."""
    states = [z1]
    for _ in range(k - 1):
        states.append(model.step(states[-1]))
    return torch.stack(states, dim=1), model.step(states[-1])


def _candidates(model, codes: torch.Tensor, tol: float, P=None, q=None, prefilter: bool = False):
    """Solve the cycle equation for each code sequence and test it.

    ``codes`` (B, k, R); ``P``, ``q`` the sequences' :func:`cycle_map` when
    already known. Returns ``(states (B', k, M), visited (B', k, R),
    accepted (B',))`` for the B' rows whose system was well posed; with
    ``prefilter`` also only rows whose first state lies in its guessed region
    (enough for the exhaustive search; SCYFI needs every row to re-seed).
    """
    if P is None:
        P, q = cycle_map(model, codes)
    z1, ok = _solve(P, q)
    if prefilter:
        ok[ok.clone()] = (model.region(z1[ok]) == codes[ok, 0]).all(dim=-1)
    ok[ok.clone()] = _well_posed(P[ok])
    states, closing = _orbit(model, z1[ok], codes.shape[1])
    visited = model.region(states)
    residual = torch.linalg.vector_norm(closing - states[:, 0], dim=-1)
    closes = residual < tol * (1.0 + torch.linalg.vector_norm(states[:, 0], dim=-1))
    accepted = (visited == codes[ok]).all(dim=-1).all(dim=-1) & closes
    return states, visited, accepted


# ------------------------------------------------------------------ deduplication


def _minimal_period(states: np.ndarray, rtol: float) -> int:
    """Smallest p dividing k with ``z_{p+1} = z_1`` (to ``rtol``), for states (k, M)."""
    k = len(states)
    scale = 1.0 + np.abs(states).max()
    for p in range(1, k):
        if k % p == 0 and np.max(np.abs(states[p] - states[0])) <= rtol * scale:
            return p
    return k


def _canonical(states: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate the cycle so that it starts at its lexicographically smallest state."""
    start = int(np.lexsort(states.T[::-1])[0])
    return np.roll(states, -start, axis=0), np.roll(codes, -start, axis=0)


def _unique_cycles(states: np.ndarray, codes: np.ndarray, rtol: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Distinct k-cycles of minimal period k among accepted rows (N, k, M), (N, k, R).

    A cycle found from each of its k starting points is kept once; a row whose
    minimal period is a proper divisor of k (a fixed point or shorter cycle
    travelled several times) is dropped.
    """
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    for s, c in zip(states, codes):
        if _minimal_period(s, rtol) < len(s):
            continue
        s, c = _canonical(s, c)
        scale = 1.0 + np.abs(s).max()
        if not any(np.max(np.abs(s - t)) <= rtol * max(scale, 1.0 + np.abs(t).max()) for t, _ in kept):
            kept.append((s, c))
    kept.sort(key=lambda sc: tuple(sc[0][0]))
    return kept


def _to_cycles(model, found: list[tuple[np.ndarray, np.ndarray]], virtual: bool = False) -> list[Cycle]:
    if not found:
        return []
    device = model_device(model)
    codes = torch.as_tensor(np.stack([c for _, c in found]), device=device)
    P, _ = cycle_map(model, codes)
    eig = np.linalg.eigvals(P.cpu().numpy()).astype(complex)
    return [Cycle(states=s, codes=c, eigenvalues=e, virtual=virtual) for (s, c), e in zip(found, eig)]


# ------------------------------------------------------------------ public functions


def scyfi(
    model,
    max_order: int = 2,
    *,
    n_inits: int = 100,
    max_iter: int = 50,
    init_points=None,
    init_scale: float = 3.0,
    seed: int = 0,
    tol: float = 1e-7,
    rtol: float = 1e-6,
) -> list[Cycle]:
    """All fixed points and k-cycles (k <= ``max_order``) SCYFI finds in a piecewise-linear model.

    For each order k, initial code sequences come from (a) the regions
    visited by the orbits ``z, F(z), ..., F^{k-1}(z)`` of ``n_inits`` random
    states N(0, init_scale^2) plus ``init_points``, and (b) ``n_inits``
    uniformly random codes. Each sequence gives a candidate (solve
    ``(I - J_k...J_1) z = q``); a candidate whose orbit visits exactly the
    guessed regions (and closes, ``||F^k(z) - z|| < tol (1 + ||z||)``) is
    accepted, otherwise the visited regions are the next guess, for at most
    ``max_iter`` rounds; all sequences are processed as one batch.
    A k-cycle is reported once (not once per starting point) and cycles
    whose minimal period is a proper divisor of k are dropped (they appear
    under their own order).

    Parameters
    ----------
    model : piecewise-linear model
        With ``region``, ``affine``, ``step``; evaluated in float64 (a float64
        deep copy of an nn.Module of another dtype).
    max_order : int
        Largest cycle order k searched (1: fixed points only).
    n_inits : int
        Random initial states, and as many random codes, per order.
    max_iter : int
        Re-seeding rounds per order.
    init_points : array_like, shape (K, M), optional
        Extra initial states (e.g. data points lifted to the latent space).
    init_scale : float
        Standard deviation of the random initial states.
    seed : int
        Seed of ``np.random.default_rng``.
    tol : float
        Closure tolerance of an accepted cycle.
    rtol : float
        States equal to ``rtol (1 + max|z|)`` count as the same point.

    Returns
    -------
    list of Cycle
        Sorted by order, then by the first state. Not guaranteed complete
        (complete: :func:`exhaustive_cycles`).
    """
    _check_pl(model)
    if max_order < 1 or max_iter < 1 or n_inits < 0:
        raise DsrpipeError("scyfi needs max_order >= 1, max_iter >= 1 and n_inits >= 0")
    model = float64_model(model)
    device = model_device(model)
    M, R = int(model.latent_dim), int(model.region_size)
    rng = np.random.default_rng(seed)
    starts = rng.normal(0.0, init_scale, size=(n_inits, M))
    if init_points is not None:
        extra = np.asarray(init_points, dtype=np.float64)
        if extra.ndim != 2 or extra.shape[1] != M:
            raise DsrpipeError(f"init_points must have shape (K, {M}), got {extra.shape}")
        starts = np.vstack((extra, starts))
    result: list[Cycle] = []
    with torch.no_grad(), single_threaded():
        for k in range(1, max_order + 1):
            orbit_states, _ = _orbit(model, torch.as_tensor(starts, device=device), k)
            random_codes = torch.as_tensor(rng.random((n_inits, k, R)) < 0.5, device=device)
            codes = torch.cat([model.region(orbit_states), random_codes])
            finite = torch.isfinite(orbit_states).all(dim=-1).all(dim=-1)
            codes = codes[torch.cat([finite, torch.ones(n_inits, dtype=torch.bool, device=device)])]
            hits_s, hits_c = [], []
            for it in range(max_iter):
                if len(codes) == 0:
                    break
                codes = torch.unique(codes, dim=0)  # many guesses converge to the same sequence
                states, visited, accepted = _candidates(model, codes, tol)
                hits_s.append(states[accepted])
                hits_c.append(visited[accepted])
                codes = visited[~accepted]
                logger.debug("SCYFI order %d, round %d: %d accepted, %d active", k, it,
                             int(accepted.sum()), len(codes))
            if not hits_s:
                continue
            found = _unique_cycles(torch.cat(hits_s).cpu().numpy(), torch.cat(hits_c).cpu().numpy(), rtol)
            result.extend(_to_cycles(model, found))
    logger.info("SCYFI: %s", ", ".join(f"{sum(c.order == k for c in result)} of order {k}"
                                       for k in range(1, max_order + 1)))
    return result


def exhaustive_cycles(model, order: int = 1, *, max_codes: int = MAX_EXHAUSTIVE_CODES,
                      tol: float = 1e-7, rtol: float = 1e-6) -> list[Cycle]:
    """All cycles of minimal period ``order`` by solving every code sequence (the test oracle).

    Enumerates all ``2^(R order)`` sequences of region codes (R =
    ``model.region_size``), solves each cycle equation and keeps the
    solutions whose orbit visits exactly the guessed regions; complete up to
    points on region boundaries and singular ``I - J_k...J_1``.

    Parameters
    ----------
    model : piecewise-linear model
    order : int
        k (1: fixed points, 2: 2-cycles, ...).
    max_codes : int
        Refuse when ``2^(R order)`` exceeds this.
    tol, rtol : float
        As in :func:`scyfi`.

    Returns
    -------
    list of Cycle
        Sorted by the first state.

    Raises
    ------
    DsrpipeError
        When the enumeration is larger than ``max_codes``.
    """
    _check_pl(model)
    if order < 1:
        raise DsrpipeError(f"order must be >= 1, got {order}")
    model = float64_model(model)
    device = model_device(model)
    R = int(model.region_size)
    n_bits = R * order
    if 2**n_bits > max_codes:
        raise DsrpipeError(
            f"exhaustive search over 2^{n_bits} code sequences (R = {R}, order {order}) exceeds "
            f"max_codes = {max_codes}; use scyfi, or raise max_codes")
    n_regions = 2**R
    hits_s, hits_c = [], []
    with torch.no_grad(), single_threaded():
        # the affine map of each of the 2^R regions once; sequences index into them
        all_codes = ((torch.arange(n_regions, device=device).unsqueeze(-1) >> torch.arange(R, device=device)) & 1
                     ).bool()
        J, c = model.affine(all_codes)
        chunk = 2**14
        for start in range(0, 2**n_bits, chunk):
            idx = torch.arange(start, min(start + chunk, 2**n_bits), device=device)
            regions = [(idx >> (R * i)) & (n_regions - 1) for i in range(order)]  # region of step i
            P, q = J[regions[0]], c[regions[0]]
            for r in regions[1:]:
                P = J[r] @ P
                q = (J[r] @ q.unsqueeze(-1)).squeeze(-1) + c[r]
            codes = torch.stack([all_codes[r] for r in regions], dim=1)
            states, visited, accepted = _candidates(model, codes, tol, P, q, prefilter=True)
            hits_s.append(states[accepted])
            hits_c.append(visited[accepted])
        found = _unique_cycles(torch.cat(hits_s).cpu().numpy(), torch.cat(hits_c).cpu().numpy(), rtol)
        return _to_cycles(model, found)


def virtual_fixed_points(model, codes, *, rtol: float = 1e-6) -> list[Cycle]:
    """Virtual fixed points of the given linear subregions.

    The fixed point of the affine map of region ``D``, ``(I - J_D)^{-1} c_D``,
    is *virtual* when it lies outside ``D`` (Brenner et al. 2024): not a
    fixed point of F, but it still organises the flow inside ``D``.

    Parameters
    ----------
    model : piecewise-linear model
    codes : bool array_like, shape (U, R)
        Regions, e.g. those an orbit visits (:func:`dsrpipe.analysis.symbolic.symbolic_dynamics`).

    Returns
    -------
    list of Cycle
        Order-1 objects with ``virtual=True``; ``codes`` holds the region each
        was computed for; eigenvalues of ``J_D``. Duplicates merged, sorted by state.
    """
    _check_pl(model)
    model = float64_model(model)
    codes = torch.as_tensor(np.asarray(codes, dtype=bool), device=model_device(model))
    if codes.ndim != 2 or codes.shape[1] != model.region_size:
        raise DsrpipeError(f"codes must have shape (U, {model.region_size}), got {tuple(codes.shape)}")
    with torch.no_grad():
        J, c = model.affine(codes)
        z, ok = _solve(J, c)
        z, codes = z[ok], codes[ok]
        outside = (model.region(z) != codes).any(dim=-1)
        found = _unique_cycles(z[outside].unsqueeze(1).cpu().numpy(), codes[outside].unsqueeze(1).cpu().numpy(),
                               rtol)
        return _to_cycles(model, found, virtual=True)
