"""Figures for subject and group reports.

Every function takes arrays or tables and returns a :class:`matplotlib.figure.Figure`
built without pyplot (no global state, safe under any backend); only scripts
write files. Non-finite values in generated orbits (diverged models) are shown
as gaps and flagged in the panel title rather than raising.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dsrpipe import DsrpipeError

logger = logging.getLogger(__name__)

TRUE_STYLE = {"color": "0.2", "lw": 0.6, "label": "true"}
GEN_STYLE = {"color": "tab:red", "lw": 0.6, "label": "generated"}
MAX_LINE_POINTS = 20_000  # state-space lines are thinned to this many points


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise DsrpipeError(f"{name} must be a non-empty T x N array, got shape {x.shape}")
    return np.where(np.isfinite(x), x, np.nan)


def _pair(x_true, x_gen, channels) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    xt, xg = _as_2d(x_true, "x_true"), _as_2d(x_gen, "x_gen")
    if xt.shape[1] != xg.shape[1]:
        raise DsrpipeError(f"x_true has {xt.shape[1]} channels but x_gen has {xg.shape[1]}")
    n = xt.shape[1]
    names = [f"x{i + 1}" for i in range(n)] if channels is None else [str(c) for c in channels]
    if len(names) != n:
        raise DsrpipeError(f"{len(names)} channel names for {n} channels")
    flag = " (non-finite values)" if np.isnan(xg).any() else ""
    return xt, xg, names, flag


def plot_orbits(
    x_true: np.ndarray,
    x_gen: np.ndarray,
    channels: Sequence[str] | None = None,
    title: str = "",
    *,
    dt: float | None = None,
    window: int = 1000,
    max_channels: int = 3,
) -> Figure:
    """Plot true and generated orbits in state space and as time courses.

    Parameters
    ----------
    x_true, x_gen : ndarray, shape (T, N) and (T', N)
        Held-out test series and the model's free-running orbit (same channels).
    channels : sequence of str, optional
        Names of the N channels (default ``x1 .. xN``).
    title : str
        Figure title.
    dt : float, optional
        Sampling interval; the time axis is in samples when None.
    window : int
        Number of initial samples shown in the time-course panels.
    max_channels : int
        Number of channels shown as time courses.

    Returns
    -------
    Figure
        Top row: two state-space panels (true, generated), 3-D for N >= 3 (for
        N > 3 both orbits projected on the true series' first three principal
        components), 2-D for N == 2, the whole series against time for N == 1. Below:
        ``min(N, max_channels)`` time-course panels overlaying true and
        generated over the first ``window`` samples. ``2 + min(N, max_channels)``
        axes in total.
    """
    xt, xg, names, flag = _pair(x_true, x_gen, channels)
    n = xt.shape[1]
    k = min(n, max_channels)
    fig = Figure(figsize=(8, 3.2 + 1.3 * k), layout="constrained")
    grid = fig.add_gridspec(1 + k, 2, height_ratios=[3.2] + [1.3] * k)
    space_names, pca = names, ""
    if n > 3:  # state space: both orbits in the true series' first three principal components
        mean, axes = principal_axes(xt, 3)
        space_names, pca = ["PC1", "PC2", "PC3"], " (PCA of the true series)"
    for col, (x, style, label) in enumerate(
        [(xt, TRUE_STYLE, "true" + pca), (xg, GEN_STYLE, "generated" + flag)]
    ):
        step = max(1, x.shape[0] // MAX_LINE_POINTS)
        xs = (x[::step] - mean) @ axes.T if pca else x[::step]
        style = {**style, "label": None}
        if n >= 3:
            ax = fig.add_subplot(grid[0, col], projection="3d")
            ax.plot(xs[:, 0], xs[:, 1], xs[:, 2], **style)
            ax.set_xlabel(space_names[0])
            ax.set_ylabel(space_names[1])
            ax.set_zlabel(space_names[2])
        elif n == 2:
            ax = fig.add_subplot(grid[0, col])
            ax.plot(xs[:, 0], xs[:, 1], **style)
            ax.set_xlabel(names[0])
            ax.set_ylabel(names[1])
        else:
            ax = fig.add_subplot(grid[0, col])
            ax.plot(_time(x.shape[0], dt)[::step], xs[:, 0], **style)
            ax.set_xlabel(_time_label(dt))
            ax.set_ylabel(names[0])
        ax.set_title(label, fontsize=9)
    w = min(window, xt.shape[0], xg.shape[0])
    t = _time(w, dt)
    first = None
    for i in range(k):
        ax = fig.add_subplot(grid[1 + i, :], sharex=first)
        first = first or ax
        ax.plot(t, xt[:w, i], **TRUE_STYLE)
        ax.plot(t, xg[:w, i], **GEN_STYLE)
        ax.set_ylabel(names[i])
        if i == 0:
            ax.legend(loc="upper right", fontsize=7, ncols=2)
        if i == k - 1:
            ax.set_xlabel(_time_label(dt))
    if title:
        fig.suptitle(title)
    return fig


def principal_axes(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the first ``k`` principal axes of the finite rows of ``x``.

    Parameters
    ----------
    x : ndarray, shape (T, N)
    k : int
        Number of axes (at most N).

    Returns
    -------
    mean : ndarray, shape (N,)
    axes : ndarray, shape (min(k, N), N)
        Orthonormal rows; signs fixed so that each axis sums to >= 0.
    """
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x).all(axis=1)]
    if len(x) < 2:
        raise DsrpipeError(f"principal axes need at least two finite samples, got {len(x)}")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    axes = vt[: min(k, x.shape[1])]
    return mean, axes * np.where(axes.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)


