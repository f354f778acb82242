"""The group report: an overview section, then one section per training run."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dsrpipe import DsrpipeError
from dsrpipe.reporting import figures
from dsrpipe.reporting.html import ReportSection, figure_to_png_bytes, render_report, sortable_table_html
from dsrpipe.reporting.run_figures import run_pngs

logger = logging.getLogger(__name__)

RUN_KEYS = ("metrics", "x_true", "x_gen", "log", "channels")
RUN_METRICS = ("d_stsp", "d_h", "pe_20", "max_lyapunov", "kaplan_yorke_dimension", "n_params",
               "train_time_s", "dt")
MAX_FIXED_POINT_ROWS = 20
COLORS = 32  # PNG palette size: dense orbit plots shrink ~4x
RUN_TABLE_FIRST = ("subject", "model", "seed", "selected", "best_setting", "modality", "d_stsp", "d_h", "pe_20",
                   "beats_baselines", "max_lyapunov", "kaplan_yorke_dimension", "attractor_class")
SPECTRUM_COLUMN = re.compile(r"(true_)?lyap_\d+")


def run_anchor(subject, label, seed) -> str:
    """The HTML id of a run's section: ``run-sub-<id>_model-<label>_seed-<n>``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"run-sub-{subject}_model-{label}_seed-{seed}")


def runs_table(group_df: pd.DataFrame) -> pd.DataFrame:
    """The group table as the report shows it: one row per run, key columns first.

    Every column of ``group_df`` is kept except the per-exponent spectrum
    columns (``lyap_<i>``, ``true_lyap_<i>``: the run sections list spectra).
    """
    cols = [c for c in RUN_TABLE_FIRST if c in group_df.columns]
    cols += [c for c in group_df.columns if c not in cols and not SPECTRUM_COLUMN.fullmatch(str(c))]
    return group_df[cols].reset_index(drop=True)


def _runs_section(group_df: pd.DataFrame) -> ReportSection:
    table = runs_table(group_df)
    links = None
    if {"subject", "model", "seed"} <= set(group_df.columns):
        links = [run_anchor(s, m, n) for s, m, n in group_df[["subject", "model", "seed"]].itertuples(index=False)]
    text = (f"One row per run ({len(table)}): subject x setting x seed. Click a column header to sort "
            "(again to reverse); the subject links to the run's section with its figures.")
    return ReportSection("Runs", text, html=sortable_table_html(table, links), anchor="runs")


def _vector(values: Sequence[float] | None, max_len: int = 8) -> str:
    if values is None:
        return ""
    v = [f"{float(x):.3g}" for x in values]
    return ", ".join(v[:max_len] + (["..."] if len(v) > max_len else []))


def _columns(df: pd.DataFrame, prefix: str) -> list[str]:
    cols = [c for c in df.columns if c.startswith(prefix) and c[len(prefix):].isdigit()]
    return sorted(cols, key=lambda c: int(c[len(prefix):]))


def has_truth(group_df: pd.DataFrame) -> bool:
    """Whether any run in ``group_df`` has a ground-truth maximal Lyapunov exponent."""
    return ("true_max_lyapunov" in group_df.columns
            and bool(np.isfinite(pd.to_numeric(group_df["true_max_lyapunov"])).any()))


def truth_table(group_df: pd.DataFrame) -> pd.DataFrame:
    """Per-run table of true against recovered Lyapunov exponents and fixed points.

    Parameters
    ----------
    group_df : DataFrame
        Output of :func:`dsrpipe.reporting.group.collect_metrics` with truth columns.

    Returns
    -------
    DataFrame
        Runs with a ground truth; spectra shown as comma-separated strings.
    """
    df = group_df[np.isfinite(pd.to_numeric(group_df["true_max_lyapunov"]))]
    out = df[["subject", "model", "seed"]].copy()
    for label, prefix in (("true spectrum", "true_lyap_"), ("recovered spectrum", "lyap_")):
        cols = _columns(df, prefix)
        out[label] = [_vector([x for x in row if np.isfinite(x)]) for row in df[cols].to_numpy(float)]
    extra = ["true_max_lyapunov", "max_lyapunov", "max_lyapunov_error",
             "true_kaplan_yorke_dimension", "kaplan_yorke_dimension", "n_fixed_points_true",
             "n_fixed_points_found", "n_fixed_points_missed", "fixed_point_error_mean"]
    for c in extra:
        if c in df.columns:
            out[c] = df[c]
    return out.reset_index(drop=True)


