from dsrpipe.models.base import LatentModel
from dsrpipe.models.dendritic import ClippedDendriticPLRNN, DendriticPLRNN
from dsrpipe.models.plrnn import ALRNN, PLRNN
from dsrpipe.models.registry import MODELS, build_model
from dsrpipe.models.shallow import ClippedShallowPLRNN, ShallowPLRNN

__all__ = ["LatentModel", "MODELS", "build_model", "PLRNN", "ALRNN", "DendriticPLRNN", "ClippedDendriticPLRNN",
           "ShallowPLRNN", "ClippedShallowPLRNN"]
