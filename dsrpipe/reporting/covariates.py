"""Group metrics against subject covariates: which covariates are numeric, Spearman correlations and
the scatter plots of the group report (``report.scatter_metrics`` x ``report.scatter_covariates``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dsrpipe import DsrpipeError
from dsrpipe.config import ReportConfig
from dsrpipe.reporting.observation_figures import plot_covariate_scatter, spearman


def _numeric(values: pd.Series) -> pd.Series | None:
    """The column as floats when every present value is a number (bools are not), else None."""
    if pd.api.types.is_bool_dtype(values):
        return None
    present = values.dropna()
    if present.map(lambda v: isinstance(v, (bool, np.bool_))).any():
        return None
    converted = pd.to_numeric(values, errors="coerce")
    if converted.notna().sum() != len(present):
        return None
    return converted.astype(float)


def per_subject(table: pd.DataFrame) -> pd.DataFrame:
    """One row per subject: its reported run (``best_setting``) when the table marks one, else every row."""
    return table[table["best_setting"].astype(bool)] if "best_setting" in table.columns else table


def scatter_columns(table: pd.DataFrame, covariates: Sequence[str], cfg: ReportConfig) -> list[str]:
    """The covariate columns to draw: ``cfg.scatter_covariates`` (each must be a numeric column of the
    table) or, when None, every column of ``covariates`` that is numeric and not constant."""
    if cfg.scatter_covariates is not None:
        for c in cfg.scatter_covariates:
            if c not in table.columns:
                raise DsrpipeError(f"report.scatter_covariates: {c!r} is not a column of the group table "
                                   f"(covariates: {', '.join(map(str, covariates)) or 'none'})")
            if _numeric(table[c]) is None:
                raise DsrpipeError(f"report.scatter_covariates: column {c!r} is not numeric")
        return list(cfg.scatter_covariates)
    out = []
    for c in covariates:
        v = _numeric(table[c]) if c in table.columns else None
        if v is not None and v[np.isfinite(v)].nunique() >= 2:
            out.append(c)
    return out


def _metrics(table: pd.DataFrame, cfg: ReportConfig) -> list[str]:
    missing = [m for m in cfg.scatter_metrics if m not in table.columns]
    if missing:
        raise DsrpipeError(f"report.scatter_metrics: {missing} not column(s) of the group table")
    return list(cfg.scatter_metrics)


def scatter_stats(table: pd.DataFrame, columns: Sequence[str], cfg: ReportConfig) -> pd.DataFrame:
    """Spearman rho, p and n of each metric against each covariate column, one point per subject."""
    df = per_subject(table)
    rows = []
    for m in _metrics(table, cfg):
        y = pd.to_numeric(df[m], errors="coerce").to_numpy(float)
        for c in columns:
            rho, p, n = spearman(_numeric(df[c]).to_numpy(float), y)
            rows.append({"metric": m, "covariate": c, "spearman_rho": rho, "p_value": p, "n": n})
    return pd.DataFrame(rows, columns=["metric", "covariate", "spearman_rho", "p_value", "n"])


def figure_name(metric: str, covariate: str) -> str:
    """A file-safe name, ``<metric>_vs_<covariate>``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{metric}_vs_{covariate}")


def scatter_figures(table: pd.DataFrame, columns: Sequence[str], cfg: ReportConfig) -> dict[str, Figure]:
    """One scatter plot per metric and covariate column (:func:`figure_name` -> Figure), one point per
    subject, coloured by modality when the table has several."""
    df = per_subject(table)
    groups = None
    if "modality" in df.columns and df["modality"].nunique() > 1:
        groups = df["modality"].astype(str).tolist()
    out = {}
    for m in _metrics(table, cfg):
        y = pd.to_numeric(df[m], errors="coerce").to_numpy(float)
        for c in columns:
            out[figure_name(m, c)] = plot_covariate_scatter(_numeric(df[c]).to_numpy(float), y, covariate_name=c,
                                                            metric_name=m, groups=groups)
    return out
