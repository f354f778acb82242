"""Each modality's preprocessed file trains and evaluates with train.method mtf (function level, a few
seconds each): fMRI NIfTI -> HRF view, ROI table -> HRF + label views and inputs, binned spikes ->
Poisson on the raw counts, a behaviour table -> Gaussian + label views."""

import pytest

from dsrpipe.config import EvaluateConfig, PrepareConfig, TrainConfig
from dsrpipe.evaluation import evaluate_run
from dsrpipe.io.timeseries import load_series
from dsrpipe.preprocessing import prepare_file
from dsrpipe.preprocessing.dispatch import preprocess_recording
from dsrpipe.preprocessing.fmri import FMRIConfig
from dsrpipe.training.mtf_views import series_to_views, view_spec
from dsrpipe.training.run import train_file
from modality_files import write_behaviour_samples, write_fmri, write_roi_table, write_spikes

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = TrainConfig(method="mtf", epochs=2, batches_per_epoch=3, hidden_dim=8, seq_len=20)
EVAL = EvaluateConfig(lyapunov_steps=500, lyapunov_transient=50, fixed_point_inits=10, max_cycle_order=1,
                      basin_grid=0, n_bins=10)


def recording(kind, d):
    if kind == "nifti":
        bold, atlas = write_fmri(d, stem="f1", seed=1)
        return bold, "fmri", {"atlas": atlas}
    if kind == "roi_table":
        return write_roi_table(d / "f2_bold_roi.tsv", seed=2), "fmri", {}
    if kind == "spikes":
        return write_spikes(d / "s1.mat", seed=3), "spikes", {}
    return write_behaviour_samples(d / "b1.tsv", seed=4), "behaviour", {}


@pytest.mark.parametrize("kind, views, cross", [
    ("nifti", {"continuous": "fmri"}, set()),
    ("roi_table", {"continuous": "fmri", "label": "categorical"}, {"label"}),
    ("spikes", {"count": "poisson"}, {"count"}),
    ("behaviour", {"continuous": "gaussian", "label_state": "categorical"}, {"label_state"}),
])
def test_modality_trains_and_evaluates_with_mtf(kind, views, cross, tmp_path):
    path, modality, extra = recording(kind, tmp_path)
    pre = preprocess_recording(path, tmp_path / "pre.parquet", modality=modality, subject="01",
                               **({"fmri": FMRIConfig(tr=2.0)} if modality == "fmri" else {}), **extra)
    train, _ = prepare_file(tmp_path / "pre.parquet", tmp_path / "train.parquet", tmp_path / "test.parquet",
                            subject="01", cfg=PrepareConfig(min_samples=100))
    spec = view_spec(train, hrf=True)
    assert {v["name"]: v["kind"] for v in spec["views"]} == views
    if kind == "spikes":  # prepare z-scored the counts; the Poisson view sees the preprocessed counts again
        counts = series_to_views(load_series(tmp_path / "train.parquet", types=None), spec)[0]["count"].data
        assert (counts == pre.data[: len(counts)]).all()
    train_file(tmp_path / "train.parquet", tmp_path / "run", TRAIN)
    metrics = evaluate_run(tmp_path / "run", tmp_path / "test.parquet", EVAL, tmp_path / "run" / "metrics.json",
                           train=tmp_path / "train.parquet", generated_out=tmp_path / "run" / "generated.parquet")
    assert metrics["method"] == "mtf" and set(metrics["cross_modal"]) == cross
    assert metrics["modality"] == modality and metrics["d_stsp"] >= 0
    check_observation_fit(tmp_path, kind, spec)


def check_observation_fit(tmp_path, kind, spec):
    """The evaluation's observation fit: the test segment per dynamic view, decoded from the forced and the
    generated latent trajectory; the run figures draw the BOLD fit (fMRI) or rates vs counts (spikes)."""
    import numpy as np
    import pandas as pd

    from dsrpipe.reporting.run_figures import _bold_figure, _rates_figure, load_run

    test = load_series(tmp_path / "test.parquet", types=None)
    views, _ = series_to_views(test, spec)
    fit = pd.read_parquet(tmp_path / "run" / "observation_fit.parquet")
    dynamic = [v for v in spec["views"] if v["kind"] in ("gaussian", "fmri", "poisson")]
    channels = [c for v in dynamic for c in v["channels"]]
    K = sum(c.startswith("latent_forced:") for c in fit.columns)
    assert K >= 1 and list(fit.columns) == ["step", *[f"{p}:{c}" for c in channels
                                                      for p in ("observed", "forced", "generated")],
                                           *[f"latent_{p}:z{i}" for i in range(1, K + 1)
                                             for p in ("forced", "generated")]]
    assert len(fit) == test.n_samples and (fit["step"] == np.arange(test.n_samples)).all()
    for v in dynamic:  # observed = what the view's decoder is fitted to (raw counts for a Poisson view)
        np.testing.assert_array_equal(fit[[f"observed:{c}" for c in v["channels"]]].to_numpy(), views[v["name"]].data)
    if kind == "spikes":
        rates = fit[[c for c in fit.columns if c.startswith(("forced:", "generated:"))]].to_numpy()
        assert (rates > 0).all()  # exp(Gamma z + g)
    assert np.isfinite(fit.to_numpy()).all()
    run = load_run(tmp_path / "run" / "metrics.json", tmp_path / "test.parquet")
    figs = {name: fig for name, fig in (("bold_fit", _bold_figure(run)), ("rates", _rates_figure(run)))
            if fig is not None}  # the two figures run_figures adds for fMRI and spikes runs
    if kind in ("nifti", "roi_table"):  # 3 ROIs (observed, forced, generated) + the latent panel
        assert "rates" not in figs and len(figs["bold_fit"].axes) == 4
        assert [len(ax.get_lines()) for ax in figs["bold_fit"].axes[:3]] == [3, 3, 3]
        assert len(figs["bold_fit"].axes[3].get_lines()) == min(K, 5)
    elif kind == "spikes":  # 3 units + the mean-rate panel
        assert "bold_fit" not in figs and len(figs["rates"].axes) == 4
    else:
        assert "bold_fit" not in figs and "rates" not in figs
