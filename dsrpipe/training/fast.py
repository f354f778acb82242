"""Fused CPU training kernels (Numba): forced rollout, BPTT, clipping and RAdam in one call.

The PyTorch path (:func:`dsrpipe.training.forcing.forced_loss` with autograd,
``clip_grad_norm_`` and ``torch.optim.RAdam``, all float64) is the reference. The
kernel reproduces it for every piecewise-linear model of the registry (the
families of :mod:`dsrpipe.models.kernels`), the identity readout with its
learned initial map (M >= N) and the affine readout ``x = B z`` with its
``pinv(B)`` teacher signals (the gradient through the pseudo-inverse included), per-step forcing weights (GTF with fixed or
adaptive alpha, STF), external inputs ``C s_t`` and the L2 / manifold-attractor
penalties of :mod:`dsrpipe.training.regularisation`. ``tests/test_fast.py``
compares loss, gradients and parameter trajectories with the reference.

One driver serves all families: the forward step is the models' compiled map
(:func:`dsrpipe.models.kernels.model_map`), the backward step
(:func:`_model_backward`) is the only family-specific part of BPTT. Weight
matrices get their gradients as products of the stored per-step rows
(``GY^T phi``, ``Z^T dpre``, eight rows per pass over the accumulator): once per
batch, or for the shallow family at M >= ``DOT_MIN_M`` per time step in the
backward pass while the step's rows are in cache (benchmarks/README.md,
session 4). Parameters, gradients and RAdam moments are flat float64 vectors
(:class:`~dsrpipe.models.kernels.FlatLayout`), so clipping and RAdam are one
loop each.

A batch's windows fall into :data:`BATCH_CHUNKS` fixed chunks (models from
:data:`CHUNK_MIN_WORK` multiply-adds per window and step; smaller ones keep the batch
whole), each rolled out and differentiated on its own into its own gradient buffer,
the buffers then summed in order. With ``train.threads`` >= 2 one model's chunks run on parallel threads
(:func:`train_step_split`, 1.5-1.8x at M = 20, L = 200); with one thread, or among
many models (:func:`train_steps`), they run one after the other. Either way the
same numbers come out, bit for bit.

Numba's on-disk cache (``cache=True``) is keyed on the source file of each cached
function only: the map of :mod:`dsrpipe.models.kernels` is inlined here, so after
editing ``kernels.py`` touch this file (and clear ``__pycache__``) before trusting
the training kernels; a fresh installation is unaffected.

Rollout of a window x (S, T + 1, N) with weights a_t and inputs s (S, T + 1, K)::

    z_0 = [x_0, init_map x_0]
    y_t = F(z~_{t-1}) + C s_t                  (t = 1..T; loss: mean (y_t[:N] - x_t)^2)
    z~_t = y_t + a_t (x_t - y_t)  on the first N units, y_t elsewhere

and with the affine readout ``x = B z`` (B (N, M), P = pinv(B))::

    z_0 = P x_0,   loss: mean (B y_t - x_t)^2,   z~_t = y_t + a_t (P x_t - y_t)  on all M units
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from dsrpipe.models.kernels import (
    D_AFF,
    D_CLIP,
    D_K,
    D_KIND,
    D_L,
    D_LIN,
    D_M,
    JIT,
    PL,
    SHALLOW,
    FlatLayout,
    axpy_rows,
    dot_rows,
    model_family,
    model_map,
    param_views,
    transposed_weights,
)

RADAM_BETA1 = 0.9
RADAM_BETA2 = 0.999
RADAM_EPS = 1e-8




@njit(inline="always", **JIT)
def _model_backward(dims, P, PT, G, Z, PRE, GC, GY, GZ, GYZ):
    """BPTT through one step ``Y = F(Z)`` of a block of S states (S, M).

    Given ``GY`` = dLoss/dY, writes ``GZ`` = dLoss/dZ (``GYZ`` (S, M) is scratch) and ``GC`` (S, cache_width)
    (shallow: dLoss/d pre; PL, dendritic: dLoss/d phi); accumulates the gradients
    of the per-unit parameters (A, h, h2, alpha, H) into the gradient views ``G``.
    The weight matrices' gradients come per batch from the stored rows
    (:func:`_weight_grads`).
    """
    kind = dims[D_KIND]
    A, W, W2T, h2, alpha, H = P[0], P[1], P[2], P[4], P[5], P[6]
    gA, gh, gh2, galpha, gH = G[0], G[3], G[4], G[5], G[6]
    S, M = Z.shape
    for s in range(S):
        for i in range(M):
            gy = GY[s, i]
            gA[i] += gy * Z[s, i]
            gh[i] += gy
            GZ[s, i] = A[i] * gy
    if kind == SHALLOW:
        L = h2.shape[0]
        if PT[1].shape[0] > 0:  # GY W1 as reductions over M (register tiles)
            dot_rows(PT[1], GY, GC)
        else:
            for s in range(S):
                for k in range(L):
                    GC[s, k] = 0.0
            axpy_rows(W, GY, GC)
        # selects, not branches: the signs of pre-activations are unpredictable
        if dims[D_CLIP]:
            for s in range(S):
                for k in range(L):
                    g0 = GC[s, k]
                    v = g0 if PRE[s, k] > 0.0 else 0.0
                    gh2[k] += v
                    GC[s, k] = v - (g0 if PRE[s, k] - h2[k] > 0.0 else 0.0)
        else:
            for s in range(S):
                for k in range(L):
                    v = GC[s, k] if PRE[s, k] > 0.0 else 0.0
                    gh2[k] += v
                    GC[s, k] = v
        dot_rows(W2T, GC, GYZ)
        for s in range(S):
            for j in range(M):
                GZ[s, j] += GYZ[s, j]
        return
    for s in range(S):
        for j in range(M):
            GC[s, j] = 0.0
    for i in range(M):  # d phi = GY offdiag(W)
        for s in range(S):
            gi = GY[s, i]
            for j in range(i):
                GC[s, j] += W[i, j] * gi
            for j in range(i + 1, M):
                GC[s, j] += W[i, j] * gi
    if kind == PL:
        n_lin = dims[D_LIN]
        for s in range(S):
            for j in range(M):
                GZ[s, j] += GC[s, j] if (j < n_lin or Z[s, j] > 0.0) else 0.0
        return
    B = alpha.shape[0]
    clipped = dims[D_CLIP]
    for s in range(S):
        for j in range(M):
            zj = Z[s, j]
            gp = GC[s, j]
            slope = 0.0
            zpos = clipped and zj > 0.0
            for b in range(B):
                q = zj - H[j, b]
                on = q > 0.0
                slope += alpha[b] if on else 0.0
                galpha[b] += gp * q if on else 0.0
                gH[j, b] -= gp * alpha[b] if on else 0.0
            if zpos:
                for b in range(B):
                    slope -= alpha[b]
                    galpha[b] -= gp * zj
            GZ[s, j] += gp * slope


@njit(**JIT)
def _outer_sum(Gr, Hr, out):
    """``out += Gr^T Hr``: Gr (R, a), Hr (R, b), out (a, b).

    Eight rows per pass over ``out``: an eighth of the accumulator traffic of
    rank-one updates (about 1.5x faster than four rows at M = 20, L = 200).
    """
    R, a = Gr.shape
    b = Hr.shape[1]
    r = 0
    while r + 8 <= R:
        for i in range(a):
            g0 = Gr[r, i]
            g1 = Gr[r + 1, i]
            g2 = Gr[r + 2, i]
            g3 = Gr[r + 3, i]
            g4 = Gr[r + 4, i]
            g5 = Gr[r + 5, i]
            g6 = Gr[r + 6, i]
            g7 = Gr[r + 7, i]
            for k in range(b):
                out[i, k] += (g0 * Hr[r, k] + g1 * Hr[r + 1, k] + g2 * Hr[r + 2, k] + g3 * Hr[r + 3, k]
                              + g4 * Hr[r + 4, k] + g5 * Hr[r + 5, k] + g6 * Hr[r + 6, k] + g7 * Hr[r + 7, k])
        r += 8
    while r < R:
        for i in range(a):
            gi = Gr[r, i]
            for k in range(b):
                out[i, k] += gi * Hr[r, k]
        r += 1


@njit(**JIT)
def _weight_grads(dims, G, Z, GY, HID, GC, U2, per_step):
    """Gradients of W (W1), W2^T and C from the stored rows (T * S, .) of a batch; W1 and W2^T
    not when ``per_step`` (they were accumulated in the backward pass)."""
    gW = G[1]
    if not per_step:
        _outer_sum(GY, HID, gW)
        if dims[D_KIND] == SHALLOW:
            _outer_sum(Z, GC, G[2])
    if dims[D_KIND] != SHALLOW:
        for i in range(gW.shape[0]):  # the diagonal of W is masked out of the map
            gW[i, i] = 0.0
    if dims[D_K] > 0:
        _outer_sum(GY, U2, G[7])


@njit(**JIT)
def _add_scaled(out, p, c):
    for i in range(p.shape[0]):
        for k in range(p.shape[1]):
            out[i, k] += c * p[i, k]


@njit(**JIT)
def _regularisation_grad(dims, P, G, reg):
    """Gradient of ``l2 * sum(W^2 + W2^2 + C^2)`` and the manifold-attractor penalty on
    the last ``reg[2]`` units (``reg`` = l2, mar_lambda, n_units), as in
    :func:`dsrpipe.training.regularisation.regularisation`."""
    l2 = reg[0]
    if l2 > 0.0:  # W (W1), W2^T, C
        _add_scaled(G[1], P[1], 2.0 * l2)
        _add_scaled(G[2], P[2], 2.0 * l2)
        _add_scaled(G[7], P[7], 2.0 * l2)
    lam = reg[1]
    n = int(reg[2])
    if lam > 0.0 and n > 0:
        A, W, h = P[0], P[1], P[3]
        M = A.shape[0]
        for i in range(M - n, M):
            G[0][i] -= 2.0 * lam * (1.0 - A[i])
            G[3][i] += 2.0 * lam * h[i]
            for k in range(W.shape[1]):
                G[1][i, k] += 2.0 * lam * W[i, k]


@njit(**JIT)
def _pinv_backward(B, P, GP, gB):
    """``gB += dLoss/dB`` through ``P = pinv(B)`` given ``GP`` = dLoss/dP (M, N); B (N, M).

    The derivative of the pseudo-inverse at constant rank (Golub and Pereyra 1973), the
    formula of PyTorch's ``pinv_backward`` that the reference path differentiates with::

        dB = -P^T GP P^T + (I - B P) GP^T P P^T + P^T P GP^T (I - P B)
    """
    N, M = B.shape
    Bc = np.empty((N, M))  # C-contiguous copies: np.dot calls BLAS on those
    Bc[:, :] = B
    Pc = np.empty((M, N))
    Pc[:, :] = P
    PT = np.empty((N, M))
    PT[:, :] = P.T
    GPT = np.empty((N, M))
    GPT[:, :] = GP.T
    B, P = Bc, Pc
    Q = -np.dot(B, P)  # I - B P
    for n in range(N):
        Q[n, n] += 1.0
    R = -np.dot(P, B)  # I - P B
    for j in range(M):
        R[j, j] += 1.0
    out = -np.dot(np.dot(PT, GP), PT) + np.dot(np.dot(Q, GPT), np.dot(P, PT)) \
        + np.dot(np.dot(np.dot(PT, P), GPT), R)
    for n in range(N):
        for j in range(M):
            gB[n, j] += out[n, j]


@njit(**JIT)
def loss_and_grad(dims, off, th, g, X, U, w, Z, GY, PRE, HID, GC, n_windows):
    """Forced-rollout MSE of the windows ``X`` (S, T + 1, N) and its gradient, added to ``g``.

    The loss and gradient are normalised by ``n_windows`` windows (the whole batch's S,
    of which ``X`` may be a chunk: :func:`batch_loss_and_grad`).

    ``th``, ``g`` flat parameters and gradient (layout ``dims``, ``off``); ``U``
    (S, T + 1, K) inputs (K may be 0), ``w`` (T,) forcing weights. Work arrays, time
    first (all S windows advance together): ``Z`` (T, S, M) receives the forced
    states z~_{t-1} each prediction started from; ``GY`` (T, S, M); ``PRE``,
    ``HID``, ``GC`` (T, S, cache_width).

    Identity readout: the observations are the first N units, the teacher signal is
    the data on them, z_0 = [x_0, init_map x_0]. Affine readout (``dims[D_AFF]``):
    the observations are ``B y``, the teacher signal ``pinv(B) x`` on all M units and
    z_0 = pinv(B) x_0; the gradient flows through ``pinv(B)`` as in the reference.
    """
    S, T1, N = X.shape
    T = T1 - 1
    M = dims[D_M]
    K = dims[D_K]
    affine = dims[D_AFF] != 0
    P = param_views(dims, off, th)
    PT = transposed_weights(dims, P)
    G = param_views(dims, off, g)
    per_step = PT[0].shape[0] > 0  # shallow, M >= DOT_MIN_M
    C, init, ginit = P[7], P[8], G[8]
    B, gB = P[9], G[9]
    scale = 1.0 / (n_windows * T * N)
    z = np.empty((S, M))
    y = np.empty((S, M))
    gz = np.zeros((S, M))
    scratch = np.empty((S, M))
    d = np.empty(N)
    tx = np.empty(M)
    loss = 0.0
    if affine:
        Pinv = np.ascontiguousarray(np.linalg.pinv(np.ascontiguousarray(B)))  # (M, N)
        GP = np.zeros((M, N))
        for s in range(S):
            for j in range(M):
                acc = 0.0
                for n in range(N):
                    acc += Pinv[j, n] * X[s, 0, n]
                z[s, j] = acc
    else:
        Pinv = np.empty((0, 0))
        GP = np.empty((0, 0))
        for s in range(S):
            for i in range(N):
                z[s, i] = X[s, 0, i]
            for j in range(M - N):
                acc = 0.0
                for n in range(N):
                    acc += init[j, n] * X[s, 0, n]
                z[s, N + j] = acc
    for t in range(T):
        Zt = Z[t]
        Zt[:, :] = z
        model_map(dims, P, PT, Zt, PRE[t], HID[t], y)
        a = w[t]
        for s in range(S):
            for i in range(M):
                acc = 0.0
                for k in range(K):
                    acc += C[i, k] * U[s, t + 1, k]
                y[s, i] += acc
            if affine:
                for n in range(N):  # residual of the observation B y
                    acc = 0.0
                    for j in range(M):
                        acc += B[n, j] * y[s, j]
                    d[n] = acc - X[s, t + 1, n]
                    loss += d[n] * d[n]
                for j in range(M):  # GY <- B^T d; gB += 2 scale d y^T
                    GY[t, s, j] = 0.0
                for n in range(N):
                    c2 = 2.0 * scale * d[n]
                    for j in range(M):
                        GY[t, s, j] += B[n, j] * d[n]
                        gB[n, j] += c2 * y[s, j]
                if a != 0.0:
                    for j in range(M):
                        acc = 0.0
                        for n in range(N):
                            acc += Pinv[j, n] * X[s, t + 1, n]
                        tx[j] = acc
                        z[s, j] = y[s, j] + a * (tx[j] - y[s, j])
                else:
                    for j in range(M):
                        z[s, j] = y[s, j]
                continue
            for i in range(N):
                x = X[s, t + 1, i]
                di = y[s, i] - x
                loss += di * di
                GY[t, s, i] = di
                z[s, i] = y[s, i] + a * (x - y[s, i]) if a != 0.0 else y[s, i]
            for i in range(N, M):
                z[s, i] = y[s, i]
    n_obs = M if affine else N  # units whose GY holds an observation residual
    for t in range(T - 1, -1, -1):
        a = w[t]
        GYt = GY[t]
        if affine and a != 0.0:  # dLoss/d teacher = a gz, teacher = pinv(B) x_{t+1}
            for s in range(S):
                for j in range(M):
                    c = a * gz[s, j]
                    for n in range(N):
                        GP[j, n] += c * X[s, t + 1, n]
        for s in range(S):
            for i in range(n_obs):
                GYt[s, i] = gz[s, i] * (1.0 - a) + 2.0 * scale * GYt[s, i]
            for i in range(n_obs, M):
                GYt[s, i] = gz[s, i]
        _model_backward(dims, P, PT, G, Z[t], PRE[t], GC[t], GYt, gz, scratch)
        if per_step:  # W1, W2^T gradients while the step's (S, L) rows are in cache
            _outer_sum(GYt, HID[t], G[1])
            _outer_sum(Z[t], GC[t], G[2])
    if affine:  # z_0 = pinv(B) x_0
        for s in range(S):
            for j in range(M):
                for n in range(N):
                    GP[j, n] += gz[s, j] * X[s, 0, n]
        _pinv_backward(B, Pinv, GP, gB)
    else:  # z_0 = [x_0, init_map x_0]
        for s in range(S):
            for j in range(M - N):
                for n in range(N):
                    ginit[j, n] += gz[s, N + j] * X[s, 0, n]
    Us = np.empty((T, S, K))
    for t in range(T):
        for s in range(S):
            for k in range(K):
                Us[t, s, k] = U[s, t + 1, k]
    R = T * S
    _weight_grads(dims, G, Z.reshape((R, M)), GY.reshape((R, M)), HID.reshape((R, HID.shape[2])),
                  GC.reshape((R, GC.shape[2])), Us.reshape((R, K)), per_step)
    return loss * scale


@njit(**JIT)
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


#: a batch's windows are split into this many fixed chunks (contiguous runs of windows),
#: each rolled out and differentiated on its own and the chunks' gradients summed in order:
#: the chunks can run on separate threads (:func:`train_step_split`, one model on the job's
#: cores), and a model's numbers do not depend on how many threads ran them
BATCH_CHUNKS = 2
#: ... for models from this many multiply-adds per window and time step of the map (M x L for
#: the shallow family, M x M otherwise); smaller ones (the tutorial's 3 x 50) keep the batch
#: whole: chunks cost them ~10 % on one thread and two threads gain them little
CHUNK_MIN_WORK = 1024


@njit(**JIT)
def n_chunks(dims, S):
    """How many chunks a batch of S windows falls into for the model of layout ``dims``."""
    M = dims[D_M]
    width = dims[D_L] if dims[D_KIND] == SHALLOW else M
    if M * width < CHUNK_MIN_WORK:
        return 1
    return min(BATCH_CHUNKS, S)


@njit(inline="always", **JIT)
def _chunk(dims, S, c):
    """Windows [s0, s1) of chunk c of a batch of S windows."""
    C = n_chunks(dims, S)
    return (c * S) // C, ((c + 1) * S) // C


@njit(**JIT)
def chunk_loss_and_grad(dims, off, th, G, X, U, w, Z, GY, PRE, HID, GC, c):
    """:func:`loss_and_grad` of chunk ``c`` of the batch ``X`` (S, T + 1, N) into ``G[c]``
    (zeroed first). The flat work arrays (:class:`Workspace`) hold the chunks one after another."""
    S, T1, _ = X.shape
    T = T1 - 1
    s0, s1 = _chunk(dims, S, c)
    n = s1 - s0
    M = dims[D_M]
    width = PRE.shape[0] // (T * S)
    g = G[c]
    g[:] = 0.0
    return loss_and_grad(dims, off, th, g, X[s0:s1], U[s0:s1], w,
                         Z[T * s0 * M:T * s1 * M].reshape((T, n, M)), GY[T * s0 * M:T * s1 * M].reshape((T, n, M)),
                         PRE[T * s0 * width:T * s1 * width].reshape((T, n, width)),
                         HID[T * s0 * width:T * s1 * width].reshape((T, n, width)),
                         GC[T * s0 * width:T * s1 * width].reshape((T, n, width)), S)


@njit(inline="always", **JIT)
def _sum_chunks(G, C, parts):
    """The batch's loss from the C chunks' ``parts``, its gradient summed into ``G[0]``, in chunk order."""
    loss = 0.0
    for c in range(C):
        loss += parts[c]
    for c in range(1, C):
        G[0] += G[c]
    return loss


@njit(**JIT)
def batch_loss_and_grad(dims, off, th, G, X, U, w, Z, GY, PRE, HID, GC):
    """Loss and gradient (in ``G[0]``) of the whole batch, chunk by chunk on this thread."""
    C = n_chunks(dims, X.shape[0])
    parts = np.zeros(BATCH_CHUNKS)
    for c in range(C):
        parts[c] = chunk_loss_and_grad(dims, off, th, G, X, U, w, Z, GY, PRE, HID, GC, c)
    return _sum_chunks(G, C, parts)


@njit(**JIT)
def _update(dims, off, th, g, m, v, loss, reg, lr, step, clip_norm):
    """Penalties, clipping and RAdam on the batch's gradient ``g``; returns ``loss``."""
    if not math.isfinite(loss):
        return loss
    _regularisation_grad(dims, param_views(dims, off, th), param_views(dims, off, g), reg)
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


