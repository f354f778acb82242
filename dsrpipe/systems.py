"""Reference dynamical systems with known invariants, for tests and demo data.

Each map exposes the interface the analysis code relies on: an attribute
``latent_dim`` and the methods ``step(z)`` and ``jacobian(z)`` working on
float64 torch tensors of shape (..., M). They are plain objects, not
``nn.Module`` s, because they have nothing to train.

References
----------
Hénon, M. (1976). A two-dimensional mapping with a strange attractor.
Commun. Math. Phys. 50, 69-77.
Lorenz, E. N. (1963). Deterministic nonperiodic flow. J. Atmos. Sci. 20, 130-141.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy.integrate import solve_ivp

from dsrpipe import DsrpipeError

logger = logging.getLogger(__name__)

__all__ = [
    "LinearMap",
    "HenonMap",
    "Lorenz63Map",
    "lorenz63_fixed_points",
    "simulate_lorenz63",
]


def _as_tensor(z) -> torch.Tensor:
    return torch.as_tensor(z, dtype=torch.float64)


class LinearMap:
    """The linear map ``z -> A z``; its Lyapunov exponents are ``log|eig(A)|``.

    Parameters
    ----------
    A : array_like, shape (M, M)
    """

    def __init__(self, A) -> None:
        A = _as_tensor(A)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise DsrpipeError(f"LinearMap needs a square matrix, got shape {tuple(A.shape)}")
        self.A = A
        self.latent_dim = A.shape[0]

    def step(self, z: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` (..., M) -> ``A z`` (..., M)."""
        return z @ self.A.T

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """``A`` broadcast to (..., M, M)."""
        return self.A.expand(*z.shape[:-1], self.latent_dim, self.latent_dim)


