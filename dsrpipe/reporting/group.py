"""Group-level tables: one row per training run, and the median +- MAD summary.

``collect_metrics`` flattens the ``metrics.json`` written by the evaluation
stage for every (subject, model, seed) into a table; ``summarise`` reduces a
table to the group statistics the lab reports (median +- MAD over runs).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dsrpipe import DsrpipeError

logger = logging.getLogger(__name__)

ID_COLUMNS = ("subject", "model", "seed")
SCALAR_METRICS = ("dt", "d_stsp", "d_h", "pe_20", "max_lyapunov", "kaplan_yorke_dimension",
                  "n_params", "train_time_s")
REQUIRED_KEYS = ID_COLUMNS + SCALAR_METRICS + ("lyapunov_spectrum", "fixed_points")
DEFAULT_SUMMARY_METRICS = ("d_stsp", "d_h", "pe_20", "max_lyapunov", "kaplan_yorke_dimension",
                           "n_fixed_points", "max_lyapunov_error", "fixed_point_error_mean")
#: the types :func:`dsrpipe.analysis.cycles.eigenvalue_type` gives a fixed point or cycle (kept here
#: so that reading tables needs no torch; tests/test_group_table.py checks they agree)
OBJECT_TYPES = ("stable_node", "stable_spiral", "unstable_node", "unstable_spiral", "saddle", "non_hyperbolic")
#: per-run invariants beside the scalar metrics (see :func:`collect_metrics`)
INVARIANT_COLUMNS = ("diverged", "diverged_stage", "diverged_at_step", "attractor_class", "attractor_period",
                     "n_visited_regions", "n_attractors", "n_basin_inits_diverging")


def _number(value: Any, key: str, path: Path) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DsrpipeError(f"{path}: {key!r} must be a number or null, got {value!r}")
    return float(value)


def _numbers(values: Any, key: str, path: Path) -> list[float]:
    if not isinstance(values, list):
        raise DsrpipeError(f"{path}: {key!r} must be a list of numbers, got {values!r}")
    return [_number(v, key, path) for v in values]


def _read_json(path: Path) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DsrpipeError(f"{path}: metrics file not found") from None
    except (OSError, ValueError) as exc:
        raise DsrpipeError(f"{path}: cannot read metrics JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DsrpipeError(f"{path}: metrics JSON must be an object, got {type(data).__name__}")
    return data


def _type_counts(objects: list, prefix: str, key: str, path: Path) -> dict[str, float]:
    """``<prefix><type>``: how many of ``objects`` (dicts with ``type``) are of each type of
    :data:`OBJECT_TYPES`; NaN for all when some object has no type (metrics of an older dsrpipe)."""
    if not all("type" in o for o in objects):
        return {f"{prefix}{t}": math.nan for t in OBJECT_TYPES}
    unknown = sorted({str(o["type"]) for o in objects} - set(OBJECT_TYPES))
    if unknown:
        raise DsrpipeError(f"{path}: {key!r} has unknown type(s) {unknown}; known: {list(OBJECT_TYPES)}")
    return {f"{prefix}{t}": sum(o["type"] == t for o in objects) for t in OBJECT_TYPES}


def _cycle_counts(data: dict, path: Path) -> dict[str, float]:
    """``n_cycles_<k>`` and ``n_cycles_<k>_<type>`` for every order k >= 2 of ``n_cycles`` (SCYFI)."""
    counts = data.get("n_cycles")
    if counts is None:
        return {}
    if not isinstance(counts, dict):
        raise DsrpipeError(f"{path}: 'n_cycles' must be an object (order -> count), got {counts!r}")
    cycles = data.get("cycles") or []
    if not isinstance(cycles, list) or not all(isinstance(c, dict) and "order" in c for c in cycles):
        raise DsrpipeError(f"{path}: 'cycles' must be a list of objects with an 'order' key")
    row: dict[str, float] = {}
    for order in sorted((k for k in counts if str(k).isdigit() and int(k) > 1), key=int):
        row[f"n_cycles_{order}"] = _number(counts[order], f"n_cycles.{order}", path)
        of_order = [c for c in cycles if int(c["order"]) == int(order)]
        row.update(_type_counts(of_order, f"n_cycles_{order}_", "cycles", path))
    return row


def _invariants(data: dict, path: Path) -> dict[str, Any]:
    """Divergence flag, attractor class and the counts of :data:`INVARIANT_COLUMNS`.

    ``diverged`` falls back to a non-finite generated orbit (``generated_finite: false``) for
    metrics without the flag; a diverged run's attractor class is ``diverged``."""
    diverged = data.get("diverged")
    if diverged is None:
        diverged = data.get("generated_finite") is False
    if not isinstance(diverged, bool):
        raise DsrpipeError(f"{path}: 'diverged' must be true or false, got {diverged!r}")
    stage = data.get("diverged_stage")
    attractor = data.get("attractor") or {}
    if not isinstance(attractor, dict):
        raise DsrpipeError(f"{path}: 'attractor' must be an object")
    kind = data.get("attractor_class")
    basins = data.get("basins") or {}
    if not isinstance(basins, dict):
        raise DsrpipeError(f"{path}: 'basins' must be an object")
    return {
        "diverged": diverged,
        "diverged_stage": (str(stage) if stage is not None else ("generation" if diverged else None)),
        "diverged_at_step": _number(data.get("diverged_at_step"), "diverged_at_step", path),
        "attractor_class": "diverged" if diverged and kind in (None, "diverged") else (
            str(kind) if kind is not None else None),
        "attractor_period": _number(attractor.get("period"), "attractor.period", path),
        "n_visited_regions": _number(data.get("n_visited_regions"), "n_visited_regions", path),
        "n_attractors": _number(data.get("n_attractors", basins.get("n_attractors")), "n_attractors", path),
        "n_basin_inits_diverging": _number(basins.get("n_diverging"), "basins.n_diverging", path),
    }


