"""Build models by name."""

from __future__ import annotations

from dsrpipe import DsrpipeError
from dsrpipe.models.base import LatentModel
from dsrpipe.models.dendritic import ClippedDendriticPLRNN, DendriticPLRNN
from dsrpipe.models.plrnn import ALRNN, PLRNN
from dsrpipe.models.shallow import ClippedShallowPLRNN, ShallowPLRNN

MODELS: dict[str, type[LatentModel]] = {
    cls.name: cls
    for cls in (PLRNN, DendriticPLRNN, ClippedDendriticPLRNN, ShallowPLRNN, ClippedShallowPLRNN, ALRNN)
}


def build_model(name: str, **hyperparameters) -> LatentModel:
    """Instantiate the registered model ``name`` with its hyperparameters."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise DsrpipeError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return cls(**hyperparameters)


#: which size argument each model takes, and the TrainConfig key it comes from
SIZE_KEYS: dict[str, dict[str, str]] = {
    "PLRNN": {},
    "ALRNN": {"P": "n_relu"},
    "dendPLRNN": {"B": "n_bases"},
    "clipped-dendPLRNN": {"B": "n_bases"},
    "shPLRNN": {"L": "hidden_dim"},
    "clipped-shPLRNN": {"L": "hidden_dim"},
}


def size_arguments(name: str, sizes) -> dict:
    """The size keyword arguments of model ``name`` taken from ``sizes`` (a TrainConfig or a mapping)."""
    get = sizes.get if isinstance(sizes, dict) else lambda k: getattr(sizes, k)
    return {arg: get(key) for arg, key in SIZE_KEYS[name].items()}
