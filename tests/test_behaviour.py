"""Behaviour/task tables to typed label and input channels, and the typed-channel convention of the Parquet format."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dsrpipe import DsrpipeError
from dsrpipe.cli import main
from dsrpipe.config import PrepareConfig, load_section
from dsrpipe.io import TimeSeries, read_timeseries, write_timeseries
from dsrpipe.preprocessing.behaviour import BehaviourConfig, preprocess_behaviour
from dsrpipe.preprocessing.common import prepare, prepare_file
from dsrpipe.preprocessing.dispatch import preprocess_recording

EVENTS = pd.DataFrame({"onset": [0.5, 2.0, 3.0, 4.0], "duration": [1.0, 0.5, "n/a", 1.0],
                       "trial_type": ["go", "stop", "cue", "go"], "rating": [1, 3, "n/a", 2]})


@pytest.fixture
def events(tmp_path):
    path = tmp_path / "sub-01_task-x_events.tsv"
    EVENTS.to_csv(path, sep="\t", index=False)
    return path


def _onehot_of(ts, name):
    return ts.data[:, ts.channels.index(name)]


def test_events_to_onehot_labels_inputs_and_ordinal(events):
    cfg = BehaviourConfig(dt=0.25, input_events=("cue",), ordinal_column="rating")
    ts = preprocess_behaviour(events, cfg, subject="01")
    assert ts.channels == ["input_cue", "label_go", "label_stop", "ordinal_rating"]
    assert ts.channel_types == ["input", "label", "label", "ordinal"]
    assert ts.dt == 0.25 and ts.n_samples == 20  # last event ends at 5.0 s
    t = 0.25 * np.arange(20)
    go = ((t >= 0.5) & (t < 1.5)) | ((t >= 4.0) & (t < 5.0))
    assert np.array_equal(_onehot_of(ts, "label_go"), go.astype(int))
    assert np.array_equal(_onehot_of(ts, "label_stop"), ((t >= 2.0) & (t < 2.5)).astype(int))
    assert np.array_equal(_onehot_of(ts, "input_cue"), (t == 3.0).astype(int))  # zero duration: one sample
    rating = np.where(go & (t < 2), 0, -1)  # levels 1, 2, 3 -> codes 0, 1, 2; -1 where no rated event
    rating[(t >= 2.0) & (t < 2.5)] = 2
    rating[t >= 4.0] = 1
    assert np.array_equal(_onehot_of(ts, "ordinal_rating"), rating)
    assert ts.meta["categorical"] == {"trial_type": {"columns": ["label_go", "label_stop"], "encoding": "onehot",
                                                     "categories": ["go", "stop"]}}
    assert ts.meta["ordinal"]["ordinal_rating"]["levels"] == [1.0, 2.0, 3.0]


def test_code_encoding_category_order_and_overlaps(tmp_path, caplog):
    path = tmp_path / "ev.csv"
    pd.DataFrame({"onset": [0.0, 1.0, 1.5], "duration": [2.0, 1.0, 1.0],
                  "trial_type": ["a", "b", "c"]}).to_csv(path, index=False)
    ts = preprocess_behaviour(path, BehaviourConfig(dt=0.5, encoding="code", categories=("c", "b", "a")),
                              subject="x")
    assert ts.channels == ["label_trial_type"] and ts.channel_types == ["label"]
    # a (code 2) on [0, 2), b (1) from 1.0 overwrites it, c (0) from 1.5 overwrites b: the later onset wins
    assert ts.data[:, 0].tolist() == [2, 2, 1, 0, 0]
    assert "overlap" in caplog.text
    with pytest.raises(DsrpipeError, match=r"categories \['c'\] are not in"):
        preprocess_behaviour(path, BehaviourConfig(dt=0.5, categories=("a", "b")), subject="x")


def test_events_on_a_reference_grid(events, tmp_path):
    reference = TimeSeries(np.random.default_rng(0).normal(size=(12, 2)), ["a", "b"], dt=0.5, subject="01")
    ts = preprocess_behaviour(events, BehaviourConfig(label_events=("go",)), subject="01", reference=reference)
    assert (ts.dt, ts.n_samples, ts.channels) == (0.5, 12, ["label_go"])  # the reference's grid, not the events'
    assert ts.data[:, 0].tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    assert ts.meta["behaviour"]["grid"] == {"dt": 0.5, "n_samples": 12, "t_start": 0.0, "reference": "01"}


def test_per_sample_table_resampled_to_a_reference(tmp_path):
    path = tmp_path / "beh.parquet"
    time = 0.1 * np.arange(50)
    pd.DataFrame({"time": time, "speed": 2 * time, "input_light": (time >= 2).astype(int),
                  "label_state": np.where(time < 3, "rest", "run"),
                  "ordinal_effort": np.where(time < 1, 5, 7)}).to_parquet(path)
    own = preprocess_behaviour(path, BehaviourConfig(encoding="code"), subject="s")
    assert own.dt == pytest.approx(0.1) and own.n_samples == 50
    assert own.channels == ["label_state", "speed", "input_light", "ordinal_effort"]
    assert own.channel_types == ["label", "continuous", "input", "ordinal"]
    ref = TimeSeries(np.zeros((18, 1)), ["x"], dt=0.25, subject="s")
    ts = preprocess_behaviour(path, BehaviourConfig(encoding="code", t_start=0.05), subject="s", reference=ref)
    grid = 0.05 + 0.25 * np.arange(18)  # up to 4.3 s, inside the table's 0-4.9 s
    assert np.allclose(ts.data[:, 1], 2 * grid)  # continuous: linear interpolation
    held = time[np.searchsorted(time, grid + 1e-12, side="right") - 1]  # the last row at or before each sample
    assert np.array_equal(ts.data[:, 0], np.where(held < 3, 0, 1))  # categories sorted: rest = 0, run = 1
    assert np.array_equal(ts.data[:, 2], (held >= 2).astype(int))
    assert np.array_equal(ts.data[:, 3], np.where(held < 1, 0, 1))


def test_onehot_label_group_stays_one_variable(tmp_path):
    path = tmp_path / "nbko_like.tsv"
    phase = np.repeat([0, 1, 2], 4)
    df = pd.DataFrame({f"label_{k + 1}": (phase == k).astype(int) for k in range(3)})
    df.to_csv(path, sep="\t", index=False)
    ts = preprocess_behaviour(path, BehaviourConfig(dt=2.0), subject="s")
    assert ts.channels == ["label_1", "label_2", "label_3"] and set(ts.channel_types) == {"label"}
    assert ts.meta["categorical"]["label"]["encoding"] == "onehot"
    assert np.array_equal(ts.data.argmax(axis=1), phase)


# ---------------------------------------------------------------- the typed Parquet format


def _mixed():
    rng = np.random.default_rng(0)
    data = np.column_stack([rng.normal(size=300), rng.normal(size=300), np.arange(300) % 2,
                            (np.arange(300) >= 240).astype(int)])
    return TimeSeries(data, ["a", "b", "input_cue", "label_late"], dt=0.1, subject="s",
                      channel_types=["continuous", "continuous", "input", "label"])


def test_typed_channels_roundtrip_and_default_selection(tmp_path):
    path = tmp_path / "mixed.parquet"
    write_timeseries(_mixed(), path)
    schema = pq.read_schema(path)
    assert str(schema.field("label_late").type) == "int64" and str(schema.field("a").type) == "double"
    assert read_timeseries(path).channels == ["a", "b"]  # the modelled channels by default
    full = read_timeseries(path, types=None)
    assert full.channel_types == ["continuous", "continuous", "input", "label"]
    assert np.array_equal(full.data, _mixed().data)
    assert read_timeseries(path, types=("input",)).channels == ["input_cue"]
    write_timeseries(_mixed().select("label"), path)
    with pytest.raises(DsrpipeError, match="no channel of type continuous, count.*label channels only"):
        read_timeseries(path)
    with pytest.raises(DsrpipeError, match="unknown channel type"):
        TimeSeries(np.zeros((3, 1)), ["x"], channel_types=["category"])


def test_prepare_splits_every_channel_and_standardises_only_modelled_ones(tmp_path):
    ts = _mixed()
    train, test = prepare(ts.data, ts.channels, subject="s", cfg=PrepareConfig(), channel_types=ts.channel_types)
    assert len(train.data) == 240 and train.channel_types == ts.channel_types
    assert np.allclose(train.data[:, :2].mean(axis=0), 0) and np.allclose(train.data[:, :2].std(axis=0), 1)
    assert np.array_equal(train.data[:, 2:], ts.data[:240, 2:])  # inputs and labels untouched
    assert np.array_equal(test.data[:, 3], np.ones(60))  # a label constant in a segment is no error
    assert train.meta["standardisation"]["std"][2:] == [1.0, 1.0]
    assert train.select("continuous").meta["standardisation"]["mean"] == train.meta["standardisation"]["mean"][:2]
    labels_only = ts.select("label", "input")
    with pytest.raises(DsrpipeError, match="no continuous or count channel"):
        prepare(labels_only.data, labels_only.channels, subject="s", cfg=PrepareConfig(),
                channel_types=labels_only.channel_types)


def test_prepare_file_keeps_types_and_categorical_metadata(events, tmp_path):
    beh = tmp_path / "beh.parquet"
    preprocess_recording(events, beh, modality="behaviour", subject="01",
                         behaviour=BehaviourConfig(dt=0.01, input_events=("cue",)))
    with pytest.raises(DsrpipeError, match="no continuous or count channel"):  # labels alone are not modelled
        prepare_file(beh, tmp_path / "tr.parquet", tmp_path / "te.parquet", subject="01",
                     cfg=PrepareConfig(min_samples=10))
    assert not (tmp_path / "tr.parquet").exists()
    both = _mixed()
    write_timeseries(both, tmp_path / "mixed.parquet")
    prepare_file(tmp_path / "mixed.parquet", tmp_path / "tr.parquet", tmp_path / "te.parquet", subject="s",
                 cfg=PrepareConfig())
    assert read_timeseries(tmp_path / "te.parquet", types=None).channel_types == both.channel_types


# ---------------------------------------------------------------- dispatch, CLI, errors


def test_cli_behaviour_with_a_reference(events, tmp_path):
    ref = tmp_path / "eeg.parquet"
    write_timeseries(TimeSeries(np.zeros((600, 2)), ["c1", "c2"], dt=0.01, subject="01", modality="eeg"), ref)
    out = tmp_path / "beh.parquet"
    assert main(["preprocess", "--modality", "behaviour", str(events), "--out", str(out), "--reference", str(ref),
                 "--set", "input_events=[cue]", "encoding=code"]) == 0
    ts = read_timeseries(out, types=None)
    assert (ts.modality, ts.dt, ts.n_samples) == ("behaviour", 0.01, 600)
    assert ts.channels == ["input_cue", "label_trial_type"] and ts.meta["recording"]["reference"] == str(ref)
    assert ts.data[300, 0] == 1 and ts.data[:, 0].sum() == 1  # the cue at 3.0 s
    assert ts.meta["provenance"]["source"] == str(events) and len(ts.meta["provenance"]["sha256"]) == 64


@pytest.mark.parametrize("content, cfg, message", [
    (None, {"dt": 0.1}, "behaviour recording not found"),
    (b"PAR1\x00garbage", {"dt": 0.1}, "cannot read behaviour table"),
    (b"onset\ttrial_type\n1.0\tgo\n", {"dt": 0.1, "format": "events"}, r"lacks column\(s\) \['duration'\]"),
    (b"onset\tduration\ttrial_type\n1.0\t1\tgo\n", {}, "set behaviour.dt"),
    (b"speed\tmood\n1.0\tok\n2.0\tbad\n", {"dt": 0.1}, "'mood' is not numeric"),
    (b"onset\tduration\ttrial_type\nsoon\t1\tgo\n", {"dt": 0.1}, "non-numeric or missing onset"),
], ids=["missing", "corrupt", "no-duration", "no-grid", "text-column", "bad-onset"])
def test_bad_tables_name_the_file_and_write_nothing(tmp_path, content, cfg, message):
    path = tmp_path / ("beh.parquet" if content and content.startswith(b"PAR1") else "beh.tsv")
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out" / "beh.parquet"
    with pytest.raises(DsrpipeError, match=message) as err:
        preprocess_recording(path, out, modality="behaviour", subject="s", behaviour=BehaviourConfig(**cfg))
    assert str(path) in str(err.value)
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))


@pytest.mark.parametrize("override", ["format=wide", "encoding=binary", "dt=0", "label_events=[a]"])
def test_invalid_behaviour_config(override):
    key = override.split("=")[0]
    extra = ["input_events=[a]"] if key == "label_events" else []
    with pytest.raises(DsrpipeError, match=f"behaviour.{key}"):
        load_section(BehaviourConfig, "behaviour", None, [override, *extra])
