"""train.method mtf from config to run directory to metrics: views from channel types, a loadable
run, evaluation with label accuracy and count-rate correlation, errors and reproducibility."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from dsrpipe import DsrpipeError
from dsrpipe.cli import main
from dsrpipe.config import EvaluateConfig, PrepareConfig, TrainConfig, from_mapping
from dsrpipe.evaluation import evaluate_run
from dsrpipe.io.timeseries import TimeSeries, load_series, write_timeseries
from dsrpipe.preprocessing import prepare_file
from dsrpipe.training.checkpoint import load_multimodal_run, load_reconstruction, load_run
from dsrpipe.training.mtf_data import multimodal_lorenz63
from dsrpipe.training.mtf_views import series_to_views, view_spec
from dsrpipe.training.run import train_file

pytestmark = pytest.mark.usefixtures("one_thread")

# a few seconds: 4 epochs x 5 batches of 4 windows of 20 steps
FAST = dict(method="mtf", model="shPLRNN", latent_dim=5, mtf_forcing_dim=3, hidden_dim=8, readout="affine",
            epochs=4, batches_per_epoch=5, batch_size=4, seq_len=20, lr=3e-3, alpha=0.2, log_every=100)
EVAL = EvaluateConfig(lyapunov_steps=500, lyapunov_transient=50, fixed_point_inits=10, max_cycle_order=1,
                      basin_grid=0, pe_steps=5, pe_curve_steps=5, lyapunov_trace=10)
CATEGORIES = ["a", "b", "c", "d"]


def raw_series(T=1300, modality="timeseries", dt=0.05, onehot=False, missing_label=False):
    v = multimodal_lorenz63(T, dt=0.05, n_neurons=4, seed=3)  # the orbit's dt; the file's dt below
    labels = v["labels"].astype(int)
    if missing_label:
        labels[::7] = -1
    if onehot:
        lab = np.stack([(labels == k).astype(float) for k in range(4)], axis=1)
        lab_names = [f"label_{c}" for c in CATEGORIES]
        categorical = {"label": {"columns": lab_names, "encoding": "onehot", "categories": CATEGORIES}}
    else:
        lab, lab_names = labels[:, None].astype(float), ["label_state"]
        categorical = {"state": {"columns": lab_names, "encoding": "code", "categories": CATEGORIES}}
    cue = (np.sin(np.arange(T) / 15) > 0).astype(float)[:, None]
    level = np.digitize(v["states"][:, 2], [-0.5, 0.5]).astype(float)[:, None]  # z low / middle / high
    data = np.column_stack([v["gaussian"], v["counts"], lab, level, cue])
    channels = ["x", "y", "z", *[f"n{i}" for i in range(4)], *lab_names, "ordinal_z", "input_cue"]
    types = ["continuous"] * 3 + ["count"] * 4 + ["label"] * len(lab_names) + ["ordinal", "input"]
    return TimeSeries(data, channels, dt=dt, subject="01", modality=modality, meta={"categorical": categorical},
                      channel_types=types), v


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    d = tmp_path_factory.mktemp("mtf")
    ts, truth = raw_series()
    write_timeseries(ts, d / "raw.parquet")
    prepare_file(d / "raw.parquet", d / "train.parquet", d / "test.parquet", subject="01", cfg=PrepareConfig())
    return d, ts, truth


@pytest.fixture(scope="module")
def trained(prepared):
    d, _, _ = prepared
    cfg = from_mapping(TrainConfig, FAST, "train")
    result = train_file(d / "train.parquet", d / "run", cfg)
    return d, cfg, result


def test_views_follow_the_channel_types(prepared):
    d, raw, truth = prepared
    train = load_series(d / "train.parquet", types=None)
    spec = view_spec(train, readout="affine", source="train")
    assert [(v["name"], v["kind"]) for v in spec["views"]] == [
        ("continuous", "gaussian"), ("count", "poisson"), ("label_state", "categorical"), ("ordinal", "ordinal")]
    assert spec["views"][3]["options"] == {"n_levels": 3}
    assert spec["inputs"] == ["input_cue"]
    assert spec["views"][2]["categories"] == [*CATEGORIES, "none"]
    views, inputs = series_to_views(train, spec)
    n = train.n_samples
    # prepare z-scored the counts; the views get the raw counts back exactly
    np.testing.assert_array_equal(views["count"].data, truth["counts"][:n])
    np.testing.assert_array_equal(views["label_state"].data[:, 0], truth["labels"][:n])
    np.testing.assert_array_equal(inputs[:, 0], raw.data[:n, -1])
    assert views["continuous"].data.std(0) == pytest.approx(np.ones(3))  # standardised like GTF


def test_onehot_labels_missing_samples_and_fmri_hrf():
    ts, truth = raw_series(T=300, modality="fmri", dt=2.0, onehot=True, missing_label=True)
    spec = view_spec(ts, hrf=True, source="raw")
    kinds = {v["name"]: v["kind"] for v in spec["views"]}
    assert kinds == {"continuous": "fmri", "count": "poisson", "label": "categorical", "ordinal": "ordinal"}
    assert spec["views"][0]["options"] == {"tr": 2.0}
    views, _ = series_to_views(ts, spec)
    labels = views["label"].data[:, 0]
    expected = np.where(np.arange(300) % 7 == 0, 4, truth["labels"])  # no label -> the last category, none
    np.testing.assert_array_equal(labels, expected)
    assert view_spec(ts, hrf=False)["views"][0]["kind"] == "gaussian"
    ts.dt = None
    with pytest.raises(DsrpipeError, match="TR.*fmri.tr"):
        view_spec(ts, hrf=True, source="raw")


def test_bad_inputs_give_clear_errors(prepared, tmp_path):
    d, raw, _ = prepared
    only_labels = TimeSeries(raw.data[:, 7:], raw.channels[7:], dt=0.05, meta=raw.meta,
                             channel_types=raw.channel_types[7:])
    missing_level = TimeSeries(raw.data.copy(), raw.channels, dt=0.05, meta=raw.meta, channel_types=raw.channel_types)
    missing_level.data[5, raw.channels.index("ordinal_z")] = -1
    with pytest.raises(DsrpipeError, match="ordinal view 'ordinal': missing ordinal levels"):
        series_to_views(missing_level, view_spec(raw, source="raw"), "raw")
    with pytest.raises(DsrpipeError, match="needs at least one continuous or count channel"):
        view_spec(only_labels, source="sub-01.parquet")
    # counts that are not counts after undoing the standardisation
    train = load_series(d / "train.parquet", types=None)
    spec = view_spec(train, source="train")
    train.data[:, 3] += 0.1
    with pytest.raises(DsrpipeError, match="poisson view 'count'.*whole non-negative counts"):
        series_to_views(train, spec, "train")
    with pytest.raises(DsrpipeError, match="train.method must be gtf or mtf"):
        from_mapping(TrainConfig, {"method": "mmtf"}, "train")
    with pytest.raises(DsrpipeError, match="train.alpha_mode = 'adaptive' is not available with train.method mtf"):
        from_mapping(TrainConfig, {"method": "mtf", "alpha_mode": "adaptive"}, "train")
    with pytest.raises(DsrpipeError, match="identity decodes the 3 continuous channels"):
        train_file(d / "train.parquet", tmp_path / "run", from_mapping(
            TrainConfig, {**FAST, "readout": "identity", "mtf_forcing_dim": 2}, "train"))
    assert not (tmp_path / "run").exists()


def test_mtf_run_is_saved_loadable_and_reproducible(trained, tmp_path):
    d, _, result = trained
    run = d / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "mtf" and config["train"]["method"] == "mtf"
    assert config["mtf"]["forcing_dim"] == 3 and config["model"]["hyperparameters"]["M"] == 5
    assert config["validation"]["d_stsp"] >= 0  # scored on the held-out tail for restart selection
    model, _ = load_multimodal_run(run)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), result.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    latent, _ = load_run(run)  # the latent model alone, for Lyapunov and SCYFI
    assert torch.equal(latent.state_dict()["A"], result.model.latent.state_dict()["A"])
    with pytest.raises(DsrpipeError, match="MTF.*load_multimodal_run"):
        load_reconstruction(run)
    # same seed, same model (through the CLI); another seed, another model
    assert main(["train", str(d / "train.parquet"), "--out", str(tmp_path / "again"),
                 "--set", *[f"{k}={v}" for k, v in FAST.items()]]) == 0
    again, _ = load_multimodal_run(tmp_path / "again")
    # equal up to rounding: within one process BLAS may round differently with the arrays' memory alignment
    torch.testing.assert_close(again.state_dict(), model.state_dict(), rtol=1e-9, atol=1e-12)
    other = train_file(d / "train.parquet", tmp_path / "other", from_mapping(TrainConfig, {**FAST, "seed": 1}, "train"))
    assert (other.model.latent.W1 - model.latent.W1).abs().max() > 1e-2


def test_mtf_evaluation_writes_view_metrics(trained, tmp_path):
    d, _, _ = trained
    test = load_series(d / "test.parquet", types=None)
    train = load_series(d / "train.parquet")
    out = tmp_path / "metrics.json"
    metrics = evaluate_run(d / "run", test, EVAL, out, generated_out=tmp_path / "generated.parquet", train=train)
    assert json.loads(out.read_text()) == json.loads(json.dumps(metrics))
    assert metrics["method"] == "mtf" and metrics["main_view"] == "continuous"
    for key in ("d_stsp", "d_h", "pe_5", "max_lyapunov"):
        assert np.isfinite(metrics[key]), key
    assert len(metrics["pe_curve"]) == 5 and metrics["pe_curve"][-1] == metrics["pe_5"]
    assert len(metrics["lyapunov_spectrum"]) == 5
    label = metrics["cross_modal"]["label_state"]
    labels = test.data[:, test.channels.index("label_state")].astype(int)
    assert label["chance"] == pytest.approx(np.bincount(labels).max() / len(labels))
    assert 0 <= label["accuracy"] <= 1 and 0 <= label["accuracy_generated"] <= 1
    assert -1 <= metrics["cross_modal"]["count"]["rate_correlation"] <= 1
    levels = test.data[:, test.channels.index("ordinal_z")].astype(int)
    ordinal = metrics["cross_modal"]["ordinal"]
    assert ordinal["chance"] == pytest.approx(np.bincount(levels).max() / len(levels))
    assert 0 <= ordinal["accuracy"] <= 1
    assert set(metrics["baselines"]) == {"mean", "var1"}
    gen = load_series(tmp_path / "generated.parquet")
    assert gen.channels == ["x", "y", "z", "n0", "n1", "n2", "n3"] and gen.n_samples == test.n_samples
    # a test series without its label channels is a clear error
    with pytest.raises(DsrpipeError, match="label_state.*missing"):
        evaluate_run(d / "run", load_series(d / "test.parquet"), EVAL, tmp_path / "m2.json")
    # the CLI (and the workflow, which passes the file) read every channel type of an MTF run's test file
    sets = [f"{k}={v}" for k, v in dataclasses.asdict(EVAL).items() if k in
            ("lyapunov_steps", "lyapunov_transient", "fixed_point_inits", "max_cycle_order", "basin_grid",
             "pe_steps", "pe_curve_steps", "lyapunov_trace")]
    assert main(["evaluate", str(d / "run"), "--test", str(d / "test.parquet"), "--out",
                 str(tmp_path / "cli" / "metrics.json"), "--set", *sets]) == 0
    assert json.loads((tmp_path / "cli" / "metrics.json").read_text())["cross_modal"] == metrics["cross_modal"]
    by_path = evaluate_run(d / "run", d / "test.parquet", EVAL, tmp_path / "m3.json")
    assert by_path["d_stsp"] == metrics["d_stsp"]


def test_divergence_policy_applies_to_mtf(prepared, tmp_path, monkeypatch):
    from dsrpipe.training import mtf_run
    from dsrpipe.training.loop import TrainingDivergedError

    d, _, _ = prepared
    real, calls = mtf_run.train_multimodal, []

    def diverging_once(views, cfg, **kwargs):
        calls.append(cfg.lr)
        if len(calls) == 1:
            raise TrainingDivergedError("MTF training diverged: loss = nan at epoch 1, batch 1")
        return real(views, cfg, **kwargs)

    monkeypatch.setattr(mtf_run, "train_multimodal", diverging_once)
    cfg = from_mapping(TrainConfig, {**FAST, "epochs": 1, "validation_fraction": 0.0}, "train")
    train_file(d / "train.parquet", tmp_path / "retried", cfg)
    config = json.loads((tmp_path / "retried" / "config.json").read_text())
    assert calls == [3e-3, 1.5e-3]  # lower_lr: the retry ran with half the learning rate
    assert len(config["divergence_retries"]) == 1 and config["effective_train"]["lr"] == 1.5e-3
    calls.clear()
    with pytest.raises(TrainingDivergedError, match="diverged in 1 attempt.*Nothing was saved"):
        train_file(d / "train.parquet", tmp_path / "failed",
                   from_mapping(TrainConfig, {**FAST, "on_divergence": "fail"}, "train"))
    assert not (tmp_path / "failed").exists()


def test_diverging_mtf_model_is_reported_not_failed(trained, tmp_path):
    import shutil

    d, _, _ = trained
    run = tmp_path / "exploding"
    shutil.copytree(d / "run", run)
    model, _ = load_multimodal_run(run)
    with torch.no_grad():
        model.latent.A.fill_(1.5)  # the latent map grows like 1.5^t
        model.latent.W1.zero_()
    torch.save(model.state_dict(), run / "model.pt")
    metrics = evaluate_run(run, d / "test.parquet", EVAL, tmp_path / "metrics.json")
    assert metrics["diverged"] and metrics["diverged_stage"] == "generation"
    assert metrics["d_stsp"] == float("inf") and metrics["attractor_class"] == "diverged"
    assert metrics["divergence"]["lyapunov"] is not None
    assert (tmp_path / "cycles.parquet").exists()


def test_interrupted_mtf_run_resumes_from_its_checkpoint(prepared, tmp_path, monkeypatch):
    from dsrpipe.training import mtf_run

    d, _, _ = prepared
    cfg = from_mapping(TrainConfig, {**FAST, "epochs": 4, "checkpoint_every": 2, "validation_fraction": 0.0}, "train")
    whole = train_file(d / "train.parquet", tmp_path / "whole", cfg)
    assert not (tmp_path / "whole" / "checkpoint.pt").exists()  # removed once the run is saved

    class Killed(Exception):
        pass

    real = mtf_run.train_multimodal

    def killed_in_epoch_3(views, mcfg, **kwargs):
        def kill(record, model):
            if record.epoch == 3:
                raise Killed
        return real(views, mcfg, **{**kwargs, "callbacks": [*kwargs["callbacks"], kill]})

    monkeypatch.setattr(mtf_run, "train_multimodal", killed_in_epoch_3)
    with pytest.raises(Killed):
        train_file(d / "train.parquet", tmp_path / "resumed", cfg)
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert saved["epoch"] == 2 and not (tmp_path / "resumed" / "config.json").exists()
    monkeypatch.setattr(mtf_run, "train_multimodal", real)
    resumed = train_file(d / "train.parquet", tmp_path / "resumed", cfg)
    assert list(resumed.history["epoch"]) == [1, 2, 3, 4]
    np.testing.assert_allclose(resumed.history["loss"], whole.history["loss"], rtol=1e-12)
    torch.testing.assert_close(resumed.model.state_dict(), whole.model.state_dict(), rtol=1e-9, atol=1e-12)
    # a checkpoint of other settings is not resumed
    other = from_mapping(TrainConfig, {**FAST, "epochs": 4, "lr": 1e-3, "validation_fraction": 0.0}, "train")
    (tmp_path / "resumed" / "checkpoint.pt").write_bytes((tmp_path / "whole" / "model.pt").read_bytes())
    assert list(train_file(d / "train.parquet", tmp_path / "resumed", other).history["epoch"]) == [1, 2, 3, 4]
