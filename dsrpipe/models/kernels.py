"""Compiled (Numba) copies of the piecewise-linear models' maps.

A second, compiled copy of each model's ``step`` for long orbits (generation,
Lyapunov spectra), where one torch call per step costs ~40 us of overhead, and
for the fused training kernels (:mod:`dsrpipe.training.fast`), which reuse
:func:`model_map` as their forward step. ``tests/test_models.py`` checks every
kernel against the model's own ``step``; ``tests/test_fast.py`` checks the
training kernels against autograd.

A model's parameters travel as one flat float64 vector ``theta`` described by
a :class:`FlatLayout`: an offset per parameter slot (:data:`SLOTS`) and the
integer sizes ``dims`` (:data:`DIMS`). The shPLRNN's ``W2`` is stored
transposed (M, L), so that every inner loop runs over the contiguous hidden
axis. The families::

    shallow (shPLRNN, clipped-shPLRNN)   F(z) = A*z + W1 [relu(W2 z + h2) - c relu(W2 z)] + h1
    PL (PLRNN, ALRNN)                    F(z) = A*z + offdiag(W) phi(z) + h,
                                         phi = identity on the first M - P units, relu on the rest
    dendritic (dendPLRNN, clipped)       F(z) = A*z + offdiag(W) phi(z) + h,
                                         phi_i = sum_b alpha_b [relu(z_i - H_ib) - c relu(z_i)]

with c = 1 for the clipped forms.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

#: parameter slots of the flat vector, in ``FlatLayout.offsets`` order
SLOTS = ("A", "W", "W2T", "h", "h2", "alpha", "H", "C", "init_map", "B")
S_A, S_W, S_W2T, S_H, S_H2, S_ALPHA, S_THR, S_C, S_INIT, S_B = range(len(SLOTS))
#: entries of ``FlatLayout.dims`` (``affine``: 1 for the affine readout ``x = B z``)
DIMS = ("kind", "M", "N", "K", "L", "n_linear", "clipped", "affine")
D_KIND, D_M, D_N, D_K, D_L, D_LIN, D_CLIP, D_AFF = range(len(DIMS))
#: model families (``dims[D_KIND]``)
SHALLOW, PL, DENDRITIC = 0, 1, 2

#: reassociation lets LLVM vectorise the reductions; NaN/inf semantics are kept
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

#: torch parameter name -> slot, per family (C and the readout's init_map are common)
_NAMES = {
    SHALLOW: {"A": S_A, "W1": S_W, "W2": S_W2T, "h1": S_H, "h2": S_H2},
    PL: {"A": S_A, "W": S_W, "h": S_H},
    DENDRITIC: {"A": S_A, "W": S_W, "h": S_H, "alpha": S_ALPHA, "H": S_THR},
}


def model_family(model) -> int | None:
    """The kernel family of ``model`` (SHALLOW, PL, DENDRITIC), or None without a kernel."""
    from dsrpipe.models.dendritic import DendriticPLRNN
    from dsrpipe.models.plrnn import PLRNN
    from dsrpipe.models.shallow import ShallowPLRNN

    if isinstance(model, ShallowPLRNN):
        return SHALLOW
    if isinstance(model, PLRNN):
        return PL
    if isinstance(model, DendriticPLRNN):
        return DENDRITIC
    return None


class FlatLayout:
    """Where each parameter of a model (and optionally an identity readout) sits in ``theta``.

    Parameters
    ----------
    model : LatentModel with a kernel family (:func:`model_family`)
    readout : Readout, optional
        Its parameter joins the vector: the identity readout's ``init_map``
        (M - N, N) or the affine readout's ``B`` (N, M); N = M without a readout.

    Attributes
    ----------
    dims : ndarray int64, (len(DIMS),)
    offsets : ndarray int64, (len(SLOTS),)  -1 for slots the model lacks
    size : int  length of ``theta``
    cache_width : int  per-step cache length of the family (L for shallow, M otherwise)
    """

    def __init__(self, model, readout=None) -> None:
        kind = model_family(model)
        if kind is None:
            raise ValueError(f"no compiled kernel for model {model.name}")
        M = model.latent_dim
        N = readout.n_obs if readout is not None else M
        L = {SHALLOW: getattr(model, "hidden_dim", 0), DENDRITIC: getattr(model, "n_bases", 0)}.get(kind, 0)
        n_linear = M - getattr(model, "n_relu", M) if kind == PL else 0
        affine = readout is not None and readout.kind == "affine"
        self.dims = np.array([kind, M, N, model.input_dim, L, n_linear, int(getattr(model, "clipped", False)),
                              int(affine)], dtype=np.int64)
        self.cache_width = L if kind == SHALLOW else M
        names = {**_NAMES[kind], "C": S_C}
        self._entries = []  # (slot, module, name)
        for name, _ in model.named_parameters():
            self._entries.append((names[name], model, name))
        if readout is not None:
            if readout.kind not in ("identity", "affine"):
                raise ValueError(f"the flat layout has no slot for the {readout.kind} readout")
            self._entries.append((S_B, readout, "B") if affine else (S_INIT, readout, "init_map"))
        self.offsets = np.full(len(SLOTS), -1, dtype=np.int64)
        pos = 0
        for slot, module, name in self._entries:
            self.offsets[slot] = pos
            pos += getattr(module, name).numel()
        self.size = pos

    def pack(self, out: np.ndarray | None = None) -> np.ndarray:
        """The current parameters as a flat float64 vector (written into ``out`` if given)."""
        theta = np.empty(self.size) if out is None else out
        for slot, module, name in self._entries:
            value = getattr(module, name).detach().cpu().numpy().astype(np.float64)
            if slot == S_W2T:
                value = value.T
            o = self.offsets[slot]
            theta[o:o + value.size] = value.ravel()
        return theta

    def unpack(self, theta: np.ndarray) -> None:
        """Copy ``theta`` into the modules' parameters."""
        with torch.no_grad():
            for slot, module, name in self._entries:
                p = getattr(module, name)
                o = self.offsets[slot]
                flat = theta[o:o + p.numel()]
                value = flat.reshape(p.shape[::-1]).T if slot == S_W2T else flat.reshape(p.shape)
                p.copy_(torch.from_numpy(np.ascontiguousarray(value)))

    def names(self) -> dict[str, slice]:
        """Parameter name (``readout.init_map`` for the readout's) -> slice of ``theta``."""
        out = {}
        for slot, module, name in self._entries:
            o = int(self.offsets[slot])
            key = f"readout.{name}" if slot in (S_INIT, S_B) else name
            out[key] = slice(o, o + getattr(module, name).numel())
        return out