@njit(**JIT)
def train_step(dims, off, th, G, m, v, X, U, w, reg, lr, step, clip_norm, Z, GY, PRE, HID, GC):
    """One fused training step on the flat parameters ``th``; updates ``th``, ``m``, ``v``
    in place and returns the loss (without penalties, as the reference reports it).

    ``G`` (BATCH_CHUNKS, size): the chunks' gradients. ``clip_norm`` <= 0 disables
    gradient-norm clipping; ``step`` is the 1-based optimiser step. A non-finite loss
    leaves the parameters untouched.
    """
    loss = batch_loss_and_grad(dims, off, th, G, X, U, w, Z, GY, PRE, HID, GC)
    return _update(dims, off, th, G[0], m, v, loss, reg, lr, step, clip_norm)


@njit(cache=True, parallel=True)
def train_steps(dims, off, TH, G, Mo, V, X, U, W, reg, lr, step, clip_norm, active, Z, GY, PRE, HID, GC, losses):
    """:func:`train_step` for every active model r, a prange over the leading axis of all
    arrays but ``dims``, ``off``, ``reg``. The single-model stepper calls it with R = 1 on
    one thread, so one model trained alone and the same model trained among many run the
    same compiled code and give bit-identical results."""
    for r in prange(TH.shape[0]):
        if active[r]:
            losses[r] = train_step(dims, off, TH[r], G[r], Mo[r], V[r], X[r], U[r], W[r], reg, lr, step,
                                   clip_norm, Z[r], GY[r], PRE[r], HID[r], GC[r])


