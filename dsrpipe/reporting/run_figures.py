"""The figures of one training run (subject x setting x seed), from the files the run left behind.

:func:`load_run` reads a run directory (what training and evaluation wrote)
and the test series it was evaluated on; :func:`run_figures` turns that into
named matplotlib Figures; :func:`run_pngs` renders them (palette-quantised,
small) and :func:`write_pngs` writes them as a folder of PNGs. The group
stage draws every run's figures once, embeds them in the HTML report and
writes them for the Snakemake report (``figures/`` in the run folder).

Figures, by name (:data:`FIGURES`; a figure whose data the run lacks is left out):

``training``     loss, GTF alpha and learning rate per epoch
``timeseries``   true vs generated orbit: state space (PCA for N > 3) and the first channels against time
``spectra``      smoothed power spectra, true vs generated
``pe_curve``     PE(n) for n = 1..n_max with the baselines' curves
``lyapunov``     running Lyapunov estimates and the final spectrum (true exponents when known)
``cycles``       fixed points and k-cycles on the generated attractor, filled = stable
``basins``       basin map on the data's PCA plane with the test data on top
``bold_fit``     fMRI (MTF with the HRF decoder): observed BOLD vs BOLD predicted through the HRF from the
                 forced and the generated latent trajectory, and the forced latent trajectory
``rates``        spikes: binned counts vs the rates the model decodes (MTF Poisson view: exp(Gamma z + g) of the
                 forced and generated latent trajectories) or generates (GTF on counts: the generated series
                 mapped back to counts per bin through the stored standardisation)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dsrpipe import DsrpipeError
from dsrpipe.io.atomic import default_mode
from dsrpipe.paths import (BASINS_FILE, CONFIG_FILE, CYCLES_FILE, GENERATED_FILE, LYAPUNOV_FILE,
                           OBSERVATION_FIT_FILE, TRAIN_LOG_FILE)
from dsrpipe.reporting import analysis_figures, figures, observation_figures
from dsrpipe.reporting.html import figure_to_png_bytes

logger = logging.getLogger(__name__)

FIGURES_DIR = "figures"  # inside a run folder: <name>.png for each of FIGURES
FIGURES = ("training", "timeseries", "spectra", "pe_curve", "lyapunov", "cycles", "basins", "bold_fit", "rates")
COLORS = 32  # PNG palette size: dense orbit plots shrink ~4x
DPI = 72


def _read_parquet(path: Path, required: bool) -> pd.DataFrame | None:
    if not path.exists():
        if required:
            raise DsrpipeError(f"{path}: missing (the run's training or evaluation did not write it)")
        return None
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DsrpipeError(f"{path}: unreadable Parquet table ({exc})") from exc


def load_run(metrics_path: str | os.PathLike, test_path: str | os.PathLike,
             label: str | None = None) -> dict[str, Any]:
    """Everything the report shows of one run.

    Parameters
    ----------
    metrics_path : path
        The run's ``metrics.json``; the other files are read from beside it.
    test_path : path
        The test series the run was evaluated on.
    label : str, optional
        The run's setting label (the ``model-<label>`` part of its directory);
        defaults to ``metrics["model"]``.

    Returns
    -------
    dict
        ``metrics`` (dict), ``x_true`` and ``x_gen`` (T x N arrays), ``log``
        (training log), ``channels``, ``channel_types``, ``label``,
        ``run_dir``, and the evaluation tables ``cycles``, ``basins``,
        ``lyapunov`` and the ``readout`` spec from ``config.json`` (each None
        when the run has no such file, e.g. a run evaluated by an older version),
        ``fit`` (an MTF run's observation fit, else None), the test series'
        ``modality``, ``sample_dt`` and ``standardisation`` (mean, std per channel).
    """
    from dsrpipe.io.timeseries import read_timeseries

    metrics_path = Path(metrics_path)
    run_dir = metrics_path.parent
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as exc:
        raise DsrpipeError(f"{metrics_path}: cannot read run metrics ({exc})") from exc
    test = read_timeseries(test_path)
    config_path = run_dir / CONFIG_FILE
    readout = None
    if config_path.exists():
        try:
            readout = json.loads(config_path.read_text()).get("readout")
        except ValueError as exc:
            raise DsrpipeError(f"{config_path}: unreadable run config ({exc})") from exc
    return {
        "metrics": metrics,
        "x_true": test.data,
        "x_gen": read_timeseries(run_dir / GENERATED_FILE).data,
        "log": _read_parquet(run_dir / TRAIN_LOG_FILE, required=True),
        "channels": list(test.channels),
        "channel_types": list(test.channel_types or []),
        "label": label or metrics.get("model"),
        "run_dir": str(run_dir),
        "cycles": _read_parquet(run_dir / CYCLES_FILE, required=False),
        "basins": _read_parquet(run_dir / BASINS_FILE, required=False),
        "lyapunov": _read_parquet(run_dir / LYAPUNOV_FILE, required=False),
        "readout": readout,
        "fit": (_read_parquet(run_dir / OBSERVATION_FIT_FILE, required=False)
                if metrics.get("method") == "mtf" else None),  # a GTF run's folder never has a current one
        "modality": test.modality,
        "sample_dt": test.dt,
        "standardisation": test.meta.get("standardisation"),
    }


def observed_states(z: np.ndarray, readout: dict | None, n_obs: int) -> np.ndarray:
    """Latent states seen through the run's readout: (K, M) -> (K, N).

    Identity readout (and runs without a saved readout): the first N units.
    Affine: ``z @ B.T`` with ``B`` from ``config.json``'s ``readout.state``.
    """
    z = np.atleast_2d(np.asarray(z, float))
    if readout is None or readout.get("kind", "identity") == "identity":
        if z.shape[1] < n_obs:
            raise DsrpipeError(f"states have {z.shape[1]} latent units, fewer than the {n_obs} channels")
        return z[:, :n_obs]
    if readout.get("kind") != "affine":
        raise DsrpipeError(f"unknown readout kind {readout.get('kind')!r} in the run config")
    B = np.asarray(readout.get("state", {}).get("B"), float)
    if B.shape != (n_obs, z.shape[1]):
        raise DsrpipeError(f"affine readout B has shape {B.shape}, expected ({n_obs}, {z.shape[1]})")
    return z @ B.T


def _cycle_objects(table: pd.DataFrame) -> tuple[list[np.ndarray], list[bool]]:
    zcols = sorted((c for c in table.columns if c[:1] == "z" and c[1:].isdigit()), key=lambda c: int(c[1:]))
    states, stable = [], []
    for _, obj in table.sort_values(["cycle", "point"]).groupby("cycle", sort=True):
        states.append(obj[zcols].to_numpy(float))
        stable.append(bool(obj["stable"].iloc[0]))
    return states, stable


def _thin(x: np.ndarray) -> np.ndarray:
    return x[:: len(x) // figures.MAX_LINE_POINTS + 1]


def _cycles_figure(run: dict[str, Any]) -> Figure | None:
    table, m = run.get("cycles"), run["metrics"]
    truth = (m.get("truth") or {}).get("fixed_points") or []
    if (table is None or table.empty) and not truth:
        return None
    xt, xg = np.asarray(run["x_true"], float), np.asarray(run["x_gen"], float)
    n = xt.shape[1]
    states, stable = _cycle_objects(table) if table is not None and not table.empty else ([], [])
    states = [observed_states(s, run.get("readout"), n) for s in states]
    truth = np.asarray(truth, float).reshape(-1, n) if truth else None
    orbit = xg[np.isfinite(xg).all(axis=1)]
    if n > 2:  # the plane of the true series' first two principal components
        mean, axes = figures.principal_axes(xt, 2)
        orbit, states = (orbit - mean) @ axes.T, [(s - mean) @ axes.T for s in states]
        truth = (truth - mean) @ axes.T if truth is not None else None
        xt = (xt - mean) @ axes.T
        names = ["PC1", "PC2"]
    elif n == 2:
        names = list(run["channels"])
    else:
        return None  # a 1-D map: points on a line say nothing a table does not
    return analysis_figures.plot_cycles(_thin(orbit), states, stable, labels=names, truth=truth, data=_thin(xt))


def _basins_figure(run: dict[str, Any]) -> Figure | None:
    table = run.get("basins")
    if table is None or table.empty or not {"u", "v", "label"} <= set(table.columns):
        return None  # no basin analysis, or initial conditions sampled from the data (no plane)
    u, v = np.unique(table["u"].to_numpy(float)), np.unique(table["v"].to_numpy(float))
    grid = (table.pivot(index="v", columns="u", values="label").reindex(index=v, columns=u)
            .fillna(-1).to_numpy(int))
    attractors = pd.DataFrame((run["metrics"].get("basins") or {}).get("attractors") or [])
    if not {"label", "class", "fraction"} <= set(attractors.columns):
        attractors = None
    from dsrpipe.analysis.basins import pca_plane  # the plane the evaluate stage put the grid on

    xt = np.asarray(run["x_true"], float)
    scores = pca_plane(xt)[2] if xt.shape[1] >= 2 else None
    return analysis_figures.plot_basins(grid, u, v, attractors, data=scores)


def _fit_columns(fit: pd.DataFrame, channels: list[str], kind: str) -> np.ndarray | None:
    cols = [f"{kind}:{c}" for c in channels]
    return fit[cols].to_numpy(float) if set(cols) <= set(fit.columns) else None


def _view_channels(run: dict[str, Any], kind: str) -> list[str]:
    views = (run["metrics"].get("views") or {}).values()
    return [c for v in views if v.get("kind") == kind for c in v.get("channels", [])]


def _bold_figure(run: dict[str, Any]) -> Figure | None:
    fit, channels = run.get("fit"), _view_channels(run, "fmri")
    if fit is None or not channels:
        return None
    observed, forced = _fit_columns(fit, channels, "observed"), _fit_columns(fit, channels, "forced")
    if observed is None or forced is None:
        raise DsrpipeError(f"{run['run_dir']}/{OBSERVATION_FIT_FILE}: lacks the observed/forced columns of the "
                           f"fmri view's channels {channels[:3]}")
    latent = fit[[c for c in fit.columns if c.startswith("latent_forced:")]].to_numpy(float)
    return observation_figures.plot_bold_fit(observed, forced, _fit_columns(fit, channels, "generated"),
                                             latent if latent.shape[1] else None, channels,
                                             dt=run.get("sample_dt") or run["metrics"].get("dt"))


def _counts_from_standardised(run: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """A GTF run on binned counts: (counts, generated expected counts), both mapped back through the
    test file's standardisation; None when the modelled channels are not all counts."""
    types, stdz = run.get("channel_types") or [], run.get("standardisation") or {}
    n = len(run["channels"])
    mean, std = stdz.get("mean"), stdz.get("std")
    if not types or set(types) != {"count"} or not (isinstance(mean, list) and isinstance(std, list)
                                                     and len(mean) == len(std) == n):
        return None
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    xt, xg = np.asarray(run["x_true"], float), np.asarray(run["x_gen"], float)
    T = min(len(xt), len(xg))
    return np.round(xt[:T] * std + mean), np.clip(xg[:T] * std + mean, 0, None)


def _rates_figure(run: dict[str, Any]) -> Figure | None:
    dt = run.get("sample_dt") or run["metrics"].get("dt")
    fit, channels = run.get("fit"), _view_channels(run, "poisson")
    if fit is not None and channels:
        counts = _fit_columns(fit, channels, "observed")
        rates = {f"decoded, {k}": _fit_columns(fit, channels, k) for k in ("forced", "generated")}
        if counts is None or any(r is None for r in rates.values()):
            raise DsrpipeError(f"{run['run_dir']}/{OBSERVATION_FIT_FILE}: lacks the columns of the poisson "
                               f"view's channels {channels[:3]}")
        return observation_figures.plot_rates_vs_counts(counts, rates, channels, dt=dt)
    if run.get("modality") != "spikes" or run["metrics"].get("method") == "mtf":
        return None
    mapped = _counts_from_standardised(run)
    if mapped is None:  # smoothed sqrt rates: the counts are not in the prepared files
        return None
    return observation_figures.plot_rates_vs_counts(mapped[0], {"generated": mapped[1]}, run["channels"], dt=dt)


def run_figures(run: dict[str, Any]) -> dict[str, Figure]:
    """The figures of one run, by name (the order of :data:`FIGURES`).

    Parameters
    ----------
    run : dict
        As returned by :func:`load_run`; ``metrics``, ``x_true``, ``x_gen``,
        ``log`` and ``channels`` are required, the rest optional.

    Returns
    -------
    dict of str to Figure
        Figures whose data the run lacks (no PE curve, no Lyapunov trace, no
        cycles or basins table, not an fMRI/spikes run) are left out.
    """
    m = run["metrics"]
    dt = m.get("dt")
    xt, xg, channels = run["x_true"], run["x_gen"], run["channels"]
    out: dict[str, Figure] = {
        "training": figures.plot_loss_curve(run["log"]),
        "timeseries": figures.plot_orbits(xt, xg, channels, dt=dt),
        "spectra": figures.plot_power_spectra(xt, xg, channels, dt=dt),
    }
    if m.get("pe_curve"):
        baselines = {name: b["pe_curve"] for name, b in (m.get("baselines") or {}).items() if b.get("pe_curve")}
        out["pe_curve"] = analysis_figures.plot_pe_curve(m["pe_curve"], baselines)
    lyap, truth = run.get("lyapunov"), (m.get("truth") or {}).get("lyapunov_spectrum")
    if lyap is not None and not lyap.empty:
        cols = sorted((c for c in lyap.columns if c.startswith("lambda_")), key=lambda c: int(c[7:]))
        out["lyapunov"] = analysis_figures.plot_lyapunov_convergence(
            lyap["step"].to_numpy(float), lyap[cols].to_numpy(float), units=m.get("lyapunov_units", "per step"),
            truth=truth or None, spectrum=m.get("lyapunov_spectrum"))
    for name, make in (("cycles", _cycles_figure), ("basins", _basins_figure), ("bold_fit", _bold_figure),
                       ("rates", _rates_figure)):
        fig = make(run)
        if fig is not None:
            out[name] = fig
    return out


def run_pngs(run: dict[str, Any], dpi: int = DPI, colors: int | None = COLORS) -> dict[str, bytes]:
    """:func:`run_figures` rendered to PNG bytes (each figure released after rendering)."""
    return {name: figure_to_png_bytes(fig, dpi, colors) for name, fig in run_figures(run).items()}


def write_pngs(pngs: dict[str, bytes], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``pngs`` as ``<out_dir>/<name>.png``, atomically: the folder appears whole or not at all,
    replacing an existing one. Returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    os.chmod(tmp, default_mode(directory=True))  # not mkdtemp's 0700
    try:
        for name, png in pngs.items():
            (tmp / f"{name}.png").write_bytes(png)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    logger.info("%d run figures -> %s", len(pngs), out_dir)
    return [out_dir / f"{name}.png" for name in pngs]


def write_run_figures(metrics_path: str | os.PathLike, test_path: str | os.PathLike, out_dir: str | os.PathLike,
                      *, label: str | None = None, dpi: int = DPI) -> list[Path]:
    """Draw one run's figures (:func:`load_run`, :func:`run_pngs`) and write them with :func:`write_pngs`."""
    return write_pngs(run_pngs(load_run(metrics_path, test_path, label), dpi), out_dir)
