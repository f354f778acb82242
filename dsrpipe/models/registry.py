"""Build models by name."""

from __future__ import annotations

from dsrpipe import DsrpipeError
from dsrpipe.models.base import LatentModel
from dsrpipe.models.shallow import ClippedShallowPLRNN, ShallowPLRNN

MODELS: dict[str, type[LatentModel]] = {cls.name: cls for cls in (ShallowPLRNN, ClippedShallowPLRNN)}


def build_model(name: str, **hyperparameters) -> LatentModel:
    """Instantiate the registered model ``name`` with its hyperparameters."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise DsrpipeError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return cls(**hyperparameters)
