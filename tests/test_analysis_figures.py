"""Analysis figures: axes, legends and rendering from the arrays the evaluate stage writes."""

import io

import numpy as np
import pandas as pd
import pytest

from dsrpipe import DsrpipeError
from dsrpipe.reporting.figures import plot_basins, plot_cycles, plot_lyapunov_convergence, plot_pe_curve


def render(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_basin_map_colours_labels_and_legend():
    u, v = np.linspace(-1, 1, 5), np.linspace(0, 2, 4)
    grid = np.where(u[None, :] > 0, 0, 1).repeat(4, axis=0)
    grid[0, 0] = -1
    table = pd.DataFrame({"label": [0, 1], "class": ["fixed_point", "chaotic"], "fraction": [0.5, 0.45]})
    fig = plot_basins(grid, u, v, table, data=np.zeros((10, 2)))
    ax = fig.axes[0]
    image = ax.get_images()[0].get_array()
    np.testing.assert_array_equal(image, grid + 1)  # -1 (diverging) -> colour 0
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["0: fixed_point (50%)", "1: chaotic (45%)", "diverging"]
    render(fig)
    with pytest.raises(DsrpipeError, match="shape"):
        plot_basins(grid.T, u, v)


def test_pe_curve_lines_and_time_axis():
    fig = plot_pe_curve([0.1, 0.2, 0.4], {"mean": [1.0, 1.0, 1.0], "var1": [0.3, 0.5, 0.8]}, dt=0.5)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["model", "mean", "var1"]
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [0.5, 1.0, 1.5])
    assert ax.get_yscale() == "log" and "time" in ax.get_xlabel()
    render(fig)
    assert plot_pe_curve([0.0, 0.1]).axes[0].get_yscale() == "linear"
    with pytest.raises(DsrpipeError):
        plot_pe_curve([])


def test_lyapunov_convergence_panels():
    steps = np.array([10, 100, 1000])
    trace = np.array([[1.0, -1.0, -10.0], [0.95, -0.2, -14.0], [0.9, 0.0, -14.5]])
    fig = plot_lyapunov_convergence(steps, trace, units="per time unit", truth=[0.906, 0.0, -14.572])
    first, spectrum = fig.axes
    np.testing.assert_allclose(first.get_lines()[0].get_ydata(), trace[:, 0])
    assert len([ln for ln in spectrum.get_lines() if ln.get_linestyle() == "-"]) == 3
    assert first.get_xscale() == "log" and "per time unit" in first.get_ylabel()
    render(fig)
    with pytest.raises(DsrpipeError):
        plot_lyapunov_convergence(steps[:2], trace)


def test_cycles_on_the_attractor():
    t = np.linspace(0, 20, 500)
    orbit = np.stack([np.cos(t), np.sin(t), t], axis=1)
    cycles = [np.array([[0.0, 0.0, 0.0]]), np.array([[1.0, 0.0, 0], [-1.0, 0.0, 0]]), np.array([[0.5, 0.5, 0]])]
    fig = plot_cycles(orbit, cycles, [False, True, False])
    ax = fig.axes[0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["generated", "fixed point (unstable)", "2-cycle (stable)"]  # one legend entry per kind
    markers = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert [m.get_markerfacecolor() for m in markers][0] == "white"
    render(fig)
    with pytest.raises(DsrpipeError):
        plot_cycles(orbit[:, :1], cycles, [True] * 3)
    with pytest.raises(DsrpipeError):
        plot_cycles(orbit, cycles, [True])


def test_lyapunov_final_spectrum_panel():
    steps = np.array([10, 100, 1000])
    trace = np.array([[1.0, -1.0, -10.0], [0.95, -0.2, -14.0], [0.9, 0.0, -14.5]])
    fig = plot_lyapunov_convergence(steps, trace, truth=[0.906, 0.0, -14.572], spectrum=[0.9, 0.01, -14.5])
    assert len(fig.axes) == 3
    final = fig.axes[2]
    np.testing.assert_allclose([p.get_height() for p in final.patches], [0.9, 0.01, -14.5])
    truth_line = [ln for ln in final.get_lines() if ln.get_label() == "true"][0]
    np.testing.assert_allclose(truth_line.get_ydata(), [0.906, 0.0, -14.572])
    assert final.get_title() == "final spectrum"
    render(fig)


def test_cycles_marks_true_fixed_points():
    orbit = np.random.default_rng(0).standard_normal((50, 2))
    fig = plot_cycles(orbit, [np.array([[0.0, 0.0]])], [True], truth=np.array([[1.0, 2.0], [3.0, 4.0]]),
                      data=orbit[::-1] * 2)
    ax = fig.axes[0]
    data = [ln for ln in ax.get_lines() if ln.get_label() == "data"][0]
    np.testing.assert_allclose(data.get_xydata(), orbit[::-1] * 2)
    crosses = [ln for ln in ax.get_lines() if ln.get_label() == "true fixed point"]
    assert len(crosses) == 1
    np.testing.assert_allclose(crosses[0].get_xydata(), [[1, 2], [3, 4]])
    assert "true fixed point" in [t.get_text() for t in ax.get_legend().get_texts()]
