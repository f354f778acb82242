"""Tests of dsrpipe.reporting: group tables, figures and the HTML report."""

from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from dsrpipe import DsrpipeError, __version__
from dsrpipe.reporting import (
    ReportSection,
    build_group_report,
    collect_metrics,
    figure_to_png_bytes,
    plot_loss_curve,
    plot_metric_distributions,
    plot_orbits,
    plot_power_spectra,
    plot_truth_comparison,
    render_report,
    summarise,
)

IMG = "data:image/png;base64,"


def _metrics(subject="01", seed=0, truth=False, spectrum=(0.9, 0.0, -14.5), **over):
    m = {
        "subject": subject, "model": "shPLRNN", "seed": seed, "dt": 0.01,
        "d_stsp": 0.25, "d_h": 0.08, "pe_20": 0.5, "max_lyapunov": spectrum[0],
        "lyapunov_spectrum": list(spectrum), "kaplan_yorke_dimension": 2.06,
        "fixed_points": [
            {"state": [0.0, 0.0, 0.0], "eigenvalues_real": [1.1, 0.9, 0.5],
             "eigenvalues_imag": [0, 0, 0], "stable": False, "max_abs_eigenvalue": 1.1},
            {"state": [1.0, 1.0, 2.0], "eigenvalues_real": [0.5, 0.5, 0.2],
             "eigenvalues_imag": [0.1, -0.1, 0], "stable": True, "max_abs_eigenvalue": 0.51},
        ],
        "n_params": 500, "train_time_s": 12.5,
    }
    if truth:
        m["truth"] = {"lyapunov_spectrum": [0.906, 0.0, -14.572], "max_lyapunov": 0.906,
                      "kaplan_yorke_dimension": 2.062, "description": "Lorenz-63",
                      "fixed_points": [[0, 0, 0], [1, 1, 2], [-1, -1, 2]]}
        m["truth_comparison"] = {"max_lyapunov_error": spectrum[0] - 0.906,
                                 "fixed_point_errors": [0.1, 0.3, float("nan")],
                                 "n_fixed_points_true": 3, "n_fixed_points_found": 2}
    m.update(over)
    return m


def _write(tmp_path, name, m):
    p = tmp_path / name
    p.write_text(json.dumps(m))
    return p


@pytest.fixture
def two_runs(tmp_path):
    # written in reverse order to check sorting; run 02 has a longer spectrum
    p2 = _write(tmp_path, "b.json", _metrics("02", 1, spectrum=(0.5, 0.1, 0.0, -3.0)))
    p1 = _write(tmp_path, "a.json", _metrics("01", 0, truth=True))
    return [p2, p1]


def test_collect_metrics_columns_and_values(two_runs):
    df = collect_metrics(two_runs)
    assert list(df["subject"]) == ["01", "02"] and list(df["seed"]) == [0, 1]
    for col in ["model", "d_stsp", "d_h", "pe_20", "max_lyapunov", "kaplan_yorke_dimension",
                "n_params", "train_time_s", "dt", "n_fixed_points", "n_stable_fixed_points"]:
        assert col in df.columns
    assert [c for c in df.columns if c.startswith("lyap_")] == [f"lyap_{i}" for i in range(1, 5)]
    assert math.isnan(df.loc[0, "lyap_4"]) and df.loc[1, "lyap_4"] == -3.0
    assert list(df["n_fixed_points"]) == [2, 2] and list(df["n_stable_fixed_points"]) == [1, 1]
    # truth columns, NaN for the run without truth
    assert df.loc[0, "true_max_lyapunov"] == 0.906 and math.isnan(df.loc[1, "true_max_lyapunov"])
    assert list(df.loc[0, ["true_lyap_1", "true_lyap_2", "true_lyap_3"]]) == [0.906, 0.0, -14.572]
    assert df.loc[0, "max_lyapunov_error"] == pytest.approx(0.9 - 0.906)
    assert df.loc[0, "fixed_point_error_mean"] == pytest.approx(0.2)  # NaN error left out ...
    assert df.loc[0, "n_fixed_points_missed"] == 1  # ... and counted
    assert df.loc[0, "n_fixed_points_true"] == 3 and df.loc[0, "n_fixed_points_found"] == 2