def _overview(summary: pd.DataFrame, group_df: pd.DataFrame, dpi: int) -> ReportSection:
    n_sub = group_df["subject"].nunique() if "subject" in group_df.columns else 0
    models = sorted(group_df["model"].unique()) if "model" in group_df.columns else []
    text = (f"{len(group_df)} runs, {n_sub} subjects, models: {', '.join(map(str, models))}."
            "\n\nSummary over runs: median and unscaled median absolute deviation (MAD) of "
            "the finite values; n_missing counts runs left out (diverged orbits, or no ground "
            "truth for the truth errors).")
    figs = [figure_to_png_bytes(figures.plot_metric_distributions(group_df), dpi, COLORS)]
    tables: list = [("Group summary", summary)]
    if has_truth(group_df):
        figs.append(figure_to_png_bytes(figures.plot_truth_comparison(group_df), dpi, COLORS))
        tables.append(("Ground truth against recovered invariants", truth_table(group_df)))
    return ReportSection("Overview", text, figs, tables)


def _quality_section(quality: dict) -> ReportSection:
    ranking = quality["ranking"]
    text = ("Subjects ranked by the D_stsp of their reported run (the selected restart of the best "
            "setting, chosen on training data only).")
    if "beats_baselines" in ranking.columns:
        known = ranking["beats_baselines"].dropna()
        worse = ranking.loc[ranking["beats_baselines"].fillna(True) == False, "subject"].tolist()  # noqa: E712
        text += (f"\n\n{int(known.sum())} of {len(known)} subjects beat both baseline models (training "
                 "mean, VAR(1)) on D_stsp and PE(20)"
                 + (f"; not better than a baseline: {', '.join(map(str, worse))}." if worse else "."))
    comp = quality.get("comparison")
    if comp:
        text += (f"\n\nGroup comparison of {comp['metric']} between {comp['column']} = {comp['groups'][0]} "
                 f"(n = {comp['n_a']}) and {comp['groups'][1]} (n = {comp['n_b']}): difference of "
                 f"{comp['statistic']}s {comp['difference']:.4g}, permutation p = {comp['p_value']:.4g} "
                 f"({comp['n_permutations']} relabellings, two-sided).")
    return ReportSection("Reconstruction quality", text, [],
                         [("Ranking", ranking), ("Median and MAD by group", quality["grouped"])])


def _scatter_section(pngs: dict[str, bytes], stats: pd.DataFrame | None) -> ReportSection:
    text = ("Each subject's reported run against its covariates (from the subjects table or "
            "participants.tsv): one point per subject, Spearman's rank correlation and its two-sided "
            "p-value in each title (no correction for the number of plots).")
    tables = [("Spearman correlations", stats)] if stats is not None and len(stats) else []
    return ReportSection("Metrics vs covariates", text, list(pngs.values()), tables, anchor="covariates")


def _error(e: float | None) -> str:
    return "no match" if e is None or not np.isfinite(e) else f"{float(e):.3g}"


def _fixed_point_tables(m: dict[str, Any]) -> list:
    fps = m.get("fixed_points") or []
    rows = [{"#": i + 1, "state": _vector(fp.get("state")),
             "stable": bool(fp.get("stable")),
             "max |eig|": fp.get("max_abs_eigenvalue", np.nan)}
            for i, fp in enumerate(fps[:MAX_FIXED_POINT_ROWS])]
    cap = f"Recovered fixed points ({len(fps)}" + (
        f", first {MAX_FIXED_POINT_ROWS} shown)" if len(fps) > MAX_FIXED_POINT_ROWS else ")")
    tables: list = [(cap, pd.DataFrame(rows, columns=["#", "state", "stable", "max |eig|"]))]
    true_fps = (m.get("truth") or {}).get("fixed_points")
    if true_fps:
        errs = (m.get("truth_comparison") or {}).get("fixed_point_errors") or []
        errs = list(errs) + [np.nan] * (len(true_fps) - len(errs))
        tables.append(("True fixed points and distance to the nearest recovered one",
                       pd.DataFrame({"state": [_vector(s) for s in true_fps],
                                     "error": [_error(e) for e in errs]})))
    return tables


def _cycle_counts(m: dict[str, Any]) -> str:
    counts = m.get("n_cycles") or {}
    return ", ".join(f"{'fixed points' if str(k) == '1' else f'{k}-cycles'}: {v}" for k, v in counts.items())


