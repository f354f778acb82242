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
                           train=tmp_path / "train.parquet")
    assert metrics["method"] == "mtf" and set(metrics["cross_modal"]) == cross
    assert metrics["modality"] == modality and metrics["d_stsp"] >= 0
