"""fMRI: ROI-mean BOLD series from NIfTI images or ready ROI tables.

Both return raw-unit series cleaned of drift (splitting and standardisation
happen later, in :mod:`dsrpipe.preprocessing.common`), with the TR as ``dt``
for the HRF observation model. Cleaning is one least-squares regression per
run (or block) on trend terms (``detrend``), a discrete cosine drift basis
(``high_pass_hz``, as SPM and nilearn) and the confounds, fitted jointly so the
filter cannot re-introduce what the confound regression removed (Lindquist et
al. 2019, Hum Brain Mapp 40:2358).
"""

from __future__ import annotations

import copy
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np
import pandas as pd

from dsrpipe import DsrpipeError
from dsrpipe.config import to_dict
from dsrpipe.io.timeseries import TimeSeries, read_table
from dsrpipe.preprocessing.common import _sha256

log = logging.getLogger(__name__)

#: largest absolute difference (mm) allowed between the affines of the BOLD image and an atlas or mask
AFFINE_ATOL = 1e-3
_TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6, "unknown": 1.0}
_BOOKKEEPING = ("block", "volume")


@dataclass(frozen=True)
class FMRIConfig:
    """How BOLD data become ROI time series.

    Attributes
    ----------
    tr : float or None
        Repetition time in seconds. Overrides the NIfTI header; required for
        ROI tables and for images whose header has no TR.
    detrend : {"linear", "constant", None}
        Remove a per-run (per-block) linear trend and mean, only the mean, or
        nothing (the mean level is then kept).
    high_pass_hz : float or None
        Cut-off of the discrete-cosine drift basis in Hz (SPM: 1/128 s); None: off.
    confounds_columns : tuple of str or None
        Confound columns to regress out when a confounds file is given. None
        uses every numeric column, which for an fMRIPrep file is hundreds:
        name the ones you want (e.g. the six motion parameters).
    min_voxels : int
        An ROI with fewer voxels is an error.
    input_prefix, label_prefix : str
        ROI-table columns with these prefixes are external inputs and labels.
    """

    tr: float | None = None
    detrend: str | None = "linear"
    high_pass_hz: float | None = 0.01
    confounds_columns: tuple[str, ...] | None = None
    min_voxels: int = 1
    input_prefix: str = "input_"
    label_prefix: str = "label_"

    def __post_init__(self) -> None:
        if self.confounds_columns is not None:
            object.__setattr__(self, "confounds_columns", tuple(map(str, self.confounds_columns)))
        _check(self.tr is None or self.tr > 0, "fmri.tr must be positive")
        _check(self.detrend in ("linear", "constant", None), "fmri.detrend must be 'linear', 'constant' or null")
        _check(self.high_pass_hz is None or self.high_pass_hz > 0, "fmri.high_pass_hz must be positive")
        _check(self.min_voxels >= 1, "fmri.min_voxels must be >= 1")
        _check(bool(self.input_prefix) and bool(self.label_prefix) and self.input_prefix != self.label_prefix,
               "fmri.input_prefix and fmri.label_prefix must be different non-empty strings")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DsrpipeError(message)


def drift_design(n: int, tr: float, cfg: FMRIConfig) -> np.ndarray:
    """Regressors removed from every run: polynomial trend and DCT drift, shape (n, k)."""
    t = np.arange(n)
    cols = [np.ones(n)]  # always fitted; added back when detrend is None
    if cfg.detrend == "linear" and n > 1:
        cols.append(t / (n - 1) - 0.5)
    if cfg.high_pass_hz is not None:
        order = int(np.floor(2 * n * tr * cfg.high_pass_hz))  # DCT k has frequency k / (2 n TR)
        cols += [np.cos(np.pi * (t + 0.5) * k / n) for k in range(1, min(order, n - 1) + 1)]
    return np.column_stack(cols)


def clean(data: np.ndarray, tr: float, cfg: FMRIConfig, confounds: np.ndarray | None = None,
          *, source: str = "<array>") -> np.ndarray:
    """Regress drift (and confounds) out of one run, ``data`` of shape (T, R)."""
    design = drift_design(data.shape[0], tr, cfg)
    if confounds is not None:
        design = np.column_stack([design, confounds])
    if design.shape[1] >= data.shape[0]:
        raise DsrpipeError(f"{source}: {design.shape[1]} regressors for {data.shape[0]} volumes; "
                           "use fewer confounds or a lower high_pass_hz")
    beta = np.linalg.lstsq(design, data, rcond=None)[0]
    out = data - design @ beta
    return out + data.mean(axis=0) if cfg.detrend is None else out