def _time(n: int, dt: float | None) -> np.ndarray:
    return np.arange(n) * (dt if dt else 1.0)


def _time_label(dt: float | None) -> str:
    return "time" if dt else "time (samples)"


def smoothed_power_spectrum(x: np.ndarray, sigma: float = 20) -> np.ndarray | None:
    """Power spectrum of one z-scored channel, Gaussian-smoothed, summing to 1.

    The same normalisation as the D_H metric: z-score, ``|rfft|^2``,
    ``gaussian_filter1d(sigma)`` over frequency bins, divide by the sum.

    Parameters
    ----------
    x : ndarray, shape (T,)
    sigma : float
        Smoothing width in frequency bins.

    Returns
    -------
    ndarray of shape (T // 2 + 1,), or None when ``x`` is constant or non-finite.
    """
    from dsrpipe.analysis.metrics import normalised_power_spectrum

    x = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(x)):
        return None
    return normalised_power_spectrum(x, sigma)


def plot_power_spectra(
    x_true: np.ndarray,
    x_gen: np.ndarray,
    channels: Sequence[str] | None = None,
    sigma: float = 20,
    *,
    dt: float | None = None,
    max_channels: int = 4,
    power_quantile: float = 0.999,
) -> Figure:
    """Plot smoothed power spectra of true and generated series per channel.

    Parameters
    ----------
    x_true, x_gen : ndarray, shape (T, N) and (T', N)
    channels : sequence of str, optional
        Names of the N channels.
    sigma : float
        Gaussian smoothing width in frequency bins (as in D_H).
    dt : float, optional
        Sampling interval; frequencies are in cycles per sample when None.
    max_channels : int
        Number of channels shown (the first ones).
    power_quantile : float
        The frequency axis ends at 1.2 times the frequency below which this
        fraction of the true power lies (display only; 1 shows all frequencies).

    Returns
    -------
    Figure
        ``min(N, max_channels)`` axes, log power against frequency; a channel
        whose generated series is constant or non-finite shows the truth only.
    """
    xt, xg, names, _ = _pair(x_true, x_gen, channels)
    k = min(xt.shape[1], max_channels)
    fig = Figure(figsize=(2.6 * k + 0.6, 2.6), layout="constrained")
    axes = fig.subplots(1, k, squeeze=False)[0]
    for i, ax in enumerate(axes):
        zoom = None
        for x, style in ((xt[:, i], TRUE_STYLE), (xg[:, i], GEN_STYLE)):
            p = smoothed_power_spectrum(x, sigma)
            if p is None:
                ax.text(0.5, 0.9, f"{style['label']}: constant/non-finite",
                        transform=ax.transAxes, ha="center", fontsize=7)
                continue
            f = np.fft.rfftfreq(len(x), dt if dt else 1.0)
            ax.semilogy(f[1:], p[1:], **style)
            if style is TRUE_STYLE and power_quantile < 1 and len(f) > 2:
                hi = max(2, min(np.searchsorted(np.cumsum(p), power_quantile), len(f) - 1))
                zoom = (1.2 * f[hi], 0.3 * p[1:hi + 1].min())
        if zoom:
            ax.set_xlim(0, zoom[0])
            ax.set_ylim(bottom=zoom[1])
        ax.set_title(names[i], fontsize=9)
        ax.set_xlabel("frequency" + ("" if dt else " (1/sample)"))
    axes[0].set_ylabel("normalised power")
    if axes[0].get_lines():
        axes[0].legend(fontsize=7)
    return fig