def _row(data: dict, path: Path) -> dict[str, Any]:
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise DsrpipeError(f"{path}: metrics file lacks keys {missing}")
    row: dict[str, Any] = {"subject": str(data["subject"]), "model": str(data["model"]),
                           "modality": str(data.get("modality", "timeseries"))}
    try:
        row["seed"] = int(data["seed"])
    except (TypeError, ValueError):
        raise DsrpipeError(f"{path}: 'seed' must be an integer, got {data['seed']!r}") from None
    row.update({k: _number(data[k], k, path) for k in SCALAR_METRICS})
    fps = data["fixed_points"]
    if not isinstance(fps, list) or not all(isinstance(fp, dict) and "stable" in fp for fp in fps):
        raise DsrpipeError(f"{path}: 'fixed_points' must be a list of objects with a 'stable' key")
    row["n_fixed_points"] = len(fps)
    row["n_stable_fixed_points"] = sum(bool(fp["stable"]) for fp in fps)
    row.update(_type_counts(fps, "n_fixed_points_", "fixed_points", path))
    row.update(_cycle_counts(data, path))
    row.update(_invariants(data, path))
    for i, v in enumerate(_numbers(data["lyapunov_spectrum"], "lyapunov_spectrum", path), 1):
        row[f"lyap_{i}"] = v
    for name, values in (data.get("baselines") or {}).items():  # mean / VAR(1) reference models
        for k in ("d_stsp", "d_h", "pe_20"):
            if k in values:
                row[f"baseline_{name}_{k}"] = _number(values[k], f"baselines.{name}.{k}", path)
    truth = data.get("truth")
    if truth is not None:
        if not isinstance(truth, dict):
            raise DsrpipeError(f"{path}: 'truth' must be an object")
        for k in ("max_lyapunov", "kaplan_yorke_dimension"):
            row[f"true_{k}"] = _number(truth.get(k), f"truth.{k}", path)
        spectrum = _numbers(truth.get("lyapunov_spectrum", []), "truth.lyapunov_spectrum", path)
        for i, v in enumerate(spectrum, 1):
            row[f"true_lyap_{i}"] = v
    comp = data.get("truth_comparison")
    if comp is not None:
        if not isinstance(comp, dict):
            raise DsrpipeError(f"{path}: 'truth_comparison' must be an object")
        row["max_lyapunov_error"] = _number(comp.get("max_lyapunov_error"),
                                            "truth_comparison.max_lyapunov_error", path)
        errs = np.array(_numbers(comp.get("fixed_point_errors", []),
                                 "truth_comparison.fixed_point_errors", path))
        finite = errs[np.isfinite(errs)]
        row["fixed_point_error_mean"] = float(finite.mean()) if finite.size else math.nan
        row["n_fixed_points_missed"] = int(errs.size - finite.size)
        for k in ("n_fixed_points_true", "n_fixed_points_found"):
            row[k] = _number(comp.get(k), f"truth_comparison.{k}", path)
    return row


