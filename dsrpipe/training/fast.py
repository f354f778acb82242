"""Fused CPU training kernels (Numba): GTF forward, BPTT backward and RAdam in one call.

The PyTorch path (:func:`dsrpipe.training.forcing.forced_loss` with autograd and
``torch.optim.RAdam``) is the reference. A kernel here must reproduce it: the
tests compare loss, gradients and the parameter trajectory over several
optimiser steps in float64 for every model that has a kernel.

Model equations (shPLRNN, see :mod:`dsrpipe.models.shallow`)::

    pre_t = W2 z_{t-1} + h2
    y_t   = A * z_{t-1} + W1 [relu(pre_t) - c relu(pre_t - h2)] + h1     (c = 1 if clipped)
    z_t   = (1 - alpha) y_t + alpha x_t    on the first N units, y_t elsewhere
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

RADAM_BETA1 = 0.9
RADAM_BETA2 = 0.999
RADAM_EPS = 1e-8


# reassociation lets LLVM vectorise the reductions over L; NaN/inf semantics are kept
@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz", "arcp"})
def _shplrnn_gtf_grad(A, W1, W2, h1, h2, X, alpha, clipped, gA, gW1, gW2, gh1, gh2):
    """Loss and gradients (accumulated into g*) of the GTF MSE for one batch X (S, T+1, N)."""
    S, T1, N = X.shape
    T = T1 - 1
    M = A.shape[0]
    L = h2.shape[0]
    scale = 1.0 / (S * T * N)
    Z = np.zeros((T, M))  # z_{t-1}, the state each prediction starts from
    H = np.zeros((T, L))  # hidden activations
    D = np.zeros((T, L))  # d hidden / d pre-activation (0 / 1, or -1..1 when clipped)
    E = np.zeros((T, L))  # d hidden / d h2 (the indicator of pre > 0)
    Y = np.zeros((T, M))  # predictions
    loss = 0.0
    z = np.zeros(M)
    gz = np.zeros(M)
    gy = np.zeros(M)
    dh = np.zeros(L)
    pre = np.zeros(L)
    dpre = np.zeros(L)
    W2T = np.ascontiguousarray(W2.T)  # (M, L): inner loops run over L (SIMD)
    gW2T = np.zeros((M, L))
    for s in range(S):
        # forward
        z[:] = 0.0
        for i in range(N):
            z[i] = X[s, 0, i]
        for t in range(T):
            for i in range(M):
                Z[t, i] = z[i]
            pre[:] = h2
            for j in range(M):
                zj = z[j]
                for k in range(L):
                    pre[k] += W2T[j, k] * zj
            for k in range(L):
                p = pre[k]
                e = 1.0 if p > 0.0 else 0.0
                H[t, k] = p * e
                E[t, k] = e
                D[t, k] = e
            if clipped:
                for k in range(L):
                    q = pre[k] - h2[k]
                    if q > 0.0:
                        H[t, k] -= q
                        D[t, k] -= 1.0
            for i in range(M):
                acc = A[i] * z[i] + h1[i]
                for k in range(L):
                    acc += W1[i, k] * H[t, k]
                Y[t, i] = acc
            for i in range(N):
                r = Y[t, i] - X[s, t + 1, i]
                loss += r * r
                z[i] = (1.0 - alpha) * Y[t, i] + alpha * X[s, t + 1, i]
            for i in range(N, M):
                z[i] = Y[t, i]
        # backward through time
        gz[:] = 0.0
        for t in range(T - 1, -1, -1):
            for i in range(M):
                if i < N:
                    g = gz[i] * (1.0 - alpha) + 2.0 * scale * (Y[t, i] - X[s, t + 1, i])
                else:
                    g = gz[i]
                gy[i] = g
                gA[i] += g * Z[t, i]
                gh1[i] += g
            dh[:] = 0.0
            for i in range(M):
                g = gy[i]
                for k in range(L):
                    gW1[i, k] += g * H[t, k]
                    dh[k] += W1[i, k] * g
            for i in range(M):
                gz[i] = A[i] * gy[i]
            for k in range(L):
                gh2[k] += dh[k] * E[t, k]
                dpre[k] = dh[k] * D[t, k]
            for j in range(M):
                zj = Z[t, j]
                acc = 0.0
                for k in range(L):
                    gW2T[j, k] += dpre[k] * zj
                    acc += W2T[j, k] * dpre[k]
                gz[j] += acc
    gW2 += gW2T.T
    return loss * scale


@njit(cache=True)
def _radam_update(p, g, m, v, lr, step, coef):
    """torch.optim.RAdam (no weight decay) on one parameter array, gradient scaled by coef."""
    b1 = RADAM_BETA1
    b2 = RADAM_BETA2
    bc1 = 1.0 - b1 ** step
    bc2 = 1.0 - b2 ** step
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    rho_t = rho_inf - 2.0 * step * b2 ** step / bc2
    rect = 0.0
    if rho_t > 5.0:
        rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
    pf = p.reshape(-1)
    gf = g.reshape(-1)
    mf = m.reshape(-1)
    vf = v.reshape(-1)
    for i in range(pf.shape[0]):
        gi = gf[i] * coef
        mf[i] = mf[i] + (1.0 - b1) * (gi - mf[i])
        vf[i] = b2 * vf[i] + (1.0 - b2) * gi * gi
        upd = mf[i] / bc1
        if rho_t > 5.0:
            upd = upd * rect * math.sqrt(bc2) / (math.sqrt(vf[i]) + RADAM_EPS)
        pf[i] -= lr * upd


@njit(cache=True)
def shplrnn_gtf_train_step(params, grads, m_state, v_state, X, alpha, clipped, lr, step, clip_norm):
    """One fused training step; updates params, moments in place; returns the loss.

    ``params``, ``grads``, ``m_state``, ``v_state`` are tuples (A, W1, W2, h1, h2).
    ``clip_norm`` <= 0 disables gradient-norm clipping.
    """
    gA, gW1, gW2, gh1, gh2 = grads
    gA[:] = 0.0
    gW1[:, :] = 0.0
    gW2[:, :] = 0.0
    gh1[:] = 0.0
    gh2[:] = 0.0
    loss = _shplrnn_gtf_grad(params[0], params[1], params[2], params[3], params[4], X, alpha, clipped,
                             gA, gW1, gW2, gh1, gh2)
    coef = 1.0
    if clip_norm > 0.0:
        total = math.sqrt(np.sum(gA * gA) + np.sum(gW1 * gW1) + np.sum(gW2 * gW2)
                          + np.sum(gh1 * gh1) + np.sum(gh2 * gh2))
        c = clip_norm / (total + 1e-6)
        if c < 1.0:
            coef = c
    if math.isfinite(loss):
        _radam_update(params[0], gA, m_state[0], v_state[0], lr, step, coef)
        _radam_update(params[1], gW1, m_state[1], v_state[1], lr, step, coef)
        _radam_update(params[2], gW2, m_state[2], v_state[2], lr, step, coef)
        _radam_update(params[3], gh1, m_state[3], v_state[3], lr, step, coef)
        _radam_update(params[4], gh2, m_state[4], v_state[4], lr, step, coef)
    return loss


def shplrnn_gtf_loss_and_grads(arrays, X, alpha, clipped):
    """Loss and gradients (dict name -> array) for tests; arrays: dict of float64 parameters."""
    names = ("A", "W1", "W2", "h1", "h2")
    grads = [np.zeros_like(arrays[n]) for n in names]
    loss = _shplrnn_gtf_grad(*(arrays[n] for n in names), X, alpha, clipped, *grads)
    return loss, dict(zip(names, grads))


def fast_path_available(model, readout, cfg) -> tuple[bool, str]:
    """Whether a fused kernel covers this model and training setting, and if not, why."""
    from dsrpipe.models.shallow import ShallowPLRNN

    if not isinstance(model, ShallowPLRNN):
        return False, f"no kernel for model {model.name}"
    if readout.kind != "identity" or readout.latent_dim != readout.n_obs:
        return False, "the kernel covers the identity readout with latent_dim = channels"
    if cfg.forcing != "gtf" or cfg.alpha_mode != "fixed":
        return False, "the kernel covers GTF with a fixed alpha"
    if model.input_dim:
        return False, "the kernel has no external inputs"
    if cfg.l2 > 0 or cfg.mar_fraction > 0:
        return False, "the kernel has no regularisation"
    return True, ""


class NumbaStepper:
    """The fused Numba kernel (shPLRNN family, GTF with fixed alpha, identity readout with M = N)."""

    name = "numba"
    _names = ("A", "W1", "W2", "h1", "h2")

    def __init__(self, model, readout, cfg) -> None:
        self.model, self.cfg = model, cfg
        self.params = tuple(getattr(model, n).detach().numpy().astype(np.float64).copy() for n in self._names)
        self.grads = tuple(np.zeros_like(p) for p in self.params)
        self.m = tuple(np.zeros_like(p) for p in self.params)
        self.v = tuple(np.zeros_like(p) for p in self.params)
        self.n_steps = 0
        self.states = None

    def step(self, batch, lr: float, weights, inputs=None) -> float:
        self.n_steps += 1
        clip = self.cfg.grad_clip_norm if self.cfg.grad_clip_norm is not None else -1.0
        return shplrnn_gtf_train_step(self.params, self.grads, self.m, self.v, batch.numpy(),
                                      float(weights[0]), bool(self.model.clipped), float(lr),
                                      float(self.n_steps), float(clip))

    def finish(self) -> None:
        import torch

        with torch.no_grad():
            for name, value in zip(self._names, self.params):
                getattr(self.model, name).copy_(torch.from_numpy(value))

    def state_dict(self) -> dict:
        return {"m": [a.copy() for a in self.m], "v": [a.copy() for a in self.v], "n_steps": self.n_steps}

    def load_state_dict(self, state: dict) -> None:
        for dst, src in zip(self.m + self.v, list(state["m"]) + list(state["v"])):
            dst[...] = src
        self.n_steps = int(state["n_steps"])