def plot_loss_curve(log_df: pd.DataFrame) -> Figure:
    """Plot the training loss and, when logged, the GTF alpha and learning rate.

    Parameters
    ----------
    log_df : DataFrame
        Training log with columns ``epoch`` and ``loss``; optional ``alpha``
        and ``lr``.

    Returns
    -------
    Figure
        One loss axis (log y when all losses are positive) plus one twin
        y axis for ``alpha`` and one for ``lr`` (log) when those columns hold
        any finite value.
    """
    missing = {"epoch", "loss"} - set(log_df.columns)
    if missing:
        raise DsrpipeError(f"training log lacks columns {sorted(missing)}")
    fig = Figure(figsize=(6, 2.8), layout="constrained")
    ax = fig.add_subplot()
    loss = pd.to_numeric(log_df["loss"], errors="coerce").to_numpy(float)
    ax.plot(log_df["epoch"], loss, color="k", lw=1, label="loss")
    if np.nanmin(loss, initial=np.inf) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    handles = ax.get_lines()[:]
    extra = [(c, col) for c, col in (("alpha", "tab:blue"), ("lr", "tab:green"))
             if c in log_df.columns and np.isfinite(pd.to_numeric(log_df[c], errors="coerce")).any()]
    for j, (c, color) in enumerate(extra):
        tw = ax.twinx()
        if j:
            tw.spines["right"].set_position(("axes", 1.18))
        handles += tw.plot(log_df["epoch"], log_df[c], color=color, lw=1, ls="--", label=c)
        if c == "lr" and (pd.to_numeric(log_df[c], errors="coerce") > 0).all():
            tw.set_yscale("log")
        if c == "alpha":
            tw.set_ylim(bottom=0)
        tw.set_ylabel(c, color=color)
        tw.tick_params(axis="y", colors=color)
    ax.legend(handles=handles, fontsize=7, loc="upper center")
    return fig


def plot_metric_distributions(
    summary_df: pd.DataFrame,
    metrics: Sequence[str] = ("d_stsp", "d_h", "pe_20", "max_lyapunov"),
) -> Figure:
    """Box and strip plots of per-run metric values, one panel per metric.

    Parameters
    ----------
    summary_df : DataFrame
        One row per run, as returned by :func:`dsrpipe.reporting.group.collect_metrics`.
        With a ``model`` column holding several models, each panel shows one
        box per model.
    metrics : sequence of str
        Columns to show; those absent from ``summary_df`` are skipped.

    Returns
    -------
    Figure
        One axis per metric present. Non-finite values (diverged runs) are left
        out and counted in the panel title.
    """
    present = [m for m in metrics if m in summary_df.columns]
    if not present:
        raise DsrpipeError(f"none of the metrics {list(metrics)} is a column of the table")
    skipped = sorted(set(metrics) - set(present))
    if skipped:
        logger.warning("metric columns not found, skipped: %s", skipped)
    groups = (list(summary_df.groupby("model", sort=True)) if "model" in summary_df.columns
              else [("all", summary_df)])
    fig = Figure(figsize=(2.4 * len(present) + 0.4, 3), layout="constrained")
    rng = np.random.default_rng(0)
    for ax, m in zip(fig.subplots(1, len(present), squeeze=False)[0], present):
        n_bad = 0
        for pos, (_, g) in enumerate(groups, start=1):
            v = pd.to_numeric(g[m], errors="coerce").to_numpy(float)
            n_bad += int((~np.isfinite(v)).sum())
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            ax.boxplot([v], positions=[pos], widths=0.5, showfliers=False)
            ax.plot(pos + rng.uniform(-0.15, 0.15, v.size), v, "o", ms=3, alpha=0.6,
                    color="tab:blue")
        ax.set_xticks(range(1, len(groups) + 1), [str(name) for name, _ in groups],
                      rotation=30 if len(groups) > 3 else 0, fontsize=8)
        ax.set_title(m + (f" ({n_bad} non-finite)" if n_bad else ""), fontsize=9)
    return fig


