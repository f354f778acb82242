"""Reconstruction quality measures: geometry (D_stsp), time scales (D_H), prediction (PE).

All functions take NumPy arrays of shape (T, N) (time by observed
dimension, standardised data) and return a float. Definitions follow
``REFERENCE.md`` (Evaluation); they differ in details between the lab's
repositories, so numbers only compare when computed with the same code.

References
----------
Koppe, G. et al. (2019). PLOS Comput Biol 15, e1007263 (D_stsp by binning).
Mikhaeil, J., Monfared, Z. & Durstewitz, D. (2022). NeurIPS (D_H, GMM D_stsp).
Hess, F. et al. (2023). ICML (generalized teacher forcing; evaluation protocol).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from dsrpipe import DsrpipeError

logger = logging.getLogger(__name__)

__all__ = [
    "METRICS",
    "state_space_divergence",
    "state_space_divergence_gmm",
    "power_spectrum_distance",
    "prediction_error",
    "prediction_error_curve",
]

#: above this many bins the binned D_stsp is refused (use the GMM version)
MAX_BINS = 10**8


def _as_2d(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise DsrpipeError(f"{name} must be a non-empty (T, N) array, got shape {x.shape}")
    return x


def _pair(x_true, x_gen) -> tuple[np.ndarray, np.ndarray]:
    x_true, x_gen = _as_2d(x_true, "x_true"), _as_2d(x_gen, "x_gen")
    if x_true.shape[1] != x_gen.shape[1]:
        raise DsrpipeError(
            f"x_true and x_gen differ in dimension: {x_true.shape[1]} vs {x_gen.shape[1]}"
        )
    return x_true, x_gen


def state_space_divergence(
    x_true: np.ndarray, x_gen: np.ndarray, n_bins: int = 30, smoothing: float = 1e-5
) -> float:
    """Binned state-space divergence ``D_stsp = KL(p_true || p_gen)``.

    Each dimension gets ``n_bins`` equal bins spanning the true data's range;
    rows of either series with any coordinate outside that range are dropped.
    Occupation probabilities are Laplace smoothed,
    ``p = (h + a) / (sum h + a n_bins^N)`` with ``a = smoothing``. Only
    occupied bins are stored; the (many) empty ones are summed in closed form.

    Parameters
    ----------
    x_true, x_gen : ndarray, shape (T1, N) and (T2, N)
        Observed and generated series (lengths may differ).
    n_bins : int
        Bins per dimension.
    smoothing : float
        Laplace pseudo-count ``a`` per bin (> 0).

    Returns
    -------
    float
        KL divergence in nats (0 for identical occupations).

    Raises
    ------
    DsrpipeError
        If ``n_bins ** N`` exceeds ``MAX_BINS`` (use
        :func:`state_space_divergence_gmm`), or for malformed input.
    """
    x_true, x_gen = _pair(x_true, x_gen)
    n_dim = x_true.shape[1]
    if n_bins < 1 or smoothing <= 0:
        raise DsrpipeError("n_bins must be >= 1 and smoothing > 0")
    n_cells = n_bins**n_dim
    if n_cells > MAX_BINS:
        raise DsrpipeError(
            f"{n_bins} bins in {n_dim} dimensions make {n_cells:.3g} cells (> {MAX_BINS:.0e}); "
            "use state_space_divergence_gmm for high-dimensional data"
        )
    lo, hi = x_true.min(axis=0), x_true.max(axis=0)
    width = np.where(hi > lo, (hi - lo) / n_bins, 1.0)

    def cell_index(x: np.ndarray) -> np.ndarray:
        x = x[np.all((x >= lo) & (x <= hi), axis=1)]
        idx = np.minimum(((x - lo) / width).astype(np.int64), n_bins - 1)
        return np.ravel_multi_index(tuple(idx.T), (n_bins,) * n_dim) if len(idx) else idx[:, 0]

    cells_true, cells_gen = cell_index(x_true), cell_index(x_gen)
    if len(cells_gen) < len(x_gen):
        logger.debug("D_stsp: %d generated points outside the data range dropped",
                     len(x_gen) - len(cells_gen))
    occupied, inverse = np.unique(np.concatenate((cells_true, cells_gen)), return_inverse=True)
    h_true = np.bincount(inverse[: len(cells_true)], minlength=len(occupied))
    h_gen = np.bincount(inverse[len(cells_true) :], minlength=len(occupied))
    a = smoothing
    norm_true = len(cells_true) + a * n_cells
    norm_gen = len(cells_gen) + a * n_cells
    p = (h_true + a) / norm_true
    q = (h_gen + a) / norm_gen
    kl = float(np.sum(p * np.log(p / q)))
    # every unoccupied cell has p = a / norm_true and q = a / norm_gen
    n_empty = n_cells - len(occupied)
    kl += n_empty * (a / norm_true) * np.log(norm_gen / norm_true)
    return float(kl)


def _subsample(x: np.ndarray, max_points: int) -> np.ndarray:
    if len(x) <= max_points:
        return x
    return x[np.linspace(0, len(x) - 1, max_points).round().astype(np.int64)]


def _mixture_logpdf(samples: np.ndarray, centres: np.ndarray, scaling: float) -> np.ndarray:
    """Log density of an equal-weight isotropic Gaussian mixture, (S, N) -> (S,)."""
    # log kernel -||x - mu||^2 / (2 s), built in place on one (S, K) array
    log_k = samples @ centres.T
    log_k *= 2.0
    log_k -= np.sum(samples**2, axis=1)[:, None]
    log_k -= np.sum(centres**2, axis=1)[None, :]
    np.minimum(log_k, 0.0, out=log_k)
    log_k *= 0.5 / scaling
    peak = log_k.max(axis=1)
    log_k -= peak[:, None]
    np.exp(log_k, out=log_k)
    n_dim = samples.shape[1]
    return (
        peak
        + np.log(log_k.sum(axis=1))
        - np.log(len(centres))
        - 0.5 * n_dim * np.log(2 * np.pi * scaling)
    )


def state_space_divergence_gmm(
    x_true: np.ndarray,
    x_gen: np.ndarray,
    scaling: float = 1.0,
    max_points: int = 10_000,
    n_samples: int = 1000,
    seed: int = 0,
) -> float:
    """State-space divergence between Gaussian-mixture densities (any N).

    Each series becomes an equal-weight mixture of isotropic Gaussians with
    variance ``scaling`` centred on up to ``max_points`` evenly subsampled
    time points. ``KL(p_true || p_gen)`` is estimated as
    ``mean(log p_true - log p_gen)`` over ``n_samples`` draws from ``p_true``.

    Parameters
    ----------
    x_true, x_gen : ndarray, shape (T1, N) and (T2, N)
    scaling : float
        Variance of each Gaussian component.
    max_points : int
        Components per mixture at most.
    n_samples : int
        Monte Carlo samples.
    seed : int
        Seed of the sampler (the result is deterministic for a seed).

    Returns
    -------
    float
        Estimated KL divergence in nats (can be slightly negative by chance).
    """
    x_true, x_gen = _pair(x_true, x_gen)
    if scaling <= 0 or max_points < 1 or n_samples < 1:
        raise DsrpipeError("need scaling > 0, max_points >= 1, n_samples >= 1")
    mu_true, mu_gen = _subsample(x_true, max_points), _subsample(x_gen, max_points)
    rng = np.random.default_rng(seed)
    comp = rng.integers(len(mu_true), size=n_samples)
    samples = mu_true[comp] + np.sqrt(scaling) * rng.standard_normal((n_samples, x_true.shape[1]))
    diffs = []
    for start in range(0, n_samples, 256):  # bounds the (samples x centres) matrices
        s = samples[start : start + 256]
        diffs.append(_mixture_logpdf(s, mu_true, scaling) - _mixture_logpdf(s, mu_gen, scaling))
    return float(np.mean(np.concatenate(diffs)))


def normalised_power_spectrum(x: np.ndarray, sigma: float) -> np.ndarray | None:
    """Smoothed power spectrum of a z-scored 1-D series, summing to 1 (None if constant)."""
    sd = x.std()
    if not sd > 0:
        return None
    ps = np.abs(np.fft.rfft((x - x.mean()) / sd)) ** 2
    ps = gaussian_filter1d(ps, sigma)
    return ps / ps.sum()


def power_spectrum_distance(x_true: np.ndarray, x_gen: np.ndarray, sigma: float = 20) -> float:
    """Hellinger distance between smoothed power spectra, averaged over dimensions (D_H).

    Per dimension: z-score, ``|rfft|^2``, ``gaussian_filter1d(sigma)``,
    normalise to sum 1, ``sqrt(1 - sum sqrt(p q))``. A constant dimension has
    no spectrum: it scores 1 (maximal) against a varying one, 0 against a
    constant one.

    Parameters
    ----------
    x_true, x_gen : ndarray, shape (T, N)
        Series of equal length.
    sigma : float
        Smoothing width in frequency bins.

    Returns
    -------
    float
        In [0, 1].
    """
    x_true, x_gen = _pair(x_true, x_gen)
    if x_true.shape != x_gen.shape:
        raise DsrpipeError(
            f"D_H needs series of equal length, got {x_true.shape[0]} and {x_gen.shape[0]}"
        )
    distances = []
    for i in range(x_true.shape[1]):
        p = normalised_power_spectrum(x_true[:, i], sigma)
        q = normalised_power_spectrum(x_gen[:, i], sigma)
        if p is None or q is None:
            logger.warning("D_H: dimension %d is constant in one series", i)
            distances.append(0.0 if p is None and q is None else 1.0)
            continue
        distances.append(np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(p * q))))))
    return float(np.mean(distances))


def prediction_error(model, x: np.ndarray, n: int = 20, readout=None, inputs: np.ndarray | None = None) -> float:
    """Mean squared ``n``-step-ahead prediction error, PE(n).

    From every start ``t = 0 .. T-n-1`` the model iterates ``n`` steps from
    ``z_t = (x_t, 0, ..., 0)`` (identity readout: the first N of the M latent
    units; extra units start at 0), all starts batched in one torch
    computation; the squared error of the first N units against ``x_{t+n}``
    is averaged over starts and dimensions.

    Parameters
    ----------
    model : LatentModel
        With ``step`` and ``latent_dim >= N``.
    x : ndarray, shape (T, N)
        Standardised data, ``T > n``.
    n : int
        Prediction horizon in steps.
    readout, inputs : see :func:`prediction_error_curve`.

    Returns
    -------
    float
    """
    return float(prediction_error_curve(model, x, n, readout=readout, inputs=inputs)[-1])


def prediction_error_curve(model, x: np.ndarray, n_max: int = 20, readout=None,
                           inputs: np.ndarray | None = None) -> np.ndarray:
    """PE(n) for n = 1 .. ``n_max`` in one pass: ``curve[n - 1]`` equals ``prediction_error(model, x, n)``.

    All starts ``t = 0 .. T-2`` iterate together; after step n the first
    ``T - n`` of them are compared with ``x[n:]`` (the same starts and
    targets as :func:`prediction_error` with horizon n).

    Parameters
    ----------
    model : LatentModel
        With ``step`` and ``latent_dim >= N``.
    x : ndarray, shape (T, N)
        Standardised data, ``T > n_max``.
    n_max : int
        Largest horizon.
    readout : :class:`dsrpipe.models.readout.Readout`, optional
        Maps observations to start states (``initial_state``) and states to
        predictions (``observe``); default: the identity readout with zeros in
        the extra units.
    inputs : ndarray, shape (T, K), optional
        External inputs aligned with ``x``: the step into time t gets ``inputs[t]``.

    Returns
    -------
    ndarray, shape (n_max,)
        Non-finite entries where the predictions overflow.
    """
    x = _as_2d(x, "x")
    n_time, n_obs = x.shape
    if n_max < 1 or n_time <= n_max:
        raise DsrpipeError(f"need 1 <= n < T, got n={n_max}, T={n_time}")
    n_latent = int(model.latent_dim)
    if n_latent < n_obs and readout is None:
        raise DsrpipeError(f"identity readout needs latent_dim >= N, got {n_latent} < {n_obs}")
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    dtype = params[0].dtype if params else torch.float64
    device = params[0].device if params else torch.device("cpu")
    curve = np.empty(n_max)
    with torch.no_grad():
        target = torch.tensor(x, dtype=torch.float64, device=device)  # a copy: x may be read-only
        starts = torch.as_tensor(x[:-1].copy(), dtype=dtype, device=device)
        if readout is None:
            z = torch.zeros((n_time - 1, n_latent), dtype=dtype, device=device)
            z[:, :n_obs] = starts
            observe = lambda v: v[:, :n_obs]  # noqa: E731
        else:
            readout = readout.to(dtype)
            z, observe = readout.initial_state(starts), readout.observe
        s = None
        if inputs is not None and getattr(model, "input_dim", 0):
            s = torch.as_tensor(np.asarray(inputs, dtype=float), dtype=dtype, device=device)
        for n in range(1, n_max + 1):
            # the start at t steps into time t + n (clipped at the end: those rows are not compared)
            z = model.step(z) if s is None else model.step(
                z, s[torch.clamp(torch.arange(n_time - 1, device=device) + n, max=n_time - 1)])
            err = observe(z)[: n_time - n].double() - target[n:]
            curve[n - 1] = float(torch.mean(err**2))
    return curve


#: name -> function(x_true, x_gen) -> float, for data-vs-generated comparisons
METRICS: dict[str, Callable[..., float]] = {
    "D_stsp": state_space_divergence,
    "D_stsp_gmm": state_space_divergence_gmm,
    "D_H": power_spectrum_distance,
}