JIT = {"cache": True, "error_model": "numpy", "fastmath": FASTMATH}

#: latent dimension from which the shallow map's products over M (``W2 z``, and ``W1^T g`` in
#: training) run as register-tiled reductions on transposed weights (:func:`transposed_weights`)
#: instead of rank-4 updates of the (S, L) block; below it the reductions are too short
DOT_MIN_M = 8


@njit(**JIT)
def _view1(th, o, n):
    if o < 0 or n == 0:
        return th[:0]
    return th[o:o + n]


@njit(**JIT)
def _view2(th, o, rows, cols):
    if o < 0 or rows * cols == 0:
        return th[:0].reshape((0, cols))
    return th[o:o + rows * cols].reshape((rows, cols))


@njit(**JIT)
def param_views(dims, off, th):
    """Views of the flat vector ``th`` per slot: (A, W, W2T, h, h2, alpha, H, C, init_map, B).

    Shapes: A, h (M,); W (M, L) for the shallow family (W1), else (M, M);
    W2T (M, L); h2 (L,); alpha (n_bases,); H (M, n_bases); C (M, K);
    init_map (M - N, N) (identity readout); B (N, M) (affine readout).
    Slots a model lacks are empty. Kernels index these views, not ``th`` with
    offsets: contiguous views let LLVM vectorise the inner loops (~5x).
    """
    kind = dims[D_KIND]
    M = dims[D_M]
    N = dims[D_N]
    L = dims[D_L] if kind == SHALLOW else 0
    B = dims[D_L] if kind == DENDRITIC else 0
    width = L if kind == SHALLOW else M
    return (_view1(th, off[S_A], M), _view2(th, off[S_W], M, width), _view2(th, off[S_W2T], M, L),
            _view1(th, off[S_H], M), _view1(th, off[S_H2], L), _view1(th, off[S_ALPHA], B),
            _view2(th, off[S_THR], M, B), _view2(th, off[S_C], M, dims[D_K]),
            _view2(th, off[S_INIT], max(M - N, 0), N), _view2(th, off[S_B], N, M))