def test_collect_metrics_truth_columns_only_with_truth(tmp_path):
    df = collect_metrics([_write(tmp_path, "a.json", _metrics("01")),
                          _write(tmp_path, "b.json", _metrics("02", d_stsp=None))])
    assert not [c for c in df.columns if "true" in c or "error" in c or "missed" in c]
    assert math.isnan(df.loc[1, "d_stsp"])


@pytest.mark.parametrize("key", ["d_stsp", "lyapunov_spectrum", "fixed_points", "seed"])
def test_collect_metrics_missing_key_names_file(tmp_path, key):
    m = _metrics()
    del m[key]
    p = _write(tmp_path, "sub-01_metrics.json", m)
    with pytest.raises(DsrpipeError, match=re.escape(str(p)) + f".*{key}"):
        collect_metrics([p])


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_collect_metrics_unreadable_names_file(tmp_path, content):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(DsrpipeError, match=re.escape(str(p))):
        collect_metrics([p])


def test_collect_metrics_rejects_bad_values_duplicates_and_nothing(tmp_path):
    p = _write(tmp_path, "a.json", _metrics(d_h="oops"))
    with pytest.raises(DsrpipeError, match=re.escape(str(p)) + ".*d_h"):
        collect_metrics([p])
    a, b = _write(tmp_path, "x.json", _metrics()), _write(tmp_path, "y.json", _metrics())
    with pytest.raises(DsrpipeError, match="also described by"):
        collect_metrics([a, b])
    with pytest.raises(DsrpipeError, match="not found"):
        collect_metrics([tmp_path / "missing.json"])
    with pytest.raises(DsrpipeError):
        collect_metrics([])


def test_summarise_hand_computed():
    df = pd.DataFrame({"d_stsp": [1.0, 2.0, 3.0, 4.0, 100.0, np.inf],
                       "d_h": [0.1, 0.2, 0.3, 0.4, np.nan, 0.5]})
    s = summarise(df, ["d_stsp", "d_h"]).set_index("metric")
    assert list(s.columns) == ["median", "mad", "mean", "min", "max", "n", "n_missing"]
    # d_stsp finite: 1 2 3 4 100 -> median 3, |dev| 2 1 0 1 97 -> MAD 1 (unscaled)
    assert s.loc["d_stsp"].to_dict() == {"median": 3.0, "mad": 1.0, "mean": 22.0, "min": 1.0,
                                         "max": 100.0, "n": 5, "n_missing": 1}
    # d_h: 0.1 .. 0.5 -> median 0.3, |dev| .2 .1 0 .1 .2 -> MAD 0.1
    assert s.loc["d_h", "median"] == pytest.approx(0.3)
    assert s.loc["d_h", "mad"] == pytest.approx(0.1)
    assert s.loc["d_h", "n"] == 5 and s.loc["d_h", "n_missing"] == 1
    with pytest.raises(DsrpipeError, match="nope"):
        summarise(df, ["nope"])


def test_summarise_defaults_to_present_metrics(two_runs):
    s = summarise(collect_metrics(two_runs))
    assert {"d_stsp", "d_h", "pe_20", "max_lyapunov", "max_lyapunov_error"} <= set(s["metric"])
    assert s.set_index("metric").loc["max_lyapunov", "median"] == pytest.approx(0.7)


def _series(n, t=300, seed=0):
    return np.random.default_rng(seed).standard_normal((t, n)).cumsum(0)