def _load(path: Path, what: str) -> Any:
    if not path.exists():
        raise DsrpipeError(f"{path}: {what} file not found")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel, gzip, zlib raise many types on corrupt files
        raise DsrpipeError(f"{path}: corrupt, truncated or not a NIfTI {what} ({type(exc).__name__}: {exc})") from exc
    return img, data


def _header_tr(img: Any, path: Path, cfg: FMRIConfig) -> tuple[float, str]:
    zooms, unit = img.header.get_zooms(), img.header.get_xyzt_units()[1]
    tr = float(zooms[3]) * _TIME_UNITS.get(unit, 1.0)  # the BOLD image is 4-D by now
    if cfg.tr is not None:
        if tr > 0 and not np.isclose(tr, cfg.tr, rtol=1e-3):
            log.warning("%s: header TR %.4g s overridden by fmri.tr = %.4g s", path, tr, cfg.tr)
        return cfg.tr, "config"
    if not tr > 0:
        raise DsrpipeError(f"{path}: the header has no TR (pixdim[4] = {tr}); set fmri.tr")
    if unit == "unknown":
        log.warning("%s: header time unit unknown; taking TR = %.4g as seconds", path, tr)
    return tr, "header"


def _rois(bold_img: Any, bold: Path, atlas_path: Path | None, mask_paths: list[Path]
          ) -> tuple[list[str], list[np.ndarray]]:
    """Channel names and flat voxel indices (Fortran order over x, y, z) of each ROI."""
    if (atlas_path is None) == (not mask_paths):
        raise DsrpipeError(f"{bold}: give either an atlas or masks, not {'both' if mask_paths else 'neither'}")
    names, indices = [], []
    for path in [atlas_path] if atlas_path is not None else mask_paths:
        img, vol = _load(path, "atlas" if atlas_path is not None else "mask")
        vol = vol[..., 0] if vol.ndim == 4 and vol.shape[3] == 1 else vol
        if vol.ndim != 3:
            raise DsrpipeError(f"{path}: expected a 3-D image, got shape {vol.shape}")
        if img.shape[:3] != bold_img.shape[:3]:
            raise DsrpipeError(f"{path}: shape {img.shape[:3]} does not match the BOLD image {bold} {bold_img.shape[:3]}")
        if not np.allclose(img.affine, bold_img.affine, atol=AFFINE_ATOL, rtol=0):
            raise DsrpipeError(f"{path}: affine differs from the BOLD image {bold} (by up to "
                               f"{np.abs(img.affine - bold_img.affine).max():.3g}); resample it first")
        vol = np.asarray(vol, dtype=np.float64).ravel(order="F")
        if not np.all(np.isfinite(vol)) or np.any(vol != np.round(vol)):
            raise DsrpipeError(f"{path}: values must be finite integers (labels) or 0/1 (masks)")
        if atlas_path is not None:
            if not (labels := np.unique(vol[vol != 0]).astype(np.int64)).size:
                raise DsrpipeError(f"{path}: atlas has no nonzero label")
            names += [f"roi_{label}" for label in labels]
            indices += [np.flatnonzero(vol == label) for label in labels]
        else:
            if not np.isin(vol, (0, 1)).all():
                raise DsrpipeError(f"{path}: mask is not binary (values other than 0 and 1)")
            names.append(re.sub(r"\.nii(\.gz)?$", "", path.name, flags=re.IGNORECASE))
            indices.append(np.flatnonzero(vol))
    if len(set(names)) != len(names):  # two mask files with the same name in different folders
        raise DsrpipeError(f"{bold}: duplicate ROI names {names}")
    return names, indices


def _confounds(path: Path, cfg: FMRIConfig, n: int) -> tuple[np.ndarray, list[str]]:
    try:
        df = pd.read_csv(path, sep="," if path.suffix.lower() == ".csv" else "\t")
    except Exception as exc:
        raise DsrpipeError(f"{path}: cannot read confounds table ({type(exc).__name__}: {exc})") from exc
    if cfg.confounds_columns is None:
        cols = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    else:
        cols = list(cfg.confounds_columns)
        if missing := [c for c in cols if c not in df.columns]:
            raise DsrpipeError(f"{path}: confound column(s) {missing} not found")
    if not cols:
        raise DsrpipeError(f"{path}: no numeric confound columns")
    if len(df) != n:
        raise DsrpipeError(f"{path}: {len(df)} rows but the BOLD series has {n} volumes")
    try:
        values = np.array(df[cols].to_numpy(dtype=np.float64))  # pandas 3 hands out read-only views
    except (TypeError, ValueError) as exc:
        raise DsrpipeError(f"{path}: non-numeric confound column ({exc})") from exc
    leading = np.cumprod(np.isnan(values), axis=0).astype(bool)  # fMRIPrep derivatives start with NaN
    values[leading] = 0.0
    if not np.isfinite(values).all():
        raise DsrpipeError(f"{path}: NaN/inf confound values after the first row(s)")
    return values, cols