def _run_section(run: dict[str, Any], index: int, dpi: int) -> ReportSection:
    missing = [k for k in RUN_KEYS if k not in run]
    if missing:
        raise DsrpipeError(f"run #{index} lacks {missing}")
    m = run["metrics"]
    label = run.get("label") or m.get("model")
    title = f"sub-{m.get('subject')} model-{label} seed-{m.get('seed')}"
    pngs = list((run.get("pngs") or run_pngs(run, dpi, COLORS)).values())
    row = {k: m.get(k, np.nan) for k in RUN_METRICS}
    truth, comp = m.get("truth") or {}, m.get("truth_comparison") or {}
    if truth:
        row["true_max_lyapunov"] = truth.get("max_lyapunov", np.nan)
    if comp:
        row["max_lyapunov_error"] = comp.get("max_lyapunov_error", np.nan)
    row = {k: np.nan if v is None else v for k, v in row.items()}
    metrics_table = pd.DataFrame([row])
    metrics_table.insert(5, "lyapunov spectrum", _vector(m.get("lyapunov_spectrum")))
    dynamics = {"attractor": m.get("attractor_class"), "visited regions": m.get("n_visited_regions"),
                "attractors in basin map": m.get("n_attractors"), "SCYFI objects": _cycle_counts(m)}
    dynamics = pd.DataFrame([{k: v for k, v in dynamics.items() if v not in (None, "")}])
    text = f"Ground truth: {truth['description']}" if truth.get("description") else ""
    tables = [("Metrics", metrics_table), *([("Dynamics", dynamics)] if dynamics.size else []),
              *_fixed_point_tables(m)]
    return ReportSection(title, text, pngs, tables, anchor=run_anchor(m.get("subject"), label, m.get("seed")))


def build_group_report(
    runs: Iterable[dict[str, Any]],
    summary: pd.DataFrame,
    group_df: pd.DataFrame,
    failed: Sequence[str] = (),
    *,
    title: str = "dsrpipe group report",
    dpi: int = 72,
    quality: dict | None = None,
    scatter: dict[str, bytes] | None = None,
    scatter_stats: pd.DataFrame | None = None,
) -> str:
    """Build the group HTML report.

    Parameters
    ----------
    runs : iterable of dict
        One item per run with keys ``metrics`` (the run's ``metrics.json``
        content), ``x_true`` and ``x_gen`` (ndarray, T x N: held-out test series
        and generated orbit), ``log`` (training log DataFrame: epoch, loss,
        alpha, lr, wall_time_s) and ``channels`` (N names); optionally ``label``
        (the setting label, as in ``group_df["model"]``), the evaluation
        tables (see :func:`dsrpipe.reporting.run_figures.load_run`) and
        ``pngs`` (name -> PNG bytes already rendered, e.g. by the Snakemake
        figure rule; otherwise the figures are drawn here). May be a generator:
        each run is rendered to PNG and released before the next is read.
    summary : DataFrame
        Output of :func:`dsrpipe.reporting.group.summarise`.
    group_df : DataFrame
        Output of :func:`dsrpipe.reporting.group.collect_metrics`.
    failed : sequence of str
        Subjects (or runs) that failed upstream; listed in a highlighted
        section at the top when non-empty.
    title : str
    dpi : int
        Figure resolution; 72 keeps a 100-run report at a few MB.
    quality : dict, optional
        ``ranking`` and ``grouped`` tables and an optional ``comparison`` (see
        :func:`dsrpipe.reporting.stage.quality_tables`), shown after the overview.
    scatter : dict of str to bytes, optional
        Metric-vs-covariate scatter plots as PNG (:func:`dsrpipe.reporting.stage.covariate_scatter`);
        a "Metrics vs covariates" section with ``scatter_stats`` (Spearman table) when non-empty.

    Returns
    -------
    str
        The self-contained HTML document.
    """
    sections = []
    if failed:
        # run names inline; entries with a reason (dsrpipe.reporting.failures) one paragraph each
        sep = "\n\n" if any(": " in str(f) for f in failed) else ", "
        sections.append(ReportSection(
            f"Failed: {len(failed)}",
            "These did not produce results and are missing from every table and "
            "figure below:\n\n" + sep.join(map(str, failed)), warning=True))
    sections.append(_overview(summary, group_df, dpi))
    sections.append(_runs_section(group_df))
    if quality:
        sections.append(_quality_section(quality))
    if scatter:
        sections.append(_scatter_section(scatter, scatter_stats))
    for i, run in enumerate(runs):
        sections.append(_run_section(run, i, dpi))
    logger.info("group report: %d run sections, %d failed",
                len(sections) - 2 - bool(failed) - bool(quality) - bool(scatter),
                len(failed))
    return render_report(sections, title, dpi=dpi)