def _column_order(columns: Sequence[str]) -> list[str]:
    def numbered(prefix: str) -> list[str]:
        cols = [c for c in columns if c.startswith(prefix) and c[len(prefix):].isdigit()]
        return sorted(cols, key=lambda c: int(c[len(prefix):]))

    head = (list(ID_COLUMNS) + list(SCALAR_METRICS) + [c for c in INVARIANT_COLUMNS if c in columns]
            + ["n_fixed_points", "n_stable_fixed_points"] + [f"n_fixed_points_{t}" for t in OBJECT_TYPES])
    cycles = sorted((c for c in columns if c.startswith("n_cycles_") and c[9:].isdigit()), key=lambda c: int(c[9:]))
    head += [c for k in cycles for c in [k] + [f"{k}_{t}" for t in OBJECT_TYPES]]
    truth = ["true_max_lyapunov", "true_kaplan_yorke_dimension"]
    comp = ["max_lyapunov_error", "fixed_point_error_mean", "n_fixed_points_missed",
            "n_fixed_points_true", "n_fixed_points_found"]
    order = (head + numbered("lyap_") + [c for c in truth if c in columns]
             + numbered("true_lyap_") + [c for c in comp if c in columns])
    return order + [c for c in columns if c not in order]


def collect_metrics(paths: Sequence[str | os.PathLike], labels: Sequence[str | None] | None = None) -> pd.DataFrame:
    """Read per-run ``metrics.json`` files into one table.

    Parameters
    ----------
    paths : sequence of path-like
        One ``metrics.json`` per training run (subject x model x seed).
    labels : sequence of str or None, optional
        The setting label of each run (a hyperparameter-grid entry such as
        ``shPLRNN-2``): it becomes the ``model`` column, and the registry name
        moves to ``model_name``.

    Returns
    -------
    DataFrame
        One row per run, sorted by subject, model, seed, with columns
        ``subject, model, seed``, the scalar metrics (``dt, d_stsp, d_h, pe_20,
        max_lyapunov, kaplan_yorke_dimension, n_params, train_time_s``; null
        becomes NaN; D_stsp and D_H are inf for a diverged run), the invariants
        ``diverged`` (bool: an orbit from the test data left the bounded states,
        see :mod:`dsrpipe.analysis.divergence`), ``diverged_stage`` (``generation``,
        ``lyapunov`` or ``prediction``: the first evaluation stage that saw it;
        None), ``diverged_at_step``, ``attractor_class`` (``fixed_point``,
        ``cycle``, ``quasi_periodic``, ``chaotic`` or ``diverged``),
        ``attractor_period`` (steps, 0 when aperiodic), ``n_visited_regions``
        (linear subregions on the attractor; NaN for smooth or diverged models),
        ``n_attractors`` and ``n_basin_inits_diverging`` (basin analysis), then
        ``n_fixed_points, n_stable_fixed_points``, ``n_fixed_points_<type>`` for
        each type of :data:`OBJECT_TYPES` (NaN when the file records no types),
        ``n_cycles_<k>`` and ``n_cycles_<k>_<type>`` for every cycle order k >= 2
        the evaluation searched, the spectrum as
        ``lyap_1 .. lyap_M`` (NaN-padded when runs differ in M). Only when some
        run has a ``truth`` entry: ``true_max_lyapunov,
        true_kaplan_yorke_dimension, true_lyap_1 ..``; only when some run has
        ``truth_comparison``: ``max_lyapunov_error``, ``fixed_point_error_mean``
        (mean over the true fixed points that were matched),
        ``n_fixed_points_missed`` (true fixed points without a match, i.e. NaN
        errors), ``n_fixed_points_true, n_fixed_points_found``.

    Raises
    ------
    DsrpipeError
        Naming the file, when one is missing, is not valid JSON, lacks a key of
        :data:`REQUIRED_KEYS` or holds a value of the wrong type; also for an
        empty ``paths`` and for two files describing the same run.
    """
    if not paths:
        raise DsrpipeError("no metrics files given")
    rows, seen = [], {}
    labels = list(labels) if labels is not None else [None] * len(paths)
    for p, label in zip(map(Path, paths), labels):
        row = _row(_read_json(p), p)
        row["model_name"] = row["model"]
        if label:
            row["model"] = label
        key = tuple(row[k] for k in ID_COLUMNS)
        if key in seen:
            raise DsrpipeError(f"{p}: run {key} also described by {seen[key]}")
        seen[key] = p
        rows.append(row)
    df = pd.DataFrame(rows)
    df = df[_column_order(list(df.columns))].sort_values(list(ID_COLUMNS), ignore_index=True)
    logger.info("collected metrics of %d runs (%d subjects)", len(df), df["subject"].nunique())
    return df


