"""The one on-disk time-series format of dsrpipe: Parquet plus JSON metadata.

Every preprocessing step writes, and training and evaluation read, a Parquet
table with one column per channel (rows are time points) whose schema
metadata holds, under the key ``dsrpipe``, a JSON object with the sampling
interval, channel names, subject, modality and free-form provenance.

Channel types
-------------
Each channel has a type (``channel_types`` in the metadata, one per channel;
a file without them has only ``continuous`` channels):

``continuous``
    A real-valued observation (EEG, BOLD, smoothed rates, plain tables).
    Standardised by ``prepare``; a Gaussian observation model.
``count``
    Non-negative integer counts per bin (binned spikes), for a Poisson
    observation model. Stored as integers in the preprocessed file.
``input``
    An external input s_t (task stimuli, cues): it drives the model
    (``+ C s_t``) and is never predicted. Never standardised.
``label``
    A categorical observation, stored as integers: either one integer code
    per sample (``-1`` = no category) or a one-hot group of 0/1 columns.
    ``meta["categorical"]`` describes each variable (columns, encoding,
    categories). Never standardised.
``ordinal``
    An ordered categorical observation, integer levels 0..K-1 (``-1`` =
    missing). Never standardised.

``continuous`` and ``count`` are what today's models fit (:data:`MODELLED`);
:func:`read_timeseries` and :func:`load_series` return only those unless
asked for other types (``types=None`` returns every channel), so a file with
task inputs and labels trains and evaluates like one without them, while a
training step that uses inputs or labels asks for them explicitly.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dsrpipe import DsrpipeError
from dsrpipe.io.atomic import atomic_path

_META_KEY = b"dsrpipe"
TABLE_SUFFIXES = (".npy", ".csv", ".tsv", ".parquet")

CONTINUOUS, COUNT, INPUT, LABEL, ORDINAL = "continuous", "count", "input", "label", "ordinal"
#: every channel type, in the order of the module docstring
CHANNEL_TYPES = (CONTINUOUS, COUNT, INPUT, LABEL, ORDINAL)
#: the channel types today's models fit; the default selection of the readers
MODELLED = (CONTINUOUS, COUNT)
#: channel types kept as integers on disk
INTEGER_TYPES = (COUNT, LABEL, ORDINAL)


@dataclass
class TimeSeries:
    """A multichannel recording.

    Attributes
    ----------
    data : ndarray, shape (T, N)
        Samples in rows, channels in columns.
    channels : list of str
        N channel names.
    dt : float or None
        Sampling interval in seconds (or the system's time unit); None if unknown.
    subject : str
        Subject label (without the ``sub-`` prefix).
    modality : str
        ``timeseries``, ``eeg``, ``fmri``, ...
    meta : dict
        JSON-serialisable extras: standardisation, split, provenance.
    channel_types : list of str or None
        One of :data:`CHANNEL_TYPES` per channel (see the module docstring);
        None means every channel is ``continuous``.
    """

    data: np.ndarray
    channels: list[str]
    dt: float | None = None
    subject: str = "unknown"
    modality: str = "timeseries"
    meta: dict[str, Any] = field(default_factory=dict)
    channel_types: list[str] | None = None

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        if self.data.ndim != 2:
            raise DsrpipeError(f"time series must be 2-D (T x N), got shape {self.data.shape}")
        if len(self.channels) != self.data.shape[1]:
            raise DsrpipeError(
                f"{len(self.channels)} channel names for {self.data.shape[1]} columns"
            )
        if self.channel_types is None:
            self.channel_types = [CONTINUOUS] * len(self.channels)
        self.channel_types = [str(t) for t in self.channel_types]
        if len(self.channel_types) != len(self.channels):
            raise DsrpipeError(f"{len(self.channel_types)} channel types for {len(self.channels)} channels")
        if unknown := sorted(set(self.channel_types) - set(CHANNEL_TYPES)):
            raise DsrpipeError(f"unknown channel type(s) {unknown}; expected {', '.join(CHANNEL_TYPES)}")

    def select(self, *types: str) -> "TimeSeries":
        """The channels of the given types (same rows, a copy of ``meta``).

        Examples
        --------
        >>> inputs = ts.select("input")            # (T, K) external inputs
        >>> observed = ts.select(*MODELLED)         # what today's models fit
        """
        keep = [j for j, t in enumerate(self.channel_types) if t in types]
        meta = copy.deepcopy(self.meta)
        stdz = meta.get("standardisation")
        if isinstance(stdz, dict):  # per-channel lists follow the selection
            meta["standardisation"] = {k: [v[j] for j in keep] if isinstance(v, list) and len(v) == self.n_channels
                                       else v for k, v in stdz.items()}
        return TimeSeries(data=self.data[:, keep], channels=[self.channels[j] for j in keep], dt=self.dt,
                          subject=self.subject, modality=self.modality, meta=meta,
                          channel_types=[self.channel_types[j] for j in keep])

    @property
    def n_samples(self) -> int:
        return self.data.shape[0]

    @property
    def n_channels(self) -> int:
        return self.data.shape[1]


def write_timeseries(ts: TimeSeries, path: str | os.PathLike) -> None:
    """Write ``ts`` to ``path`` as Parquet with dsrpipe metadata (atomically).

    Channels of an integer type (``count``, ``label``, ``ordinal``) whose values
    are all integers are stored as int64 columns.
    """
    df = pd.DataFrame(ts.data, columns=[str(c) for c in ts.channels])
    for j, kind in enumerate(ts.channel_types):
        col = ts.data[:, j]
        if kind in INTEGER_TYPES and np.issubdtype(col.dtype, np.number) and np.all(col == np.round(col)):
            df[df.columns[j]] = col.astype(np.int64)
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = {
        "channels": list(map(str, ts.channels)),
        "channel_types": list(ts.channel_types),
        "dt": ts.dt,
        "subject": ts.subject,
        "modality": ts.modality,
        "meta": ts.meta,
    }
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_timeseries(path: str | os.PathLike, types: tuple[str, ...] | None = MODELLED) -> TimeSeries:
    """Read a dsrpipe Parquet time series written by :func:`write_timeseries`.

    Parameters
    ----------
    path : path-like
    types : tuple of str or None
        Channel types to return (default: :data:`MODELLED`, what today's
        models fit); None returns every channel.

    Raises
    ------
    DsrpipeError
        Missing or unreadable file, no dsrpipe metadata, or no channel of the
        requested types (the message lists the types the file has).
    """
    path = Path(path)
    if not path.exists():
        raise DsrpipeError(f"{path}: file not found")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DsrpipeError(f"{path}: not a readable Parquet file ({exc})") from exc
    raw = (table.schema.metadata or {}).get(_META_KEY)
    if raw is None:
        raise DsrpipeError(f"{path}: Parquet file has no dsrpipe metadata; run `dsrpipe prepare` first")
    meta = json.loads(raw)
    data = table.to_pandas().to_numpy(dtype=np.float64)
    ts = TimeSeries(
        data=data,
        channels=meta["channels"],
        dt=meta.get("dt"),
        subject=meta.get("subject", "unknown"),
        modality=meta.get("modality", "timeseries"),
        meta=meta.get("meta", {}),
        channel_types=meta.get("channel_types"),
    )
    if types is None or set(ts.channel_types) <= set(types):
        return ts
    selected = ts.select(*types)
    if selected.n_channels == 0:
        raise DsrpipeError(f"{path}: no channel of type {', '.join(types)}; the file has "
                           f"{', '.join(sorted(set(ts.channel_types)))} channels only")
    return selected


def read_table(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read a plain T x N table (``.npy``, ``.csv``, ``.tsv``, ``.parquet``).

    Returns the data as float64 and the channel names (``x0, x1, ...`` when the
    file has none). Raises :class:`DsrpipeError` naming the file on any problem.
    """
    path = Path(path)
    if not path.exists():
        raise DsrpipeError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.ndim == 1:
                arr = arr[:, None]
            channels = [f"x{i}" for i in range(arr.shape[1])] if arr.ndim == 2 else []
        elif suffix in (".csv", ".tsv"):
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
            arr, channels = _numeric_frame(df, path)
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
            arr, channels = _numeric_frame(df, path)
        else:
            raise DsrpipeError(
                f"{path}: unsupported file type {suffix!r}; expected one of {', '.join(TABLE_SUFFIXES)}"
            )
    except DsrpipeError:
        raise
    except Exception as exc:
        raise DsrpipeError(f"{path}: cannot read table ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 2:
        raise DsrpipeError(f"{path}: expected a 2-D table (T x N), got shape {arr.shape}")
    return np.asarray(arr, dtype=np.float64), channels


def _numeric_frame(df: pd.DataFrame, path: Path) -> tuple[np.ndarray, list[str]]:
    if len(df) == 0:
        raise DsrpipeError(f"{path}: the table has no data rows (only a header); give one row per sample")
    non_numeric = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        raise DsrpipeError(f"{path}: non-numeric columns {non_numeric}; a table holds one numeric column per "
                           "channel: drop the text column(s) (labels go in a behaviour table)")
    return df.to_numpy(dtype=np.float64), [str(c) for c in df.columns]


def load_series(path: str | os.PathLike, dt: float | None = None,
                types: tuple[str, ...] | None = MODELLED) -> TimeSeries:
    """A dsrpipe Parquet series, or any plain table (npy/csv/tsv/parquet) used as it is.

    Plain tables are not standardised here and all their columns are
    ``continuous``; ``dt`` (when given) overrides the stored sampling
    interval; ``types`` selects channel types of a dsrpipe Parquet series as
    in :func:`read_timeseries`.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        try:
            ts = read_timeseries(path, types)
            if dt is not None:
                ts.dt = dt
            return ts
        except DsrpipeError as exc:
            if "no dsrpipe metadata" not in str(exc):
                raise
    data, channels = read_table(path)
    return TimeSeries(data=data, channels=channels, dt=dt, subject=path.stem,
                      meta={"provenance": {"source": str(path)}})
