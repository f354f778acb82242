"""Behaviour and task: event tables or per-sample tables to labels and inputs on a sampling grid.

Two kinds of table (TSV, CSV or Parquet) are read:

**events** (BIDS ``*_events.tsv`` style): one row per event with ``onset``
and ``duration`` in seconds and a category column (``trial_type``). An event
covers the grid samples ``onset <= t < onset + duration``; an event of zero
or unknown (``n/a``) duration covers the one sample nearest its onset.
Trial types named in ``input_events`` become external-input channels
(``input_<type>``, 1 while the event lasts, else 0); the others (or those in
``label_events``) form one categorical label; ``ordinal_column`` (optional)
gives an ordinal label from a numeric column. Where label events overlap,
the later onset wins (the count is logged).

**samples**: one row per sample. Columns starting with ``input_`` are
inputs, with ``label_`` categorical labels (strings or integers; a group of
two or more 0/1 columns with at most one 1 per row is taken as one one-hot
variable, as in the NBKO tables), with ``ordinal_`` ordinal labels; any
other numeric column is a ``continuous`` behavioural measure (e.g. running
speed). A ``time`` column (seconds) gives the row times, else ``dt`` does.

Channel types
-------------
The output follows the convention of :mod:`dsrpipe.io.timeseries`: each
channel is ``input``, ``label``, ``ordinal`` or ``continuous``
(``TimeSeries.channel_types``). Labels are integers: one-hot 0/1 columns
``label_<category>`` or one integer code column ``label_<variable>`` (``-1``:
no category at that sample). ``meta["categorical"]`` maps each categorical
variable to ``{"columns", "encoding" ("onehot" or "code"), "categories"}``;
``meta["ordinal"]`` maps each ordinal channel to its ``levels`` (the raw
values of codes 0..K-1). Inputs and labels are never standardised.

The grid
--------
With a reference recording (a preprocessed neural series) the output has the
reference's ``dt`` and number of samples, sample k at ``t_start + k dt`` on the
table's clock; without one, its own ``dt`` and the table's extent. Per-sample
tables are resampled to the grid by zero-order hold (labels, ordinal labels,
inputs) or linear interpolation (continuous columns).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dsrpipe import DsrpipeError
from dsrpipe.config import to_dict
from dsrpipe.io.timeseries import CONTINUOUS, INPUT, LABEL, ORDINAL, TimeSeries
from dsrpipe.preprocessing.common import _sha256

log = logging.getLogger(__name__)

SUFFIXES = (".tsv", ".csv", ".parquet")
_EVENT_COLUMNS = ("onset", "duration")


def _fail(condition: bool, message: str) -> None:
    if condition:
        raise DsrpipeError(message)


def _names(value: Any, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    _fail(not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, int)) for v in value),
          f"behaviour.{key} must be a list of names, got {value!r}")
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class BehaviourConfig:
    """How a behaviour/task table becomes label and input channels.

    Attributes
    ----------
    format : {"auto", "events", "samples"}
        ``auto``: an events table when it has ``onset`` and ``duration``
        columns, else a per-sample table.
    dt : float or None
        Sampling interval in seconds of the output grid when there is no
        reference recording (events tables need it then), and of the rows of
        a per-sample table without a ``time`` column.
    t_start : float
        Time (s, on the table's clock) of the grid's first sample.
    label_column : str
        Events: the category column (BIDS ``trial_type``).
    label_events : tuple of str or None
        Events: the categories that form the label (None: every category not
        in ``input_events``).
    input_events : tuple of str
        Events: categories that become input channels ``input_<category>``.
    categories : tuple of str or None
        Order of the label categories (None: sorted); a category not listed
        is an error.
    encoding : {"onehot", "code"}
        Labels as one 0/1 column per category, or one integer code column.
    ordinal_column : str or None
        Events: a numeric column whose values become an ordinal label
        ``ordinal_<column>`` (levels sorted, codes 0..K-1) while the event lasts.
    time_column : str
        Samples: the column with each row's time in seconds, if present.
    """

    format: str = "auto"
    dt: float | None = None
    t_start: float = 0.0
    label_column: str = "trial_type"
    label_events: tuple[str, ...] | None = None
    input_events: tuple[str, ...] = ()
    categories: tuple[str, ...] | None = None
    encoding: str = "onehot"
    ordinal_column: str | None = None
    time_column: str = "time"

    def __post_init__(self) -> None:
        for key in ("label_events", "input_events", "categories"):
            object.__setattr__(self, key, _names(getattr(self, key), key))
        if self.input_events is None:
            object.__setattr__(self, "input_events", ())
        _fail(self.format not in ("auto", "events", "samples"), "behaviour.format must be auto, events or samples")
        _fail(self.encoding not in ("onehot", "code"), "behaviour.encoding must be onehot or code")
        _fail(self.dt is not None and not self.dt > 0, "behaviour.dt must be positive")
        _fail(not np.isfinite(self.t_start), "behaviour.t_start must be a finite number")
        _fail(set(self.label_events or ()) & set(self.input_events),
              "behaviour.label_events and behaviour.input_events overlap")


# ---------------------------------------------------------------- reading


def read_behaviour_table(path: Path) -> pd.DataFrame:
    """The table as a DataFrame (``n/a`` cells as NaN); errors name the file."""
    _fail(not path.is_file(), f"{path}: behaviour table not found")
    suffix = path.suffix.lower()
    _fail(suffix not in SUFFIXES, f"{path}: unsupported behaviour table {suffix!r}; expected {', '.join(SUFFIXES)}")
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", na_values=["n/a"], keep_default_na=True)
    except Exception as exc:  # pandas and pyarrow raise many types on corrupt files
        raise DsrpipeError(f"{path}: cannot read behaviour table ({type(exc).__name__}: {exc})") from exc
    _fail(df.shape[0] == 0 or df.shape[1] == 0, f"{path}: behaviour table is empty")
    df.columns = [str(c) for c in df.columns]
    return df


def _category_list(values: pd.Series, cfg: BehaviourConfig, src: str) -> list[str]:
    found = sorted({str(v) for v in values.dropna()})
    if cfg.categories is None:
        return found
    unknown = sorted(set(found) - set(cfg.categories))
    _fail(bool(unknown), f"{src}: categories {unknown} are not in behaviour.categories {list(cfg.categories)}")
    return list(cfg.categories)


def _encode(name: str, codes: np.ndarray, categories: list[str], encoding: str
            ) -> tuple[list[np.ndarray], list[str], dict]:
    """Integer codes (-1: none) as one code column or one 0/1 column per category."""
    if encoding == "code":
        columns, cols = [f"label_{name}"], [codes]
    else:
        columns = [f"label_{c}" for c in categories]
        cols = [(codes == k).astype(np.int64) for k in range(len(categories))]
    return cols, columns, {"columns": columns, "encoding": encoding, "categories": categories}


def events_to_channels(events: pd.DataFrame, times: np.ndarray, dt: float, cfg: BehaviourConfig, *, source: str
                       ) -> tuple[np.ndarray, list[str], list[str], dict]:
    """Events table to channels on the grid ``times`` (s), spacing ``dt``.

    Returns
    -------
    data : ndarray, shape (len(times), C)
    channels, channel_types : list of str
    meta : dict
        ``categorical``, ``ordinal`` and counts for ``meta["behaviour"]``.
    """
    missing = [c for c in (*_EVENT_COLUMNS, cfg.label_column) if c not in events.columns]
    _fail(bool(missing), f"{source}: events table lacks column(s) {missing}")
    onset = pd.to_numeric(events["onset"], errors="coerce").to_numpy(dtype=float)
    _fail(not np.isfinite(onset).all(), f"{source}: non-numeric or missing onset values")
    duration = pd.to_numeric(events["duration"], errors="coerce").to_numpy(dtype=float)
    duration = np.where(np.isfinite(duration), duration, 0.0)
    _fail(bool((duration < 0).any()), f"{source}: negative event durations")
    kinds = events[cfg.label_column].astype(object).where(events[cfg.label_column].notna(), None)
    kinds = np.array([None if k is None else str(k) for k in kinds], dtype=object)

    def covered(i: int) -> np.ndarray:
        if duration[i] > 0:
            return np.flatnonzero((times >= onset[i]) & (times < onset[i] + duration[i]))
        k = int(np.round((onset[i] - times[0]) / dt))
        return np.array([k]) if 0 <= k < len(times) else np.array([], dtype=int)

    unknown_inputs = sorted(set(cfg.input_events) - set(kinds[kinds != None]))  # noqa: E711
    if unknown_inputs:
        log.warning("%s: input event(s) %s do not occur; their channels are all 0", source, unknown_inputs)
    cols, names, types = [], [], []
    for kind in cfg.input_events:
        col = np.zeros(len(times), dtype=np.int64)
        for i in np.flatnonzero(kinds == kind):
            col[covered(i)] = 1
        cols.append(col), names.append(f"input_{kind}"), types.append(INPUT)
    is_label = np.array([k is not None and k not in cfg.input_events
                         and (cfg.label_events is None or k in cfg.label_events) for k in kinds])
    meta: dict[str, Any] = {"categorical": {}, "ordinal": {}, "n_events": int(len(events))}
    order = np.argsort(onset, kind="stable")  # later onsets overwrite earlier ones
    if is_label.any():
        categories = _category_list(pd.Series(kinds[is_label]), cfg, source)
        codes = np.full(len(times), -1, dtype=np.int64)
        overlaps = 0
        for i in order[is_label[order]]:
            rows = covered(i)
            overlaps += int((codes[rows] >= 0).any())
            codes[rows] = categories.index(kinds[i])
        if overlaps:
            log.warning("%s: %d label event(s) overlap an earlier one; the later onset wins", source, overlaps)
        c, n, meta["categorical"][cfg.label_column] = _encode(cfg.label_column, codes, categories, cfg.encoding)
        cols += c
        names += n
        types += [LABEL] * len(n)
        meta["n_unlabelled"] = int((codes < 0).sum())
    if cfg.ordinal_column is not None:
        _fail(cfg.ordinal_column not in events.columns, f"{source}: no ordinal column {cfg.ordinal_column!r}")
        values = pd.to_numeric(events[cfg.ordinal_column], errors="coerce").to_numpy(dtype=float)
        levels = np.unique(values[np.isfinite(values)])
        _fail(levels.size == 0, f"{source}: ordinal column {cfg.ordinal_column!r} has no numeric value")
        col = np.full(len(times), -1, dtype=np.int64)
        for i in order:
            if np.isfinite(values[i]):
                col[covered(i)] = int(np.searchsorted(levels, values[i]))
        name = f"ordinal_{cfg.ordinal_column}"
        cols.append(col), names.append(name), types.append(ORDINAL)
        meta["ordinal"][name] = {"levels": levels.tolist()}
    _fail(not cols, f"{source}: no label, input or ordinal channel (check behaviour.label_events/input_events)")
    return np.column_stack(cols), names, types, meta


def label_channels(df: pd.DataFrame, columns: list[str], cfg: BehaviourConfig, source: str
                   ) -> tuple[list[np.ndarray], list[str], dict]:
    """Per-sample label columns to integer channels; a 0/1 group with <= one 1 per row stays one-hot."""
    binary = all(pd.api.types.is_numeric_dtype(df[c]) and df[c].isin((0, 1)).all() for c in columns)
    if len(columns) >= 2 and binary and (df[columns].sum(axis=1) <= 1).all():
        meta = {"label": {"columns": list(columns), "encoding": "onehot",
                          "categories": [c[len("label_"):] for c in columns]}}
        return [df[c].to_numpy(dtype=np.int64) for c in columns], list(columns), meta
    cols, names, meta = [], [], {}
    for column in columns:
        variable = column[len("label_"):] or column
        values = df[column]
        as_text = values.map(lambda v: None if pd.isna(v) else (str(int(v)) if isinstance(v, float)
                                                                  and float(v).is_integer() else str(v)))
        categories = _category_list(as_text, cfg, f"{source} column {column}")
        codes = np.array([-1 if v is None else categories.index(v) for v in as_text], dtype=np.int64)
        c, n, meta[variable] = _encode(variable, codes, categories, cfg.encoding)
        cols += c
        names += n
    return cols, names, meta


def samples_to_channels(df: pd.DataFrame, cfg: BehaviourConfig, *, source: str
                        ) -> tuple[np.ndarray, list[str], list[str], dict, np.ndarray]:
    """Per-sample table to channels on its own rows; also returns the row times (s)."""
    if cfg.time_column in df.columns:
        times = pd.to_numeric(df[cfg.time_column], errors="coerce").to_numpy(dtype=float)
        _fail(not np.isfinite(times).all() or (np.diff(times) <= 0).any(),
              f"{source}: column {cfg.time_column!r} must hold increasing times in seconds")
    else:
        _fail(cfg.dt is None, f"{source}: a per-sample table needs a {cfg.time_column!r} column or behaviour.dt")
        times = cfg.t_start + cfg.dt * np.arange(len(df))
    rest = [c for c in df.columns if c != cfg.time_column]
    labels = [c for c in rest if c.startswith("label_")]
    cols, names, types = [], [], []
    meta: dict[str, Any] = {"categorical": {}, "ordinal": {}}
    if labels:
        c, n, meta["categorical"] = label_channels(df, labels, cfg, source)
        cols += c
        names += n
        types += [LABEL] * len(n)
    for column in rest:
        if column in labels:
            continue
        values = pd.to_numeric(df[column], errors="coerce")
        _fail(values.isna().all() or (values.isna() & df[column].notna()).any(),
              f"{source}: column {column!r} is not numeric (categorical columns need the label_ prefix)")
        if column.startswith("ordinal_"):
            levels = np.unique(values.dropna().to_numpy(dtype=float))
            cols.append(np.array([-1 if np.isnan(v) else int(np.searchsorted(levels, v)) for v in values]))
            meta["ordinal"][column] = {"levels": levels.tolist()}
            types.append(ORDINAL)
        elif column.startswith("input_"):
            _fail(values.isna().any(), f"{source}: missing values in input column {column!r}")
            cols.append(values.to_numpy(dtype=float)), types.append(INPUT)
        else:
            _fail(values.isna().any(), f"{source}: missing values in column {column!r}")
            cols.append(values.to_numpy(dtype=float)), types.append(CONTINUOUS)
        names.append(column)
    _fail(not cols, f"{source}: no behaviour columns besides {cfg.time_column!r}")
    return np.column_stack(cols).astype(float), names, types, meta, times


def _resample(data: np.ndarray, types: list[str], times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Zero-order hold for inputs and labels, linear interpolation for continuous columns."""
    idx = np.clip(np.searchsorted(times, grid + 1e-9 * (times[-1] - times[0] + 1), side="right") - 1, 0,
                  len(times) - 1)
    out = data[idx].copy()
    for j, kind in enumerate(types):
        if kind == CONTINUOUS:
            out[:, j] = np.interp(grid, times, data[:, j])
    return out


def preprocess_behaviour(path: str | os.PathLike, cfg: BehaviourConfig, *, subject: str,
                         reference: TimeSeries | None = None) -> TimeSeries:
    """Read a behaviour/task table and put its labels and inputs on a sampling grid.

    Parameters
    ----------
    path : path-like
        TSV, CSV or Parquet: an events table (``onset``, ``duration``,
        ``trial_type``) or a per-sample table (see the module docstring).
    cfg : BehaviourConfig
    subject : str
    reference : TimeSeries, optional
        The neural recording to align to: its ``dt`` and number of samples
        define the grid (``cfg.dt`` is then only the row interval of a
        per-sample table without a time column).

    Returns
    -------
    TimeSeries
        (T, C) with ``channel_types`` ``input``/``label``/``ordinal``/
        ``continuous``; labels as integers; modality ``behaviour``;
        ``meta["categorical"]``, ``meta["ordinal"]``, ``meta["behaviour"]``
        (config, format, grid, counts) and ``meta["provenance"]``.

    Raises
    ------
    DsrpipeError
        Naming the file: missing or unreadable table, missing columns,
        non-numeric values, no grid (no ``dt`` and no reference), a grid with
        no sample inside the table's time span.
    """
    path = Path(path)
    df = read_behaviour_table(path)
    kind = cfg.format if cfg.format != "auto" else (
        "events" if set(_EVENT_COLUMNS) <= set(df.columns) else "samples")
    if reference is not None:
        _fail(reference.dt is None, f"{path}: the reference recording has no sampling interval")
        dt, n = float(reference.dt), reference.n_samples
    if kind == "events":
        missing = [c for c in (*_EVENT_COLUMNS, cfg.label_column) if c not in df.columns]
        _fail(bool(missing), f"{path}: events table lacks column(s) {missing}")
        _fail(pd.to_numeric(df["onset"], errors="coerce").isna().any(), f"{path}: non-numeric or missing onset values")
        if reference is None:
            _fail(cfg.dt is None, f"{path}: set behaviour.dt (the grid) or give a reference recording")
            dt = float(cfg.dt)
            end = pd.to_numeric(df["onset"], errors="coerce") + pd.to_numeric(df["duration"], errors="coerce").fillna(0)
            n = int(np.ceil((float(end.max()) - cfg.t_start) / dt - 1e-9))
            n = max(n, 1)
        grid = cfg.t_start + dt * np.arange(n)
        data, names, types, meta = events_to_channels(df, grid, dt, cfg, source=str(path))
    else:
        data, names, types, meta, times = samples_to_channels(df, cfg, source=str(path))
        if reference is None:
            steps = np.diff(times)
            dt = float(np.round((times[-1] - times[0]) / len(steps), 12)) if len(steps) else float(cfg.dt or 1.0)
            _fail(len(steps) > 0 and np.abs(steps - dt).max() > 1e-6 * dt,
                  f"{path}: irregular {cfg.time_column!r} column; give a reference recording to resample to")
            grid = times
        else:
            grid = cfg.t_start + dt * np.arange(n)
            _fail(grid[0] > times[-1] or grid[-1] < times[0],
                  f"{path}: no row inside the reference grid [{grid[0]:g}, {grid[-1]:g}] s")
            if grid[0] < times[0] or grid[-1] > times[-1]:
                log.warning("%s: the reference grid extends beyond the table's rows; edge values are held", path)
            data = _resample(data, types, times, grid)
    log.info("%s: %s table -> %d samples x %d channels (%s), dt %g s", path, kind, data.shape[0], data.shape[1],
             ", ".join(f"{t}: {types.count(t)}" for t in dict.fromkeys(types)), dt)
    behaviour = {"config": to_dict(cfg), "format": kind, "grid": {"dt": dt, "n_samples": int(data.shape[0]),
                 "t_start": float(grid[0]), "reference": None if reference is None else reference.subject},
                 **{k: v for k, v in meta.items() if k not in ("categorical", "ordinal")}}
    out_meta = {"categorical": meta["categorical"], "ordinal": meta["ordinal"], "behaviour": behaviour,
                "provenance": {"source": str(path), "sha256": _sha256(path)}}
    return TimeSeries(data=data, channels=names, dt=dt, subject=subject, modality="behaviour", meta=out_meta,
                      channel_types=types)
