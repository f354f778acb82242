"""The bad-input corpus: each case writes one broken recording or config into a folder.

Every case is built with the real libraries (MNE, nibabel, Neo, pandas) in a
temporary folder; nothing is committed. A case returns the ``dsrpipe`` command
line that must fail, the outputs that must not appear and the fragments its
error message must contain: the file or config key at fault, and a word of the
fix where the message gives one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from dsrpipe.systems import simulate_lorenz63
from modality_files import write_eeg, write_fmri, write_spikes


@dataclass
class Built:
    argv: list[str]
    outputs: list[Path]
    names: list[str]  # each must appear in the error message (file name or config key)
    fix: list[str] = field(default_factory=list)  # each must appear too: the fix the message suggests


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    build: Callable[[Path], Built]


def lorenz_table(n: int = 600, seed: int = 1) -> pd.DataFrame:
    return pd.DataFrame(simulate_lorenz63(n, rho=28.0, seed=seed), columns=["x", "y", "z"])


# --- command lines ------------------------------------------------------------------------------

def preprocess(tmp: Path, modality: str, src: Path, *extra: str) -> Built:
    out = tmp / "out" / f"sub-01_desc-preproc_{modality}.parquet"
    return Built(["preprocess", "--modality", modality, str(src), "--out", str(out), "--subject", "01", *extra],
                 [out], [src.name])


def prepare(tmp: Path, src: Path, *extra: str) -> Built:
    train, test = tmp / "out" / "sub-01_split-train.parquet", tmp / "out" / "sub-01_split-test.parquet"
    return Built(["prepare", str(src), "--subject", "01", "--train-out", str(train), "--test-out", str(test),
                  *extra], [train, test], [src.name])


def prepared_series(tmp: Path, n: int = 600) -> Path:
    """A good prepared training series (via the real prepare stage)."""
    from dsrpipe.config import PrepareConfig
    from dsrpipe.preprocessing import prepare_file

    src = tmp / "good.csv"
    lorenz_table(n).to_csv(src, index=False)
    prepare_file(src, tmp / "good_train.parquet", tmp / "good_test.parquet", subject="01",
                 cfg=PrepareConfig(min_samples=10))
    return tmp / "good_train.parquet"


TINY_TRAIN = ["epochs=1", "batches_per_epoch=1", "hidden_dim=4", "seq_len=10", "batch_size=2"]


def train(tmp: Path, *sets: str, data: Path | None = None, config: Path | None = None) -> Built:
    data = data or prepared_series(tmp)
    run = tmp / "out" / "run"
    argv = ["train", str(data), "--out", str(run)]
    if config is not None:
        argv += ["--config", str(config)]
    argv += ["--set", *TINY_TRAIN, *sets]
    return Built(argv, [run / name for name in ("model.pt", "config.json", "training_log.parquet")], [])


# --- EEG ----------------------------------------------------------------------------------------

def _edf(tmp: Path) -> Path:
    import mne

    fif = write_eeg(tmp / "good_raw.fif")
    raw = mne.io.read_raw_fif(fif, preload=True, verbose="error")
    path = tmp / "sub-01_eeg.edf"
    mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose="error")
    return path


def eeg_truncated_edf(tmp):
    path = _edf(tmp)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    b = preprocess(tmp, "eeg", path)
    b.fix = ["truncated"]
    return b


def eeg_edf_wrong_header(tmp):
    path = _edf(tmp)
    data = bytearray(path.read_bytes())
    data[236:244] = b"abcdefgh"  # the number of data records: not a number
    data[252:256] = b"-3  "  # the number of signals: negative
    path.write_bytes(bytes(data))
    return preprocess(tmp, "eeg", path)


def eeg_edf_no_record_duration(tmp):
    """The sampling rate of an EDF is samples per record / record duration: a blank duration."""
    path = _edf(tmp)
    data = bytearray(path.read_bytes())
    data[244:252] = b" " * 8
    path.write_bytes(bytes(data))
    return preprocess(tmp, "eeg", path)


def eeg_fif_not_fif(tmp):
    path = tmp / "sub-01_raw.fif"
    path.write_text("this is a text file, not a FIF recording\n" * 20)
    return preprocess(tmp, "eeg", path)


def eeg_nan_samples(tmp):
    import mne

    path = write_eeg(tmp / "sub-01_raw.fif")
    raw = mne.io.read_raw_fif(path, preload=True, verbose="error")
    raw._data[2, 1000:1010] = np.nan
    raw.save(path, overwrite=True, verbose="error")
    b = preprocess(tmp, "eeg", path)
    b.names.append("NaN")
    return b


def eeg_unsupported_suffix(tmp):
    path = write_eeg(tmp / "sub-01_raw.fif")
    renamed = path.rename(tmp / "sub-01_eeg.dat")
    b = preprocess(tmp, "eeg", renamed)
    b.fix = [".edf"]
    return b


def eeg_wrong_option_type(tmp):
    path = write_eeg(tmp / "sub-01_raw.fif")
    b = preprocess(tmp, "eeg", path, "--set", "picks=7")
    b.names = ["eeg.picks"]
    return b


# --- fMRI ---------------------------------------------------------------------------------------

def fmri_3d(tmp):
    import nibabel as nib

    bold, atlas = write_fmri(tmp)
    img = nib.load(str(bold))
    three_d = tmp / "sub-01_3d_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine), str(three_d))
    b = preprocess(tmp, "fmri", three_d, "--atlas", str(atlas))
    b.fix = ["4-D"]
    return b


def fmri_nan_voxels(tmp):
    import nibabel as nib

    bold, atlas = write_fmri(tmp)
    img = nib.load(str(bold))
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0, 10:20] = np.nan  # a voxel of ROI 1
    out = nib.Nifti1Image(data, img.affine, img.header)
    nib.save(out, str(bold))
    b = preprocess(tmp, "fmri", bold, "--atlas", str(atlas))
    b.names.append("roi_1")
    return b


def fmri_atlas_shape_mismatch(tmp):
    import nibabel as nib

    bold, atlas = write_fmri(tmp)
    img = nib.load(str(atlas))
    small = tmp / "small_atlas.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:4], img.affine), str(small))
    b = preprocess(tmp, "fmri", bold, "--atlas", str(small))
    b.names = [small.name, bold.name]
    return b


def fmri_no_tr(tmp):
    import nibabel as nib

    bold, atlas = write_fmri(tmp)
    img = nib.load(str(bold))
    img.header.set_zooms((3.0, 3.0, 3.0, 0.0))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header), str(bold))
    b = preprocess(tmp, "fmri", bold, "--atlas", str(atlas))
    b.fix = ["fmri.tr"]
    return b


def fmri_roi_table_no_tr(tmp):
    path = tmp / "sub-01_rois.tsv"
    lorenz_table().rename(columns=lambda c: f"roi_{c}").to_csv(path, sep="\t", index=False)
    b = preprocess(tmp, "fmri", path)
    b.fix = ["fmri.tr"]
    return b


def fmri_not_nifti(tmp):
    _, atlas = write_fmri(tmp)
    path = tmp / "sub-01_broken_bold.nii.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    return preprocess(tmp, "fmri", path, "--atlas", str(atlas))


# --- spikes -------------------------------------------------------------------------------------

def _write_block(path: Path, spiketrains) -> Path:
    import neo
    from neo.io import NeoMatlabIO

    seg = neo.Segment()
    seg.spiketrains.extend(spiketrains)
    block = neo.Block(name="session")
    block.segments.append(seg)
    NeoMatlabIO(str(path)).write_block(block)
    return path


def spikes_no_trains(tmp):
    import neo
    import quantities as pq

    path = tmp / "sub-01_units.mat"
    _write_block(path, [])
    # a segment with only an analog signal: still no spike trains
    b = preprocess(tmp, "spikes", path)
    b.names.append("spike train")
    return b


def spikes_outside_t_stop(tmp):
    import neo
    import quantities as pq

    path = tmp / "sub-01_units.mat"
    st = neo.SpikeTrain(np.array([0.5, 1.0, 9.5]) * pq.s, t_start=0 * pq.s, t_stop=10 * pq.s, name="a")
    st.t_stop = 5 * pq.s  # a file whose spike times run past its t_stop
    _write_block(path, [st])
    b = preprocess(tmp, "spikes", path)
    b.names.append("t_stop")
    return b


def spikes_not_neo(tmp):
    path = tmp / "sub-01_units.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(50))
    return preprocess(tmp, "spikes", path)


def spikes_bin_wider_than_recording(tmp):
    path = write_spikes(tmp / "sub-01_units.mat")
    b = preprocess(tmp, "spikes", path, "--set", "bin_width=100.0")
    b.names.append("bin_width")
    return b


# --- tables (timeseries / prepare) --------------------------------------------------------------

def tsv_text_column(tmp):
    path = tmp / "sub-01.tsv"
    df = lorenz_table()
    df["condition"] = ["rest", "task"] * (len(df) // 2)
    df.to_csv(path, sep="\t", index=False)
    b = preprocess(tmp, "timeseries", path, "--dt", "0.01")
    b.names.append("condition")
    return b


def constant_channel(tmp):
    path = tmp / "sub-01.csv"
    df = lorenz_table()
    df["flat"] = 3.0
    df.to_csv(path, index=False)
    b = prepare(tmp, path)
    b.names.append("flat")
    return b


def nan_samples(tmp):
    path = tmp / "sub-01.csv"
    df = lorenz_table()
    df.loc[100:104, "y"] = np.nan
    df.to_csv(path, index=False)
    b = prepare(tmp, path)
    b.names += ["NaN", "y"]
    return b


def inf_samples(tmp):
    path = tmp / "sub-01.npy"
    data = np.array(lorenz_table().to_numpy())
    data[50, 2] = np.inf
    np.save(path, data)
    b = prepare(tmp, path)
    b.names.append("inf")
    return b


def too_few_samples(tmp):
    path = tmp / "sub-01.csv"
    lorenz_table(50).to_csv(path, index=False)
    b = prepare(tmp, path)
    b.names.append("50")
    return b


def empty_table(tmp):
    path = tmp / "sub-01.csv"
    path.write_text("x,y,z\n")
    return prepare(tmp, path)


def fewer_samples_than_seq_len(tmp):
    b = train(tmp, "seq_len=5000")
    b.names = ["good_train.parquet", "seq_len"]
    return b


# --- config -------------------------------------------------------------------------------------

def unknown_config_key(tmp):
    b = train(tmp, "epochz=3")
    b.names = ["epochz", "train"]
    b.fix = ["valid keys"]
    return b


def unknown_key_in_config_file(tmp):
    cfg = tmp / "config.yaml"
    cfg.write_text("train:\n  epochs: 2\n  hiden_dim: 8\n")
    b = train(tmp, config=cfg)
    b.names = ["hiden_dim", "train"]
    b.fix = ["hidden_dim"]  # the valid keys are listed
    return b


def wrong_type(tmp):
    b = train(tmp, "epochs=many")
    b.names = ["train.epochs"]
    return b


def negative_epochs(tmp):
    b = train(tmp, "epochs=-5")
    b.names = ["train.epochs"]
    b.fix = [">= 1"]
    return b


def alpha_outside_unit_interval(tmp):
    b = train(tmp, "alpha=1.5")
    b.names = ["train.alpha"]
    b.fix = ["[0, 1]"]
    return b


def latent_dim_too_small(tmp):
    b = train(tmp, "latent_dim=2")
    b.names = ["latent_dim"]
    b.fix = ["readout"]
    return b


def config_not_yaml(tmp):
    cfg = tmp / "config.yaml"
    cfg.write_text("train: {epochs: 3\n  hidden_dim: [\n")
    b = train(tmp, config=cfg)
    b.names = ["config.yaml"]
    return b


def prepare_bad_test_fraction(tmp):
    path = tmp / "sub-01.csv"
    lorenz_table().to_csv(path, index=False)
    b = prepare(tmp, path, "--set", "test_fraction=1.5")
    b.names = ["prepare.test_fraction"]
    return b


def train_data_missing(tmp):
    b = train(tmp, data=tmp / "nowhere.parquet")
    b.names = ["nowhere.parquet"]
    return b


CASES = [
    Case("eeg-truncated-edf", "EDF cut in half", eeg_truncated_edf),
    Case("eeg-edf-wrong-header", "EDF header with a non-numeric record count", eeg_edf_wrong_header),
    Case("eeg-edf-no-record-duration", "EDF without record duration (no sampling rate)",
         eeg_edf_no_record_duration),
    Case("eeg-fif-not-fif", "text file named *_raw.fif", eeg_fif_not_fif),
    Case("eeg-nan-samples", "FIF with NaN samples in one channel", eeg_nan_samples),
    Case("eeg-unsupported-suffix", "EEG file with an unknown suffix", eeg_unsupported_suffix),
    Case("eeg-wrong-option-type", "eeg.picks given a number", eeg_wrong_option_type),
    Case("fmri-3d", "3-D NIfTI instead of 4-D", fmri_3d),
    Case("fmri-nan-voxels", "NaN voxels inside an ROI", fmri_nan_voxels),
    Case("fmri-atlas-shape", "atlas on another grid than the BOLD image", fmri_atlas_shape_mismatch),
    Case("fmri-no-tr", "NIfTI header without TR", fmri_no_tr),
    Case("fmri-roi-table-no-tr", "ROI table without fmri.tr", fmri_roi_table_no_tr),
    Case("fmri-not-nifti", "corrupt .nii.gz", fmri_not_nifti),
    Case("spikes-no-trains", "Neo file with no spike trains", spikes_no_trains),
    Case("spikes-outside-t-stop", "spike times past t_stop", spikes_outside_t_stop),
    Case("spikes-not-neo", "a .mat that Neo cannot read", spikes_not_neo),
    Case("spikes-bin-too-wide", "bin_width longer than the recording", spikes_bin_wider_than_recording),
    Case("tsv-text-column", "TSV with a text column", tsv_text_column),
    Case("constant-channel", "all-constant channel", constant_channel),
    Case("nan-samples", "NaN samples", nan_samples),
    Case("inf-samples", "inf sample in a .npy", inf_samples),
    Case("too-few-samples", "50 samples, prepare.min_samples 200", too_few_samples),
    Case("empty-table", "CSV with a header only", empty_table),
    Case("shorter-than-seq-len", "fewer samples than train.seq_len", fewer_samples_than_seq_len),
    Case("unknown-config-key", "--set epochz=3", unknown_config_key),
    Case("unknown-key-in-config-file", "typo in a config file", unknown_key_in_config_file),
    Case("wrong-type", "--set epochs=many", wrong_type),
    Case("negative-epochs", "--set epochs=-5", negative_epochs),
    Case("alpha-outside", "--set alpha=1.5", alpha_outside_unit_interval),
    Case("latent-dim-too-small", "latent_dim 2 for 3 channels, identity readout", latent_dim_too_small),
    Case("config-not-yaml", "config file that is not YAML", config_not_yaml),
    Case("prepare-test-fraction", "--set test_fraction=1.5", prepare_bad_test_fraction),
    Case("train-data-missing", "training data file missing", train_data_missing),
]
