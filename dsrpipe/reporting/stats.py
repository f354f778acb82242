"""Group-level statistics of reconstruction runs: quality flags, rankings, grouped
summaries and a permutation test between groups.

All functions take the per-run table of :func:`dsrpipe.reporting.group.collect_metrics`
(one row per subject x model x seed) and return new tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dsrpipe import DsrpipeError

#: metrics on which a reconstruction must beat every baseline model (lower is better)
BASELINE_METRICS = ("d_stsp", "pe_20")


def flag_baselines(df: pd.DataFrame, metrics: Sequence[str] = BASELINE_METRICS) -> pd.DataFrame:
    """Add ``beats_baselines``: True when the run's value of every metric in ``metrics`` is
    below that of every baseline model (``baseline_<name>_<metric>`` columns, e.g. the
    training mean and a VAR(1)). Runs without baseline columns get NaN (unknown), and a
    metric without baselines is skipped."""
    df = df.copy()
    verdicts = []
    for _, row in df.iterrows():
        verdict: bool | float = math.nan
        for m in metrics:
            base = [row[c] for c in df.columns if c.startswith("baseline_") and c.endswith(f"_{m}")]
            base = [float(b) for b in base if b is not None and not pd.isna(b)]
            if m not in df.columns or not base:
                continue
            ok = bool(np.isfinite(row[m]) and row[m] < min(base))
            verdict = ok if isinstance(verdict, float) else (verdict and ok)
        verdicts.append(verdict)
    df["beats_baselines"] = pd.array(verdicts, dtype="boolean") if verdicts else pd.array([], dtype="boolean")
    return df


def quality_ranking(df: pd.DataFrame, metric: str = "d_stsp") -> pd.DataFrame:
    """Subjects ranked by the ``metric`` of their reported run (the ``best_setting`` run when the
    table has it, else the ``selected`` restart, else every run's median), best first.

    Returns a DataFrame with ``rank, subject, model, seed, <metric>`` and ``beats_baselines``
    where known.
    """
    if metric not in df.columns:
        raise DsrpipeError(f"cannot rank by {metric!r}: not a column of the metrics table")
    if "best_setting" in df.columns:
        chosen = df[df["best_setting"]]
    elif "selected" in df.columns:
        chosen = df[df["selected"]]
    else:
        chosen = df.sort_values(metric).groupby("subject", as_index=False).first()
    cols = ["subject", "model", "seed", metric] + [c for c in ("beats_baselines",) if c in chosen.columns]
    out = chosen[cols].copy()
    out["_key"] = pd.to_numeric(out[metric], errors="coerce").fillna(math.inf)
    out = out.sort_values(["_key", "subject"]).drop(columns="_key").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def summarise_by(df: pd.DataFrame, by: str, metrics: Sequence[str]) -> pd.DataFrame:
    """Median and MAD (unscaled) of each metric per value of column ``by`` (finite values only).

    Returns one row per (group, metric) with ``by, metric, median, mad, n``.
    """
    if by not in df.columns:
        raise DsrpipeError(f"report.group_by: {by!r} is not a column of the group table "
                           f"(columns: {', '.join(map(str, df.columns))})")
    rows = []
    for value, part in df.groupby(by, dropna=False):
        for m in metrics:
            if m not in part.columns:
                continue
            v = pd.to_numeric(part[m], errors="coerce").to_numpy(float)
            v = v[np.isfinite(v)]
            med = float(np.median(v)) if v.size else math.nan
            mad = float(np.median(np.abs(v - med))) if v.size else math.nan
            rows.append({by: value, "metric": m, "median": med, "mad": mad, "n": int(v.size)})
    return pd.DataFrame(rows, columns=[by, "metric", "median", "mad", "n"])


def permutation_test(a: Sequence[float], b: Sequence[float], *, n_permutations: int = 10_000,
                     statistic: str = "median", seed: int = 0) -> dict[str, Any]:
    """Two-sided permutation test of a difference between two groups.

    The statistic is ``stat(a) - stat(b)`` (``median`` or ``mean``); the p-value is
    ``(1 + #{|perm| >= |observed|}) / (1 + n_permutations)`` over random relabellings
    (Phipson & Smyth 2010: never exactly 0). Non-finite values are dropped.

    Returns
    -------
    dict with ``difference``, ``p_value``, ``n_a``, ``n_b``, ``statistic``, ``n_permutations``.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        raise DsrpipeError(f"a permutation test needs at least 2 finite values per group, got {len(a)} and {len(b)}")
    stat = {"median": np.median, "mean": np.mean}[statistic]
    observed = float(stat(a) - stat(b))
    pooled = np.concatenate([a, b])
    rng = np.random.default_rng(seed)
    idx = np.argsort(rng.random((n_permutations, len(pooled))), axis=1)
    perm = pooled[idx]
    diffs = stat(perm[:, : len(a)], axis=1) - stat(perm[:, len(a):], axis=1)
    extreme = int(np.sum(np.abs(diffs) >= abs(observed) - 1e-12))
    return {"difference": observed, "p_value": (1 + extreme) / (1 + n_permutations), "n_a": int(len(a)),
            "n_b": int(len(b)), "statistic": statistic, "n_permutations": int(n_permutations)}


def compare_groups(df: pd.DataFrame, column: str, groups: Sequence[Any], metric: str, **kwargs) -> dict[str, Any]:
    """Permutation test of ``metric`` between the subjects whose ``column`` is ``groups[0]``
    and those where it is ``groups[1]`` (one value per subject: its reported run)."""
    for key in (column, metric):
        if key not in df.columns:
            raise DsrpipeError(f"report.compare: {key!r} is not a column of the group table")
    if len(groups) != 2:
        raise DsrpipeError(f"report.compare.groups must name exactly two groups, got {list(groups)}")
    chosen = df[df["best_setting"]] if "best_setting" in df.columns else df
    values = [pd.to_numeric(chosen.loc[chosen[column].astype(str) == str(g), metric], errors="coerce")
              for g in groups]
    return {"column": column, "groups": [str(g) for g in groups], "metric": metric,
            **permutation_test(values[0], values[1], **kwargs)}


def add_covariates(df: pd.DataFrame, covariates: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Join per-subject covariates (e.g. participants.tsv columns) onto the run table; columns that
    clash with existing ones get a ``cov_`` prefix."""
    if not covariates:
        return df
    cov = pd.DataFrame.from_dict({str(k): dict(v) for k, v in covariates.items()}, orient="index")
    cov = cov.rename(columns=lambda c: f"cov_{c}" if c in df.columns else c)
    cov.index.name = "subject"
    return df.merge(cov.reset_index(), on="subject", how="left")
