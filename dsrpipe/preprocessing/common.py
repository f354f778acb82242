"""Checks, standardisation and the train/test split shared by every modality."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from dsrpipe import DsrpipeError
from dsrpipe.config import PrepareConfig, to_dict
from dsrpipe.io.timeseries import CONTINUOUS, MODELLED, TimeSeries, load_series, write_timeseries

log = logging.getLogger(__name__)


def check_data(data: np.ndarray, channels: list[str], *, source: str, min_samples: int,
               channel_types: list[str] | None = None) -> None:
    """Raise :class:`DsrpipeError` naming ``source`` if ``data`` is unusable.

    Checks: 2-D shape, at least ``min_samples`` rows, finite values, no
    constant channel among the modelled ones (``continuous`` and ``count``;
    an input or label may well be constant within a segment).
    """
    if data.ndim != 2 or data.shape[1] == 0:
        raise DsrpipeError(f"{source}: expected a T x N table with N >= 1, got shape {data.shape}")
    if data.shape[0] < min_samples:
        raise DsrpipeError(
            f"{source}: too few samples ({data.shape[0]}); at least {min_samples} are needed "
            "(use a longer recording or lower prepare.min_samples)"
        )
    bad = ~np.isfinite(data)
    if bad.any():
        cols = [channels[j] for j in np.flatnonzero(bad.any(axis=0))]
        raise DsrpipeError(
            f"{source}: {int(bad.sum())} NaN/inf value(s) in channel(s) {', '.join(cols)}; dsrpipe does not "
            "impute: interpolate or cut them out, or drop the channel(s)"
        )
    modelled = np.array([t in MODELLED for t in channel_types]) if channel_types else np.ones(data.shape[1], bool)
    std = data.std(axis=0)
    flat = (std <= 1e-12 * (1 + np.abs(data).max(axis=0))) & modelled
    const = [channels[j] for j in np.flatnonzero(flat)]
    if const:
        raise DsrpipeError(f"{source}: constant channel(s) {', '.join(const)}; drop them (a flat channel "
                           "carries no dynamics and cannot be standardised)")


def standardise(data: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None,
                which: np.ndarray | None = None):
    """Z-score columns; returns (standardised data, mean, std).

    ``which`` (bool, one per column) limits it to some columns; the others
    get mean 0 and std 1, i.e. stay as they are.
    """
    mean = data.mean(axis=0) if mean is None else mean
    std = data.std(axis=0) if std is None else std
    if which is not None:
        mean, std = np.where(which, mean, 0.0), np.where(which, std, 1.0)
    return (data - mean) / std, mean, std


def smooth_time(data: np.ndarray, sigma: float, which: np.ndarray | None = None) -> np.ndarray:
    """Gaussian smoothing along time (axis 0), ``sigma`` in samples; 0 returns a copy unchanged.

    ``scipy.ndimage.gaussian_filter1d`` with ``mode="reflect"`` (the edges mirrored,
    so a segment's first and last samples are not pulled towards zero). ``which``
    (bool, one per column) limits it to some columns (inputs and labels stay as they
    are). Meant for observation noise on a smooth signal: sigma 1-2 samples removes
    most white noise and barely changes a signal sampled well above its bandwidth.
    On the Lorenz-63 tutorial data (5 % noise) it did not improve the trained models
    (``benchmarks/README.md``, Lorenz-63 search).
    """
    if not sigma >= 0:
        raise DsrpipeError(f"smoothing sigma must be >= 0, got {sigma}")
    out = np.array(data, dtype=np.float64, copy=True)
    if sigma == 0:
        return out
    from scipy.ndimage import gaussian_filter1d

    cols = np.arange(out.shape[1]) if which is None else np.flatnonzero(which)
    if len(cols):
        out[:, cols] = gaussian_filter1d(out[:, cols], sigma, axis=0, mode="reflect")
    return out


def split_train_test(data: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split in time: the first part trains, the last ``test_fraction`` tests (no overlap)."""
    n_test = int(round(data.shape[0] * test_fraction))
    n_train = data.shape[0] - n_test
    return data[:n_train], data[n_train:]


def prepare(
    data: np.ndarray,
    channels: list[str],
    *,
    subject: str,
    cfg: PrepareConfig,
    source: str = "<array>",
    dt: float | None = None,
    modality: str = "timeseries",
    provenance: dict | None = None,
    channel_types: list[str] | None = None,
    meta: dict | None = None,
) -> tuple[TimeSeries, TimeSeries]:
    """Check, split and standardise one recording.

    The mean and standard deviation come from the training segment only and
    are applied to both segments; they are stored in the metadata so results
    can be mapped back to raw units. Only ``continuous`` and ``count``
    channels are standardised; inputs and labels are split at the same sample
    and kept as they are (see :mod:`dsrpipe.io.timeseries` for the types).
    ``meta`` (e.g. the preprocessing record) is carried into both segments.

    Returns
    -------
    train, test : TimeSeries
    """
    check_data(data, channels, source=source, min_samples=cfg.min_samples, channel_types=channel_types)
    if channel_types is not None and not any(t in MODELLED for t in channel_types):
        raise DsrpipeError(f"{source}: no continuous or count channel (only {', '.join(sorted(set(channel_types)))});"
                           " labels and inputs alone are not modelled: pair them with a neural recording")
    train, test = split_train_test(data, cfg.test_fraction)
    if len(train) < 2 or len(test) < 1:
        raise DsrpipeError(
            f"{source}: test_fraction={cfg.test_fraction} of {data.shape[0]} samples leaves "
            f"{len(train)} for training and {len(test)} for testing"
        )
    if cfg.smooth_sigma > 0:  # each segment on its own: nothing of the test segment reaches training
        # continuous channels only: smoothed counts would no longer be counts for the Poisson readout
        cont = None if channel_types is None else np.array([t == CONTINUOUS for t in channel_types])
        train, test = smooth_time(train, cfg.smooth_sigma, cont), smooth_time(test, cfg.smooth_sigma, cont)
    if cfg.standardise:
        # a channel constant only in the training segment would divide by zero
        check_data(train, channels, source=f"{source} (training segment)", min_samples=2,
                   channel_types=channel_types)
        which = None if channel_types is None else np.array([t in MODELLED for t in channel_types])
        train, mean, std = standardise(train, which=which)
        test, _, _ = standardise(test, mean, std)
    else:
        mean, std = np.zeros(data.shape[1]), np.ones(data.shape[1])
    dt = dt if dt is not None else cfg.dt
    meta = {
        **(meta or {}),
        "standardisation": {"mean": mean.tolist(), "std": std.tolist()},
        "prepare": to_dict(cfg),
        "provenance": provenance or {"source": source},
    }
    out = []
    for split, segment, offset in (("train", train, 0), ("test", test, len(train))):
        out.append(
            TimeSeries(
                data=segment,
                channels=list(channels),
                dt=dt,
                subject=subject,
                modality=modality,
                meta={**meta, "split": split, "first_sample": offset},
                channel_types=channel_types,
            )
        )
    log.info("%s: %d samples x %d channels -> train %d, test %d", source, data.shape[0],
             data.shape[1], len(train), len(test))
    return out[0], out[1]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare_file(
    path: str | os.PathLike,
    train_out: str | os.PathLike,
    test_out: str | os.PathLike,
    *,
    subject: str,
    cfg: PrepareConfig,
) -> tuple[TimeSeries, TimeSeries]:
    """Read a table (npy/csv/tsv/parquet), prepare it, write both segments as Parquet.

    A dsrpipe Parquet input keeps its sampling interval and modality unless
    ``cfg.dt`` is set. Nothing is written when a check fails.
    """
    path = Path(path)
    # dsrpipe Parquet keeps its dt, modality and every channel type; plain tables are read as is
    ts = load_series(path, dt=cfg.dt, types=None)
    provenance = {"source": str(path), "sha256": _sha256(path)}
    carried = {k: ts.meta[k] for k in ("categorical",) if k in ts.meta}
    train, test = prepare(ts.data, ts.channels, subject=subject, cfg=cfg, source=str(path), dt=ts.dt,
                          modality=ts.modality, provenance=provenance, channel_types=ts.channel_types,
                          meta=carried)
    write_timeseries(train, train_out)
    write_timeseries(test, test_out)
    return train, test
