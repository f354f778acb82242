"""EEG preprocessing on real files written by MNE and its export libraries (no network)."""

import hashlib
import json
import logging

import mne
import numpy as np
import pytest
from scipy.signal import welch

from dsrpipe import DsrpipeError
from dsrpipe.config import from_mapping, to_dict
from dsrpipe.io import read_timeseries, write_timeseries
from dsrpipe.preprocessing.eeg import EEGConfig, pca_inverse, preprocess_eeg

for _writer in ("edfio", "pybv", "eeglabio"):  # what mne.export needs for EDF/BDF, BrainVision, EEGLAB
    pytest.importorskip(_writer)

CH = ["Fp1", "Fp2", "F3", "F4", "Fz", "Cz", "Pz", "Oz"]
SFREQ, DURATION = 256.0, 20.0
FORMATS = {"fif": "_raw.fif", "edf": ".edf", "bdf": ".bdf", "brainvision": ".vhdr", "eeglab": ".set"}
MONTAGE = "colin27_1020" if "colin27_1020" in mne.channels.get_builtin_montages() else "standard_1020"


def signal(seed: int = 0) -> np.ndarray:
    """(8, T) volts: 10 and 6 Hz rhythms, 50 Hz line noise (amplitudes and phases differ
    across channels, so an average reference keeps them) and white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(DURATION * SFREQ)) / SFREQ
    amp = rng.uniform(0.5, 1.5, size=(3, len(CH), 1))
    phase = rng.uniform(0, 2 * np.pi, size=(3, len(CH), 1))
    x = (amp[0] * np.sin(2 * np.pi * 10 * t + phase[0]) + 0.5 * amp[1] * np.sin(2 * np.pi * 6 * t + phase[1])
         + 2.0 * amp[2] * np.sin(2 * np.pi * 50 * t + phase[2]) + 0.2 * rng.normal(size=(len(CH), t.size)))
    return 1e-5 * x


def make_raw(data=None, annotations=None) -> mne.io.RawArray:
    raw = mne.io.RawArray(signal() if data is None else data, mne.create_info(CH, SFREQ, "eeg"),
                          verbose="error")
    raw.set_montage(MONTAGE, verbose="error")
    if annotations is not None:
        raw.set_annotations(annotations)
    return raw


def write(raw: mne.io.BaseRaw, directory, fmt: str, stem: str = "sub-01"):
    path = directory / f"{stem}{FORMATS[fmt]}"
    if fmt == "fif":
        raw.save(path, verbose="error")
    else:
        mne.export.export_raw(path, raw, fmt=fmt, verbose="error")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("eeg")
    raw = make_raw()
    return {fmt: write(raw, directory, fmt) for fmt in FORMATS}


def power_at(x: np.ndarray, freq: float, fs: float) -> float:
    f, p = welch(x, fs=fs, nperseg=int(2 * fs))
    return float(p[np.argmin(np.abs(f - freq))])


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_every_format(files, fmt):
    ts = preprocess_eeg(files[fmt], EEGConfig(), subject="01")
    assert ts.channels == CH and ts.modality == "eeg" and ts.subject == "01"
    assert ts.dt == pytest.approx(1 / 128)
    assert abs(ts.n_samples - DURATION * 128) <= 1
    assert ts.data.dtype == np.float64 and np.isfinite(ts.data).all()
    assert ts.meta["eeg"]["sfreq_in"] == SFREQ and ts.meta["eeg"]["sfreq_out"] == 128
    assert ts.meta["eeg"]["channel_types"] == {ch: "eeg" for ch in CH}
    prov = ts.meta["provenance"]
    assert prov["source"] == str(files[fmt])
    assert prov["sha256"] == hashlib.sha256(files[fmt].read_bytes()).hexdigest()
    if fmt == "brainvision":  # the samples live in the .eeg file, which is hashed too
        assert list(prov["data_files"]) == [str(files[fmt].with_suffix(".eeg"))]
    # every format carries the same recording (EDF quantises to 16 bits)
    ref = preprocess_eeg(files["fif"], EEGConfig(), subject="01").data
    np.testing.assert_allclose(ts.data, ref, rtol=0, atol=1e-3 * np.abs(ref).max())


def test_metadata_is_json_and_survives_parquet(files, tmp_path):
    ts = preprocess_eeg(files["fif"], EEGConfig(pca_components=3), subject="01")
    json.dumps(ts.meta)
    write_timeseries(ts, tmp_path / "x.parquet")
    back = read_timeseries(tmp_path / "x.parquet")
    np.testing.assert_array_equal(back.data, ts.data)
    np.testing.assert_allclose(pca_inverse(back), pca_inverse(ts))
    assert back.meta["eeg"]["notch"] == [50.0]


def test_keeps_the_rate_without_resampling(files):
    ts = preprocess_eeg(files["fif"], EEGConfig(resample_hz=None), subject="01")
    assert ts.n_samples == DURATION * SFREQ and ts.dt == 1 / SFREQ


# ---------------------------------------------------------------- filtering and reference


@pytest.mark.parametrize("kwargs", [{}, {"notch": []}, {"l_freq": None, "h_freq": None}],
                         ids=["notch+bandpass", "bandpass", "notch"])
def test_filter_removes_line_noise_keeps_alpha(files, kwargs):
    cfg = EEGConfig(resample_hz=None, reference=None, **kwargs)
    out = preprocess_eeg(files["fif"], cfg, subject="01").data
    raw = signal()
    for j in range(len(CH)):
        drop_50 = 10 * np.log10(power_at(raw[j], 50, SFREQ) / power_at(out[:, j], 50, SFREQ))
        change_10 = 10 * np.log10(power_at(out[:, j], 10, SFREQ) / power_at(raw[j], 10, SFREQ))
        assert drop_50 >= 20, (CH[j], drop_50)
        assert abs(change_10) <= 3, (CH[j], change_10)


def test_notch_above_nyquist_is_skipped_and_lowpass_above_nyquist_fails(files):
    ts = preprocess_eeg(files["fif"], EEGConfig(notch=[50.0, 150.0], resample_hz=None), subject="01")
    assert ts.n_samples == DURATION * SFREQ
    with pytest.raises(DsrpipeError, match=files["fif"].name):
        preprocess_eeg(files["fif"], EEGConfig(h_freq=200.0), subject="01")


def test_average_and_channel_reference(files):
    avg = preprocess_eeg(files["fif"], EEGConfig(), subject="01").data
    np.testing.assert_allclose(avg.sum(axis=1), 0, atol=1e-9 * np.abs(avg).max())
    none = preprocess_eeg(files["fif"], EEGConfig(reference=None), subject="01").data
    cz = preprocess_eeg(files["fif"], EEGConfig(reference=["Cz"]), subject="01")
    assert cz.channels == [c for c in CH if c != "Cz"]
    expected = np.delete(none, CH.index("Cz"), axis=1) - none[:, [CH.index("Cz")]]
    np.testing.assert_allclose(cz.data, expected, rtol=0, atol=1e-8 * np.abs(expected).max())


def test_smoothing_damps_fast_components(files):
    plain = preprocess_eeg(files["fif"], EEGConfig(), subject="01").data
    smooth = preprocess_eeg(files["fif"], EEGConfig(smooth_sigma=1.5), subject="01").data
    assert smooth.shape == plain.shape
    assert power_at(smooth[:, 0], 30, 128) < 0.1 * power_at(plain[:, 0], 30, 128)
    assert power_at(smooth[:, 0], 6, 128) > 0.5 * power_at(plain[:, 0], 6, 128)


# ---------------------------------------------------------------- bad channels


def test_bad_channels_dropped_or_interpolated(files, caplog):
    with caplog.at_level(logging.WARNING, logger="dsrpipe.preprocessing.eeg"):
        dropped = preprocess_eeg(files["fif"], EEGConfig(bads=["Cz", "T7"]), subject="01")
    assert dropped.channels == [c for c in CH if c != "Cz"] and "T7" in caplog.text
    kept = preprocess_eeg(files["fif"], EEGConfig(bads=["Cz"], exclude_bads=False), subject="01")
    assert kept.channels == CH and kept.meta["eeg"]["bads"] == ["Cz"]
    interp = preprocess_eeg(files["eeglab"], EEGConfig(bads=["Cz"], interpolate_bads=True), subject="01")
    assert interp.channels == CH
    cz = interp.data[:, CH.index("Cz")]
    assert np.isfinite(cz).all() and not np.allclose(cz, kept.data[:, CH.index("Cz")])


def test_interpolation_needs_a_montage(files):
    with pytest.raises(DsrpipeError, match=files["edf"].name + ".*positions"):
        preprocess_eeg(files["edf"], EEGConfig(bads=["Cz"], interpolate_bads=True), subject="01")


# ---------------------------------------------------------------- PCA


def test_pca_with_all_components_reconstructs_channels(files):
    plain = preprocess_eeg(files["fif"], EEGConfig(), subject="01")
    with pytest.raises(DsrpipeError, match="PCA"):
        pca_inverse(plain)
    ts = preprocess_eeg(files["fif"], EEGConfig(pca_components=len(CH)), subject="01")
    assert ts.channels == [f"pc{i}" for i in range(1, len(CH) + 1)]
    assert ts.meta["pca"]["channels"] == CH
    np.testing.assert_allclose(pca_inverse(ts), plain.data, rtol=0, atol=1e-8 * np.abs(plain.data).max())


def test_pca_with_fewer_components(files):
    ts = preprocess_eeg(files["fif"], EEGConfig(pca_components=3), subject="01")
    ratio = np.asarray(ts.meta["pca"]["explained_variance_ratio"])
    loadings = np.asarray(ts.meta["pca"]["loadings"])
    assert ts.data.shape[1] == 3 and loadings.shape == (3, len(CH))
    assert np.all(np.diff(ratio) <= 0) and ratio.sum() <= 1 + 1e-12
    np.testing.assert_allclose(loadings @ loadings.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(ts.data.var(axis=0), np.sort(ts.data.var(axis=0))[::-1])


# ---------------------------------------------------------------- annotations and cropping


@pytest.mark.parametrize("fmt", ["fif", "edf", "brainvision"])  # no meas_date, meas_date, "Comment/BAD"
@pytest.mark.parametrize("crop", [(None, None), (2.0, 18.0)])
def test_annotation_rejection_drops_the_span(tmp_path, fmt, crop):
    spans = mne.Annotations([5.0, 11.0], [2.0, 1.0], ["BAD_blink", "stimulus"])
    path = write(make_raw(annotations=spans), tmp_path, fmt)
    window = {"crop_start": crop[0], "crop_stop": crop[1]}
    keep = preprocess_eeg(path, EEGConfig(**window, reject_annotations=[]), subject="01")
    ts = preprocess_eeg(path, EEGConfig(**window), subject="01")
    assert abs(keep.n_samples - ts.n_samples - 2.0 * 128) <= 2
    assert abs(ts.meta["eeg"]["n_rejected_samples"] - 256) <= 2
    start = 5.0 - (crop[0] or 0.0)
    (a, b), (c, d) = ts.meta["eeg"]["segments"]
    assert a == 0 and b == c and d == ts.n_samples and abs(b - start * 128) <= 1
    # the kept samples are those of the unrejected run, joined
    np.testing.assert_array_equal(ts.data[:b], keep.data[:b])
    np.testing.assert_array_equal(ts.data[b:], keep.data[-(d - c):])


def test_crop_keeps_the_requested_range(files):
    ts = preprocess_eeg(files["fif"], EEGConfig(crop_start=3.0, crop_stop=13.0), subject="01")
    assert ts.n_samples == 10 * 128
    ts = preprocess_eeg(files["fif"], EEGConfig(crop_stop=99.0), subject="01")  # past the end: to the end
    assert abs(ts.n_samples - DURATION * 128) <= 1


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("case", ["fif", "edf", "bdf", "random.edf", "rec.txt", "absent.edf"])
def test_unreadable_files_name_the_file(files, tmp_path, case):
    if case in FORMATS:  # a good file cut in the middle of its data
        data = files[case].read_bytes()
        path = tmp_path / f"cut{FORMATS[case]}"
        path.write_bytes(data[: len(data) // 2 + 7])
    else:
        path = tmp_path / case
        if case != "absent.edf":
            path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(DsrpipeError, match=path.name):
        preprocess_eeg(path, EEGConfig(), subject="01")


@pytest.mark.parametrize("picks", [["nonexistent"], "meg"])
def test_no_channels_after_picks(files, picks):
    with pytest.raises(DsrpipeError, match=files["fif"].name + ".*picks"):
        preprocess_eeg(files["fif"], EEGConfig(picks=picks), subject="01")


@pytest.mark.parametrize("kwargs", [{"bads": CH}, {"reference": CH}, {"picks": ["Cz"]}],
                         ids=["all-bad", "all-reference", "one-channel-average-reference"])
def test_nothing_usable_left(files, kwargs):
    with pytest.raises(DsrpipeError, match=files["fif"].name + ".*(no channels|constant)"):
        preprocess_eeg(files["fif"], EEGConfig(**kwargs), subject="01")


@pytest.mark.parametrize("defect", ["flat", "nan"])
def test_flat_or_nan_channel(tmp_path, defect):
    data = signal()
    data[CH.index("Pz")] = 0.0 if defect == "flat" else np.nan
    path = write(make_raw(data), tmp_path, "fif", stem=f"sub-{defect}")
    with pytest.raises(DsrpipeError, match=path.name + ".*Pz"):
        preprocess_eeg(path, EEGConfig(), subject="01")
    # marked bad, the channel is dropped and the rest goes through
    assert "Pz" not in preprocess_eeg(path, EEGConfig(bads=["Pz"]), subject="01").channels


def test_blockwise_check_names_every_bad_channel(tmp_path, monkeypatch):
    """The data checks run a block of channels at a time (memory); a defect found in one
    block still gets the message over all channels."""
    from dsrpipe.preprocessing import eeg

    monkeypatch.setattr(eeg, "CHECK_BLOCK", 3)
    data = signal()
    data[CH.index("Fp2"), :5] = np.nan
    data[CH.index("Pz"), :5] = np.nan
    path = write(make_raw(data), tmp_path, "fif", stem="sub-nan2")
    with pytest.raises(DsrpipeError, match=path.name + r".*10 NaN/inf value\(s\) in channel\(s\) Fp2, Pz"):
        preprocess_eeg(path, EEGConfig(), subject="01")


@pytest.mark.parametrize("kwargs", [{"crop_stop": 1.0}, {"crop_start": 19.0}, {"crop_start": 25.0},
                                    {"pca_components": 9}])
def test_too_little_data_or_too_many_components(files, kwargs):
    with pytest.raises(DsrpipeError, match=files["fif"].name):
        preprocess_eeg(files["fif"], EEGConfig(**kwargs), subject="01")


def test_too_short_after_rejection(tmp_path):
    path = write(make_raw(annotations=mne.Annotations([0.5], [18.8], ["bad_movement"])), tmp_path, "fif")
    with pytest.raises(DsrpipeError, match=path.name + ".*s of data left"):
        preprocess_eeg(path, EEGConfig(), subject="01")


def test_invalid_sampling_rate(files, monkeypatch):
    raw = make_raw()
    with raw.info._unlock():
        raw.info["sfreq"] = 0.0
    monkeypatch.setattr(mne.io, "read_raw", lambda *args, **kwargs: raw)
    with pytest.raises(DsrpipeError, match=files["fif"].name + ".*sampling rate"):
        preprocess_eeg(files["fif"], EEGConfig(), subject="01")


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("kwargs", [
    {"l_freq": 40.0, "h_freq": 40.0}, {"l_freq": 30.0, "h_freq": 1.0}, {"resample_hz": -128.0},
    {"resample_hz": 0}, {"notch": [-50.0]}, {"notch": 50.0}, {"crop_start": -1.0},
    {"crop_start": 5.0, "crop_stop": 5.0}, {"smooth_sigma": -1.0}, {"pca_components": 0},
    {"pca_components": 2.5}, {"reference": "Cz"}, {"reference": []}, {"picks": []}, {"bads": "Cz"},
    {"exclude_bads": "yes"}, {"min_duration": 0.0}, {"l_freq": float("nan")},
])
def test_config_rejects_invalid_values(kwargs):
    with pytest.raises(DsrpipeError, match="eeg\\."):
        EEGConfig(**kwargs)


def test_config_from_yaml_mapping_is_immutable_and_json_ready():
    cfg = from_mapping(EEGConfig, {"picks": ["Fz", "Cz"], "notch": [50, 100], "reference": ["Cz"],
                                   "bads": [], "l_freq": None}, "eeg")
    assert cfg.picks == ("Fz", "Cz") and cfg.notch == (50.0, 100.0) and cfg.reference == ("Cz",)
    hash(cfg)
    assert json.loads(json.dumps(to_dict(cfg)))["notch"] == [50.0, 100.0]
    with pytest.raises(DsrpipeError, match="unknown key"):
        from_mapping(EEGConfig, {"lowpass": 40}, "eeg")