def validation_score(run_config: dict) -> tuple[float, float]:
    """(validation D_stsp, validation D_H) from a run's ``config.json``; inf when absent."""
    val = run_config.get("validation") or {}
    return tuple(math.inf if val.get(k) is None else float(val[k]) for k in ("d_stsp", "d_h"))


def add_restart_selection(df: pd.DataFrame, scores: dict[tuple[str, str, int], tuple[float, float]]) -> pd.DataFrame:
    """Add ``val_d_stsp``, ``val_d_h`` (validation scores on the training segment's held-out
    tail) and two choices made from them only -- the test metrics play no part:

    ``selected``
        per subject and model (setting), the restart with the smallest validation D_stsp
        (D_H, then seed, breaks ties): the run the workflow reports for that setting;
    ``best_setting``
        per subject, the selected run of the setting with the smallest validation D_stsp
        (hyperparameter selection when a grid is trained).

    ``scores`` maps (subject, model, seed) as in ``df`` to (D_stsp, D_H).
    """
    df = df.copy()
    keys = list(zip(df["subject"], df["model"], df["seed"]))
    df["val_d_stsp"] = [scores.get(k, (math.nan, math.nan))[0] for k in keys]
    df["val_d_h"] = [scores.get(k, (math.nan, math.nan))[1] for k in keys]
    rank = pd.DataFrame({"d": df["val_d_stsp"].fillna(math.inf), "h": df["val_d_h"].fillna(math.inf),
                         "seed": df["seed"]})
    df["selected"] = False
    df["best_setting"] = False
    for _, idx in df.groupby(["subject", "model"]).groups.items():
        df.loc[rank.loc[idx].sort_values(["d", "h", "seed"]).index[0], "selected"] = True
    for _, idx in df[df["selected"]].groupby("subject").groups.items():
        df.loc[rank.loc[idx].sort_values(["d", "h", "seed"]).index[0], "best_setting"] = True
    return df


def summarise(df: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Group summary of per-run metrics: median +- MAD, mean, range.

    Parameters
    ----------
    df : DataFrame
        One row per run, as returned by :func:`collect_metrics`.
    metrics : sequence of str, optional
        Columns to summarise; default those of :data:`DEFAULT_SUMMARY_METRICS`
        that ``df`` has.

    Returns
    -------
    DataFrame
        One row per metric with columns ``metric, median, mad, mean, min, max,
        n, n_missing``. Statistics are over the finite values only (``n`` of
        them); ``n_missing`` counts the NaN/inf values left out: e.g. D_stsp of
        diverged runs, or the truth errors of runs without a ground truth. ``mad`` is the unscaled median absolute deviation
        (:func:`scipy.stats.median_abs_deviation`, ``scale=1``).

    Raises
    ------
    DsrpipeError
        When a requested metric is not a column of ``df``.
    """
    from scipy.stats import median_abs_deviation  # slow import (~1 s), only needed here

    if metrics is None:
        metrics = [m for m in DEFAULT_SUMMARY_METRICS if m in df.columns]
        metrics += sorted(c for c in df.columns if c.startswith("baseline_"))
    absent = [m for m in metrics if m not in df.columns]
    if absent:
        raise DsrpipeError(f"cannot summarise {absent}: not columns of the metrics table")
    rows = []
    for m in metrics:
        v = pd.to_numeric(df[m], errors="coerce").to_numpy(float)
        ok = v[np.isfinite(v)]
        stats = dict(median=np.median(ok), mad=median_abs_deviation(ok), mean=ok.mean(),
                     min=ok.min(), max=ok.max()) if ok.size else dict.fromkeys(
                         ("median", "mad", "mean", "min", "max"), math.nan)
        rows.append({"metric": m, **{k: float(x) for k, x in stats.items()},
                     "n": int(ok.size), "n_missing": int(v.size - ok.size)})
    return pd.DataFrame(rows, columns=["metric", "median", "mad", "mean", "min", "max", "n",
                                       "n_missing"])
