"""The BOLD-fit and rates-vs-counts figures, GTF counts mapped back for the rates figure, Spearman's rho
by hand, and the group report's metric-vs-covariate scatter plots (present with a numeric covariate,
absent without)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from dsrpipe import DsrpipeError
from dsrpipe.config import ReportConfig
from dsrpipe.reporting.html import figure_to_png_bytes
from dsrpipe.reporting.observation_figures import (
    plot_bold_fit,
    plot_covariate_scatter,
    plot_rates_vs_counts,
    spearman,
)

T = 60


def _series(n, seed=0):
    return np.random.default_rng(seed).normal(size=(T, n))


def test_bold_fit_panels_and_lines():
    obs, forced, gen, z = _series(4), _series(4, 1), _series(4, 2), _series(6, 3)
    fig = plot_bold_fit(obs, forced, gen, z, ["a", "b", "c", "d"], dt=2.0, max_rois=3, max_latent=5)
    assert isinstance(fig, Figure) and len(fig.axes) == 4  # 3 ROIs + the latent panel
    roi = fig.axes[1]
    assert roi.get_ylabel() == "b" and [ln.get_label() for ln in roi.get_lines()] == [
        "observed", "through HRF, forced", "through HRF, generated"]
    np.testing.assert_array_equal(roi.get_lines()[1].get_ydata(), forced[:, 1])
    np.testing.assert_array_equal(roi.get_lines()[0].get_xdata(), np.arange(T) * 2.0)  # seconds
    assert len(fig.axes[3].get_lines()) == 5 and fig.axes[3].get_xlabel() == "time"
    fig = plot_bold_fit(obs[:, :2], forced[:, :2])  # no generated orbit, no latent panel
    assert len(fig.axes) == 2 and len(fig.axes[0].get_lines()) == 2
    with pytest.raises(DsrpipeError, match="shape"):
        plot_bold_fit(obs, forced[:, :3])
    with pytest.raises(DsrpipeError, match="latent"):
        plot_bold_fit(obs, forced, latent=z[:10])


def test_rates_vs_counts_panels_and_mean_rates():
    rng = np.random.default_rng(0)
    counts = rng.poisson([1.0, 2.0], size=(T, 2)).astype(float)
    rates = {"decoded": np.full((T, 2), 1.5), "generated": np.tile([0.5, 3.0], (T, 1))}
    fig = plot_rates_vs_counts(counts, rates, ["u1", "u2"], dt=0.1)
    assert len(fig.axes) == 3  # 2 units + the mean-rate panel
    assert len(fig.axes[0].get_lines()) == 3  # counts (step) and two rate lines
    bars = [p.get_height() for p in fig.axes[2].patches]
    np.testing.assert_allclose(bars, [*(counts.mean(0) / 0.1), 15.0, 15.0, 5.0, 30.0])  # Hz
    assert fig.axes[2].get_ylabel() == "mean rate (Hz)"
    fig = plot_rates_vs_counts(np.tile(counts, 3), {"r": np.ones((T, 6))}, max_units=3)
    assert len(fig.axes) == 4 and fig.axes[2].get_ylabel().startswith("unit3")
    with pytest.raises(DsrpipeError, match="shape"):
        plot_rates_vs_counts(counts, {"r": np.ones((T, 3))})


def test_gtf_counts_mapped_back_for_the_rates_figure():
    from dsrpipe.reporting.run_figures import _counts_from_standardised, _rates_figure

    counts = np.random.default_rng(1).poisson(3.0, size=(T, 2)).astype(float)
    mean, std = counts.mean(0), counts.std(0)
    gen = np.array([[-10.0, 0.0]] * T)  # far below zero counts: clipped; 0 -> the mean
    run = {"x_true": (counts - mean) / std, "x_gen": gen, "channels": ["unit_a", "unit_b"],
           "channel_types": ["count", "count"], "standardisation": {"mean": mean.tolist(), "std": std.tolist()},
           "modality": "spikes", "sample_dt": 0.05, "metrics": {"method": "gtf"}, "fit": None}
    got_counts, got_rates = _counts_from_standardised(run)
    np.testing.assert_array_equal(got_counts, counts)
    np.testing.assert_allclose(got_rates, np.tile([0.0, mean[1]], (T, 1)))
    assert len(_rates_figure(run).axes) == 3
    # smoothed sqrt rates (continuous channels): no counts to draw
    assert _rates_figure({**run, "channel_types": ["continuous"] * 2}) is None
    assert _rates_figure({**run, "modality": "eeg"}) is None


def test_spearman_by_hand_and_scatter_title():
    rho, p, n = spearman([1, 2, 3, 4, np.nan], [1, 3, 2, 4, 7])
    assert n == 4 and rho == pytest.approx(1 - 6 * 2 / (4 * 15))  # d = (0, 1, 1, 0)
    assert 0 < p < 1
    assert np.isnan(spearman([1, 2], [2, 1])[0]) and np.isnan(spearman([1, 1, 1], [1, 2, 3])[0])
    fig = plot_covariate_scatter([20, 30, 40, 50], [0.1, 0.2, 0.3, 0.4], covariate_name="age",
                                 metric_name="max_lyapunov", groups=["eeg", "eeg", "fmri", "fmri"])
    ax = fig.axes[0]
    assert ax.get_title().startswith("max_lyapunov vs age\nSpearman rho = 1.00, p = ")
    assert "(n = 4)" in ax.get_title() and ax.get_xlabel() == "age" and len(ax.collections) == 2
    assert figure_to_png_bytes(fig, 30).startswith(b"\x89PNG")  # drawing errors only show at render time
    assert "undefined" in plot_covariate_scatter([1, 2], [3, 4], covariate_name="a", metric_name="b").axes[0].get_title()


def _table():
    return pd.DataFrame({"subject": ["01", "01", "02", "03", "04"], "best_setting": [True, False, True, True, True],
                         "d_stsp": [0.1, 9.0, 0.2, 0.3, 0.5], "max_lyapunov": [0.5, 9.0, 0.4, 0.3, 0.1],
                         "age": [20, 20, 30, 40, 50], "group": ["a", "a", "b", "a", "b"], "site": [1, 1, 1, 1, 1],
                         "flag": [True, True, False, True, False]})


def test_scatter_columns_stats_and_config_errors():
    from dsrpipe.reporting.covariates import scatter_columns, scatter_figures, scatter_stats

    table = _table()
    cfg = ReportConfig()
    # numeric and varying only: not the text group, the constant site or the boolean flag
    assert scatter_columns(table, ["age", "group", "site", "flag"], cfg) == ["age"]
    stats = scatter_stats(table, ["age"], cfg)
    assert list(stats["metric"]) == ["max_lyapunov", "d_stsp"] and list(stats["n"]) == [4, 4]  # best runs only
    np.testing.assert_allclose(stats["spearman_rho"], [-1.0, 1.0])
    figs = scatter_figures(table, ["age"], cfg)
    assert list(figs) == ["max_lyapunov_vs_age", "d_stsp_vs_age"]
    assert scatter_columns(table, ["age"], ReportConfig(scatter_covariates=[])) == []
    with pytest.raises(DsrpipeError, match="report.scatter_covariates: column 'group' is not numeric"):
        scatter_columns(table, ["age"], ReportConfig(scatter_covariates=["group"]))
    with pytest.raises(DsrpipeError, match="report.scatter_covariates: 'weight' is not a column"):
        scatter_columns(table, ["age"], ReportConfig(scatter_covariates=["weight"]))
    with pytest.raises(DsrpipeError, match="report.scatter_metrics"):
        scatter_stats(table, ["age"], ReportConfig(scatter_metrics=["nope"]))


@pytest.mark.parametrize("covariates, drawn", [
    ({"01": {"age": 20, "group": "a"}, "02": {"age": 35, "group": "b"}, "03": {"age": 50, "group": "a"}}, True),
    ({"01": {"group": "a"}, "02": {"group": "b"}, "03": {"group": "a"}}, False),
])
def test_scatter_in_the_group_report_only_with_a_numeric_covariate(tmp_path, monkeypatch, covariates, drawn):
    from report_checks import write_synthetic_run

    from dsrpipe.reporting.stage import run_group

    png = figure_to_png_bytes(Figure(figsize=(1, 1)), dpi=10)  # drawing is tested above; stubs keep this fast
    monkeypatch.setattr("dsrpipe.reporting.report.run_pngs", lambda run, *a: {})
    monkeypatch.setattr("dsrpipe.reporting.report.figure_to_png_bytes", lambda *a: png)
    monkeypatch.setattr("dsrpipe.reporting.html.figure_to_png_bytes", lambda *a: png)
    runs = [write_synthetic_run(tmp_path, s, 0, T=200, truth=False) for s in ("01", "02", "03")]
    out = tmp_path / "group"
    run_group([m for m, _ in runs], [t for _, t in runs], table_out=out / "runs.parquet",
              summary_out=out / "summary.parquet", report_out=out / "report.html", covariates=covariates,
              scatter_dir=out / "scatter")
    html = (out / "report.html").read_text()
    names = sorted(p.name for p in (out / "scatter").iterdir())
    assert ("Metrics vs covariates" in html) == drawn and ("spearman_rho" in html) == drawn
    assert names == (["d_stsp_vs_age.png", "max_lyapunov_vs_age.png"] if drawn else [])
    assert pd.read_parquet(out / "runs.parquet")["group"].tolist() == ["a", "b", "a"]


def test_report_command_reads_covariates_and_the_report_config(tmp_path, monkeypatch, capsys):
    # `dsrpipe report --covariates participants.tsv --set ...`: the same scatter plots as the workflow
    from report_checks import write_synthetic_run

    from dsrpipe.cli import main

    png = figure_to_png_bytes(Figure(figsize=(1, 1)), dpi=10)
    monkeypatch.setattr("dsrpipe.reporting.report.run_pngs", lambda run, *a: {})
    monkeypatch.setattr("dsrpipe.reporting.report.figure_to_png_bytes", lambda *a: png)
    monkeypatch.setattr("dsrpipe.reporting.html.figure_to_png_bytes", lambda *a: png)
    runs = [write_synthetic_run(tmp_path, s, 0, T=200, truth=False) for s in ("01", "02", "03")]
    (tmp_path / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t20\tf\nsub-02\t35\tm\nsub-03\t50\tf\n")
    out = tmp_path / "group"
    args = ["report", "--metrics", *[str(m) for m, _ in runs], "--test", *[str(t) for _, t in runs],
            "--table", str(out / "runs.parquet"), "--summary", str(out / "summary.parquet"),
            "--out", str(out / "report.html"), "--covariates", str(tmp_path / "participants.tsv"),
            "--scatter-dir", str(out / "scatter"), "--set", "scatter_metrics=[d_stsp]"]
    assert main(args) == 0
    assert pd.read_parquet(out / "runs.parquet")["age"].tolist() == [20, 35, 50]
    assert sorted(p.name for p in (out / "scatter").iterdir()) == ["d_stsp_vs_age.png"]
    # a misspelt subjects-table column in the covariates file is named, not joined
    (tmp_path / "bad.tsv").write_text("subject\tmodalty\n01\teeg\n")
    assert main([*args[:-4], "--covariates", str(tmp_path / "bad.tsv")]) != 0
    assert "bad.tsv: column 'modalty'" in capsys.readouterr().err
