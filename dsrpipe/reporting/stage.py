"""The group stage: collect every run's metrics, summarise, write tables and the HTML report."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd

from dsrpipe import DsrpipeError
from dsrpipe.io.atomic import atomic_path
from dsrpipe.paths import CONFIG_FILE
from dsrpipe.reporting.group import add_restart_selection, collect_metrics, summarise, validation_score
from dsrpipe.config import ReportConfig
from dsrpipe.reporting.report import build_group_report
from dsrpipe.reporting.stats import add_covariates, compare_groups, flag_baselines, quality_ranking, summarise_by

log = logging.getLogger(__name__)

#: a run directory's name: ``model-<setting label>_seed-<n>``
RUN_NAME = re.compile(r"model-(.+)_seed-(\d+)")


def _runs(metrics_paths: Sequence[Path], test_paths: Sequence[Path], labels: Sequence[str | None],
          figure_dirs: Sequence[Path] | None = None) -> Iterator[dict]:
    """Each run's files (:func:`~dsrpipe.reporting.run_figures.load_run`); with ``figure_dirs`` (one per
    run) its figures are drawn here, written there and handed on for the HTML report."""
    from dsrpipe.reporting import run_figures

    for i, (metrics_path, test_path) in enumerate(zip(metrics_paths, test_paths)):
        run = run_figures.load_run(metrics_path, test_path, labels[i])
        if figure_dirs is not None:
            run["pngs"] = run_figures.run_pngs(run)
            run_figures.write_pngs(run["pngs"], figure_dirs[i])
        yield run


def _run_config(run_dir: Path) -> dict:
    """The run's ``config.json`` (training settings, validation scores); {} when absent."""
    import json

    path = run_dir / CONFIG_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise DsrpipeError(f"{path}: unreadable run config ({exc})") from exc


def quality_tables(table: pd.DataFrame, report: ReportConfig) -> dict:
    """The report's quality section: ranking, grouped summaries and the configured group comparison."""
    metrics = [m for m in ("d_stsp", "d_h", "pe_20", "max_lyapunov") if m in table.columns]
    grouped = []
    for by in ("modality", *report.group_by):
        part = summarise_by(table, by, metrics).rename(columns={by: "group"})
        part.insert(0, "by", by)
        grouped.append(part.astype({"group": str}))
    out = {"ranking": quality_ranking(table), "grouped": pd.concat(grouped, ignore_index=True)}
    if report.compare_column is not None:
        out["comparison"] = compare_groups(table, report.compare_column, report.compare_groups,
                                           report.compare_metric, n_permutations=report.permutations)
    return out


def covariate_scatter(table: pd.DataFrame, covariates: Sequence[str], report: ReportConfig,
                      out_dir: str | os.PathLike | None = None) -> tuple[dict[str, bytes], pd.DataFrame]:
    """The scatter plots of ``report.scatter_metrics`` against the numeric covariate columns
    (:mod:`dsrpipe.reporting.covariates`) as PNG bytes by name, and their Spearman table; the PNGs are
    also written to ``out_dir`` (atomically, the folder replaced whole) when given."""
    from dsrpipe.reporting import covariates as cov
    from dsrpipe.reporting.html import figure_to_png_bytes
    from dsrpipe.reporting.run_figures import COLORS, DPI, write_pngs

    columns = cov.scatter_columns(table, covariates, report)
    stats = cov.scatter_stats(table, columns, report)
    pngs = {name: figure_to_png_bytes(fig, DPI, COLORS)
            for name, fig in cov.scatter_figures(table, columns, report).items()}
    if out_dir is not None:
        write_pngs(pngs, out_dir)
    log.info("group: %d metric-vs-covariate scatter plot(s) over %s", len(pngs), columns or "no numeric covariate")
    return pngs, stats


def run_group(
    metrics_paths: Sequence[str | os.PathLike],
    test_paths: Sequence[str | os.PathLike],
    *,
    table_out: str | os.PathLike,
    summary_out: str | os.PathLike,
    report_out: str | os.PathLike,
    failed: Sequence[str] = (),
    settings: dict[str, dict] | None = None,
    report: ReportConfig | None = None,
    covariates: dict[str, dict] | None = None,
    figure_dirs: Sequence[str | os.PathLike] | None = None,
    scatter_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Aggregate runs into ``table_out`` (one row per run), ``summary_out`` (median, MAD per metric)
    and the self-contained HTML report ``report_out``.

    ``metrics_paths[i]`` is a run's ``metrics.json`` (its orbit and training log
    lie beside it); ``test_paths[i]`` the test series it was evaluated on.
    ``settings`` (label -> train section, :func:`dsrpipe.settings.expand_grid`)
    adds the values a hyperparameter grid varies as ``setting_<key>`` columns;
    ``covariates`` (subject -> {column: value}) joins subject covariates; ``report``
    chooses grouped summaries and a group comparison for the report's quality section.
    ``figure_dirs`` (one per run, in the run's own folder) receives each run's report figures as PNGs
    (:mod:`dsrpipe.reporting.run_figures`), the same ones the HTML report embeds. The report's
    metric-vs-covariate scatter plots (:func:`covariate_scatter`) are written to ``scatter_dir``
    when given (the folder is written, empty when no numeric covariate is drawn).
    """
    metrics_paths = [Path(p) for p in metrics_paths]
    test_paths = [Path(p) for p in test_paths]
    if len(metrics_paths) != len(test_paths):
        raise DsrpipeError(f"{len(metrics_paths)} metrics files but {len(test_paths)} test files")
    labels, scores = [], {}
    for path in metrics_paths:
        match = RUN_NAME.fullmatch(path.parent.name)
        config = _run_config(path.parent)
        label = match.group(1) if match else config.get("model", {}).get("name")
        labels.append(label)
        key = (str(config.get("data", {}).get("subject")), label, int(config.get("train", {}).get("seed", 0)))
        scores[key] = validation_score(config)
    table = add_restart_selection(collect_metrics(metrics_paths, labels), scores)
    if settings and len(settings) > 1:  # a hyperparameter grid: the values each setting varies, per run
        from dsrpipe.settings import settings_table

        grid = settings_table(settings).rename(columns=lambda c: c if c == "setting" else f"setting_{c}")
        table = table.merge(grid, left_on="model", right_on="setting", how="left").drop(columns="setting")
    report = report or ReportConfig()
    before = set(table.columns)
    table = flag_baselines(add_covariates(table, covariates or {}))
    summary = summarise(table)
    quality = quality_tables(table, report)
    scatter, scatter_table = covariate_scatter(table, [c for c in table.columns if c not in before
                                                       and c != "beats_baselines"], report, scatter_dir)
    if figure_dirs is not None:
        figure_dirs = [Path(p) for p in figure_dirs]
        wrong = [str(d) for d, m in zip(figure_dirs, metrics_paths) if d.parent != m.parent]
        if len(figure_dirs) != len(metrics_paths) or wrong:
            raise DsrpipeError(f"figure folders must be one per run, inside the run folder in the order of "
                               f"the metrics files; got {len(figure_dirs)} for {len(metrics_paths)} runs"
                               + (f", misplaced: {wrong[:3]}" if wrong else ""))
    runs = _runs(metrics_paths, test_paths, labels, figure_dirs)
    html = build_group_report(runs, summary, table, failed=failed, quality=quality, scatter=scatter,
                              scatter_stats=scatter_table)
    with atomic_path(table_out) as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(summary_out) as tmp:
        summary.to_parquet(tmp, index=False)
    with atomic_path(report_out) as tmp:
        tmp.write_text(html)
    log.info("group: %d run(s) -> %s", len(table), report_out)
    return summary
