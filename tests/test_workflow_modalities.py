"""A mixed dataset (1 EEG, 2 fMRI, 1 spike subject, 1 behaviour) through preprocessing, training and the group report.

One fMRI subject is a NIfTI with an atlas, the other an NBKO-like ROI table with a task input and a one-hot
label, so typed channels (input, label) travel through prepare and training.
"""

import json
import shutil

import pandas as pd
import pytest
import yaml

from dsrpipe.io import read_timeseries
from modality_files import write_behaviour_samples, write_eeg, write_fmri, write_roi_table, write_spikes
from workflow_helpers import REPO, TINY, planned_jobs, snakemake

pytestmark = pytest.mark.slow

# one subject per reader (two for fMRI: NIfTI + atlas, ROI table); every job is a process start, and CI time counts
MODALITY = {"e1": "eeg", "f1": "fmri", "f2": "fmri", "s1": "spikes", "b1": "behaviour"}


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
        elif sid == "f2":
            row["path"] = str(write_roi_table(raw / f"{sid}_bold_roi.tsv", seed=seed).relative_to(wd))
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
    for sid in runs["subject"]:
        modality = MODALITY[sid]
        pre = read_timeseries(workdir / f"results/sub-{sid}/data/sub-{sid}_desc-preproc_{modality}.parquet")
        test = read_timeseries(workdir / f"results/sub-{sid}/data/sub-{sid}_split-test.parquet")
        assert pre.modality == test.modality == modality and pre.meta["recording"]["session"] == "1"
        assert test.n_channels == 3 and test.dt == pre.dt
    assert read_timeseries(workdir / "results/sub-f1/data/sub-f1_desc-preproc_fmri.parquet").dt == 2.0
    assert read_timeseries(workdir / "results/sub-s1/data/sub-s1_split-train.parquet").channel_types == ["count"] * 3


def test_inputs_and_labels_travel_as_typed_channels(workdir):
    train = read_timeseries(workdir / "results/sub-f2/data/sub-f2_split-train.parquet", types=None)
    assert train.channel_types == ["continuous"] * 3 + ["input", "label", "label"]
    assert set(train.data[:, 3]) == {0, 1} and (train.data[:, 4:].sum(axis=1) == 1).all()  # not standardised
    assert train.meta["categorical"]["label"]["columns"] == ["label_1", "label_2"]
    run = json.loads((workdir / "results/sub-f2/model-shPLRNN_seed-0/config.json").read_text())
    assert run["data"]["channels"] == ["roi_01", "roi_02", "roi_03"] and run["data"]["inputs"] == ["input_cue"]
    beh = read_timeseries(workdir / "results/sub-b1/data/sub-b1_desc-preproc_behaviour.parquet", types=None)
    assert beh.channel_types == ["label", "label", "continuous", "continuous", "continuous", "input"]
    assert beh.dt == pytest.approx(0.05) and beh.meta["categorical"]["state"]["categories"] == ["rest", "run"]
    assert "data:image/png;base64," in (workdir / "results/group/report.html").read_text()


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
    (lambda t: pd.concat([t, t.iloc[[0]].assign(modality="fmri")]), "multimodal training"),
    (lambda t: t.assign(modality=t["modality"].replace("eeg", "meg")), "meg"),
    (lambda t: t.assign(dt=["0.01"] + [None] * (len(t) - 1)), "dt is only for timeseries"),
], ids=["multimodal-rows", "unknown-modality", "dt-on-eeg"])
def test_bad_subjects_table_is_a_clear_error(workdir, tmp_path, change, message):
    change(_copy_inputs(workdir, tmp_path)).to_csv(tmp_path / "subjects.tsv", sep="\t", index=False)
    proc = snakemake(tmp_path, "-n")
    assert proc.returncode != 0 and message in proc.stderr + proc.stdout
