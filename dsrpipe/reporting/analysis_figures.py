"""Figures of the post-training analysis: basin map, PE(n) curve, Lyapunov convergence, cycles.

Like :mod:`dsrpipe.reporting.figures` (which re-exports them): every
function takes arrays or tables and returns a :class:`matplotlib.figure.Figure`
built without pyplot; only scripts write files. The inputs are what the
evaluate stage writes: ``basins.parquet`` (u, v, label), ``metrics.json``
(``pe_curve``, ``baselines.*.pe_curve``, ``basins.attractors``,
``fixed_points``, ``cycles``), ``lyapunov.parquet`` (step, lambda_i) and
``generated.parquet``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from dsrpipe import DsrpipeError

__all__ = ["plot_basins", "plot_pe_curve", "plot_lyapunov_convergence", "plot_cycles"]

DIVERGING_COLOR = "0.85"


def plot_basins(grid: np.ndarray, u: np.ndarray, v: np.ndarray, attractors: pd.DataFrame | None = None,
                data: np.ndarray | None = None) -> Figure:
    """Basin map: the attractor label of each initial condition on a plane grid.

    Parameters
    ----------
    grid : int ndarray, shape (n_v, n_u)
        Labels (-1: diverging), row j at ``v[j]``, column i at ``u[i]``.
    u, v : ndarray, shapes (n_u,) and (n_v,)
        Grid coordinates (e.g. data PC1 and PC2 scores).
    attractors : DataFrame, optional
        The attractor table (``label``, ``class``, ``fraction``) for the legend.
    data : ndarray, shape (T, 2), optional
        Data in the same plane coordinates, drawn on top.

    Returns
    -------
    Figure
    """
    grid = np.asarray(grid)
    u, v = np.asarray(u, float), np.asarray(v, float)
    if grid.shape != (len(v), len(u)):
        raise DsrpipeError(f"basin grid has shape {grid.shape}, expected ({len(v)}, {len(u)}) from u and v")
    n = int(grid.max()) + 1 if grid.size and grid.max() >= 0 else 0
    colors = [DIVERGING_COLOR] + [f"C{i % 10}" for i in range(n)]
    fig = Figure(figsize=(4.2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    du = (u[1] - u[0]) / 2 if len(u) > 1 else 0.5
    dv = (v[1] - v[0]) / 2 if len(v) > 1 else 0.5
    ax.imshow(grid + 1, origin="lower", cmap=ListedColormap(colors), vmin=0, vmax=max(n, 1), interpolation="nearest",
              extent=(u[0] - du, u[-1] + du, v[0] - dv, v[-1] + dv), aspect="auto")
    if data is not None:
        d = np.asarray(data, float)
        ax.plot(d[:, 0], d[:, 1], color="k", lw=0.3, alpha=0.5)
    handles = []
    for label in range(n):
        text = f"{label}"
        if attractors is not None and label in set(attractors["label"]):
            row = attractors.set_index("label").loc[label]
            text = f"{label}: {row['class']} ({row['fraction']:.0%})"
        handles.append(Patch(color=colors[label + 1], label=text))
    if (grid < 0).any():
        handles.append(Patch(color=DIVERGING_COLOR, label="diverging"))
    ax.legend(handles=handles, fontsize=7, loc="upper right")
    ax.set_xlabel("u (PC 1)")
    ax.set_ylabel("v (PC 2)")
    ax.set_title("basins of attraction", fontsize=9)
    return fig


def plot_pe_curve(pe: Sequence[float], baselines: Mapping[str, Sequence[float]] | None = None,
                  dt: float | None = None) -> Figure:
    """PE(n) against the horizon n, with the baselines' curves.

    Parameters
    ----------
    pe : sequence of float, length n_max
        ``pe[n - 1]`` = PE(n).
    baselines : mapping of name to sequence, optional
        The same curve of reference models (e.g. ``mean``, ``var1``).
    dt : float, optional
        Sampling interval: the x axis in time units instead of steps.

    Returns
    -------
    Figure
        Log y axis when every value is positive.
    """
    pe = np.asarray(pe, float)
    if pe.ndim != 1 or pe.size == 0:
        raise DsrpipeError(f"pe must be a non-empty 1-D sequence, got shape {pe.shape}")
    fig = Figure(figsize=(4.2, 2.8), layout="constrained")
    ax = fig.add_subplot()
    scale = dt or 1.0
    ax.plot(np.arange(1, pe.size + 1) * scale, pe, "o-", color="tab:red", ms=3, label="model")
    values = [pe]
    for i, (name, curve) in enumerate((baselines or {}).items()):
        curve = np.asarray(curve, float)
        ax.plot(np.arange(1, curve.size + 1) * scale, curve, "--", color=f"C{i + 2}", lw=1, label=name)
        values.append(curve)
    finite = np.concatenate(values)
    finite = finite[np.isfinite(finite)]
    if finite.size and (finite > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("horizon (time units)" if dt else "horizon n (steps)")
    ax.set_ylabel("PE(n)")
    ax.legend(fontsize=7)
    return fig


def plot_lyapunov_convergence(steps: np.ndarray, trace: np.ndarray, units: str = "per step",
                              truth: Sequence[float] | None = None,
                              spectrum: Sequence[float] | None = None) -> Figure:
    """Running Lyapunov exponent estimates against the number of steps.

    Parameters
    ----------
    steps : ndarray, shape (P,)
    trace : ndarray, shape (P, M)
        Running estimates, largest first.
    units : str
        Unit of the exponents (axis label).
    truth : sequence of float, optional
        Known exponents, drawn as dotted lines.
    spectrum : sequence of float, optional
        The final spectrum (largest first, e.g. ``metrics.json``'s
        ``lyapunov_spectrum``), shown as a third panel: one bar per exponent,
        the known exponents as black markers.

    Returns
    -------
    Figure
        The largest exponent on its own axis (it converges to a small
        number next to large negative ones), all exponents on a second, and
        with ``spectrum`` the final exponents on a third.
    """
    steps, trace = np.asarray(steps, float), np.atleast_2d(np.asarray(trace, float))
    if trace.shape[0] != steps.shape[0]:
        raise DsrpipeError(f"trace has {trace.shape[0]} rows but there are {steps.shape[0]} steps")
    fig = Figure(figsize=(6.5 if spectrum is None else 9.0, 2.6), layout="constrained")
    if spectrum is None:
        top, all_ax = fig.subplots(1, 2)
    else:
        top, all_ax, final = fig.subplots(1, 3, width_ratios=[1, 1, 0.8])
        values = np.asarray(spectrum, float)
        idx = np.arange(1, values.size + 1)
        final.bar(idx, values, color=["tab:red" if v > 0 else "tab:blue" for v in values], width=0.6)
        if truth is not None and len(truth):
            t = np.asarray(truth, float)[: values.size]
            final.plot(idx[: t.size], t, "k_", ms=14, mew=2, label="true")
            final.legend(fontsize=7)
        final.axhline(0, color="0.6", lw=0.5)
        if values.size <= 8:
            final.set_xticks(idx, [f"$\\lambda_{{{i}}}$" for i in idx])
        else:
            final.set_xlabel("exponent index")
        final.set_title("final spectrum", fontsize=9)
        final.set_ylabel(f"exponent ({units})")
    top.plot(steps, trace[:, 0], color="tab:red", lw=1)
    top.axhline(0, color="0.6", lw=0.5)
    top.set_title("largest exponent", fontsize=9)
    for i in range(trace.shape[1]):
        all_ax.plot(steps, trace[:, i], lw=1, label=f"$\\lambda_{{{i + 1}}}$")
    all_ax.set_title("spectrum", fontsize=9)
    if truth is not None:
        truth = list(truth)
        if truth:
            top.axhline(truth[0], color="k", ls=":", lw=1, label="true")
            top.legend(fontsize=7)
        for value in truth:
            all_ax.axhline(value, color="k", ls=":", lw=0.8)
    for ax in (top, all_ax):
        ax.set_xscale("log")
        ax.set_xlabel("steps")
        ax.set_ylabel(f"exponent ({units})")
    if trace.shape[1] <= 6:
        all_ax.legend(fontsize=7, ncol=2)
    return fig


def plot_cycles(orbit: np.ndarray, cycles: Sequence[np.ndarray], stable: Sequence[bool],
                dims: tuple[int, int] = (0, 1), labels: Sequence[str] | None = None,
                truth: np.ndarray | None = None, data: np.ndarray | None = None) -> Figure:
    """Fixed points and k-cycles drawn on the model's attractor.

    Parameters
    ----------
    orbit : ndarray, shape (T, N)
        A generated orbit on the attractor.
    cycles : sequence of ndarray, each shape (k, >= N)
        The states of each fixed point (k = 1) or cycle (k > 1).
    stable : sequence of bool
        Filled markers for stable objects, open ones for unstable.
    dims : (int, int)
        Which two coordinates to plot.
    labels : sequence of str, optional
        Axis labels of the two coordinates.
    truth : ndarray, shape (K, >= N), optional
        Known fixed points in the same coordinates, drawn as black crosses.
    data : ndarray, shape (T', >= N), optional
        The observed series in the same coordinates, drawn faintly behind
        (gives the scale when the model's orbit collapsed onto a point).

    Returns
    -------
    Figure
    """
    orbit = np.asarray(orbit, float)
    if orbit.ndim != 2 or orbit.shape[1] <= max(dims):
        raise DsrpipeError(f"orbit must be (T, N) with N > {max(dims)}, got shape {orbit.shape}")
    if len(cycles) != len(stable):
        raise DsrpipeError(f"{len(cycles)} cycles but {len(stable)} stability flags")
    i, j = dims
    fig = Figure(figsize=(4.2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    if data is not None:
        d = np.asarray(data, float)
        ax.plot(d[:, i], d[:, j], color="tab:cyan", lw=0.3, alpha=0.5, label="data")
    ax.plot(orbit[:, i], orbit[:, j], color="0.4", lw=0.3, label="generated")
    seen = {"orbit"}
    for states, is_stable in zip(cycles, stable):
        s = np.atleast_2d(np.asarray(states, float))
        k = len(s)
        color = "tab:blue" if k == 1 else f"C{(k % 8) + 1}"
        key = (min(k, 3), bool(is_stable))
        name = ("fixed point" if k == 1 else f"{k}-cycle") + (" (stable)" if is_stable else " (unstable)")
        if k > 1:
            closed = np.vstack([s, s[:1]])
            ax.plot(closed[:, i], closed[:, j], color=color, lw=0.8, ls="--")
        ax.plot(s[:, i], s[:, j], "o", ms=6, color=color, mfc=color if is_stable else "white",
                label=name if (key, k) not in seen else None)
        seen.add((key, k))
    if truth is not None and len(truth):
        t = np.atleast_2d(np.asarray(truth, float))
        ax.plot(t[:, i], t[:, j], "x", ms=8, mew=1.5, color="k", label="true fixed point")
        seen.add("truth")
    names = labels or [f"z{i + 1}", f"z{j + 1}"]
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.legend(fontsize=7)
    ax.set_title("fixed points and cycles", fontsize=9)
    return fig
