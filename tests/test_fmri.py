"""ROI extraction from NIfTI files written with nibabel, with planted signals, drift and confounds."""

import logging

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dsrpipe import DsrpipeError
from dsrpipe.preprocessing.fmri import FMRIConfig, clean, extract_roi_timeseries, read_roi_table

SHAPE, T, TR = (8, 8, 6), 120, 2.0
FREQS = (0.03, 0.05, 0.07)  # Hz, well above the 0.01 Hz high-pass
AFFINE = np.diag([3.0, 3.0, 3.5, 1.0])


def _labels():
    atlas = np.zeros(SHAPE, dtype=np.int16)
    atlas[0:3, :, 0:3] = 1
    atlas[4:8, 0:4, :] = 2
    atlas[4:8, 5:8, 2:6] = 7  # labels need not be consecutive
    return atlas


def _planted():
    t = np.arange(T) * TR
    return np.column_stack([np.sin(2 * np.pi * f * t + k) for k, f in enumerate(FREQS)])


def _save(data, path, *, tr=TR, time_unit="sec", affine=AFFINE):
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm", time_unit)
    if np.ndim(data) == 4:
        img.header.set_zooms((3.0, 3.0, 3.5, tr))
    nib.save(img, str(path))
    return path


def _bold(extra=None):
    """Voxels = 100 + drift + planted ROI signal (+ extra per ROI) + noise."""
    rng = np.random.default_rng(0)
    atlas, signals = _labels(), _planted()
    data = 100 + 0.02 * np.arange(T) + 0.3 * rng.normal(size=SHAPE + (T,))
    for j, label in enumerate((1, 2, 7)):
        data[atlas == label] += signals[:, j] + (0 if extra is None else extra[:, j])
    return data


@pytest.fixture
def files(tmp_path):
    atlas = _save(_labels(), tmp_path / "atlas.nii.gz")
    masks = [_save(_labels() == label, tmp_path / f"{name}.nii.gz")
             for label, name in ((1, "left"), (2, "right_front"), (7, "right_back"))]
    return {"bold": _save(_bold(), tmp_path / "sub-01_bold.nii.gz"), "atlas": atlas, "masks": masks}


def _corr(a, b):
    return np.corrcoef(a, b)[0, 1]


def test_atlas_and_masks_recover_planted_signals(files):
    cfg = FMRIConfig()
    by_atlas = extract_roi_timeseries(files["bold"], atlas_path=files["atlas"], cfg=cfg, subject="01")
    by_masks = extract_roi_timeseries(files["bold"], mask_paths=files["masks"], cfg=cfg, subject="01")
    assert by_atlas.channels == ["roi_1", "roi_2", "roi_7"]
    assert by_masks.channels == ["left", "right_front", "right_back"]
    np.testing.assert_allclose(by_atlas.data, by_masks.data)
    planted = clean(_planted(), TR, cfg)  # the same drift removal applied to the truth
    for ts in (by_atlas, by_masks):
        assert ts.data.shape == (T, 3) and ts.dt == TR and ts.modality == "fmri"
        assert all(_corr(ts.data[:, j], planted[:, j]) > 0.99 for j in range(3))
    meta = by_atlas.meta["fmri"]
    assert meta["tr"] == TR and meta["tr_source"] == "header"
    assert meta["n_voxels"] == {"roi_1": 3 * 8 * 3, "roi_2": 4 * 4 * 6, "roi_7": 4 * 3 * 4}
    assert meta["atlas"] == str(files["atlas"]) and meta["config"]["detrend"] == "linear"
    assert by_masks.meta["fmri"]["masks"] == [str(m) for m in files["masks"]]
    assert by_atlas.meta["provenance"]["source"] == str(files["bold"])


def test_tr_in_milliseconds_and_config_override(tmp_path, files):
    ms = _save(_bold(), tmp_path / "ms.nii", tr=2000.0, time_unit="msec")
    ts = extract_roi_timeseries(ms, atlas_path=files["atlas"], cfg=FMRIConfig(), subject="01")
    assert ts.dt == pytest.approx(2.0)
    ts = extract_roi_timeseries(ms, atlas_path=files["atlas"], cfg=FMRIConfig(tr=1.5), subject="01")
    assert ts.dt == 1.5 and ts.meta["fmri"]["tr_source"] == "config"


