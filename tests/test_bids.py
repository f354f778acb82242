"""BIDS mode: a tiny BIDS dataset written with mne-bids and nibabel, discovered, and run through the workflow."""

import pandas as pd
import pytest
import yaml

from dsrpipe import DsrpipeError
from dsrpipe.io import read_timeseries
from dsrpipe.preprocessing.bids import BIDSConfig, discover
from modality_files import FMRI_TR, write_fmri
from workflow_helpers import REPO, planned_jobs, snakemake


def _write_eeg(root, subject, session, task, seed):
    import mne
    import mne_bids
    import numpy as np

    rng = np.random.default_rng(seed)
    raw = mne.io.RawArray(1e-5 * rng.normal(size=(4, 256 * 12)), mne.create_info(["Fz", "Cz", "Pz", "Oz"], 256.0,
                                                                                 "eeg"), verbose="error")
    path = mne_bids.BIDSPath(subject=subject, session=session, task=task, datatype="eeg", root=root)
    mne_bids.write_raw_bids(raw, path, format="BrainVision", allow_preload=True, overwrite=True, verbose="error")
    return path.fpath


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """sub-01 and sub-02: resting EEG (BrainVision); sub-02 also a second task; sub-03: BOLD; an atlas."""
    root = tmp_path_factory.mktemp("bids") / "ds"
    for seed, subject in enumerate(("01", "02")):
        _write_eeg(root, subject, "a", "rest", seed)
    _write_eeg(root, "02", "a", "oddball", 5)
    func = root / "sub-03" / "ses-a" / "func"
    func.mkdir(parents=True)
    bold, atlas = write_fmri(func, stem="sub-03_ses-a_task-rest")
    atlas = atlas.rename(root.parent / "atlas.nii.gz")
    pd.DataFrame({"participant_id": ["sub-01", "sub-02", "sub-03"], "age": [31, 45, "n/a"],
                  "group": ["control", "patient", "control"]}).to_csv(root / "participants.tsv", sep="\t",
                                                                     index=False)
    return root, atlas


def test_discover_finds_each_recording_with_covariates(dataset):
    root, atlas = dataset
    table, covariates = discover(BIDSConfig(root=str(root), task="rest", atlas=str(atlas)))
    assert table[["subject", "session", "modality"]].values.tolist() == [["01", "a", "eeg"], ["02", "a", "eeg"],
                                                                         ["03", "a", "fmri"]]
    assert table["path"].str.endswith(("sub-01_ses-a_task-rest_eeg.vhdr", "sub-02_ses-a_task-rest_eeg.vhdr",
                                       "sub-03_ses-a_task-rest_bold.nii.gz")).all()
    assert table["atlas"].tolist() == [None, None, str(atlas)]
    assert covariates == {"01": {"age": 31, "group": "control"}, "02": {"age": 45, "group": "patient"},
                          "03": {"age": None, "group": "control"}}


def test_filters_and_errors(dataset):
    root, atlas = dataset
    table, _ = discover(BIDSConfig(root=str(root), datatypes=["eeg"], task="oddball"))
    assert table["subject"].tolist() == ["02"]
    table, _ = discover(BIDSConfig(root=str(root), datatypes=["eeg"], task="rest", subjects=["sub-01"]))
    assert table["subject"].tolist() == ["01"]
    with pytest.raises(DsrpipeError, match="several recordings.*sub-02 eeg.*oddball.*rest.*bids.task"):
        discover(BIDSConfig(root=str(root), datatypes=["eeg"]))
    with pytest.raises(DsrpipeError, match="need bids.atlas"):
        discover(BIDSConfig(root=str(root), task="rest"))
    with pytest.raises(DsrpipeError, match="BIDS root .* not found"):
        discover(BIDSConfig(root=str(root / "nowhere")))
    with pytest.raises(DsrpipeError, match="no recordings match"):
        discover(BIDSConfig(root=str(root), datatypes=["eeg"], task="memory"))
    with pytest.raises(DsrpipeError, match="no matching recordings for bids.subjects \\['07'\\]"):
        discover(BIDSConfig(root=str(root), datatypes=["eeg"], task="rest", subjects=["01", "07"]))
    with pytest.raises(DsrpipeError, match="bids.datatypes"):
        BIDSConfig(datatypes=["anat"])


@pytest.fixture
def workdir(dataset, tmp_path):
    root, atlas = dataset
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["bids"].update(root=str(root), task="rest", atlas=str(atlas))
    config["eeg"]["resample_hz"] = 64.0
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


@pytest.mark.slow
def test_bids_subjects_are_workflow_wildcards(workdir):
    dry = snakemake(workdir, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = planned_jobs(dry)
    assert {s for r, s in jobs if r == "preprocess_recording"} == {"01", "02", "03"}
    proc = snakemake(workdir, "--cores", "1", "results/sub-02/data/sub-02_desc-preproc_eeg.parquet",
                     "results/sub-03/data/sub-03_desc-preproc_fmri.parquet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    eeg = read_timeseries(workdir / "results/sub-02/data/sub-02_desc-preproc_eeg.parquet")
    assert (eeg.dt, eeg.n_channels) == (1 / 64, 4)
    assert eeg.meta["recording"]["participant"] == {"age": 45, "group": "patient"}
    assert eeg.meta["recording"]["session"] == "a"
    bold = read_timeseries(workdir / "results/sub-03/data/sub-03_desc-preproc_fmri.parquet")
    assert bold.dt == FMRI_TR and bold.channels == ["roi_1", "roi_2", "roi_3"]


def test_subjects_table_and_bids_root_together_is_an_error(workdir):
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["subjects"] = "subjects.tsv"
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "-n")
    assert proc.returncode != 0 and "set either subjects" in proc.stdout + proc.stderr