@pytest.mark.parametrize("n, n_axes, n3d", [(1, 3, 0), (2, 4, 0), (3, 5, 2), (6, 5, 2)])
def test_plot_orbits_axes(n, n_axes, n3d):
    fig = plot_orbits(_series(n), _series(n, 250, 1), title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == n_axes
    assert sum(ax.name == "3d" for ax in fig.axes) == n3d


def test_plot_orbits_flags_diverged_orbit_and_checks_channels():
    x_gen = _series(3)
    x_gen[100:] = np.inf
    fig = plot_orbits(_series(3), x_gen, channels=["a", "b", "c"], dt=0.1)
    assert "non-finite" in fig.axes[1].get_title()
    with pytest.raises(DsrpipeError, match="channel"):
        plot_orbits(_series(3), _series(3), channels=["a", "b"])
    with pytest.raises(DsrpipeError, match="channels"):
        plot_orbits(_series(3), _series(2))


@pytest.mark.parametrize("n, n_axes", [(1, 1), (3, 3), (6, 4)])
def test_plot_power_spectra_axes(n, n_axes):
    x_gen = _series(n, seed=1)
    x_gen[:, 0] = 1.0  # constant: truth only, no crash
    fig = plot_power_spectra(_series(n), x_gen, dt=0.01)
    assert isinstance(fig, Figure) and len(fig.axes) == n_axes
    assert len(fig.axes[-1].get_lines()) == (1 if n == 1 else 2)


def test_plot_loss_curve_axes():
    log = pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.0, 0.5, 0.2], "alpha": [1, 0.5, 0.3],
                        "lr": [1e-3, 5e-4, 1e-4], "wall_time_s": [1, 2, 3]})
    fig = plot_loss_curve(log)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert fig.axes[0].get_yscale() == "log"
    assert len(plot_loss_curve(log[["epoch", "loss"]]).axes) == 1
    with pytest.raises(DsrpipeError, match="loss"):
        plot_loss_curve(log.drop(columns="loss"))


def test_group_figures_axes(two_runs):
    df = collect_metrics(two_runs)
    assert len(plot_metric_distributions(df).axes) == 4
    assert len(plot_metric_distributions(df, ("d_stsp", "absent")).axes) == 1
    fig = plot_truth_comparison(df)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # lambda_max and KY dimension
    assert "01" in [t.get_text() for t in fig.axes[0].texts]
    with pytest.raises(DsrpipeError, match="true_max_lyapunov"):
        plot_truth_comparison(df.drop(columns=[c for c in df.columns if c.startswith("true")]))


def test_every_figure_renders_to_png(two_runs):
    """Draw each figure once (drawing errors only show at render time)."""
    x_gen = _series(3, seed=1)
    x_gen[150:] = np.inf  # a diverged orbit
    df = collect_metrics(two_runs)
    log = pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5], "alpha": [0.0, 0.1], "lr": [1e-3, 1e-4]})
    for fig in (plot_orbits(_series(3), x_gen, dt=0.01), plot_power_spectra(_series(3), x_gen),
                plot_loss_curve(log), plot_metric_distributions(df), plot_truth_comparison(df)):
        assert figure_to_png_bytes(fig, dpi=30, colors=16).startswith(b"\x89PNG")


def _decoded_images(doc):
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', doc)
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in imgs)
    return imgs


def _assert_self_contained(doc):
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")
    assert re.findall(r'\bsrc="(?!data:)', doc) == []
    assert "<link" not in doc and not re.search(r"<script[^>]*\bsrc", doc)  # inline scripts only
    assert not re.search(r'href="(?!#)', doc)


def test_render_report_embeds_figures_and_tables():
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    png = figure_to_png_bytes(fig, 30, colors=8)
    assert png.startswith(b"\x89PNG")
    sections = [ReportSection("First <part>", "para one\n\npara two", [fig, png],
                              [pd.DataFrame({"a": [1.23456789]})]),
                ReportSection("Second", tables=[("A caption", pd.DataFrame({"b": ["<x>"]}))])]
    doc = render_report(sections, title="My report", dpi=30)
    _assert_self_contained(doc)
    assert len(_decoded_images(doc)) == doc.count(IMG) == 2
    assert "First &lt;part&gt;" in doc and "Second" in doc and "A caption" in doc
    assert "1.235" in doc and "&lt;x&gt;" in doc and "<p>para two</p>" in doc
    assert f"dsrpipe {__version__}" in doc and "Generated" in doc
    assert ReportSection("x").figures is not ReportSection("y").figures