def test_confound_regression_removes_planted_confound(tmp_path, files):
    rng = np.random.default_rng(1)
    motion = np.cumsum(rng.normal(size=T))  # a random walk, like head motion
    bold = _save(_bold(extra=np.outer(motion, [2.0, -1.0, 0.5])), tmp_path / "moving.nii.gz")
    fd = np.r_[np.nan, np.abs(np.diff(motion))]  # fMRIPrep leaves the first row NaN
    conf = tmp_path / "confounds.tsv"
    pd.DataFrame({"trans_x": motion, "framewise_displacement": fd, "note": ["x"] * T}).to_csv(conf, sep="\t", index=False)
    raw = extract_roi_timeseries(bold, atlas_path=files["atlas"], cfg=FMRIConfig(), subject="01")
    slow_removed = clean(motion[:, None], TR, FMRIConfig())[:, 0]  # the part of motion the drift model leaves
    assert abs(_corr(raw.data[:, 0], slow_removed)) > 0.5
    for columns in (None, ["trans_x"]):
        cfg = FMRIConfig(confounds_columns=columns)
        ts = extract_roi_timeseries(bold, atlas_path=files["atlas"], cfg=cfg, subject="01", confounds_path=conf)
        assert all(abs(_corr(ts.data[:, j], motion)) < 1e-6 for j in range(3))
        assert all(_corr(ts.data[:, j], _planted()[:, j]) > 0.95 for j in range(3))
    assert ts.meta["fmri"]["confounds_columns"] == ["trans_x"]
    assert FMRIConfig(confounds_columns=None).confounds_columns is None


def test_high_pass_removes_slow_drift():
    t = np.arange(T) * TR
    signal = np.sin(2 * np.pi * 0.05 * t)
    drift = 5 * np.sin(2 * np.pi * 0.001 * t + 0.4)  # a 1000 s period, far longer than the 240 s run
    data = (signal + drift + 50)[:, None]
    kept = clean(data, TR, FMRIConfig(detrend=None, high_pass_hz=None))
    filtered = clean(data, TR, FMRIConfig(detrend=None, high_pass_hz=0.01))
    left = clean(drift[:, None], TR, FMRIConfig(detrend="constant", high_pass_hz=0.01))
    assert left.std() < 0.1 * drift.std()  # over 90 % of a drift's std is gone
    assert clean(drift[:, None], TR, FMRIConfig(detrend="constant", high_pass_hz=None)).std() > 0.9 * drift.std()
    assert _corr(kept[:, 0], signal) < 0.7
    assert _corr(filtered[:, 0], signal) > 0.99
    assert filtered.mean() == pytest.approx(data.mean())  # detrend=None keeps the level
    assert abs(clean(data, TR, FMRIConfig(detrend="constant", high_pass_hz=None)).mean()) < 1e-9


def test_bad_images(tmp_path, files):
    cfg = FMRIConfig()
    atlas = files["atlas"]
    three_d = _save(_bold()[..., 0], tmp_path / "vol3d.nii.gz")
    small_atlas = _save(_labels()[:, :, :5], tmp_path / "small_atlas.nii.gz")
    moved = AFFINE.copy()
    moved[0, 3] = 2.0  # a 2 mm shift
    shifted = _save(_labels(), tmp_path / "shifted_atlas.nii.gz", affine=moved)
    cut = tmp_path / "cut_bold.nii.gz"
    cut.write_bytes(files["bold"].read_bytes()[:20000])
    no_tr = _save(_bold(), tmp_path / "no_tr.nii.gz", tr=0.0)
    nan_data = _bold()
    nan_data[1, 1, 1, 7] = np.nan
    nan_bold = _save(nan_data, tmp_path / "nan_bold.nii.gz")
    empty_mask = _save(np.zeros(SHAPE), tmp_path / "empty.nii.gz")
    cases = [
        (dict(bold_path=three_d, atlas_path=atlas), "vol3d.nii.gz: expected a 4-D"),
        (dict(bold_path=files["bold"], atlas_path=small_atlas), "small_atlas.nii.gz: shape"),
        (dict(bold_path=files["bold"], atlas_path=shifted), "shifted_atlas.nii.gz: affine"),
        (dict(bold_path=cut, atlas_path=atlas), "cut_bold.nii.gz: corrupt, truncated"),
        (dict(bold_path=no_tr, atlas_path=atlas), "no_tr.nii.gz: the header has no TR"),
        (dict(bold_path=nan_bold, atlas_path=atlas), "nan_bold.nii.gz: NaN.*roi_1"),
        (dict(bold_path=files["bold"], mask_paths=[empty_mask]), "fewer than 1 voxels: empty"),
        (dict(bold_path=files["bold"], atlas_path=atlas, mask_paths=files["masks"]), "not both"),
        (dict(bold_path=files["bold"]), "not neither"),
        (dict(bold_path=tmp_path / "absent.nii.gz", atlas_path=atlas), "absent.nii.gz: BOLD image file not found"),
        (dict(bold_path=files["bold"], mask_paths=[atlas]), "atlas.nii.gz: mask is not binary"),
    ]
    for kwargs, message in cases:
        with pytest.raises(DsrpipeError, match=message):
            extract_roi_timeseries(**kwargs, cfg=cfg, subject="01")
    ts = extract_roi_timeseries(no_tr, atlas_path=atlas, cfg=FMRIConfig(tr=2.0), subject="01")
    assert ts.dt == 2.0


