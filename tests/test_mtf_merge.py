"""A subject's BOLD and behaviour files joined on one grid into one typed series for MTF."""

import re

import numpy as np
import pytest

from dsrpipe import DsrpipeError
from dsrpipe.cli import main
from dsrpipe.io.timeseries import TimeSeries, read_timeseries, write_timeseries
from dsrpipe.preprocessing.dispatch import preprocess_recording
from dsrpipe.preprocessing.merge import merge_series
from dsrpipe.training.mtf_views import series_to_views, view_spec

T = 60


def bold(n=T, dt=2.0):
    rng = np.random.default_rng(0)
    return TimeSeries(rng.normal(size=(n, 3)), ["roi_1", "roi_2", "roi_3"], dt=dt, subject="07", modality="fmri",
                      meta={"preprocessing": {"detrend": "linear"}})


def behaviour(n=T, dt=2.0):
    phase = np.arange(n) // 10 % 3
    onehot = np.stack([(phase == k).astype(int) for k in range(3)], axis=1)
    cue = (np.arange(n) % 10 == 0).astype(int)[:, None]
    return TimeSeries(np.column_stack([onehot, cue]), ["label_rest", "label_task", "label_cue", "input_cue"], dt=dt,
                      subject="07", modality="behaviour", channel_types=["label"] * 3 + ["input"],
                      meta={"categorical": {"phase": {"columns": ["label_rest", "label_task", "label_cue"],
                                                      "encoding": "onehot", "categories": ["rest", "task", "cue"]}}})


def test_merged_file_keeps_types_labels_and_the_fmri_modality(tmp_path):
    write_timeseries(bold(), tmp_path / "bold.parquet")
    write_timeseries(behaviour(), tmp_path / "beh.parquet")
    out = tmp_path / "sub-07.parquet"
    assert main(["merge", str(tmp_path / "beh.parquet"), str(tmp_path / "bold.parquet"), "--out", str(out)]) == 0
    merged = read_timeseries(out, types=None)
    assert merged.modality == "fmri" and merged.dt == 2.0 and merged.subject == "07"
    assert merged.channels == ["label_rest", "label_task", "label_cue", "input_cue", "roi_1", "roi_2", "roi_3"]
    assert merged.channel_types == ["label"] * 3 + ["input"] + ["continuous"] * 3
    np.testing.assert_array_equal(merged.data[:, 4:], bold().data)
    assert merged.meta["categorical"]["phase"]["categories"] == ["rest", "task", "cue"]
    assert [p["modality"] for p in merged.meta["merged_from"]] == ["behaviour", "fmri"]
    # a subjects-table row (modality timeseries) keeps the labels and inputs of such a file
    pre = preprocess_recording(out, tmp_path / "pre.parquet", modality="timeseries", subject="07")
    assert pre.channel_types == merged.channel_types and pre.modality == "fmri"
    # and MTF reads it as an HRF view at the TR, one categorical label and one input
    spec = view_spec(pre, hrf=True)
    assert [(v["name"], v["kind"]) for v in spec["views"]] == [("continuous", "fmri"), ("label_phase", "categorical")]
    assert spec["inputs"] == ["input_cue"] and spec["views"][0]["options"]["tr"] == 2.0
    views, _ = series_to_views(pre, spec)
    np.testing.assert_array_equal(views["label_phase"].data[:, 0], np.arange(T) // 10 % 3)


@pytest.mark.parametrize("other, message", [
    (behaviour(n=T - 1), "59 samples, but bold has 60.*--reference bold"),
    (behaviour(dt=1.0), "sampling interval 1.0 s, but bold has 2.0 s"),
    (bold(), r"channel name\(s\) \['roi_1', 'roi_2', 'roi_3'\] occur in more than one"),
])
def test_merge_errors_name_the_file(other, message):
    with pytest.raises(DsrpipeError, match=message):
        merge_series([bold(), other], ["bold", "other"])
    with pytest.raises(DsrpipeError, match="at least two"):
        merge_series([bold()])


def test_a_finer_task_table_is_held_at_each_bold_volume_then_merged(tmp_path):
    """What the workflow does with a subject's fmri + behaviour rows: the behaviour on the BOLD grid, merged."""
    from modality_files import task_cue, task_phase, write_roi_table, write_task_samples

    from dsrpipe.preprocessing.dispatch import config_class
    from dsrpipe.preprocessing.merge import merge_files

    bold = preprocess_recording(write_roi_table(tmp_path / "roi.tsv", task=False), tmp_path / "bold.parquet",
                                modality="fmri", subject="07", fmri=config_class("fmri")(tr=2.0))
    task = preprocess_recording(write_task_samples(tmp_path / "task.tsv", step=0.5), tmp_path / "task.parquet",
                                modality="behaviour", subject="07", reference=tmp_path / "bold.parquet")
    assert task.dt == bold.dt == 2.0 and task.n_samples == bold.n_samples == 150
    merged = merge_files([tmp_path / "bold.parquet", tmp_path / "task.parquet"], tmp_path / "m.parquet")
    assert merged.modality == "fmri" and merged.subject == "07"
    assert merged.channels == ["roi_01", "roi_02", "roi_03", "label_encode", "label_hold", "input_cue"]
    np.testing.assert_array_equal(merged.data[:, 3:5].argmax(axis=1), task_phase(150))
    np.testing.assert_array_equal(merged.data[:, 5], task_cue(150))
    np.testing.assert_array_equal(merged.data[:, :3], bold.data)
    assert read_timeseries(tmp_path / "m.parquet", types=None).channel_types == merged.channel_types


def test_recordings_on_different_grids_fail_naming_both_files(tmp_path):
    from dsrpipe.preprocessing.merge import merge_files

    write_timeseries(bold(), tmp_path / "bold.parquet")
    eeg = TimeSeries(np.zeros((2 * T, 2)), ["c1", "c2"], dt=1.0, subject="07", modality="eeg")
    write_timeseries(eeg, tmp_path / "eeg.parquet")
    message = re.escape(f"{tmp_path / 'eeg.parquet'}: 120 samples, but {tmp_path / 'bold.parquet'} has 60; put both "
                        "on one grid first (same sampling interval and length)")
    with pytest.raises(DsrpipeError, match=message):
        merge_files([tmp_path / "bold.parquet", tmp_path / "eeg.parquet"], tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()