@njit(**JIT)
def transposed_weights(dims, P):
    """(W2 (L, M), W1^T (L, M)), contiguous copies for the shallow family at M >= DOT_MIN_M.

    Empty (0, M) arrays otherwise (the kernels then take the rank-4 update form).
    """
    M = dims[D_M]
    if dims[D_KIND] != SHALLOW or M < DOT_MIN_M:
        return np.empty((0, M)), np.empty((0, M))
    return np.ascontiguousarray(P[2].T), np.ascontiguousarray(P[1].T)


@njit(inline="always", **JIT)
def axpy_rows(Wt, Zb, out):
    """``out[s, k] += sum_j Wt[j, k] Zb[s, j]``: Wt (J, L), Zb (S, J), out (S, L).

    Four rows of ``Wt`` per pass over ``out[s]`` (a quarter of the load/store traffic).
    """
    J, L = Wt.shape
    for s in range(Zb.shape[0]):
        j = 0
        while j + 4 <= J:
            z0 = Zb[s, j]
            z1 = Zb[s, j + 1]
            z2 = Zb[s, j + 2]
            z3 = Zb[s, j + 3]
            for k in range(L):
                out[s, k] += Wt[j, k] * z0 + Wt[j + 1, k] * z1 + Wt[j + 2, k] * z2 + Wt[j + 3, k] * z3
            j += 4
        while j < J:
            zj = Zb[s, j]
            for k in range(L):
                out[s, k] += Wt[j, k] * zj
            j += 1


@njit(inline="always", **JIT)
def dot_rows(W, Hb, out):
    """``out[s, i] = sum_k W[i, k] Hb[s, k]``: W (I, L), Hb (S, L), out (S, I).

    Reductions over the contiguous axis k in register tiles of 4 rows x 2 states: the loop
    vectoriser keeps the 8 accumulators in registers (about 1.6x the four-state form at
    I = 20, L = 200); rows left over (I < 4 at M = 3) take the four-state form.
    """
    I, L = W.shape
    S = Hb.shape[0]
    i = 0
    while i + 4 <= I:
        s = 0
        while s + 2 <= S:
            a00 = 0.0
            a01 = 0.0
            a10 = 0.0
            a11 = 0.0
            a20 = 0.0
            a21 = 0.0
            a30 = 0.0
            a31 = 0.0
            for k in range(L):
                h0 = Hb[s, k]
                h1 = Hb[s + 1, k]
                w0 = W[i, k]
                w1 = W[i + 1, k]
                w2 = W[i + 2, k]
                w3 = W[i + 3, k]
                a00 += w0 * h0
                a01 += w0 * h1
                a10 += w1 * h0
                a11 += w1 * h1
                a20 += w2 * h0
                a21 += w2 * h1
                a30 += w3 * h0
                a31 += w3 * h1
            out[s, i] = a00
            out[s + 1, i] = a01
            out[s, i + 1] = a10
            out[s + 1, i + 1] = a11
            out[s, i + 2] = a20
            out[s + 1, i + 2] = a21
            out[s, i + 3] = a30
            out[s + 1, i + 3] = a31
            s += 2
        if s < S:
            for r in range(i, i + 4):
                acc = 0.0
                for k in range(L):
                    acc += W[r, k] * Hb[s, k]
                out[s, r] = acc
        i += 4
    while i < I:
        s = 0
        while s + 4 <= S:
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            a3 = 0.0
            for k in range(L):
                w = W[i, k]
                a0 += w * Hb[s, k]
                a1 += w * Hb[s + 1, k]
                a2 += w * Hb[s + 2, k]
                a3 += w * Hb[s + 3, k]
            out[s, i] = a0
            out[s + 1, i] = a1
            out[s + 2, i] = a2
            out[s + 3, i] = a3
            s += 4
        while s < S:
            acc = 0.0
            for k in range(L):
                acc += W[i, k] * Hb[s, k]
            out[s, i] = acc
            s += 1
        i += 1


@njit(inline="always", **JIT)
def _offdiag_map(A, W, h, Z, PHI, Y):
    """Y = A*Z + PHI offdiag(W)^T + h for a block of states (S, M)."""
    S, M = Z.shape
    for i in range(M):  # row i of W stays in L1 across the block
        for s in range(S):
            acc = 0.0
            for j in range(i):
                acc += W[i, j] * PHI[s, j]
            for j in range(i + 1, M):
                acc += W[i, j] * PHI[s, j]
            Y[s, i] = A[i] * Z[s, i] + acc + h[i]


