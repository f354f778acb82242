"""Join a subject's recordings on one time grid into one typed series (for multimodal training).

Each input is a dsrpipe Parquet series already on the common grid, e.g. a BOLD
file from ``dsrpipe preprocess --modality fmri`` and a behaviour file from
``dsrpipe preprocess --modality behaviour --reference BOLD.parquet`` (which
samples labels and inputs at the BOLD volumes). The merged series keeps every
channel with its type, the categorical/ordinal descriptions of all inputs, and
the modality of the first non-behaviour input (so an fMRI recording stays
``fmri`` and MTF decodes it through the HRF).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from dsrpipe import DsrpipeError
from dsrpipe.io.timeseries import TimeSeries, read_timeseries, write_timeseries

log = logging.getLogger(__name__)


def merge_series(parts: list[TimeSeries], sources: list[str] | None = None, *, subject: str | None = None,
                 modality: str | None = None) -> TimeSeries:
    """Column-join series of equal length and sampling interval.

    Parameters
    ----------
    parts : list of TimeSeries
        Two or more, every channel type kept.
    sources : list of str, optional
        Their file names (named in errors and in ``meta["merged_from"]``).
    subject, modality : str, optional
        Default: the first part's subject; the modality of the first part that is not
        ``behaviour`` (else the first part's).

    Raises
    ------
    DsrpipeError
        Different lengths or sampling intervals, repeated channel names, fewer than two parts.
    """
    sources = sources or [f"part {i + 1}" for i in range(len(parts))]
    if len(parts) < 2:
        raise DsrpipeError(f"merge needs at least two series, got {len(parts)}")
    first, first_src = parts[0], sources[0]
    for ts, src in zip(parts[1:], sources[1:]):
        if ts.n_samples != first.n_samples:
            hint = (f" (a behaviour table: dsrpipe preprocess --modality behaviour --reference {first_src})"
                    if "behaviour" in (ts.modality, first.modality) else " (same sampling interval and length)")
            raise DsrpipeError(f"{src}: {ts.n_samples} samples, but {first_src} has {first.n_samples}; put both on "
                               f"one grid first{hint}")
        same_dt = (ts.dt is None and first.dt is None) or (
            ts.dt is not None and first.dt is not None and math.isclose(ts.dt, first.dt, rel_tol=1e-9))
        if not same_dt:
            raise DsrpipeError(f"{src}: sampling interval {ts.dt} s, but {first_src} has {first.dt} s; put both on "
                               "one grid first")
    channels = [c for ts in parts for c in ts.channels]
    repeated = sorted({c for c in channels if channels.count(c) > 1})
    if repeated:
        raise DsrpipeError(f"channel name(s) {repeated} occur in more than one of {sources}; rename them")
    meta: dict = {"categorical": {}, "ordinal": {}, "merged_from": []}
    for ts, src in zip(parts, sources):
        for key in ("categorical", "ordinal"):
            meta[key].update(ts.meta.get(key) or {})
        meta["merged_from"].append({"source": src, "modality": ts.modality, "channels": list(ts.channels),
                                    "meta": {k: v for k, v in ts.meta.items() if k not in ("categorical", "ordinal")}})
    if modality is None:
        modality = next((ts.modality for ts in parts if ts.modality != "behaviour"), first.modality)
    return TimeSeries(np.column_stack([ts.data for ts in parts]), channels, dt=first.dt,
                      subject=subject or first.subject, modality=modality, meta=meta,
                      channel_types=[t for ts in parts for t in ts.channel_types])


def merge_files(paths: list[str | os.PathLike], out: str | os.PathLike, *, subject: str | None = None,
                modality: str | None = None) -> TimeSeries:
    """:func:`merge_series` of dsrpipe Parquet files (every channel type), written to ``out`` (atomically)."""
    sources = [str(p) for p in paths]
    merged = merge_series([read_timeseries(p, types=None) for p in paths], sources, subject=subject,
                          modality=modality)
    write_timeseries(merged, Path(out))
    log.info("merged %s -> %s: %d samples x %d channels (%s)", ", ".join(sources), out, merged.n_samples,
             merged.n_channels, merged.modality)
    return merged