def extract_roi_timeseries(bold_path: str | os.PathLike, *, atlas_path: str | os.PathLike | None = None,
                           mask_paths: Sequence[str | os.PathLike] = (), cfg: FMRIConfig, subject: str,
                           confounds_path: str | os.PathLike | None = None) -> TimeSeries:
    """Mean BOLD signal of each ROI of a 4-D NIfTI image, cleaned of drift.

    Parameters
    ----------
    bold_path : path-like
        4-D NIfTI (``.nii`` or ``.nii.gz``), shape (X, Y, Z, T).
    atlas_path : path-like, optional
        3-D integer label image on the BOLD grid; each nonzero label is an ROI
        named ``roi_<label>``.
    mask_paths : sequence of path-like
        Binary 3-D masks on the BOLD grid, one ROI each, named after the file
        (without ``.nii``/``.nii.gz``). Give masks or an atlas, not both.
    cfg : FMRIConfig
    subject : str
    confounds_path : path-like, optional
        TSV (fMRIPrep ``desc-confounds_timeseries.tsv``) or CSV with one row
        per volume; leading NaNs are set to 0.

    Returns
    -------
    TimeSeries
        Shape (T, R) in the image's units; ``dt`` = TR in seconds (header
        zooms honouring the xyzt time unit, or ``cfg.tr``); modality ``fmri``.

    Raises
    ------
    DsrpipeError
        Naming the file: missing, corrupt or truncated image, not 4-D, grid mismatch,
        small ROI, no TR, NaN in an ROI, confounds without one row per volume.
    """
    bold = Path(bold_path)
    img, data = _load(bold, "BOLD image")
    if data.ndim != 4:
        raise DsrpipeError(f"{bold}: expected a 4-D BOLD image (x, y, z, time), got shape {data.shape}")
    tr, tr_source = _header_tr(img, bold, cfg)
    atlas = Path(atlas_path) if atlas_path is not None else None
    masks = [Path(p) for p in mask_paths]
    names, indices = _rois(img, bold, atlas, masks)
    if small := [f"{n} ({len(i)})" for n, i in zip(names, indices) if len(i) < cfg.min_voxels]:
        raise DsrpipeError(f"{bold}: ROI(s) with fewer than {cfg.min_voxels} voxels: {', '.join(small)}")
    flat = data.reshape(-1, data.shape[3], order="F")  # (voxels, T); a view for nibabel's F-ordered arrays
    series = np.column_stack([flat[i].mean(axis=0, dtype=np.float64) for i in indices])
    if bad := [n for n, ok in zip(names, np.isfinite(series).all(axis=0)) if not ok]:
        raise DsrpipeError(f"{bold}: NaN/inf voxel values inside ROI(s) {', '.join(bad)}")
    conf, conf_cols = (None, []) if confounds_path is None else _confounds(Path(confounds_path), cfg, len(series))
    series = clean(series, tr, cfg, conf, source=str(bold))
    log.info("%s: %d ROIs x %d volumes, TR %.4g s (%s), %d confound(s)", bold, len(names),
             series.shape[0], tr, tr_source, len(conf_cols))
    fmri = {"config": to_dict(cfg), "tr": tr, "tr_source": tr_source,
            "n_voxels": {n: int(len(i)) for n, i in zip(names, indices)},
            "atlas": None if atlas is None else str(atlas), "masks": [str(m) for m in masks],
            "confounds": None if confounds_path is None else str(confounds_path), "confounds_columns": conf_cols}
    meta = {"fmri": fmri, "provenance": {"source": str(bold), "sha256": _sha256(bold)}}
    return TimeSeries(data=series, channels=names, dt=tr, subject=subject, modality="fmri", meta=meta)