def _run(m, n=3, t=200):
    log = pd.DataFrame({"epoch": np.arange(1, 6), "loss": np.linspace(1, 0.1, 5),
                        "alpha": 0.125, "lr": np.geomspace(1e-3, 1e-4, 5),
                        "wall_time_s": np.arange(5.0)})
    return {"metrics": m, "x_true": _series(n, t), "x_gen": _series(n, t, 1), "log": log,
            "channels": [f"c{i}" for i in range(n)]}


@pytest.mark.parametrize("with_truth", [True, False])
def test_build_group_report(tmp_path, monkeypatch, with_truth):
    # drawing is tested above; a stub PNG keeps this test fast
    png = figure_to_png_bytes(Figure(figsize=(1, 1)), dpi=10)
    monkeypatch.setattr("dsrpipe.reporting.report.figure_to_png_bytes", lambda *a: png)
    monkeypatch.setattr("dsrpipe.reporting.run_figures.figure_to_png_bytes", lambda *a: png)
    ms = [_metrics("01", 0, truth=with_truth), _metrics("02", 3)]
    df = collect_metrics([_write(tmp_path, f"{i}.json", m) for i, m in enumerate(ms)])
    failed = ["03", "04"] if with_truth else []
    doc = build_group_report((_run(m) for m in ms), summarise(df), df, failed=failed, dpi=30)
    _assert_self_contained(doc)
    # overview (+ truth comparison); per run training, time series, spectra (+ true fixed points on the attractor)
    n_figs = 1 + with_truth + 3 * len(ms) + with_truth
    assert doc.count(IMG) == len(_decoded_images(doc)) == n_figs
    for title in ("Overview", "Group summary", "sub-01 model-shPLRNN seed-0",
                  "sub-02 model-shPLRNN seed-3", "Recovered fixed points (2)"):
        assert title in doc
    assert ("Ground truth against recovered invariants" in doc) == with_truth
    assert ("True fixed points" in doc) == with_truth
    assert ("Failed: 2" in doc and 'class="warning"' in doc) == with_truth
    if with_truth:
        assert "03, 04" in doc and "0.906, 0, -14.6" in doc


def test_plot_orbits_projects_many_channels_on_principal_axes():
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((300, 2)) * [3.0, 1.0]
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    x = latent @ q[:2] + 0.01 * rng.standard_normal((300, 5))  # a plane in 5-D
    fig = plot_orbits(x, x[::-1], channels=list("abcde"))
    true_ax = fig.axes[0]
    assert true_ax.get_xlabel() == "PC1" and "PCA" in true_ax.get_title()
    xs, ys, zs = true_ax.get_lines()[0].get_data_3d()
    # the first two PCs carry the plane: their variances are ~9 and ~1, the third ~0
    assert np.var(xs) == pytest.approx(9, rel=0.2) and np.var(ys) == pytest.approx(1, rel=0.2)
    assert np.var(zs) < 1e-3
    assert fig.axes[2].get_ylabel() == "a"  # time courses keep the channel names


