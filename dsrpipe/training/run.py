"""Train from a file into a run directory (the train stage, shared by CLI and workflow)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from dsrpipe.config import TrainConfig, to_dict
from dsrpipe.io.timeseries import load_series
from dsrpipe.paths import CHECKPOINT_FILE
from dsrpipe.training.checkpoint import save_run
from dsrpipe.training.loop import TrainResult, train
from dsrpipe.training.progress import Progress

log = logging.getLogger(__name__)


def train_file(data_path: str | os.PathLike, run_dir: str | os.PathLike, cfg: TrainConfig) -> TrainResult:
    """Train on the series in ``data_path`` (dsrpipe Parquet or a plain table used as it is)
    and write ``model.pt``, ``config.json`` and ``training_log.parquet`` to ``run_dir``."""
    ts = load_series(data_path)
    label = f"sub-{ts.subject} {cfg.model} seed {cfg.seed}"
    checkpoint = Path(run_dir) / CHECKPOINT_FILE
    result = train(ts.data, cfg, callbacks=[Progress(cfg.epochs, cfg.log_every, label=label)],
                   checkpoint=checkpoint)
    info = {
        "train": to_dict(cfg),
        "backend": result.backend,
        "train_time_s": result.train_time_s,
        "final_loss": float(result.history["loss"].iloc[-1]),
        "data": {"path": str(data_path), "subject": ts.subject, "channels": ts.channels, "dt": ts.dt,
                 "n_samples": ts.n_samples, "standardisation": ts.meta.get("standardisation")},
    }
    save_run(run_dir, result.model, result.history, info)
    checkpoint.unlink(missing_ok=True)
    log.info("trained %s in %.1f s (%s path); final loss %.4g -> %s", label, result.train_time_s,
             result.backend, info["final_loss"], run_dir)
    return result
