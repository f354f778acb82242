"""The views of a prepared series for multimodal teacher forcing (MTF).

A dsrpipe series carries one type per channel (:mod:`dsrpipe.io.timeseries`);
MTF decodes each type with its own observation model (:mod:`dsrpipe.observation`):

==============  ==========================================================================
channel type    view
==============  ==========================================================================
``continuous``  one ``gaussian`` view (``fmri`` with the SPM HRF at the file's TR for
                fmri files when ``train.mtf_hrf``)
``count``       one ``poisson`` view of the raw counts (``prepare`` z-scores counts; the
                stored mean and sd map them back)
``label``       one ``categorical`` view per label variable (``meta["categorical"]``:
                a one-hot group or a code column); a last category ``none`` stands for
                samples without a label
``ordinal``     one ``ordinal`` view (levels 0 .. C-1; missing levels are an error)
``input``       external inputs ``s_t`` of the latent model (never decoded)
==============  ==========================================================================

:func:`view_spec` fixes the views from the training file (a JSON-ready dict saved
with the run); :func:`series_to_views` turns any segment (training, validation,
test) into the same views.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from dsrpipe import DsrpipeError
from dsrpipe.io.timeseries import CONTINUOUS, COUNT, INPUT, LABEL, ORDINAL, TimeSeries
from dsrpipe.training.mtf_model import View

#: the view kinds that carry the dynamics (a run needs at least one)
DYNAMIC_KINDS = ("gaussian", "fmri", "poisson")
NONE_CATEGORY = "none"


def _name(variable: str) -> str:
    clean = re.sub(r"\W", "_", str(variable))
    return clean if clean.startswith("label") else f"label_{clean}"


def _label_variables(ts: TimeSeries, source: str) -> list[dict[str, Any]]:
    """Categorical variables: the groups of ``meta["categorical"]``, then each other label channel as a code."""
    labels = [c for c, t in zip(ts.channels, ts.channel_types) if t == LABEL]
    out, used = [], set()
    for variable, info in (ts.meta.get("categorical") or {}).items():
        columns = [str(c) for c in info.get("columns", [])]
        if not columns or not set(columns) <= set(labels):
            continue
        encoding = info.get("encoding", "onehot" if len(columns) > 1 else "code")
        categories = [str(c) for c in info.get("categories", [])]
        if encoding == "onehot" and len(categories) != len(columns):
            categories = [c.removeprefix("label_") for c in columns]
        out.append({"variable": str(variable), "channels": columns, "encoding": encoding, "categories": categories})
        used |= set(columns)
    for column in labels:
        if column in used:
            continue
        values = ts.data[:, ts.channels.index(column)]
        top = int(np.nanmax(values)) if len(values) else -1
        if top < 1:
            raise DsrpipeError(f"{source}: label channel {column!r} has fewer than two categories "
                               "(codes 0 .. C-1, -1 = none); drop it or describe it in meta['categorical']")
        out.append({"variable": column, "channels": [column], "encoding": "code",
                     "categories": [str(k) for k in range(top + 1)]})
    return out


def view_spec(ts: TimeSeries, *, readout: str = "identity", hrf: bool = True, source: str = "data") -> dict[str, Any]:
    """The MTF views of a training series, as a JSON-ready dict.

    Parameters
    ----------
    ts : TimeSeries
        Every channel (``load_series(..., types=None)``).
    readout : {"identity", "affine"}
        Readout of a Gaussian view (``train.readout``).
    hrf : bool
        Decode the continuous channels of an fmri file through the HRF (``train.mtf_hrf``).
    source : str
        Named in errors.

    Returns
    -------
    dict
        ``views``: list of ``{name, kind, channels, options, ...}``; ``inputs``: input channel names.

    Raises
    ------
    DsrpipeError
        No continuous or count channel, an fmri file without a TR, malformed labels.
    """
    by_type = {kind: [c for c, t in zip(ts.channels, ts.channel_types) if t == kind]
               for kind in (CONTINUOUS, COUNT, INPUT, ORDINAL)}
    views: list[dict[str, Any]] = []
    if by_type[CONTINUOUS]:
        if ts.modality == "fmri" and hrf:
            if not ts.dt:
                raise DsrpipeError(f"{source}: the fmri HRF decoder needs the sampling interval (TR) of the file; "
                                   "set fmri.tr (or prepare.dt), or train.mtf_hrf: false for a plain Gaussian decoder")
            views.append({"name": "continuous", "kind": "fmri", "channels": by_type[CONTINUOUS],
                          "options": {"tr": float(ts.dt)}})
        else:
            views.append({"name": "continuous", "kind": "gaussian", "channels": by_type[CONTINUOUS],
                          "options": {"readout": readout}})
    if by_type[COUNT]:
        stdz = ts.meta.get("standardisation") or {}
        idx = [ts.channels.index(c) for c in by_type[COUNT]]
        mean, std = stdz.get("mean"), stdz.get("std")
        full = isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == ts.n_channels
        views.append({"name": "count", "kind": "poisson", "channels": by_type[COUNT], "options": {},
                      "mean": [float(mean[j]) if full else 0.0 for j in idx],
                      "std": [float(std[j]) if full else 1.0 for j in idx]})
    if not views:
        raise DsrpipeError(f"{source}: train.method mtf needs at least one continuous or count channel to model the "
                           f"dynamics; the file has {', '.join(sorted(set(ts.channel_types)))} channels only")
    for var in _label_variables(ts, source):
        categories = var["categories"] + [NONE_CATEGORY]
        views.append({"name": _name(var["variable"]), "kind": "categorical", "channels": var["channels"],
                      "encoding": var["encoding"], "categories": categories,
                      "options": {"n_categories": len(categories)}})
    if by_type[ORDINAL]:
        values = ts.data[:, [ts.channels.index(c) for c in by_type[ORDINAL]]]
        views.append({"name": "ordinal", "kind": "ordinal", "channels": by_type[ORDINAL],
                      "options": {"n_levels": max(int(np.max(values)) + 1, 2)}})
    names = [v["name"] for v in views]
    if len(set(names)) != len(names):
        raise DsrpipeError(f"{source}: label variables map to the same view name ({names}); rename them")
    return {"views": views, "inputs": by_type[INPUT]}


def _columns(ts: TimeSeries, channels: list[str], source: str) -> np.ndarray:
    missing = [c for c in channels if c not in ts.channels]
    if missing:
        raise DsrpipeError(f"{source}: channel(s) {missing} of the MTF views are missing (the file has "
                           f"{ts.channels})")
    return ts.data[:, [ts.channels.index(c) for c in channels]].astype(np.float64)


def _view_data(ts: TimeSeries, spec: dict[str, Any], source: str) -> np.ndarray:
    x = _columns(ts, spec["channels"], source)
    kind, label = spec["kind"], f"{source}: {spec['kind']} view {spec['name']!r}"
    if kind == "poisson":
        raw = x * np.asarray(spec["std"]) + np.asarray(spec["mean"])
        counts = np.round(raw)
        if not (np.all(np.abs(raw - counts) < 1e-6 * np.maximum(1.0, np.abs(raw))) and np.all(counts >= 0)):
            raise DsrpipeError(f"{label}: the count channels do not map back to whole non-negative counts with "
                               "the stored standardisation (mean, std); MTF's Poisson decoder needs raw counts")
        return counts
    if kind == "categorical":
        none = len(spec["categories"]) - 1
        if spec["encoding"] == "onehot":
            if not np.all((x == 0) | (x == 1)) or np.any(x.sum(1) > 1):
                raise DsrpipeError(f"{label}: one-hot label channels {spec['channels']} must hold 0/1 with at most "
                                   "one 1 per sample")
            return np.where(x.sum(1) == 1, x.argmax(1), none).astype(np.float64)[:, None]
        codes = x[:, 0]
        if not np.all((codes == np.round(codes)) & (codes >= -1) & (codes < none)):
            raise DsrpipeError(f"{label}: label codes must be whole numbers in -1 (none) .. {none - 1}")
        return np.where(codes < 0, none, codes)[:, None]
    if kind == "ordinal":
        levels = spec["options"]["n_levels"]
        if np.any(x < 0):
            raise DsrpipeError(f"{label}: missing ordinal levels (-1); MTF needs complete ordinal data: fill them "
                               "or drop the channel")
        if not np.all((x == np.round(x)) & (x < levels)):
            raise DsrpipeError(f"{label}: ordinal levels must be whole numbers in 0 .. {levels - 1}")
    return x


def series_to_views(ts: TimeSeries, spec: dict[str, Any], source: str = "data"
                    ) -> tuple[dict[str, View], np.ndarray | None]:
    """The views (name -> :class:`View`) and external inputs (T, K) or None of a segment, as ``spec`` defines."""
    views = {v["name"]: View(_view_data(ts, v, source), v["kind"], dict(v["options"]), float(v.get("weight", 1.0)))
             for v in spec["views"]}
    inputs = _columns(ts, spec["inputs"], source) if spec["inputs"] else None
    return views, inputs


def dummy_views(spec: dict[str, Any]) -> dict[str, View]:
    """Views of two zero rows with the spec's shapes and options (to rebuild a saved model)."""
    return {v["name"]: View(np.zeros((2, 1 if v["kind"] == "categorical" else len(v["channels"]))), v["kind"],
                            dict(v["options"]), float(v.get("weight", 1.0))) for v in spec["views"]}