class HenonMap:
    """Hénon map ``(x, y) -> (1 - a x^2 + y, b x)``.

    For ``a = 1.4, b = 0.3`` the Lyapunov exponents are (0.419, -1.623) per
    step; their sum is ``log b`` (the Jacobian determinant is ``-b``).
    """

    latent_dim = 2

    def __init__(self, a: float = 1.4, b: float = 0.3) -> None:
        self.a = float(a)
        self.b = float(b)

    def step(self, z: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` (..., 2) -> (..., 2)."""
        x, y = z[..., 0], z[..., 1]
        return torch.stack((1.0 - self.a * x * x + y, self.b * x), dim=-1)

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """``[[-2 a x, 1], [b, 0]]``, shape (..., 2, 2)."""
        x = z[..., 0]
        J = torch.zeros(*z.shape[:-1], 2, 2, dtype=z.dtype)
        J[..., 0, 0] = -2.0 * self.a * x
        J[..., 0, 1] = 1.0
        J[..., 1, 0] = self.b
        return J


class Lorenz63Map:
    """The Lorenz-63 flow sampled every ``dt`` by RK4, as a map.

    ``step`` applies ``substeps`` classical Runge-Kutta steps of size
    ``dt / substeps``; ``jacobian`` is the exact derivative of that map,
    obtained by propagating the tangent through the RK4 stages (not the
    Jacobian of the vector field). Lyapunov exponents per time unit are the
    per-step exponents divided by ``dt``: (0.906, 0, -14.572) for the
    classical parameters.

    Parameters
    ----------
    sigma, rho, beta : float
        Lorenz parameters.
    dt : float
        Time between samples (time units).
    substeps : int
        RK4 steps per ``dt``.
    """

    latent_dim = 3

    def __init__(
        self,
        sigma: float = 10.0,
        rho: float = 28.0,
        beta: float = 8.0 / 3.0,
        dt: float = 0.01,
        substeps: int = 1,
    ) -> None:
        if substeps < 1:
            raise DsrpipeError(f"substeps must be >= 1, got {substeps}")
        self.sigma, self.rho, self.beta = float(sigma), float(rho), float(beta)
        self.dt = float(dt)
        self.substeps = int(substeps)
        # f(z) = z @ _lin + x * (0, -w, y); see vector_field
        self._lin = torch.tensor(
            [[-self.sigma, self.sigma, 0.0], [self.rho, -1.0, 0.0], [0.0, 0.0, -self.beta]],
            dtype=torch.float64,
        ).T.contiguous()
        self._sign = torch.tensor([0.0, -1.0, 1.0], dtype=torch.float64)
        self._perm = torch.tensor([0, 2, 1])

    def vector_field(self, z: torch.Tensor) -> torch.Tensor:
        """Right-hand side f(z) of the ODE, (..., 3) -> (..., 3).

        Written as ``z @ L^T + x * (0, -w, y)`` with few torch ops: it is
        called four times per RK4 step, one state at a time along orbits.
        """
        lin, sign = self._lin, self._sign
        if lin.dtype != z.dtype:
            lin, sign = lin.to(z.dtype), sign.to(z.dtype)
        return z @ lin + z[..., :1] * z.index_select(-1, self._perm) * sign

    def vector_field_jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """Df(z), (..., 3) -> (..., 3, 3)."""
        x, y, w = z[..., 0], z[..., 1], z[..., 2]
        J = torch.zeros(*z.shape[:-1], 3, 3, dtype=z.dtype)
        J[..., 0, 0] = -self.sigma
        J[..., 0, 1] = self.sigma
        J[..., 1, 0] = self.rho - w
        J[..., 1, 1] = -1.0
        J[..., 1, 2] = -x
        J[..., 2, 0] = y
        J[..., 2, 1] = x
        J[..., 2, 2] = -self.beta
        return J

    def step(self, z: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        """Advance ``z`` (..., 3) by ``dt``."""
        h = self.dt / self.substeps
        f = self.vector_field
        for _ in range(self.substeps):
            k1 = f(z)
            k2 = f(z + 0.5 * h * k1)
            k3 = f(z + 0.5 * h * k2)
            k4 = f(z + h * k3)
            z = z + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        return z

    def jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """Exact Jacobian of :meth:`step` at ``z`` (..., 3) -> (..., 3, 3)."""
        h = self.dt / self.substeps
        f, Df = self.vector_field, self.vector_field_jacobian
        eye = torch.eye(3, dtype=z.dtype)
        total = eye.expand(*z.shape[:-1], 3, 3)
        for _ in range(self.substeps):
            k1, dk1 = f(z), Df(z)
            z2 = z + 0.5 * h * k1
            k2, dk2 = f(z2), Df(z2) @ (eye + 0.5 * h * dk1)
            z3 = z + 0.5 * h * k2
            k3, dk3 = f(z3), Df(z3) @ (eye + 0.5 * h * dk2)
            z4 = z + h * k3
            k4, dk4 = f(z4), Df(z4) @ (eye + h * dk3)
            z = z + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
            total = (eye + (h / 6.0) * (dk1 + 2.0 * dk2 + 2.0 * dk3 + dk4)) @ total
        return total


def lorenz63_fixed_points(
    sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0
) -> np.ndarray:
    """Equilibria of the Lorenz-63 system.

    Returns
    -------
    ndarray, shape (3, 3) or (1, 3)
        The origin, then ``(+-s, +-s, rho - 1)`` with ``s = sqrt(beta (rho - 1))``
        when ``rho > 1``; only the origin otherwise. ``sigma`` does not enter.
    """
    origin = np.zeros((1, 3))
    if rho <= 1.0:
        return origin
    s = np.sqrt(beta * (rho - 1.0))
    return np.vstack((origin, [[s, s, rho - 1.0], [-s, -s, rho - 1.0]]))


def simulate_lorenz63(
    n_samples: int,
    dt: float = 0.01,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    x0=None,
    n_transient: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Integrate Lorenz-63 accurately and sample it every ``dt``.

    Uses ``scipy.integrate.solve_ivp`` (DOP853, rtol = atol = 1e-9) with
    ``t_eval`` at the sample times, and drops the first ``n_transient``
    samples.

    Parameters
    ----------
    n_samples : int
        Number of samples returned.
    dt : float
        Sampling interval (time units).
    sigma, rho, beta : float
        Lorenz parameters.
    x0 : array_like, shape (3,), optional
        Initial state; by default ``(0, 0, 25) + N(0, 1)`` drawn with ``seed``.
    n_transient : int
        Samples integrated and discarded before the returned ones.
    seed : int
        Seed for the default initial state.

    Returns
    -------
    ndarray, shape (n_samples, 3)
    """
    if n_samples < 1 or n_transient < 0:
        raise DsrpipeError("n_samples must be >= 1 and n_transient >= 0")
    if x0 is None:
        x0 = np.array([0.0, 0.0, 25.0]) + np.random.default_rng(seed).normal(size=3)
    x0 = np.asarray(x0, dtype=float)
    if x0.shape != (3,):
        raise DsrpipeError(f"x0 must have shape (3,), got {x0.shape}")

    def rhs(_t, u):
        x, y, w = u
        return [sigma * (y - x), x * (rho - w) - y, x * y - beta * w]

    n_total = n_transient + n_samples
    if n_total == 1:
        return x0[None, :].copy()
    t_eval = np.arange(n_total) * dt
    sol = solve_ivp(
        rhs, (0.0, t_eval[-1]), x0, method="DOP853", t_eval=t_eval, rtol=1e-9, atol=1e-9
    )
    if not sol.success:
        raise DsrpipeError(f"Lorenz-63 integration failed: {sol.message}")
    logger.debug("simulated Lorenz-63: %d samples after %d transient", n_samples, n_transient)
    return sol.y.T[n_transient:].copy()