def plot_truth_comparison(group_df: pd.DataFrame) -> Figure:
    """Plot recovered against true invariants for subjects with a known ground truth.

    Parameters
    ----------
    group_df : DataFrame
        One row per run with columns ``subject``, ``max_lyapunov`` and
        ``true_max_lyapunov``; optionally ``kaplan_yorke_dimension`` and
        ``true_kaplan_yorke_dimension``.

    Returns
    -------
    Figure
        One axis for the maximal Lyapunov exponent, a second for the
        Kaplan-Yorke dimension when both its columns exist. Each point is the
        median over one subject's runs (per model), the vertical bar their
        range; the dashed line is identity.
    """
    pairs = [("max_lyapunov", "maximal Lyapunov exponent")]
    if {"kaplan_yorke_dimension", "true_kaplan_yorke_dimension"} <= set(group_df.columns):
        pairs.append(("kaplan_yorke_dimension", "Kaplan-Yorke dimension"))
    needed = {"subject", "max_lyapunov", "true_max_lyapunov"} - set(group_df.columns)
    if needed:
        raise DsrpipeError(f"no ground truth to compare: columns {sorted(needed)} missing")
    keys = ["subject", "model"] if "model" in group_df.columns else ["subject"]
    fig = Figure(figsize=(4 * len(pairs), 3.8), layout="constrained")
    for ax, (col, label) in zip(fig.subplots(1, len(pairs), squeeze=False)[0], pairs):
        df = group_df[keys].copy()
        for c in (col, "true_" + col):
            df[c] = pd.to_numeric(group_df[c], errors="coerce")
        df = df[np.isfinite(df["true_" + col])]
        agg = df.groupby(keys, sort=True).agg(
            true=("true_" + col, "first"), med=(col, "median"), lo=(col, "min"), hi=(col, "max"))
        ax.vlines(agg["true"], agg["lo"], agg["hi"], color="tab:blue", alpha=0.4)
        ax.plot(agg["true"], agg["med"], "o", color="tab:blue", ms=4)
        for key, row in agg.iterrows():
            if np.isfinite(row["med"]):
                ax.annotate(key[0] if isinstance(key, tuple) else key, (row["true"], row["med"]),
                            fontsize=6, xytext=(3, 3), textcoords="offset points")
        vals = agg[["true", "lo", "hi"]].to_numpy(float)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            lim = [vals.min(), vals.max()]
            pad = 0.05 * (lim[1] - lim[0] or 1.0)
            ax.plot([lim[0] - pad, lim[1] + pad], [lim[0] - pad, lim[1] + pad], "k--", lw=0.8)
        ax.set_xlabel(f"true {label}")
        ax.set_ylabel(f"recovered {label}")
    return fig


# the analysis figures (basins, PE curve, Lyapunov convergence, cycles) live in their own module
from dsrpipe.reporting.analysis_figures import (  # noqa: E402
    plot_basins,
    plot_cycles,
    plot_lyapunov_convergence,
    plot_pe_curve,
)

__all__ = ["plot_orbits", "principal_axes", "plot_power_spectra", "plot_loss_curve", "plot_metric_distributions",
           "plot_truth_comparison", "smoothed_power_spectrum", "plot_basins", "plot_cycles",
           "plot_lyapunov_convergence", "plot_pe_curve"]
