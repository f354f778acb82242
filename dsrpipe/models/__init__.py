from dsrpipe.models.base import LatentModel
from dsrpipe.models.registry import MODELS, build_model
from dsrpipe.models.shallow import ClippedShallowPLRNN, ShallowPLRNN

__all__ = ["LatentModel", "MODELS", "build_model", "ShallowPLRNN", "ClippedShallowPLRNN"]