def test_run_figures_from_run_files(tmp_path, monkeypatch):
    from report_checks import write_synthetic_run

    from dsrpipe.reporting import run_figures as module
    from dsrpipe.reporting.figures import principal_axes
    from dsrpipe.reporting.run_figures import FIGURES, load_run, run_figures, write_run_figures

    metrics_path, test_path = write_synthetic_run(tmp_path, "01", 0)
    run = load_run(metrics_path, test_path, "shPLRNN-1")
    assert run["label"] == "shPLRNN-1" and run["channels"] == ["x", "y", "z"]
    figs = run_figures(run)
    drawn_here = tuple(f for f in FIGURES if f not in ("bold_fit", "rates"))  # an fMRI or spikes run adds those
    assert tuple(figs) == drawn_here
    assert len(figs["lyapunov"].axes) == 3 and len(figs["pe_curve"].axes[0].get_lines()) == 3
    # fixed points and the 2-cycle, in the plane of the test data's first two principal axes
    mean, axes = principal_axes(run["x_true"], 2)
    cyc = figs["cycles"].axes[0]
    points = [ln.get_xydata() for ln in cyc.get_lines() if ln.get_marker() == "o"]
    np.testing.assert_allclose(points[0], (np.array([[1.3, 1.3, 0.9]]) - mean) @ axes.T)
    assert len(points) == 3 and [t.get_text() for t in cyc.get_legend().get_texts()] == [
        "data", "generated", "fixed point (unstable)", "2-cycle (stable)", "true fixed point"]
    image = figs["basins"].axes[0].get_images()[0].get_array()
    assert image.shape == (5, 6) and (image[:, 3:] == 2).all() and (image[:, :3] == 1).all()

    for fig in figs.values():  # drawing errors only show at render time
        assert figure_to_png_bytes(fig, 30, 16).startswith(b"\x89PNG")

    drawn = dict(figs)  # the folder writer, without drawing everything again
    monkeypatch.setattr(module, "run_figures", lambda run: drawn)
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "stale.png").write_bytes(b"old")  # an existing folder is replaced whole
    paths = write_run_figures(metrics_path, test_path, tmp_path / "figs", dpi=20)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(p.name for p in paths) == sorted(
        f"{n}.png" for n in drawn_here)
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".figs")]  # no temporary folder left

    (metrics_path.parent / "basins.parquet").unlink()  # a run without a basin analysis: no basin figure
    (metrics_path.parent / "training_log.parquet").unlink()
    with pytest.raises(DsrpipeError, match="training_log.parquet"):
        load_run(metrics_path, test_path)


def test_observed_states_through_the_readout():
    from dsrpipe.reporting.run_figures import observed_states

    z = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(observed_states(z, None, 2), [[1.0, 2.0]])
    B = [[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]]
    affine = {"kind": "affine", "state": {"B": B}}
    np.testing.assert_allclose(observed_states(z, affine, 2), [[4.0, 4.0]])
    with pytest.raises(DsrpipeError, match="shape"):
        observed_states(z, affine, 3)


def test_runs_table_sorts_links_and_keeps_columns(tmp_path):
    from dsrpipe.reporting.html import sortable_table_html
    from dsrpipe.reporting.report import run_anchor, runs_table

    df = collect_metrics([_write(tmp_path, f"{i}.json", _metrics(s, n)) for i, (s, n) in
                          enumerate((("02", 1), ("01", 0)))])
    df["attractor_class"] = ["chaotic", "cycle"]
    table = runs_table(df)
    assert list(table.columns[:3]) == ["subject", "model", "seed"] and "attractor_class" in table.columns
    assert not [c for c in table.columns if re.fullmatch(r"(true_)?lyap_\d+", c)]
    links = [run_anchor(s, m, n) for s, m, n in df[["subject", "model", "seed"]].itertuples(index=False)]
    doc = sortable_table_html(table, links)
    assert doc.count("<tr>") == 1 + len(df)
    for link in links:
        assert f'href="#{link}"' in doc
    assert 'data-v="0.25"' in doc  # numeric cells carry their value for sorting
    assert run_anchor("01", "shPLRNN 2", 0) == "run-sub-01_model-shPLRNN-2_seed-0"
    with pytest.raises(DsrpipeError, match="links"):
        sortable_table_html(table, links[:1])


def test_figures_command_writes_the_run_figures(tmp_path, monkeypatch, capsys):
    from report_checks import write_synthetic_run

    from dsrpipe.cli import main
    from dsrpipe.reporting import run_figures as module

    metrics_path, test_path = write_synthetic_run(tmp_path, "01", 0)
    fig = Figure(figsize=(1, 1))
    monkeypatch.setattr(module, "run_figures", lambda run: {"training": fig, "spectra": fig})  # drawing: above
    assert main(["figures", str(metrics_path), "--test", str(test_path), "--out", str(tmp_path / "f")]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["spectra.png", "training.png"]
    assert "training.png" in capsys.readouterr().out