@njit(inline="always", **JIT)
def model_map(dims, P, PT, Z, PRE, HID, Y):
    """The autonomous map ``Y = F(Z)`` of any kernel family, for a block of S states.

    Parameters
    ----------
    dims : the layout's ``dims``
    P : the parameter views (:func:`param_views`)
    PT : :func:`transposed_weights` of ``P``
    Z : (S, M) states
    PRE, HID : (S, cache_width) written: the shPLRNN's pre-activations and hidden
        units, or (PL, dendritic) ``HID`` = phi(Z) (``PRE`` is unused there)
    Y : (S, M) written

    The whole block goes through each weight row while it is in cache: training
    advances all windows of a batch one time step per call.
    """
    kind = dims[D_KIND]
    A, W, W2T, h, h2, alpha, H = P[0], P[1], P[2], P[3], P[4], P[5], P[6]
    S, M = Z.shape
    if kind == SHALLOW:
        L = h2.shape[0]
        if PT[0].shape[0] > 0:  # reductions over M, 4 hidden units x 2 states per register tile
            dot_rows(PT[0], Z, PRE)
        else:
            for s in range(S):
                for k in range(L):
                    PRE[s, k] = 0.0
            axpy_rows(W2T, Z, PRE)
        # selects, not branches: the signs of pre-activations are unpredictable
        for s in range(S):
            for k in range(L):
                p = PRE[s, k] + h2[k]
                PRE[s, k] = p
                HID[s, k] = p if p > 0.0 else 0.0  # noqa: FURB136 (a select; max() drops NaN)
        if dims[D_CLIP]:
            for s in range(S):
                for k in range(L):
                    q = PRE[s, k] - h2[k]
                    HID[s, k] -= q if q > 0.0 else 0.0  # noqa: FURB136
        dot_rows(W, HID, Y)
        for s in range(S):
            for i in range(M):
                Y[s, i] = A[i] * Z[s, i] + Y[s, i] + h[i]
        return
    if kind == PL:
        n_lin = dims[D_LIN]
        for s in range(S):
            for j in range(M):
                zj = Z[s, j]
                HID[s, j] = zj if (j < n_lin or zj > 0.0) else 0.0
    else:
        B = alpha.shape[0]
        clipped = dims[D_CLIP]
        for s in range(S):
            for j in range(M):
                zj = Z[s, j]
                zpos = clipped and zj > 0.0
                acc = 0.0
                for b in range(B):
                    q = zj - H[j, b]
                    acc += alpha[b] * q if q > 0.0 else 0.0
                    if zpos:
                        acc -= alpha[b] * zj
                HID[s, j] = acc
    _offdiag_map(A, W, h, Z, HID, Y)


@njit(**JIT)
def _orbit(dims, off, th, cache_width, z0, n_steps):
    M = dims[D_M]
    P = param_views(dims, off, th)
    PT = transposed_weights(dims, P)
    out = np.empty((n_steps, M))
    z = np.empty((1, M))
    z[0] = z0
    pre = np.empty((1, cache_width))
    hid = np.empty((1, cache_width))
    y = np.empty((1, M))
    for t in range(n_steps):
        model_map(dims, P, PT, z, pre, hid, y)
        for i in range(M):
            out[t, i] = y[0, i]
            z[0, i] = y[0, i]
    return out


def has_orbit_kernel(model) -> bool:
    """Whether ``model`` has a compiled map (every registered piecewise-linear model)."""
    return model_family(model) is not None


def orbit(model, z0: torch.Tensor, n_steps: int) -> torch.Tensor:
    """``n_steps`` iterates of ``model.step`` (no inputs) from ``z0`` (M,), float64: (n_steps, M).

    Uses the compiled kernel when the model has one, else a torch loop.
    """
    z0 = torch.as_tensor(z0, dtype=torch.float64)
    if not has_orbit_kernel(model):
        return model.generate(z0, n_steps)  # the model's own torch loop
    layout = FlatLayout(model)
    out = _orbit(layout.dims, layout.offsets, layout.pack(), max(layout.cache_width, 1),
                 z0.detach().cpu().numpy().astype(np.float64).copy(), int(n_steps))
    return torch.from_numpy(out)
