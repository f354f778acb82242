"""Figures of a run's observation models: the BOLD fit through the HRF, spike rates against counts,
and the group's metric-vs-covariate scatter.

Every function takes arrays and returns a :class:`matplotlib.figure.Figure` (no pyplot), as
:mod:`dsrpipe.reporting.figures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from dsrpipe import DsrpipeError
from dsrpipe.reporting.figures import _as_2d, _time, _time_label

OBSERVED_STYLE = {"color": "0.2", "lw": 0.8}
#: line colours of the model series, in the order given
MODEL_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple")


def _names(names: Sequence[str] | None, n: int, prefix: str) -> list[str]:
    out = [f"{prefix}{i + 1}" for i in range(n)] if names is None else [str(c) for c in names]
    if len(out) != n:
        raise DsrpipeError(f"{len(out)} names for {n} channels")
    return out


def plot_bold_fit(
    observed: np.ndarray,
    forced: np.ndarray,
    generated: np.ndarray | None = None,
    latent: np.ndarray | None = None,
    channels: Sequence[str] | None = None,
    *,
    dt: float | None = None,
    max_rois: int = 3,
    max_latent: int = 5,
    window: int = 500,
) -> Figure:
    """Observed BOLD against the BOLD the model predicts through its HRF, and the latent trajectory.

    Parameters
    ----------
    observed : ndarray, shape (T, N)
        The test segment's BOLD (ROIs as prepared).
    forced : ndarray, shape (T, N)
        BOLD predicted through the HRF from the forced (data-driven) latent trajectory.
    generated : ndarray, shape (T, N), optional
        BOLD predicted from the freely generated latent orbit (not aligned with the data in time beyond
        its first steps: a check of the signal's shape and scale).
    latent : ndarray, shape (T, K), optional
        The forced latent trajectory that drives ``forced`` (its first ``max_latent`` units are drawn).
    channels : sequence of str, optional
        ROI names (default ``roi1 .. roiN``).
    dt : float, optional
        TR in seconds (time axis in volumes when None).
    max_rois, max_latent, window : int
        ROIs drawn, latent units drawn, first samples shown.

    Returns
    -------
    Figure
        ``min(N, max_rois)`` ROI panels (observed, forced, generated lines), then one latent panel
        when ``latent`` is given.
    """
    obs, fc = _as_2d(observed, "observed BOLD"), _as_2d(forced, "forced BOLD")
    series = [("through HRF, forced", fc)]
    if generated is not None:
        series.append(("through HRF, generated", _as_2d(generated, "generated BOLD")))
    for name, x in series:
        if x.shape != obs.shape:
            raise DsrpipeError(f"{name} BOLD has shape {x.shape}, observed {obs.shape}")
    names = _names(channels, obs.shape[1], "roi")
    k = min(obs.shape[1], max_rois)
    n_axes = k + (latent is not None)
    fig = Figure(figsize=(8, 1.6 * n_axes + 0.6), layout="constrained")
    w = min(window, obs.shape[0])
    t = _time(w, dt)
    first = None
    for i in range(k):
        ax = fig.add_subplot(n_axes, 1, i + 1, sharex=first)
        first = first or ax
        ax.plot(t, obs[:w, i], label="observed", **OBSERVED_STYLE)
        for (label, x), color in zip(series, MODEL_COLORS):
            ax.plot(t, x[:w, i], color=color, lw=0.8, ls="-" if "forced" in label else "--", label=label)
        ax.set_ylabel(names[i])
        if i == 0:
            ax.legend(loc="upper right", fontsize=7, ncols=3)
            ax.set_title("BOLD: observed vs predicted through the HRF", fontsize=9)
    if latent is not None:
        z = _as_2d(latent, "latent trajectory")
        if z.shape[0] != obs.shape[0]:
            raise DsrpipeError(f"latent trajectory has {z.shape[0]} samples, BOLD {obs.shape[0]}")
        ax = fig.add_subplot(n_axes, 1, n_axes, sharex=first)
        for j in range(min(z.shape[1], max_latent)):
            ax.plot(t, z[:w, j], lw=0.8, label=f"z{j + 1}")
        ax.set_ylabel("latent (forced)")
        ax.legend(loc="upper right", fontsize=7, ncols=min(z.shape[1], max_latent))
    fig.axes[-1].set_xlabel(_time_label(dt))
    return fig


def plot_rates_vs_counts(
    counts: np.ndarray,
    rates: Mapping[str, np.ndarray],
    units: Sequence[str] | None = None,
    *,
    dt: float | None = None,
    max_units: int = 3,
    window: int = 500,
) -> Figure:
    """Binned spike counts against the rates a model sees or generates, per unit.

    Parameters
    ----------
    counts : ndarray, shape (T, U)
        Spike counts per bin.
    rates : mapping of str to ndarray, shape (T, U)
        Expected counts per bin (e.g. ``"decoded, forced"``: exp(Gamma z + g) of the forced latent
        trajectory; ``"generated"``: a free-running orbit mapped back to counts), drawn as lines.
    units : sequence of str, optional
        Unit names (default ``unit1 .. unitU``).
    dt : float, optional
        Bin width in seconds: the time axis in s and the summary panel in Hz (else per bin).
    max_units, window : int
        Units drawn as time courses, first bins shown.

    Returns
    -------
    Figure
        ``min(U, max_units)`` time-course panels (counts as steps, each rate as a line), then one
        panel of the mean rate per unit over the whole segment (counts and each rate series).
    """
    c = _as_2d(counts, "counts")
    series = {str(k): _as_2d(v, f"rates {k!r}") for k, v in rates.items()}
    for name, r in series.items():
        if r.shape != c.shape:
            raise DsrpipeError(f"rates {name!r} have shape {r.shape}, counts {c.shape}")
    names = _names(units, c.shape[1], "unit")
    k = min(c.shape[1], max_units)
    fig = Figure(figsize=(8, 1.5 * k + 2.4), layout="constrained")
    grid = fig.add_gridspec(k + 1, 1, height_ratios=[1.5] * k + [2.2])
    w = min(window, c.shape[0])
    t = _time(w, dt)
    first = None
    for i in range(k):
        ax = fig.add_subplot(grid[i, 0], sharex=first)
        first = first or ax
        ax.step(t, c[:w, i], where="mid", label="counts", **OBSERVED_STYLE)
        for (label, r), color in zip(series.items(), MODEL_COLORS):
            ax.plot(t, r[:w, i], color=color, lw=0.9, label=label)
        ax.set_ylabel(f"{names[i]}\nper bin", fontsize=8)
        if i == 0:
            ax.legend(loc="upper right", fontsize=7, ncols=1 + len(series))
            ax.set_title("spike counts vs model rates", fontsize=9)
    if k:
        fig.axes[k - 1].set_xlabel(_time_label(dt))
    ax = fig.add_subplot(grid[k, 0])
    scale, unit = (1.0 / dt, "Hz") if dt else (1.0, "per bin")
    x = np.arange(c.shape[1])
    width = 0.8 / (1 + len(series))
    ax.bar(x, np.nanmean(c, axis=0) * scale, width, color="0.5", label="counts")
    for j, ((label, r), color) in enumerate(zip(series.items(), MODEL_COLORS)):
        ax.bar(x + (j + 1) * width, np.nanmean(r, axis=0) * scale, width, color=color, label=label)
    ax.set_xticks(x + width * len(series) / 2, names, fontsize=7, rotation=90 if len(names) > 8 else 0)
    ax.set_ylabel(f"mean rate ({unit})")
    ax.legend(fontsize=7)
    return fig


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, int]:
    """Spearman's rho, its two-sided p-value (:func:`scipy.stats.spearmanr`) and n over the pairs
    where both are finite; rho and p are NaN with fewer than 3 pairs or a constant side."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan"), int(len(x))
    result = spearmanr(x, y)
    return float(result.statistic), float(result.pvalue), int(len(x))


