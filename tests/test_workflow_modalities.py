"""A mixed dataset (1 EEG, 2 fMRI, 1 spike subject, 1 behaviour) through preprocessing, MTF training and the group report.

One fMRI subject is a NIfTI with an atlas, the other (f2) is multimodal: an NBKO-like ROI table row plus a
behaviour row (the task's input and phase label, sampled 4x per TR), preprocessed row by row, the behaviour on
the BOLD grid, and merged, so typed channels (input, label) travel through prepare and training. The whole run
trains with train.method mtf, so every modality's views go through MTF end to end (GTF runs in the other
workflow tests).
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from modality_files import (
    task_cue,
    task_phase,
    write_behaviour_samples,
    write_eeg,
    write_fmri,
    write_roi_table,
    write_spikes,
    write_task_samples,
)
from workflow_helpers import REPO, TINY, planned_jobs, snakemake

from dsrpipe.io import read_timeseries

pytestmark = pytest.mark.slow

# one subject per reader (two for fMRI: NIfTI + atlas, ROI table); every job is a process start, and CI time counts
MODALITY = {"e1": "eeg", "f1": "fmri", "f2": "fmri", "s1": "spikes", "b1": "behaviour"}
# the main MTF view per subject's modality (fMRI through the HRF, spike counts Poisson)
MAIN_VIEW = {"eeg": ("continuous", "gaussian"), "fmri": ("continuous", "fmri"), "spikes": ("count", "poisson"),
             "behaviour": ("continuous", "gaussian")}


def make_mixed_dataset(wd):
    raw = wd / "raw"
    raw.mkdir(parents=True)
    rows = []
    for seed, (sid, modality) in enumerate(MODALITY.items()):
        row = {"subject": sid, "modality": modality, "session": "1"}
        if modality == "eeg":
            row["path"] = str(write_eeg(raw / f"{sid}_raw.fif", seed=seed).relative_to(wd))
        elif sid == "f1":
            bold, atlas = write_fmri(raw, stem=sid, seed=seed)
            row.update(path=str(bold.relative_to(wd)), atlas=str(atlas.relative_to(wd)))
        elif sid == "f2":  # multimodal: the ROI table without task columns, the task in its own behaviour row
            row["path"] = str(write_roi_table(raw / f"{sid}_bold_roi.tsv", seed=seed, task=False).relative_to(wd))
            rows.append({"subject": sid, "modality": "behaviour", "session": "1",
                         "path": str(write_task_samples(raw / f"{sid}_task.tsv").relative_to(wd))})
        elif modality == "behaviour":
            row["path"] = str(write_behaviour_samples(raw / f"{sid}_beh.tsv", seed=seed).relative_to(wd))
        else:
            row["path"] = str(write_spikes(raw / f"{sid}.mat", seed=seed).relative_to(wd))
        rows.append(row)
    pd.DataFrame(rows).to_csv(wd / "subjects.tsv", sep="\t", index=False)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["subjects"] = "subjects.tsv"
    for section, values in TINY.items():
        config[section].update(values)
    config["train"]["method"] = "mtf"
    config["prepare"]["min_samples"] = 100  # 150 fMRI volumes
    config["eeg"]["pca_components"] = 3  # binned D_stsp needs few dimensions
    config["fmri"]["tr"] = 2.0  # the ROI table carries none (the NIfTI header says 2.0 too)
    (wd / "config").mkdir()
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return wd


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = make_mixed_dataset(tmp_path_factory.mktemp("mixed"))
    proc = snakemake(wd, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wd


def test_every_subject_reaches_the_group_table_with_its_modality(workdir):
    runs = pd.read_parquet(workdir / "results/group/runs.parquet")
    assert len(runs) == len(MODALITY) and sorted(runs["subject"]) == sorted(MODALITY)
    assert dict(zip(runs["subject"], runs["modality"])) == MODALITY  # f2: the neural row's modality
    assert np.isfinite(runs["d_stsp"].to_numpy(dtype=float)).all()
    for sid in runs["subject"]:
        modality = MODALITY[sid]
        pre = read_timeseries(workdir / f"results/sub-{sid}/data/sub-{sid}_desc-preproc_{modality}.parquet")
        test = read_timeseries(workdir / f"results/sub-{sid}/data/sub-{sid}_split-test.parquet")
        assert pre.modality == test.modality == modality and pre.meta["recording"]["session"] == "1"
        assert test.n_channels == 3 and test.dt == pre.dt
        run = json.loads((workdir / f"results/sub-{sid}/model-shPLRNN_seed-0/config.json").read_text())
        assert run["train"]["method"] == "mtf" and run["data"]["modality"] == modality
        metrics = json.loads((workdir / f"results/sub-{sid}/model-shPLRNN_seed-0/metrics.json").read_text())
        main, kind = MAIN_VIEW[modality]
        assert metrics["method"] == "mtf" and metrics["main_view"] == main
        assert metrics["views"][main]["kind"] == kind and metrics["views"][main]["channels"] == test.channels
        scored = {v for v, d in metrics["views"].items() if d["kind"] in ("categorical", "ordinal", "poisson")}
        assert set(metrics["cross_modal"]) == scored
        # the observation fit behind the report's BOLD-fit (fmri view) and rates-vs-counts (Poisson view) figures
        run_dir = workdir / f"results/sub-{sid}/model-shPLRNN_seed-0"
        figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
        assert (run_dir / "observation_fit.parquet").exists()
        assert ("bold_fit" in figures) == (kind == "fmri") and ("rates" in figures) == (kind == "poisson"), figures
    assert read_timeseries(workdir / "results/sub-f1/data/sub-f1_desc-preproc_fmri.parquet").dt == 2.0
    assert read_timeseries(workdir / "results/sub-s1/data/sub-s1_split-train.parquet").channel_types == ["count"] * 3
    # only the two-row subject has a merge job and a merged file
    assert sorted(p.name for p in (workdir / "results").glob("sub-*/data/*_desc-merged.parquet")) == [
        "sub-f2_desc-merged.parquet"]
    report = (workdir / "results/group/report.html").read_text()
    assert "data:image/png;base64," in report and all(f"sub-{sid}" in report for sid in MODALITY)


def test_a_multimodal_subjects_rows_are_merged_on_the_bold_grid(workdir):
    data = workdir / "results/sub-f2/data"
    task = read_timeseries(data / "sub-f2_desc-preproc_behaviour.parquet", types=None)
    bold = read_timeseries(data / "sub-f2_desc-preproc_fmri.parquet", types=None)
    assert task.dt == bold.dt == 2.0 and task.n_samples == bold.n_samples == 150  # resampled from 0.5 s rows
    assert task.meta["recording"]["reference"] == str(data.relative_to(workdir) / "sub-f2_desc-preproc_fmri.parquet")
    merged = read_timeseries(data / "sub-f2_desc-merged.parquet", types=None)
    assert merged.modality == "fmri" and [p["modality"] for p in merged.meta["merged_from"]] == ["fmri", "behaviour"]
    train = read_timeseries(data / "sub-f2_split-train.parquet", types=None)
    test = read_timeseries(data / "sub-f2_split-test.parquet", types=None)
    assert train.channels == ["roi_01", "roi_02", "roi_03", "label_encode", "label_hold", "input_cue"]
    assert train.channel_types == ["continuous"] * 3 + ["label", "label", "input"]
    assert train.meta["categorical"]["phase"]["categories"] == ["encode", "hold"]
    # the labels and inputs are the behaviour file's, per volume, not standardised
    labels = np.concatenate([train.data[:, 3:5], test.data[:, 3:5]])
    cue = np.concatenate([train.data[:, 5], test.data[:, 5]])
    np.testing.assert_array_equal(labels.argmax(axis=1), task_phase(150)[:len(labels)])
    assert (labels.sum(axis=1) == 1).all()
    np.testing.assert_array_equal(cue, task_cue(150)[:len(cue)])
    run = json.loads((workdir / "results/sub-f2/model-shPLRNN_seed-0/config.json").read_text())
    assert run["data"]["channels"] == ["roi_01", "roi_02", "roi_03"] and run["data"]["inputs"] == ["input_cue"]
    metrics = json.loads((workdir / "results/sub-f2/model-shPLRNN_seed-0/metrics.json").read_text())
    assert {v: d["kind"] for v, d in metrics["views"].items()} == {"continuous": "fmri", "label_phase": "categorical"}
    phase = metrics["cross_modal"]["label_phase"]
    freq = np.bincount(test.data[:, 3:5].argmax(axis=1), minlength=2) / test.n_samples
    assert phase["n_categories"] == 3 and phase["chance"] == pytest.approx(freq.max())  # encode, hold, none
    assert 0 <= phase["accuracy"] <= 1 and 0 <= phase["accuracy_generated"] <= 1
    beh = read_timeseries(workdir / "results/sub-b1/data/sub-b1_desc-preproc_behaviour.parquet", types=None)
    assert beh.channel_types == ["label", "label", "continuous", "continuous", "continuous", "input"]
    assert beh.dt == pytest.approx(0.05) and beh.meta["categorical"]["state"]["categories"] == ["rest", "run"]
    b1 = json.loads((workdir / "results/sub-b1/model-shPLRNN_seed-0/metrics.json").read_text())
    assert b1["views"]["label_state"]["kind"] == "categorical" and set(b1["cross_modal"]) == {"label_state"}


def test_a_modality_setting_reruns_only_that_modality(workdir, tmp_path):
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["spikes"]["bin_width"] = 0.1
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(workdir, "-n", "--configfile", str(tmp_path / "changed.yaml")))
    assert {s for r, s in jobs if r == "preprocess_recording"} == {"s1"}
    assert {s for _, s in jobs if s} == {"s1"}


def _copy_inputs(workdir, dest):
    shutil.copytree(workdir / "raw", dest / "raw")
    shutil.copytree(workdir / "config", dest / "config")
    return pd.read_csv(workdir / "subjects.tsv", sep="\t", dtype=str)


def test_missing_file_fails_only_that_subjects_job(workdir, tmp_path):
    table = _copy_inputs(workdir, tmp_path)
    (tmp_path / table.loc[0, "path"]).unlink()  # e1's EEG file
    table.to_csv(tmp_path / "subjects.tsv", sep="\t", index=False)
    dry = snakemake(tmp_path, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]  # the DAG still builds
    proc = snakemake(tmp_path, "--cores", "1", "results/sub-e1/data/sub-e1_desc-preproc_eeg.parquet")
    assert proc.returncode != 0
    assert "raw/e1_raw.fif" in (tmp_path / "logs/sub-e1/preprocess_eeg.log").read_text()
    assert not (tmp_path / "results/sub-e1/data").exists() or not any((tmp_path / "results/sub-e1/data").iterdir())


@pytest.mark.parametrize("change, message", [
    (lambda t: pd.concat([t, t[t["subject"] == "f1"].assign(path="raw/f1_again_bold.nii.gz")]),
     "sub-f1 fmri: rows 2, 7"),
    (lambda t: t.assign(modality=t["modality"].replace("eeg", "meg")), "meg"),
    (lambda t: t.assign(dt=["0.01"] + [None] * (len(t) - 1)), "dt is only for timeseries"),
], ids=["same-modality-rows", "unknown-modality", "dt-on-eeg"])
def test_bad_subjects_table_is_a_clear_error(workdir, tmp_path, change, message):
    change(_copy_inputs(workdir, tmp_path)).to_csv(tmp_path / "subjects.tsv", sep="\t", index=False)
    proc = snakemake(tmp_path, "-n")
    assert proc.returncode != 0 and message in proc.stderr + proc.stdout
