"""EEG recordings (EDF, BDF, FIF, BrainVision, EEGLAB) to a clean multichannel series.

The train/test split and standardisation come later, in :func:`dsrpipe.preprocessing.prepare`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
from scipy.ndimage import gaussian_filter1d

from dsrpipe import DsrpipeError
from dsrpipe.config import to_dict
from dsrpipe.io.timeseries import TimeSeries
from dsrpipe.preprocessing.common import _sha256, check_data

log = logging.getLogger(__name__)

SUFFIXES = (".edf", ".bdf", ".fif", ".fif.gz", ".vhdr", ".set")
#: channels checked per block: a block's float64 copy, not the whole recording's (benchmarks/memory.py)
CHECK_BLOCK = 8


def _fail(condition: bool, message: str) -> None:
    if condition:
        raise DsrpipeError(message)


def _names(value, key: str) -> tuple[str, ...]:
    _fail(not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value),
          f"eeg.{key} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class EEGConfig:
    """How one EEG recording becomes a multichannel time series.

    Attributes
    ----------
    picks : str or list of str
        Channel type (``"eeg"``, ``"data"``) or channel names.
    exclude_bads, bads : bool, list of str
        Drop bad channels (the file's and ``bads``; unknown names are ignored)
        after any interpolation.
    interpolate_bads : bool
        Spherical-spline interpolation of bad channels; needs electrode positions.
    reference : "average", None or list of str
        Average reference, the recorded one, or these channels (then dropped).
    l_freq, h_freq : float or None
        Band-pass edges in Hz (MNE's zero-phase FIR); None disables an edge.
    notch : list of float
        Line-noise frequencies in Hz; those at or above Nyquist are skipped.
    resample_hz : float or None
        Output sampling rate in Hz; None keeps the recorded rate.
    crop_start, crop_stop : float or None
        Time range to keep, in seconds from the first sample.
    reject_annotations : list of str
        Drop spans whose description starts with one of these (any case; for
        BrainVision's ``Type/Description`` either part) and join the rest.
    smooth_sigma : float
        Gaussian smoothing (sigma in output samples, 0 = off) within each good
        segment, as the lab does for EEG; -3 dB near 0.13 * rate / sigma Hz.
    pca_components : int or None
        Keep the first k principal components (loadings go to ``meta["pca"]``).
    min_duration : float
        Seconds of data that must remain.
    """

    picks: str | tuple[str, ...] = "eeg"
    exclude_bads: bool = True
    bads: tuple[str, ...] = ()
    interpolate_bads: bool = False
    reference: str | tuple[str, ...] | None = "average"
    l_freq: float | None = 0.5
    h_freq: float | None = 40.0
    notch: tuple[float, ...] = (50.0,)
    resample_hz: float | None = 128.0
    crop_start: float | None = None
    crop_stop: float | None = None
    reject_annotations: tuple[str, ...] = ("BAD",)
    smooth_sigma: float = 0.0
    pca_components: int | None = None
    min_duration: float = 2.0

    def __post_init__(self) -> None:
        put = object.__setattr__  # lists from YAML become tuples: the config stays immutable
        for key in ("bads", "reject_annotations") + (() if isinstance(self.picks, str) else ("picks",)):
            put(self, key, _names(getattr(self, key), key))
        if self.reference not in (None, "average"):
            _fail(isinstance(self.reference, str), "eeg.reference must be 'average', null or a list")
            put(self, "reference", _names(self.reference, "reference"))
        _fail(not self.picks or self.reference == (), "eeg.picks and eeg.reference must not be empty")
        for key in ("exclude_bads", "interpolate_bads"):
            _fail(not isinstance(getattr(self, key), bool), f"eeg.{key} must be true or false")
        _fail(not isinstance(self.notch, (list, tuple)), "eeg.notch must be a list of frequencies")
        put(self, "notch", tuple(float(f) for f in self.notch))
        for key in ("l_freq", "h_freq", "resample_hz", "crop_stop", "min_duration", "notch"):
            for value in self.notch if key == "notch" else [getattr(self, key)]:
                _fail(value is not None and not (np.isfinite(value) and value > 0),
                      f"eeg.{key} must be positive")
        _fail(None not in (self.l_freq, self.h_freq) and self.h_freq <= self.l_freq,
              f"eeg.h_freq ({self.h_freq}) must be above eeg.l_freq ({self.l_freq})")
        _fail(self.crop_start is not None and not self.crop_start >= 0, "eeg.crop_start must be >= 0")
        _fail(None not in (self.crop_start, self.crop_stop) and self.crop_stop <= self.crop_start,
              "eeg.crop_stop must be after eeg.crop_start")
        _fail(not self.smooth_sigma >= 0, "eeg.smooth_sigma must be >= 0")
        _fail(self.pca_components is not None and (type(self.pca_components) is not int
              or self.pca_components < 1), "eeg.pca_components must be an integer >= 1")


def _check_edf_size(path: Path) -> None:
    """Raise if an EDF/BDF file is shorter than its header says (MNE reads what is there)."""
    with open(path, "rb") as fh:
        head = fh.read(256)
        try:
            header_bytes, n_records, n_signals = int(head[184:192]), int(head[236:244]), int(head[252:256])
            fh.seek(256 + 216 * n_signals)
            per_record = sum(int(fh.read(8)) for _ in range(n_signals))
        except ValueError:
            return  # MNE accepted the header; nothing more to check
    width = 3 if path.name.lower().endswith(".bdf") else 2
    expected, size = header_bytes + n_records * per_record * width, path.stat().st_size
    _fail(n_records >= 0 and size < expected,  # -1: a recording never closed; the size decides
          f"{path}: truncated file ({size} bytes; the header promises {n_records} records, {expected} bytes)")


def read_eeg(path: str | os.PathLike) -> mne.io.BaseRaw:
    """Read an EEG file into memory, turning every failure into :class:`DsrpipeError`."""
    path = Path(path)
    _fail(not path.is_file(), f"{path}: EEG file not found")
    _fail(not path.name.lower().endswith(SUFFIXES),
          f"{path}: unsupported EEG file type; expected one of {', '.join(SUFFIXES)}")
    try:
        raw = mne.io.read_raw(path, preload=True, verbose="error")
    except Exception as exc:  # the readers raise ValueError, OSError, struct.error, ...
        raise DsrpipeError(f"{path}: cannot read EEG file ({type(exc).__name__}: {exc}); check that it is a "
                           "complete recording in the format its suffix names (re-export it if not)") from exc
    if path.name.lower().endswith((".edf", ".bdf")):
        _check_edf_size(path)
    sfreq = raw.info["sfreq"]
    _fail(not (sfreq and np.isfinite(sfreq) and sfreq > 0), f"{path}: invalid sampling rate {sfreq!r}")
    return raw


def _check_raw(raw: mne.io.BaseRaw, source: str) -> None:
    """:func:`check_data` on the loaded recording, a block of channels at a time.

    The checks are per channel, so blocks give the same verdict, with temporary copies
    of a block instead of the whole recording (a 1-hour, 64-channel EEG at 200 Hz is
    370 MB at float64, and the checks make two more copies of what they get).
    """
    names = raw.ch_names
    for start in range(0, len(names), CHECK_BLOCK):
        picks = list(range(start, min(start + CHECK_BLOCK, len(names))))
        try:
            check_data(raw.get_data(picks=picks).T, [names[i] for i in picks], source=source, min_samples=2)
        except DsrpipeError:  # the message names every offending channel, not one block's
            check_data(raw.get_data().T, names, source=source, min_samples=2)
            raise


def _select_channels(raw: mne.io.BaseRaw, cfg: EEGConfig, src: str) -> list[str]:
    unknown = [ch for ch in cfg.bads if ch not in raw.ch_names]
    if unknown:
        log.warning("%s: bad channel(s) %s not in the file; ignored", src, ", ".join(unknown))
    raw.info["bads"] = sorted(set(raw.info["bads"]) | (set(cfg.bads) - set(unknown)))
    try:
        raw.pick(list(cfg.picks) if isinstance(cfg.picks, tuple) else cfg.picks, exclude=())
    except ValueError as exc:
        raise DsrpipeError(f"{src}: no channels for picks={cfg.picks!r} ({exc})") from exc
    bads = list(raw.info["bads"])
    if cfg.interpolate_bads:
        _fail(raw.get_montage() is None, f"{src}: interpolate_bads needs electrode positions (none in file)")
        if bads:
            log.info("%s: interpolating %s", src, ", ".join(bads))
            try:
                raw.interpolate_bads(reset_bads=True, verbose="error")
            except (ValueError, RuntimeError) as exc:
                raise DsrpipeError(f"{src}: cannot interpolate bad channels ({exc})") from exc
    if cfg.exclude_bads and raw.info["bads"]:
        log.info("%s: dropping bad channel(s) %s", src, ", ".join(raw.info["bads"]))
        _fail(len(raw.info["bads"]) == len(raw.ch_names), f"{src}: no channels left after dropping bads")
        raw.drop_channels(raw.info["bads"])
    _check_raw(raw, src)
    return bads  # as marked, before interpolation or dropping


def _reference_and_filter(raw: mne.io.BaseRaw, cfg: EEGConfig, src: str) -> None:
    try:
        if cfg.reference is not None:
            ref = cfg.reference if cfg.reference == "average" else list(cfg.reference)
            raw.set_eeg_reference(ref, projection=False, verbose="error")
            if ref != "average":  # a single reference channel is now zero, several are redundant
                _fail(set(raw.ch_names) <= set(ref), f"{src}: no channels left besides the reference")
                raw.drop_channels(ref)
            _check_raw(raw, f"{src} (re-referenced)")
        nyquist = raw.info["sfreq"] / 2
        notch = [f for f in cfg.notch if f < nyquist]
        if len(notch) < len(cfg.notch):
            log.info("%s: notch frequencies at or above Nyquist (%.1f Hz) skipped", src, nyquist)
        if notch:
            raw.notch_filter(notch, picks="all", verbose="error")
        if cfg.l_freq is not None or cfg.h_freq is not None:
            raw.filter(cfg.l_freq, cfg.h_freq, picks="all", verbose="error")
    except ValueError as exc:
        raise DsrpipeError(f"{src}: cannot reference/filter ({exc})") from exc


def _crop(raw: mne.io.BaseRaw, cfg: EEGConfig, src: str) -> None:
    end, start = raw.times[-1], cfg.crop_start or 0.0
    _fail(start >= end, f"{src}: crop_start={start} s is beyond the recording ({end:.2f} s)")
    stop = cfg.crop_stop if cfg.crop_stop is not None and cfg.crop_stop <= end else None  # else to the end
    raw.crop(start, stop, include_tmax=stop is None, verbose="error")


def _good_samples(raw: mne.io.BaseRaw, prefixes: tuple[str, ...]) -> tuple[np.ndarray, list[list[int]]]:
    """Mask of samples outside matching annotations; [start, stop) of kept runs once joined."""
    keep = np.ones(raw.n_times, bool)
    kinds = tuple(p.upper() for p in prefixes)
    ann = raw.annotations
    for onset, duration, desc in zip(ann.onset, ann.duration, ann.description):
        if desc.upper().startswith(kinds) or desc.upper().split("/", 1)[-1].startswith(kinds):
            start = onset - raw.first_time  # annotation time -> seconds from the first sample
            i, j = raw.time_as_index([start, start + duration], use_rounding=True)
            keep[max(i, 0):max(j, 0)] = False
    edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
    stops = np.cumsum(edges[1::2] - edges[::2])
    return keep, [[int(b - n), int(b)] for b, n in zip(stops, edges[1::2] - edges[::2])]


def _pca(data: np.ndarray, channels: list[str], k: int, src: str) -> tuple[np.ndarray, dict]:
    _fail(k > data.shape[1], f"{src}: pca_components={k} exceeds the {data.shape[1]} channels")
    mean = data.mean(axis=0)
    _, s, vt = np.linalg.svd(data - mean, full_matrices=False)
    vt *= np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])[:, None]  # deterministic signs
    ratio = s**2 / np.sum(s**2)
    if np.any(ratio[:k] < 1e-10):
        log.warning("%s: %d of %d components have no variance", src, np.sum(ratio[:k] < 1e-10), k)
    meta = {"components": k, "loadings": vt[:k].tolist(), "explained_variance_ratio": ratio[:k].tolist(),
            "channels": list(channels), "mean": mean.tolist()}
    return (data - mean) @ vt[:k].T, meta


def pca_inverse(ts: TimeSeries) -> np.ndarray:
    """Map component scores (T, k) of :func:`preprocess_eeg` back to channels.

    Undo any later standardisation first. Returns ``scores @ loadings + mean``,
    shape (T, n_channels), columns in ``ts.meta["pca"]["channels"]`` order.
    """
    pca = ts.meta.get("pca")
    _fail(pca is None, "time series has no PCA metadata (meta['pca'])")
    return np.asarray(ts.data) @ np.asarray(pca["loadings"]) + np.asarray(pca["mean"])


def preprocess_eeg(path: str | os.PathLike, cfg: EEGConfig, *, subject: str) -> TimeSeries:
    """Read and clean one EEG recording.

    Steps: bads and picks (optional interpolation), reference, notch,
    band-pass, crop, resample, annotation rejection, smoothing, PCA. Resampling
    precedes rejection so the FFT resampler never sees the joins.

    Parameters
    ----------
    path : path-like
        ``.edf``, ``.bdf``, ``.fif``/``.fif.gz``, ``.vhdr`` or ``.set``.
    cfg : EEGConfig
    subject : str

    Returns
    -------
    TimeSeries
        float64 (T, N) in volts (or ``pc1..pck`` scores), ``dt = 1 / sfreq_out``;
        ``meta["eeg"]``: config, rates, channel types, rejected samples, [start,
        stop) of each joined segment; ``meta["provenance"]``: source, SHA-256s.

    Raises
    ------
    DsrpipeError
        Naming the file: unreadable or truncated, no channels after picks, NaN
        or flat channels, under ``cfg.min_duration`` seconds left.
    """
    path = Path(path)
    src = str(path)
    raw = read_eeg(path)
    provenance = {"source": src, "sha256": _sha256(path)}  # plus separate data files (BrainVision .eeg)
    provenance.update({"data_files": {str(f): _sha256(Path(f)) for f in raw.filenames if Path(f) != path}})
    sfreq_in = float(raw.info["sfreq"])
    bads = _select_channels(raw, cfg, src)
    _reference_and_filter(raw, cfg, src)
    if cfg.crop_start is not None or cfg.crop_stop is not None:
        _crop(raw, cfg, src)
    if cfg.resample_hz is not None and not np.isclose(cfg.resample_hz, sfreq_in):
        raw.resample(cfg.resample_hz, verbose="error")
    sfreq_out = float(raw.info["sfreq"])
    keep, segments = _good_samples(raw, cfg.reject_annotations)
    channels = list(raw.ch_names)
    channel_types = raw.get_channel_types()
    data = np.empty((int(keep.sum()), len(channels)))  # filled a channel at a time: no whole-recording copies
    for i in range(len(channels)):
        data[:, i] = raw.get_data(picks=[i])[0, keep]
    del raw  # its samples are in ``data`` now
    _fail(len(data) < cfg.min_duration * sfreq_out, f"{src}: only {len(data) / sfreq_out:.2f} s of data "
          f"left after cropping and rejection (at least {cfg.min_duration} s needed)")
    if cfg.smooth_sigma > 0:
        for a, b in segments:
            data[a:b] = gaussian_filter1d(data[a:b], cfg.smooth_sigma, axis=0, mode="reflect")
    info = {"sfreq_in": sfreq_in, "sfreq_out": sfreq_out, "bads": bads, "segments": segments,
            "channel_types": dict(zip(channels, channel_types)),
            "n_rejected_samples": int((~keep).sum())}
    meta = {"eeg": {**to_dict(cfg), **info}, "provenance": provenance}
    if cfg.pca_components is not None:
        data, meta["pca"] = _pca(data, channels, cfg.pca_components, src)
        channels = [f"pc{i + 1}" for i in range(cfg.pca_components)]
    log.info("%s: %d channels, %.1f -> %.1f Hz, %d samples kept, %d rejected, %d segment(s)", src,
             len(info["channel_types"]), sfreq_in, sfreq_out, len(data), (~keep).sum(), len(segments))
    return TimeSeries(data=data, channels=channels, dt=1.0 / sfreq_out, subject=subject,
                      modality="eeg", meta=meta)
