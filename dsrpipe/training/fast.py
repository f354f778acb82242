"""Fused CPU training kernels (Numba): forced rollout, BPTT, clipping and RAdam in one call.

The PyTorch path (:func:`dsrpipe.training.forcing.forced_loss` with autograd,
``clip_grad_norm_`` and ``torch.optim.RAdam``, all float64) is the reference. The
kernel reproduces it for every piecewise-linear model of the registry (the
families of :mod:`dsrpipe.models.kernels`), the identity readout with its
learned initial map (M >= N), per-step forcing weights (GTF with fixed or
adaptive alpha, STF), external inputs ``C s_t`` and the L2 / manifold-attractor
penalties of :mod:`dsrpipe.training.regularisation`. ``tests/test_fast.py``
compares loss, gradients and parameter trajectories with the reference.

One driver serves all families: the forward step is the models' compiled map
(:func:`dsrpipe.models.kernels.model_map`), the backward step
(:func:`_model_backward`) is the only family-specific part of BPTT. Weight
matrices get their gradients once per batch as products of the stored
per-step rows (``GY^T phi``, ``Z^T dpre``) instead of a rank-one update per
time step. Parameters, gradients and RAdam moments are flat float64 vectors
(:class:`~dsrpipe.models.kernels.FlatLayout`), so clipping and RAdam are one
loop each.

Rollout of a window x (S, T + 1, N) with weights a_t and inputs s (S, T + 1, K)::

    z_0 = [x_0, init_map x_0]
    y_t = F(z~_{t-1}) + C s_t                  (t = 1..T; loss: mean (y_t[:N] - x_t)^2)
    z~_t = y_t + a_t (x_t - y_t)  on the first N units, y_t elsewhere
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from dsrpipe.models.kernels import (
    D_CLIP,
    D_K,
    D_KIND,
    D_L,
    D_LIN,
    D_M,
    FASTMATH,
    PL,
    S_A,
    S_ALPHA,
    S_C,
    S_H,
    S_H2,
    S_INIT,
    S_THR,
    S_W,
    S_W2T,
    SHALLOW,
    FlatLayout,
    model_family,
    model_map,
)

RADAM_BETA1 = 0.9
RADAM_BETA2 = 0.999
RADAM_EPS = 1e-8

_JIT = {"cache": True, "error_model": "numpy", "fastmath": FASTMATH}


@njit(**_JIT)
def _model_backward(dims, th, off, Z, PRE, HID, GC, r, gy, gz, g):
    """BPTT through one step ``y = F(z)`` with z = ``Z[r]``.

    Writes ``gz`` = dLoss/dz (M,) and the cache row ``GC[r]`` (shallow: dLoss/d pre;
    PL, dendritic: dLoss/d phi); accumulates the gradients of the per-unit
    parameters (A, h, h2, alpha, H) into ``g``. The weight matrices' gradients
    come per batch from the stored rows (:func:`_weight_grads`).
    """
    kind = dims[D_KIND]
    M = dims[D_M]
    oA = off[S_A]
    oW = off[S_W]
    oh = off[S_H]
    for i in range(M):
        g[oA + i] += gy[i] * Z[r, i]
        g[oh + i] += gy[i]
        gz[i] = th[oA + i] * gy[i]
    if kind == SHALLOW:
        L = dims[D_L]
        o2 = off[S_W2T]
        oh2 = off[S_H2]
        for k in range(L):
            GC[r, k] = 0.0
        for i in range(M):
            gi = gy[i]
            base = oW + i * L
            for k in range(L):
                GC[r, k] += th[base + k] * gi
        clipped = dims[D_CLIP]
        for k in range(L):
            p = PRE[r, k]
            d = 0.0
            if p > 0.0:
                g[oh2 + k] += GC[r, k]
                d = 1.0
            if clipped and p - th[oh2 + k] > 0.0:
                d -= 1.0
            GC[r, k] *= d
        for j in range(M):
            base = o2 + j * L
            acc = 0.0
            for k in range(L):
                acc += th[base + k] * GC[r, k]
            gz[j] += acc
        return
    for j in range(M):
        GC[r, j] = 0.0
    for i in range(M):  # d phi = offdiag(W)^T gy
        gi = gy[i]
        base = oW + i * M
        for j in range(i):
            GC[r, j] += th[base + j] * gi
        for j in range(i + 1, M):
            GC[r, j] += th[base + j] * gi
    if kind == PL:
        n_lin = dims[D_LIN]
        for j in range(M):
            if j < n_lin or Z[r, j] > 0.0:
                gz[j] += GC[r, j]
        return
    B = dims[D_L]
    oa = off[S_ALPHA]
    oH = off[S_THR]
    clipped = dims[D_CLIP]
    for j in range(M):
        zj = Z[r, j]
        gp = GC[r, j]
        slope = 0.0
        for b in range(B):
            q = zj - th[oH + j * B + b]
            if q > 0.0:
                slope += th[oa + b]
                g[oa + b] += gp * q
                g[oH + j * B + b] -= gp * th[oa + b]
            if clipped and zj > 0.0:
                slope -= th[oa + b]
                g[oa + b] -= gp * zj
        gz[j] += gp * slope


@njit(**_JIT)
def _outer_sum(G, H, g, o, start):
    """``g[o:] += (G^T H)[:, start:]`` flattened row-major: G (R, a), H (R, start + b)."""
    R, a = G.shape
    b = H.shape[1] - start
    acc = np.zeros((a, b))
    r = 0
    while r + 4 <= R:  # four rows per pass over acc: a quarter of the accumulator traffic
        for i in range(a):
            g0 = G[r, i]
            g1 = G[r + 1, i]
            g2 = G[r + 2, i]
            g3 = G[r + 3, i]
            for k in range(b):
                acc[i, k] += (g0 * H[r, start + k] + g1 * H[r + 1, start + k]
                              + g2 * H[r + 2, start + k] + g3 * H[r + 3, start + k])
        r += 4
    while r < R:
        for i in range(a):
            gi = G[r, i]
            for k in range(b):
                acc[i, k] += gi * H[r, start + k]
        r += 1
    for i in range(a):
        for k in range(b):
            g[o + i * b + k] += acc[i, k]


@njit(**_JIT)
def _weight_grads(dims, off, Z, GY, HID, GC, U2, g):
    """Per-batch gradients of W (W1), W2^T and C from the stored rows (S*T, .)."""
    M = dims[D_M]
    _outer_sum(GY, HID, g, off[S_W], 0)
    if dims[D_KIND] == SHALLOW:
        _outer_sum(Z, GC, g, off[S_W2T], 0)
    else:
        for i in range(M):  # the diagonal of W is masked out of the map
            g[off[S_W] + i * M + i] = 0.0
    if dims[D_K] > 0:
        _outer_sum(GY, U2, g, off[S_C], 0)


@njit(**_JIT)
def _regularisation_grad(dims, off, th, reg, g):
    """Gradient of ``l2 * sum(W^2 + W2^2 + C^2)`` and the manifold-attractor penalty on
    the last ``reg[2]`` units (``reg`` = l2, mar_lambda, n_units), as in
    :func:`dsrpipe.training.regularisation.regularisation`."""
    M = dims[D_M]
    width = dims[D_L] if dims[D_KIND] == SHALLOW else M
    l2 = reg[0]
    if l2 > 0.0:
        sizes = (M * width, M * dims[D_L] if dims[D_KIND] == SHALLOW else 0, M * dims[D_K])
        slots = (S_W, S_W2T, S_C)
        for q in range(3):
            o = off[slots[q]]
            if o >= 0:
                for i in range(sizes[q]):
                    g[o + i] += 2.0 * l2 * th[o + i]
    lam = reg[1]
    n = int(reg[2])
    if lam > 0.0 and n > 0:
        for i in range(M - n, M):
            g[off[S_A] + i] -= 2.0 * lam * (1.0 - th[off[S_A] + i])
            g[off[S_H] + i] += 2.0 * lam * th[off[S_H] + i]
            for k in range(width):
                g[off[S_W] + i * width + k] += 2.0 * lam * th[off[S_W] + i * width + k]


@njit(**_JIT)
def loss_and_grad(dims, th, off, X, U, w, g, Z, GY, PRE, HID, GC):
    """Forced-rollout MSE of the batch ``X`` (S, T + 1, N) and its gradient, added to ``g``.

    ``U`` (S, T + 1, K) inputs (K may be 0), ``w`` (T,) forcing weights. Work arrays
    (S * T rows): ``Z`` (., M) receives the forced states z~_{t-1} each prediction
    started from, ``GY`` (., M), ``PRE``, ``HID``, ``GC`` (., cache_width).
    """
    S, T1, N = X.shape
    T = T1 - 1
    M = dims[D_M]
    K = dims[D_K]
    oC = off[S_C]
    oI = off[S_INIT]
    scale = 1.0 / (S * T * N)
    z = np.empty(M)
    y = np.empty(M)
    gz = np.empty(M)
    gy = np.empty(M)
    loss = 0.0
    for s in range(S):
        for i in range(N):
            z[i] = X[s, 0, i]
        for j in range(M - N):
            acc = 0.0
            for n in range(N):
                acc += th[oI + j * N + n] * X[s, 0, n]
            z[N + j] = acc
        for t in range(T):
            r = s * T + t
            for i in range(M):
                Z[r, i] = z[i]
            model_map(dims, th, off, z, PRE, HID, r, y)
            for i in range(M):
                acc = 0.0
                for k in range(K):
                    acc += th[oC + i * K + k] * U[s, t + 1, k]
                y[i] += acc
            a = w[t]
            for i in range(N):
                x = X[s, t + 1, i]
                d = y[i] - x
                loss += d * d
                GY[r, i] = d
                z[i] = y[i] + a * (x - y[i]) if a != 0.0 else y[i]
            for i in range(N, M):
                z[i] = y[i]
        gz[:] = 0.0
        for t in range(T - 1, -1, -1):
            r = s * T + t
            a = w[t]
            for i in range(N):
                gy[i] = gz[i] * (1.0 - a) + 2.0 * scale * GY[r, i]
            for i in range(N, M):
                gy[i] = gz[i]
            for i in range(M):
                GY[r, i] = gy[i]
            _model_backward(dims, th, off, Z, PRE, HID, GC, r, gy, gz, g)
        for j in range(M - N):  # z_0 = [x_0, init_map x_0]
            for n in range(N):
                g[oI + j * N + n] += gz[N + j] * X[s, 0, n]
    U2 = np.empty((S * T, K))
    for s in range(S):
        for t in range(T):
            for k in range(K):
                U2[s * T + t, k] = U[s, t + 1, k]
    _weight_grads(dims, off, Z, GY, HID, GC, U2, g)
    return loss * scale


@njit(**_JIT)
def _radam(th, g, m, v, lr, step, coef):
    """torch.optim.RAdam (no weight decay) on flat vectors, the gradient scaled by ``coef``."""
    b1 = RADAM_BETA1
    b2 = RADAM_BETA2
    bc1 = 1.0 - b1 ** step
    bc2 = 1.0 - b2 ** step
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    rho_t = rho_inf - 2.0 * step * b2 ** step / bc2
    rect = 0.0
    if rho_t > 5.0:
        rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
    for i in range(th.shape[0]):
        gi = g[i] * coef
        m[i] = m[i] + (1.0 - b1) * (gi - m[i])
        v[i] = b2 * v[i] + (1.0 - b2) * gi * gi
        upd = m[i] / bc1
        if rho_t > 5.0:
            upd = upd * rect * math.sqrt(bc2) / (math.sqrt(v[i]) + RADAM_EPS)
        th[i] -= lr * upd


@njit(**_JIT)
def train_step(dims, th, off, g, m, v, X, U, w, reg, lr, step, clip_norm, Z, GY, PRE, HID, GC):
    """One fused training step on the flat parameters ``th``; updates ``th``, ``m``, ``v``
    in place and returns the loss (without penalties, as the reference reports it).

    ``clip_norm`` <= 0 disables gradient-norm clipping; ``step`` is the 1-based
    optimiser step. A non-finite loss leaves the parameters untouched.
    """
    g[:] = 0.0
    loss = loss_and_grad(dims, th, off, X, U, w, g, Z, GY, PRE, HID, GC)
    if not math.isfinite(loss):
        return loss
    _regularisation_grad(dims, off, th, reg, g)
    coef = 1.0
    if clip_norm > 0.0:
        total = 0.0
        for i in range(g.shape[0]):
            total += g[i] * g[i]
        c = clip_norm / (math.sqrt(total) + 1e-6)
        if c < 1.0:
            coef = c
    _radam(th, g, m, v, lr, step, coef)
    return loss


class Workspace:
    """Work arrays of one model for batches of S windows of T steps (reused across steps)."""

    def __init__(self, layout: FlatLayout, S: int, T: int) -> None:
        M, width = int(layout.dims[D_M]), max(layout.cache_width, 1)
        self.shape = (S, T)
        self.Z = np.zeros((S * T, M))
        self.GY = np.zeros((S * T, M))
        self.PRE = np.zeros((S * T, width))
        self.HID = np.zeros((S * T, width))
        self.GC = np.zeros((S * T, width))

    def arrays(self) -> tuple:
        return self.Z, self.GY, self.PRE, self.HID, self.GC


def _as_inputs(inputs, S: int, T1: int) -> np.ndarray:
    if inputs is None:
        return np.zeros((S, T1, 0))
    arr = inputs.numpy() if hasattr(inputs, "numpy") else inputs
    return np.ascontiguousarray(arr, dtype=np.float64)


def regularisation_vector(model, cfg) -> np.ndarray:
    """(l2, mar_lambda, number of regularised units) for the kernels."""
    from dsrpipe.training.regularisation import n_regularised

    return np.array([cfg.l2, cfg.mar_lambda, n_regularised(model, cfg.mar_fraction)], dtype=np.float64)


def loss_and_grads(model, readout, batch, weights, inputs=None) -> tuple[float, dict[str, np.ndarray]]:
    """The kernel's loss and gradients for one batch, by parameter name (tests, debugging).

    Names are the model's parameter names and ``readout.init_map``; shapes are the
    torch parameters' shapes.
    """
    layout = FlatLayout(model, readout)
    X = np.ascontiguousarray(batch.numpy() if hasattr(batch, "numpy") else batch, dtype=np.float64)
    S, T1, _ = X.shape
    w = np.ascontiguousarray(np.asarray(weights, dtype=np.float64))
    g = np.zeros(layout.size)
    ws = Workspace(layout, S, T1 - 1)
    loss = loss_and_grad(layout.dims, layout.pack(), layout.offsets, X, _as_inputs(inputs, S, T1), w, g,
                         *ws.arrays())
    params = dict(model.named_parameters())
    params["readout.init_map"] = readout.init_map
    out = {}
    for name, sl in layout.names().items():
        shape = tuple(params[name].shape)
        flat = g[sl]
        out[name] = flat.reshape(shape[::-1]).T if name == "W2" else flat.reshape(shape)
    return loss, out


def fast_path_available(model, readout, cfg) -> tuple[bool, str]:
    """Whether a fused kernel covers this model and training setting, and if not, why.

    Covered: every piecewise-linear model of the registry, the identity readout
    (M >= N), GTF with fixed or adaptive alpha, STF, external inputs, L2 and
    manifold-attractor regularisation. Not covered: the affine readout.
    """
    if model_family(model) is None:
        return False, f"no kernel for model {model.name}"
    if readout.kind != "identity":
        return False, f"the kernel covers the identity readout, not {readout.kind}"
    if cfg.forcing not in ("gtf", "stf"):
        return False, f"no kernel for forcing {cfg.forcing}"
    return True, ""


class NumbaStepper:
    """The fused Numba kernel as a training stepper (the interface of ``TorchStepper``).

    ``states`` (S, T, M) torch tensor: the forced states of the last step's
    rollout (a view of the kernel's work array), for adaptive alpha.
    """

    name = "numba"

    def __init__(self, model, readout, cfg) -> None:
        self.model, self.readout, self.cfg = model, readout, cfg
        self.layout = FlatLayout(model, readout)
        self.theta = self.layout.pack()
        self.grad = np.zeros_like(self.theta)
        self.m = np.zeros_like(self.theta)
        self.v = np.zeros_like(self.theta)
        self.reg = regularisation_vector(model, cfg)
        self.clip = float(cfg.grad_clip_norm) if cfg.grad_clip_norm is not None else -1.0
        self.n_steps = 0
        self._work: Workspace | None = None
        self._weights: tuple = (None, None)

    def _workspace(self, S: int, T: int) -> Workspace:
        if self._work is None or self._work.shape != (S, T):
            self._work = Workspace(self.layout, S, T)
        return self._work

    def _weights_array(self, weights) -> np.ndarray:
        if self._weights[0] is not weights:
            arr = weights.numpy() if hasattr(weights, "numpy") else weights
            self._weights = (weights, np.ascontiguousarray(arr, dtype=np.float64))
        return self._weights[1]

    def step(self, batch, lr: float, weights, inputs=None) -> float:
        X = np.ascontiguousarray(batch.numpy(), dtype=np.float64)
        S, T1, _ = X.shape
        ws = self._workspace(S, T1 - 1)
        self.n_steps += 1
        return train_step(self.layout.dims, self.theta, self.layout.offsets, self.grad, self.m, self.v, X,
                          _as_inputs(inputs, S, T1), self._weights_array(weights), self.reg, float(lr),
                          float(self.n_steps), self.clip, *ws.arrays())

    @property
    def states(self):
        import torch

        if self._work is None:
            return None
        S, T = self._work.shape
        return torch.from_numpy(self._work.Z.reshape(S, T, -1))

    def finish(self) -> None:
        self.layout.unpack(self.theta)

    def state_dict(self) -> dict:
        return {"m": self.m.copy(), "v": self.v.copy(), "n_steps": self.n_steps}

    def load_state_dict(self, state: dict) -> None:
        self.m[:] = state["m"]
        self.v[:] = state["v"]
        self.n_steps = int(state["n_steps"])
        self.theta = self.layout.pack()
