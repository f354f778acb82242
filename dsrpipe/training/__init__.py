from dsrpipe.training.checkpoint import load_run, save_run
from dsrpipe.training.loop import TrainingDivergedError, TrainResult, train

__all__ = ["TrainResult", "TrainingDivergedError", "load_run", "save_run", "train"]
