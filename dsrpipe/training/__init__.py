from dsrpipe.training.checkpoint import load_run, save_run
from dsrpipe.training.loop import TrainingDivergedError, TrainingInterrupted, TrainResult, train

__all__ = ["TrainResult", "TrainingDivergedError", "TrainingInterrupted", "load_run", "save_run", "train"]
