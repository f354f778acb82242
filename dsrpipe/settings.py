"""Hyperparameter grids: the training settings a workflow run compares.

The ``grid`` section of the config maps ``train`` keys to lists of values; the
workflow trains every combination (times every seed) as its own setting. A
setting's label is the run directory's ``model-<label>`` entity: the model
name alone without a grid, ``<model>-<i>`` (i = 1, 2, ...) with one, listed
with its values in ``results/group/settings.tsv``.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Mapping

from dsrpipe import DsrpipeError
from dsrpipe.config import TrainConfig, from_mapping

#: keys a grid may not vary (set per run by the workflow, or not part of the model)
NOT_IN_GRID = ("seed", "threads", "models_per_job", "log_every", "checkpoint_every", "device", "backend")


def expand_grid(train: Mapping[str, Any] | None, grid: Mapping[str, list] | None) -> dict[str, dict[str, Any]]:
    """Every setting as ``label -> full train section`` (each checked by :class:`TrainConfig`).

    Raises
    ------
    DsrpipeError
        For an unknown or forbidden grid key, an empty value list, or a combination that
        is not a valid training config (the message names the combination).
    """
    train = dict(train or {})
    base = from_mapping(TrainConfig, train, "train")
    if not grid:
        return {base.model: dataclasses.asdict(base)}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, values in grid.items():
        if key not in fields:
            raise DsrpipeError(f"config grid: unknown train key {key!r}; valid keys are: "
                               f"{', '.join(sorted(fields - set(NOT_IN_GRID)))}")
        if key in NOT_IN_GRID:
            raise DsrpipeError(f"config grid: {key!r} cannot be varied in a grid"
                               + (" (restarts come from `seeds`)" if key == "seed" else ""))
        if not isinstance(values, list) or not values:
            raise DsrpipeError(f"config grid: {key} must be a non-empty list of values, got {values!r}")
    keys = list(grid)
    settings: dict[str, dict[str, Any]] = {}
    for i, combo in enumerate(itertools.product(*(grid[k] for k in keys)), 1):
        overrides = dict(zip(keys, combo))
        try:
            cfg = from_mapping(TrainConfig, {**train, **overrides}, "train")
        except DsrpipeError as exc:
            raise DsrpipeError(f"config grid: the combination {overrides} is not a valid training setting: "
                               f"{exc}") from exc
        settings[f"{cfg.model}-{i}"] = dataclasses.asdict(cfg)
    return settings


def settings_table(settings: Mapping[str, Mapping[str, Any]]):
    """A DataFrame with one row per setting: its label and the keys that differ between settings."""
    import pandas as pd

    rows = [{"setting": label, **cfg} for label, cfg in settings.items()]
    df = pd.DataFrame(rows)
    varying = [c for c in df.columns if c != "setting" and df[c].astype(str).nunique() > 1]
    return df[["setting", *varying]] if varying else df[["setting", "model"]]