def test_confounds_problems(tmp_path, files):
    short = tmp_path / "short_confounds.tsv"
    pd.DataFrame({"trans_x": np.zeros(T - 1)}).to_csv(short, sep="\t", index=False)
    late_nan = tmp_path / "late_nan.tsv"
    pd.DataFrame({"trans_x": np.r_[np.zeros(5), np.nan, np.zeros(T - 6)]}).to_csv(late_nan, sep="\t", index=False)
    for conf, cfg, message in [
        (short, FMRIConfig(), "short_confounds.tsv: 119 rows but the BOLD series has 120"),
        (late_nan, FMRIConfig(), "late_nan.tsv: NaN"),
        (short, FMRIConfig(confounds_columns=["rot_z"]), r"short_confounds.tsv: confound column\(s\) \['rot_z'\]"),
    ]:
        with pytest.raises(DsrpipeError, match=message):
            extract_roi_timeseries(files["bold"], atlas_path=files["atlas"], cfg=cfg, subject="01",
                                   confounds_path=conf)


def _roi_table(path, sep="\t"):
    """Three blocks of 40 volumes laid out like the nbko_fmri tables."""
    rng = np.random.default_rng(2)
    n_blocks, n_vol = 3, 40
    block = np.repeat(np.arange(1, n_blocks + 1), n_vol)
    df = pd.DataFrame({"block": block, "volume": np.tile(np.arange(1, n_vol + 1), n_blocks)})
    for j in range(3):  # per-block offsets and trends that the cleaning must remove
        df[f"roi_{j + 1:02d}"] = rng.normal(size=len(df)) + 5 * block + 0.1 * df["volume"]
    df["input_triangle"] = (df["volume"] % 10 < 3).astype(int)
    df["input_square"] = (df["volume"] % 10 >= 7).astype(int)
    for k in range(1, 3):
        df[f"label_{k}"] = (df["volume"] % 2 == k - 1).astype(int)
    if path.suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, sep=sep, index=False)
    return df


@pytest.mark.parametrize("name", ["sub-01_bold_roi.tsv", "sub-01_bold_roi.csv", "sub-01_bold_roi.parquet"])
def test_roi_table_separates_inputs_labels_and_bookkeeping(tmp_path, name, caplog):
    path = tmp_path / name
    df = _roi_table(path, sep="," if name.endswith(".csv") else "\t")
    with caplog.at_level(logging.INFO, logger="dsrpipe.preprocessing.fmri"):
        bold, inputs, labels = read_roi_table(path, cfg=FMRIConfig(tr=1.2), subject="01")
    assert bold.channels == ["roi_01", "roi_02", "roi_03"]
    assert inputs.channels == ["input_triangle", "input_square"]
    assert labels.channels == ["label_1", "label_2"]
    assert bold.n_samples == inputs.n_samples == labels.n_samples == 120
    assert bold.dt == inputs.dt == labels.dt == 1.2
    np.testing.assert_array_equal(inputs.data, df[inputs.channels].to_numpy())
    np.testing.assert_array_equal(labels.data, df[labels.channels].to_numpy())
    for start in (0, 40, 80):  # cleaned within each block: no per-block level or trend left
        block = bold.data[start:start + 40]
        assert np.abs(block.mean(axis=0)).max() < 1e-9
        assert np.abs(np.polyfit(np.arange(40), block, 1)[0]).max() < 1e-9
    meta = bold.meta["fmri"]
    assert meta["block_starts"] == [0, 40, 80] and meta["volume"][:3] == [1, 2, 3]
    assert meta["block"] == df["block"].tolist() and meta["tr"] == 1.2
    assert (bold.modality, inputs.modality, labels.modality) == ("fmri", "inputs", "labels")
    assert "3 block(s)" in caplog.text


def test_roi_table_without_inputs_and_tr_required(tmp_path):
    path = tmp_path / "plain.tsv"
    pd.DataFrame({"a": np.arange(50.0) % 7, "b": np.arange(50.0) % 5}).to_csv(path, sep="\t", index=False)
    bold, inputs, labels = read_roi_table(path, cfg=FMRIConfig(tr=2.0), subject="01")
    assert bold.channels == ["a", "b"] and inputs is None and labels is None
    with pytest.raises(DsrpipeError, match="plain.tsv: an ROI table carries no TR"):
        read_roi_table(path, cfg=FMRIConfig(), subject="01")
    nan = tmp_path / "nan_table.tsv"
    pd.DataFrame({"a": [1.0, np.nan] * 20}).to_csv(nan, sep="\t", index=False)
    with pytest.raises(DsrpipeError, match="nan_table.tsv: NaN"):
        read_roi_table(nan, cfg=FMRIConfig(tr=2.0), subject="01")


def test_config_checks():
    for kwargs in ({"tr": 0}, {"detrend": "quadratic"}, {"high_pass_hz": -1}, {"min_voxels": 0},
                   {"input_prefix": "x_", "label_prefix": "x_"}):
        with pytest.raises(DsrpipeError):
            FMRIConfig(**kwargs)