def read_roi_table(path: str | os.PathLike, *, cfg: FMRIConfig, subject: str
                   ) -> tuple[TimeSeries, TimeSeries | None, TimeSeries | None]:
    """Read a ready ROI table (TSV, CSV or Parquet; one column per ROI).

    Columns starting with ``cfg.input_prefix`` form the external-input series,
    those starting with ``cfg.label_prefix`` the label series (both returned
    as they are, modalities ``inputs`` and ``labels``); ``block`` and
    ``volume`` are kept in ``meta["fmri"]``; every other column is BOLD and is
    cleaned like :func:`extract_roi_timeseries`, separately within each
    contiguous run of equal ``block`` values.

    Returns
    -------
    bold, inputs, labels : TimeSeries, TimeSeries or None, TimeSeries or None
        All with the same T and ``dt`` = ``cfg.tr`` (required).
    """
    path = Path(path)
    if cfg.tr is None:
        raise DsrpipeError(f"{path}: an ROI table carries no TR; set fmri.tr")
    data, columns = read_table(path)
    if bad := [c for c, ok in zip(columns, np.isfinite(data).all(axis=0)) if not ok]:
        raise DsrpipeError(f"{path}: NaN/inf values in column(s) {', '.join(bad)}")
    df = pd.DataFrame(data, columns=columns)
    inputs = [c for c in columns if c.startswith(cfg.input_prefix)]
    labels = [c for c in columns if c.startswith(cfg.label_prefix)]
    keep = [c for c in columns if c in _BOOKKEEPING]
    rois = [c for c in columns if c not in inputs + labels + keep]
    if not rois:
        raise DsrpipeError(f"{path}: no ROI columns, only inputs, labels or bookkeeping")
    block = df["block"].to_numpy() if "block" in df else np.zeros(len(df))
    starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])  # contiguous runs of one block value
    bounds = np.r_[starts, len(data)]
    bold = np.vstack([clean(df[rois].to_numpy()[a:b], cfg.tr, cfg, source=f"{path} block {block[a]:g}")
                      for a, b in zip(bounds[:-1], bounds[1:])])
    fmri = {"config": to_dict(cfg), "tr": cfg.tr, "block_starts": starts.tolist(),  # bookkeeping as ints when integral
            **{k: (df[k].astype(int) if (df[k] % 1 == 0).all() else df[k]).tolist() for k in keep}}
    meta = {"fmri": fmri, "provenance": {"source": str(path), "sha256": _sha256(path)}}
    log.info("%s: %d ROIs, %d inputs, %d labels, %d volumes in %d block(s), TR %.4g s", path, len(rois),
             len(inputs), len(labels), len(data), len(starts), cfg.tr)
    side = [TimeSeries(data=df[names].to_numpy(), channels=names, dt=cfg.tr, subject=subject, modality=modality,
                       meta=copy.deepcopy(meta)) if names else None
            for names, modality in ((inputs, "inputs"), (labels, "labels"))]
    return (TimeSeries(data=bold, channels=rois, dt=cfg.tr, subject=subject, modality="fmri", meta=meta), *side)


def roi_table_timeseries(path: str | os.PathLike, *, cfg: FMRIConfig, subject: str) -> TimeSeries:
    """An ROI table as one typed series: BOLD ``continuous``, then ``input`` and ``label`` channels.

    The BOLD columns are cleaned as in :func:`read_roi_table`; inputs are kept
    as they are, labels as integers as in the table (a group of 0/1 columns
    with at most one 1 per row is one one-hot variable, otherwise each
    column is an integer code variable), described in ``meta["categorical"]`` (see
    :mod:`dsrpipe.preprocessing.behaviour`). ``meta["fmri"]`` also names the
    ``input_columns`` and ``label_columns``.
    """
    from dsrpipe.io.timeseries import CONTINUOUS, INPUT, LABEL
    from dsrpipe.preprocessing.behaviour import BehaviourConfig, label_channels

    bold, inputs, labels = read_roi_table(path, cfg=cfg, subject=subject)
    parts, types = [bold.data], [CONTINUOUS] * bold.n_channels
    channels, categorical = list(bold.channels), {}
    if inputs is not None:
        parts.append(inputs.data)
        channels += inputs.channels
        types += [INPUT] * inputs.n_channels
    if labels is not None:
        frame = pd.DataFrame(labels.data, columns=[f"label_{c[len(cfg.label_prefix):]}" for c in labels.channels])
        if (frame % 1 != 0).any().any():
            raise DsrpipeError(f"{path}: label columns must hold integers (categories), got fractions")
        cols, names, categorical = label_channels(frame.astype(np.int64), list(frame.columns),
                                                  BehaviourConfig(encoding="code"), str(path))
        parts.append(np.column_stack(cols))
        channels += names
        types += [LABEL] * len(names)
    meta = {**bold.meta, "categorical": categorical}
    meta["fmri"]["input_columns"] = [] if inputs is None else list(inputs.channels)
    meta["fmri"]["label_columns"] = [] if labels is None else list(labels.channels)
    return TimeSeries(data=np.column_stack(parts).astype(np.float64), channels=channels, dt=bold.dt,
                      subject=subject, modality="fmri", meta=meta, channel_types=types)