@njit(cache=True, parallel=True)
def train_step_split(dims, off, TH, G, Mo, V, X, U, W, reg, lr, step, clip_norm, Z, GY, PRE, HID, GC, losses):
    """:func:`train_step` of one model (R = 1 arrays, as :func:`train_steps`) with the batch's
    chunks on parallel threads: the same chunks, summed in the same order, so the result is
    bit-identical to :func:`train_steps`."""
    C = n_chunks(dims, X.shape[1])
    parts = np.zeros(BATCH_CHUNKS)
    for c in prange(C):
        parts[c] = chunk_loss_and_grad(dims, off, TH[0], G[0], X[0], U[0], W[0], Z[0], GY[0], PRE[0], HID[0],
                                       GC[0], c)
    loss = _sum_chunks(G[0], C, parts)
    losses[0] = _update(dims, off, TH[0], G[0][0], Mo[0], V[0], loss, reg, lr, step, clip_norm)


class Workspace:
    """Work arrays of R models for batches of S windows of T steps (reused across steps).

    Flat per model: chunk c of the batch (:data:`BATCH_CHUNKS`) owns the contiguous block
    of its windows, laid out (T, windows, width) as :func:`loss_and_grad` wants it.
    """

    def __init__(self, layout: FlatLayout, S: int, T: int, R: int | None = None) -> None:
        M, width = int(layout.dims[D_M]), max(layout.cache_width, 1)
        lead = () if R is None else (R,)
        self.shape = (S, T)
        self.M, self.dims = M, layout.dims
        self.Z = np.zeros((*lead, T * S * M))
        self.GY = np.zeros((*lead, T * S * M))
        self.PRE = np.zeros((*lead, T * S * width))
        self.HID = np.zeros((*lead, T * S * width))
        self.GC = np.zeros((*lead, T * S * width))

    def arrays(self) -> tuple:
        return self.Z, self.GY, self.PRE, self.HID, self.GC

    def states(self, r: int | None = None) -> np.ndarray:
        """The forced states (S, T, M) of the last step (of model ``r``), a copy."""
        S, T = self.shape
        Z = self.Z if r is None else self.Z[r]
        blocks = []
        for c in range(n_chunks(self.dims, S)):
            s0, s1 = _chunk(self.dims, S, c)  # the kernels' own chunk bounds
            blocks.append(Z[T * s0 * self.M:T * s1 * self.M].reshape(T, s1 - s0, self.M))
        return np.concatenate(blocks, axis=1).transpose(1, 0, 2).copy()


