"""Figures, group tables and self-contained HTML reports."""

from dsrpipe.reporting.figures import (
    plot_loss_curve,
    plot_metric_distributions,
    plot_orbits,
    plot_power_spectra,
    plot_truth_comparison,
)
from dsrpipe.reporting.group import collect_metrics, summarise
from dsrpipe.reporting.html import ReportSection, figure_to_png_bytes, render_report
from dsrpipe.reporting.observation_figures import plot_bold_fit, plot_covariate_scatter, plot_rates_vs_counts
from dsrpipe.reporting.report import build_group_report

__all__ = [
    "ReportSection",
    "build_group_report",
    "collect_metrics",
    "figure_to_png_bytes",
    "plot_bold_fit",
    "plot_covariate_scatter",
    "plot_loss_curve",
    "plot_metric_distributions",
    "plot_orbits",
    "plot_power_spectra",
    "plot_rates_vs_counts",
    "plot_truth_comparison",
    "render_report",
    "summarise",
]
