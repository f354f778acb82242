"""The one on-disk time-series format of dsrpipe: Parquet plus JSON metadata.

Every preprocessing step writes, and training and evaluation read, a Parquet
table with one column per channel (rows are time points) whose schema
metadata holds, under the key ``dsrpipe``, a JSON object with the sampling
interval, channel names, subject, modality and free-form provenance.
"""

from __future__ import annotations

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
    """

    data: np.ndarray
    channels: list[str]
    dt: float | None = None
    subject: str = "unknown"
    modality: str = "timeseries"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        if self.data.ndim != 2:
            raise DsrpipeError(f"time series must be 2-D (T x N), got shape {self.data.shape}")
        if len(self.channels) != self.data.shape[1]:
            raise DsrpipeError(
                f"{len(self.channels)} channel names for {self.data.shape[1]} columns"
            )

    @property
    def n_samples(self) -> int:
        return self.data.shape[0]

    @property
    def n_channels(self) -> int:
        return self.data.shape[1]


def write_timeseries(ts: TimeSeries, path: str | os.PathLike) -> None:
    """Write ``ts`` to ``path`` as Parquet with dsrpipe metadata (atomically)."""
    df = pd.DataFrame(ts.data, columns=[str(c) for c in ts.channels])
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = {
        "channels": list(map(str, ts.channels)),
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


def read_timeseries(path: str | os.PathLike) -> TimeSeries:
    """Read a dsrpipe Parquet time series written by :func:`write_timeseries`."""
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
    return TimeSeries(
        data=data,
        channels=meta["channels"],
        dt=meta.get("dt"),
        subject=meta.get("subject", "unknown"),
        modality=meta.get("modality", "timeseries"),
        meta=meta.get("meta", {}),
    )


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
    non_numeric = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        raise DsrpipeError(f"{path}: non-numeric columns {non_numeric}")
    return df.to_numpy(dtype=np.float64), [str(c) for c in df.columns]


def load_series(path: str | os.PathLike, dt: float | None = None) -> TimeSeries:
    """A dsrpipe Parquet series, or any plain table (npy/csv/tsv/parquet) used as it is.

    Plain tables are not standardised here; ``dt`` (when given) overrides the
    stored sampling interval.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        try:
            ts = read_timeseries(path)
            if dt is not None:
                ts.dt = dt
            return ts
        except DsrpipeError as exc:
            if "no dsrpipe metadata" not in str(exc):
                raise
    data, channels = read_table(path)
    return TimeSeries(data=data, channels=channels, dt=dt, subject=path.stem,
                      meta={"provenance": {"source": str(path)}})