def gradient_buffers(layout: FlatLayout, R: int | None = None) -> np.ndarray:
    """Zeroed per-chunk gradient buffers ((R,) BATCH_CHUNKS, size) of the fused kernels."""
    lead = () if R is None else (R,)
    return np.zeros((*lead, BATCH_CHUNKS, layout.size))


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

    Names are the model's parameter names and the readout's (``readout.init_map`` or
    ``readout.B``); shapes are the torch parameters' shapes.
    """
    layout = FlatLayout(model, readout)
    X = np.ascontiguousarray(batch.numpy() if hasattr(batch, "numpy") else batch, dtype=np.float64)
    S, T1, _ = X.shape
    w = np.ascontiguousarray(np.asarray(weights, dtype=np.float64))
    G = gradient_buffers(layout)
    ws = Workspace(layout, S, T1 - 1)
    loss = batch_loss_and_grad(layout.dims, layout.offsets, layout.pack(), G, X, _as_inputs(inputs, S, T1), w,
                               *ws.arrays())
    g = G[0]
    params = dict(model.named_parameters())
    params.update({f"readout.{k}": v for k, v in readout.named_parameters()})
    out = {}
    for name, sl in layout.names().items():
        shape = tuple(params[name].shape)
        flat = g[sl]
        out[name] = flat.reshape(shape[::-1]).T if name == "W2" else flat.reshape(shape)
    return loss, out


def fast_path_available(model, readout, cfg) -> tuple[bool, str]:
    """Whether a fused kernel covers this model and training setting, and if not, why.

    Covered: every piecewise-linear model of the registry, the identity readout
    (M >= N) and the affine readout (any M), GTF with fixed or adaptive alpha, STF,
    external inputs, L2 and manifold-attractor regularisation.
    """
    if model_family(model) is None:
        return False, f"no kernel for model {model.name}"
    if readout.kind not in ("identity", "affine"):
        return False, f"the kernel covers the identity and affine readouts, not {readout.kind}"
    if getattr(cfg, "method", "gtf") != "gtf":
        return False, f"no kernel for train.method {cfg.method}"
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
        # a model axis of length 1: the kernel of train_many (bit-identical results)
        self._theta = self.layout.pack()[None]
        self._grad = gradient_buffers(self.layout, R=1)
        self._m, self._v = (np.zeros_like(self._theta) for _ in range(2))
        # the batch's chunks on up to train.threads threads (bit-identical to one thread)
        self.threads = max(1, min(int(cfg.threads), n_chunks(self.layout.dims, cfg.batch_size),
                                  numba.config.NUMBA_NUM_THREADS))
        self.reg = regularisation_vector(model, cfg)
        self.clip = float(cfg.grad_clip_norm) if cfg.grad_clip_norm is not None else -1.0
        self.n_steps = 0
        self._work: Workspace | None = None
        self._weights: tuple = (None, None)
        self._active = np.ones(1, dtype=np.bool_)
        self._loss = np.zeros(1)

    @property
    def theta(self) -> np.ndarray:
        return self._theta[0]

    def _workspace(self, S: int, T: int) -> Workspace:
        if self._work is None or self._work.shape != (S, T):
            self._work = Workspace(self.layout, S, T, R=1)
        return self._work

    def _weights_array(self, weights) -> np.ndarray:
        if self._weights[0] is not weights:
            arr = weights.numpy() if hasattr(weights, "numpy") else weights
            self._weights = (weights, np.ascontiguousarray(arr, dtype=np.float64)[None])
        return self._weights[1]

    def step(self, batch, lr: float, weights, inputs=None) -> float:
        X = np.ascontiguousarray(batch.numpy(), dtype=np.float64)
        S, T1, _ = X.shape
        ws = self._workspace(S, T1 - 1)
        self.n_steps += 1
        threads = numba.get_num_threads()
        numba.set_num_threads(self.threads)  # one model: no spare thread spinning in the parallel region
        try:
            args = (self.layout.dims, self.layout.offsets, self._theta, self._grad, self._m, self._v, X[None],
                    _as_inputs(inputs, S, T1)[None], self._weights_array(weights), self.reg, float(lr),
                    float(self.n_steps), self.clip)
            if self.threads > 1:
                train_step_split(*args, *ws.arrays(), self._loss)
            else:
                train_steps(*args, self._active, *ws.arrays(), self._loss)
        finally:
            numba.set_num_threads(threads)
        return float(self._loss[0])

    @property
    def states(self):
        import torch

        if self._work is None:
            return None
        return torch.from_numpy(self._work.states(0))

    def finish(self) -> None:
        self.layout.unpack(self.theta)

    def state_dict(self) -> dict:
        return {"m": self._m[0].copy(), "v": self._v[0].copy(), "n_steps": self.n_steps}

    def load_state_dict(self, state: dict) -> None:
        self._m[0] = state["m"]
        self._v[0] = state["v"]
        self.n_steps = int(state["n_steps"])
        self.layout.pack(self._theta[0])
