"""Spike trains (any Neo-readable file) to binned counts or smoothed rates.

The result is one :class:`~dsrpipe.io.timeseries.TimeSeries` with a row per
time bin and a column per unit. Several Neo segments (trials, recording
sessions) are binned separately, each on its own edges, and stacked in time;
``meta["spikes"]["segments"]`` records where each one starts so that later
steps can avoid windows that straddle a boundary. Splitting and
standardisation happen later, in :mod:`dsrpipe.preprocessing.common`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d

from dsrpipe import DsrpipeError
from dsrpipe.config import to_dict
from dsrpipe.io.timeseries import CONTINUOUS, COUNT, TimeSeries
from dsrpipe.preprocessing.common import _sha256

log = logging.getLogger(__name__)

#: annotation keys tried, in this order, for a unit name when a SpikeTrain has no ``name``
UNIT_ANNOTATIONS = ("unit_name", "unit_id", "unit", "id")


@dataclass(frozen=True)
class SpikesConfig:
    """How spike trains are selected and binned.

    Attributes
    ----------
    bin_width : float
        Bin width in seconds.
    units : tuple of str or int, or None
        Units to keep: a string is a unit name, an int a position in the order
        in which units first appear in the file. None keeps all units.
    segments : tuple of int, or None
        Neo segment indices to use (None: all), concatenated in this order.
    drop_silent : bool
        Drop units without a spike in the selected data (the number is logged).
        A silent unit named in ``units`` is always an error.
    rate : bool
        False: spike counts per bin (for a Poisson observation model). True:
        ``sqrt(count / bin_width)`` (square root of the rate in Hz, which
        stabilises the variance), then Gaussian-smoothed within each segment.
    smooth_sigma_bins : float
        Standard deviation of the Gaussian kernel in bins (rate mode only; 0 = none).
    t_start, t_stop : float or None
        Optional window in seconds (the spike trains' own time axis), applied
        to every segment.
    """

    bin_width: float = 0.05
    units: tuple[str | int, ...] | None = None
    segments: tuple[int, ...] | None = None
    drop_silent: bool = True
    rate: bool = False
    smooth_sigma_bins: float = 1.0
    t_start: float | None = None
    t_stop: float | None = None

    def __post_init__(self) -> None:
        if self.units is not None:
            object.__setattr__(self, "units", tuple(self.units))
            _check(len(self.units) > 0, "spikes.units must be null or a non-empty list")
            _check(all(isinstance(u, (str, int)) and not isinstance(u, bool) for u in self.units),
                   "spikes.units must hold unit names (str) or indices (int)")
        if self.segments is not None:
            object.__setattr__(self, "segments", tuple(self.segments))
            _check(len(self.segments) > 0, "spikes.segments must be null or a non-empty list")
            _check(all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.segments),
                   "spikes.segments must hold non-negative integers")
        _check(self.bin_width > 0, "spikes.bin_width must be positive")
        _check(self.smooth_sigma_bins >= 0, "spikes.smooth_sigma_bins must be >= 0")
        if self.t_start is not None and self.t_stop is not None:
            _check(self.t_start < self.t_stop, "spikes.t_start must be smaller than spikes.t_stop")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DsrpipeError(message)


def _read_block(path: Path, io: str | None) -> tuple[Any, str]:
    """Read the first Neo Block of ``path``; returns (block, IO class name)."""
    import neo.io

    if io is not None:
        cls = getattr(neo.io, io, None)
        if not (isinstance(cls, type) and issubclass(cls, neo.io.baseio.BaseIO)):
            raise DsrpipeError(f"{path}: unknown Neo IO class {io!r}")
        candidates = [cls]
    else:
        candidates = list(dict.fromkeys(neo.io.list_candidate_ios(str(path))))
        if not candidates:
            raise DsrpipeError(f"{path}: no Neo IO reads files with suffix {path.suffix!r}")
    errors = []
    for cls in candidates:
        # NixIO opens read-write by default; never risk modifying the input
        kwargs = {"mode": "ro"} if cls.__name__ == "NixIO" else {}
        reader = None
        try:
            reader = cls(str(path), **kwargs)
            return reader.read_block(), cls.__name__
        except Exception as exc:  # Neo, h5py, scipy and pickle raise many types
            errors.append(f"{cls.__name__}: {type(exc).__name__}: {exc}")
        finally:
            close = getattr(reader, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # a half-open corrupt file may fail to close
                    pass
    raise DsrpipeError(f"{path}: unreadable, corrupt or truncated Neo file ({'; '.join(errors)})")


def _unit_name(st: Any, index: int, groups: list[Any]) -> str:
    if st.name:
        return str(st.name)
    for key in UNIT_ANNOTATIONS:
        if st.annotations.get(key) is not None:
            return str(st.annotations[key])
    for group in groups:
        if group.name and any(member is st for member in group.spiketrains):
            return str(group.name)
    return str(index)


def _collect(block: Any, path: Path, cfg: SpikesConfig
             ) -> tuple[list[str], list[tuple[int, dict[str, np.ndarray], float, float]]]:
    """Unit names in order of appearance; per selected segment, spike times (s) per unit and the window."""
    segments = block.segments
    chosen = cfg.segments if cfg.segments is not None else tuple(range(len(segments)))
    bad = [s for s in chosen if s >= len(segments)]
    if bad:
        raise DsrpipeError(f"{path}: segment(s) {bad} requested but the file has {len(segments)}")
    if not any(seg.spiketrains for seg in segments):
        raise DsrpipeError(f"{path}: no spike trains in the file")
    names: list[str] = []
    out = []
    for s in chosen:
        seg = segments[s]
        if not seg.spiketrains:
            raise DsrpipeError(f"{path}: segment {s} has no spike trains")
        trains: dict[str, np.ndarray] = {}
        for i, st in enumerate(seg.spiketrains):
            name = _unit_name(st, i, block.groups)
            if name in trains:
                raise DsrpipeError(f"{path}: unit {name!r} appears twice in segment {s}")
            trains[name] = np.asarray(st.times.rescale("s").magnitude, dtype=np.float64)
            lo, hi = (float(t.rescale("s").magnitude) for t in (st.t_start, st.t_stop))
            if trains[name].size and (trains[name].min() < lo or trains[name].max() > hi):
                raise DsrpipeError(
                    f"{path}: unit {name!r} in segment {s} has spike times outside its t_start..t_stop "
                    f"({lo:g}..{hi:g} s; spikes from {trains[name].min():g} to {trains[name].max():g} s), which "
                    "binning would silently drop; fix t_stop (or the times) in the file")
            if name not in names:
                names.append(name)
        t0 = min(float(st.t_start.rescale("s").magnitude) for st in seg.spiketrains)
        t1 = max(float(st.t_stop.rescale("s").magnitude) for st in seg.spiketrains)
        t0 = t0 if cfg.t_start is None else max(t0, cfg.t_start)
        t1 = t1 if cfg.t_stop is None else min(t1, cfg.t_stop)
        if t1 <= t0:
            raise DsrpipeError(f"{path}: the window t_start/t_stop does not overlap segment {s}")
        if t1 - t0 < cfg.bin_width:
            raise DsrpipeError(
                f"{path}: bin_width {cfg.bin_width} s is larger than segment {s} "
                f"({t1 - t0:.6g} s from {t0:.6g} to {t1:.6g} s)"
            )
        out.append((s, trains, t0, t1))
    return names, out


def _select_units(names: list[str], cfg: SpikesConfig, path: Path) -> list[str]:
    if cfg.units is None:
        return names
    picked = []
    for u in cfg.units:
        if isinstance(u, int):
            if u >= len(names) or u < -len(names):
                raise DsrpipeError(f"{path}: unit index {u} requested but the file has {len(names)} units")
            picked.append(names[u])
        elif u in names:
            picked.append(u)
        else:
            raise DsrpipeError(f"{path}: unknown unit {u!r}; units in the file: {', '.join(names)}")
    return list(dict.fromkeys(picked))


def bin_spike_trains(
    path: str | os.PathLike,
    cfg: SpikesConfig,
    *,
    subject: str,
    io: str | None = None,
) -> TimeSeries:
    """Bin the spike trains of a Neo file into a (T, units) time series.

    Parameters
    ----------
    path : path-like
        Any file Neo reads: NeoMatlabIO (``.mat``), NixIO (``.nix``), PickleIO
        (``.pkl``; unpickling runs code, so only read trusted files), ...
        Only the first Block is used.
    cfg : SpikesConfig
    subject : str
        Subject label.
    io : str, optional
        Name of a ``neo.io`` class to use instead of guessing from the suffix.

    Returns
    -------
    TimeSeries
        ``data`` of shape (T, U): counts (stored as float, exact integers) or
        smoothed square-root rates; channels ``unit_<name>``; ``dt`` =
        ``bin_width`` (s); modality ``spikes``. Channel type ``count`` for
        counts (a Poisson observation model applies; also
        ``meta["spikes"]["counts"]``), ``continuous`` for rates.

    Raises
    ------
    DsrpipeError
        Naming the file: unreadable file, no spike trains, unknown unit or
        segment, an explicitly requested silent unit, all units silent, a bin
        wider than a segment.

    Notes
    -----
    Units are matched across segments by name: ``SpikeTrain.name``, else one
    of :data:`UNIT_ANNOTATIONS`, else the name of a Group holding the train,
    else its position in the segment. Each segment is binned with
    :func:`numpy.histogram` on edges ``t0 + k * bin_width``; a last partial bin
    is dropped. A unit missing from a segment counts zero spikes there.
    """
    path = Path(path)
    if not path.exists():
        raise DsrpipeError(f"{path}: file not found")
    block, io_name = _read_block(path, io)
    names, segments = _collect(block, path, cfg)
    units = _select_units(names, cfg, path)
    bw = cfg.bin_width
    blocks, seg_meta, first = [], [], 0
    for s, trains, t0, t1 in segments:
        n_bins = int(np.floor((t1 - t0) / bw + 1e-9))
        edges = t0 + bw * np.arange(n_bins + 1)
        counts = np.zeros((n_bins, len(units)), dtype=np.int64)
        for j, unit in enumerate(units):
            if unit not in trains:
                log.warning("%s: unit %s missing from segment %d; counted as silent there", path, unit, s)
                continue
            counts[:, j] = np.histogram(trains[unit], bins=edges)[0]
        blocks.append(counts)
        seg_meta.append({"index": s, "t_start": t0, "t_stop": float(edges[-1]),
                         "n_bins": n_bins, "first_row": first})
        first += n_bins
    counts = np.concatenate(blocks, axis=0)
    totals = counts.sum(axis=0)
    if cfg.units is not None:
        silent = [u for u, n in zip(units, totals) if n == 0]
        if silent:
            raise DsrpipeError(f"{path}: requested unit(s) {', '.join(silent)} have no spikes "
                               "in the selected data")
    if not totals.any():
        raise DsrpipeError(f"{path}: all {len(units)} units are silent in the selected data")
    dropped: list[str] = []
    if cfg.drop_silent:
        keep = totals > 0
        dropped = [u for u, k in zip(units, keep) if not k]
        if dropped:
            log.info("%s: dropped %d silent unit(s): %s", path, len(dropped), ", ".join(dropped))
        units = [u for u, k in zip(units, keep) if k]
        counts = counts[:, keep]
    if cfg.rate:
        data = np.sqrt(counts / bw)
        if cfg.smooth_sigma_bins > 0:
            for m in seg_meta:  # smooth within each segment, never across a boundary
                rows = slice(m["first_row"], m["first_row"] + m["n_bins"])
                data[rows] = gaussian_filter1d(data[rows], cfg.smooth_sigma_bins, axis=0, mode="nearest")
    else:
        data = counts.astype(np.float64)
    log.info("%s: %d unit(s), %d segment(s), %d bins of %g s (%s)", path, len(units), len(seg_meta),
             counts.shape[0], bw, "sqrt rates" if cfg.rate else "counts")
    meta = {
        "spikes": {
            "config": to_dict(cfg),
            "counts": not cfg.rate,
            "bin_width": bw,
            "io": io_name,
            "units": units,
            "dropped_silent": dropped,
            "spike_totals": {u: int(n) for u, n in zip(units, counts.sum(axis=0))},
            "segments": seg_meta,
        },
        "provenance": {"source": str(path), "sha256": _sha256(path)},
    }
    kind = CONTINUOUS if cfg.rate else COUNT
    return TimeSeries(data=data, channels=[f"unit_{u}" for u in units], dt=bw,
                      subject=subject, modality="spikes", meta=meta, channel_types=[kind] * len(units))