def plot_covariate_scatter(covariate: Sequence[float], metric: Sequence[float], *, covariate_name: str,
                           metric_name: str, groups: Sequence[str] | None = None) -> Figure:
    """A metric against a subject covariate, one point per subject, Spearman rho and p in the title.

    Parameters
    ----------
    covariate, metric : sequence of float, length S
        Non-finite pairs are left out (and counted in the title's n).
    covariate_name, metric_name : str
        Axis labels.
    groups : sequence of str, length S, optional
        A label per point (e.g. modality); each gets its own colour and a legend entry.

    Returns
    -------
    Figure
        One Axes; title ``<metric> vs <covariate>`` and, below, ``Spearman rho = .., p = .. (n = ..)``.
    """
    x, y = np.asarray(covariate, dtype=float), np.asarray(metric, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise DsrpipeError(f"covariate and metric must be 1-D of one length, got {x.shape} and {y.shape}")
    rho, p, n = spearman(x, y)
    fig = Figure(figsize=(4.2, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ok = np.isfinite(x) & np.isfinite(y)
    labels = np.asarray(["all"] * len(x) if groups is None else [str(g) for g in groups])
    if len(labels) != len(x):
        raise DsrpipeError(f"{len(labels)} group labels for {len(x)} points")
    for g, color in zip(dict.fromkeys(labels[ok]), MODEL_COLORS * len(labels)):
        sel = ok & (labels == g)
        ax.scatter(x[sel], y[sel], s=18, color=color, label=None if groups is None else g)
    if groups is not None and ok.any():
        ax.legend(fontsize=7)
    ax.set_xlabel(covariate_name)
    ax.set_ylabel(metric_name)
    stat = "undefined" if not np.isfinite(rho) else f"{rho:.2f}, p = {p:.3g}"
    ax.set_title(f"{metric_name} vs {covariate_name}\nSpearman rho = {stat} (n = {n})", fontsize=8)
    return fig
