"""Train from a file into a run directory (the train stage, shared by CLI and workflow)."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from dsrpipe import DsrpipeError
from dsrpipe.config import TrainConfig, to_dict
from dsrpipe.io.timeseries import CONTINUOUS, COUNT, INPUT, load_series
from dsrpipe.paths import CHECKPOINT_FILE
from dsrpipe.training.checkpoint import save_run
from dsrpipe.training.loop import TrainingDivergedError, TrainResult, train
from dsrpipe.training.progress import Progress
from dsrpipe.training.selection import MIN_VALIDATION_SAMPLES, validation_scores

log = logging.getLogger(__name__)


def train_file(data_path: str | os.PathLike, run_dir: str | os.PathLike, cfg: TrainConfig) -> TrainResult:
    """Train on the series in ``data_path`` (dsrpipe Parquet or a plain table used as it is)
    and write ``model.pt``, ``config.json`` and ``training_log.parquet`` to ``run_dir``.

    Continuous and count channels are modelled; ``input`` channels drive the model
    as external inputs. The last ``cfg.validation_fraction`` of the series is held
    out and scored (validation D_stsp, D_H) for restart selection.
    """
    ts = load_series(data_path, types=None)
    observed = ts.select(CONTINUOUS, COUNT)
    inputs = ts.select(INPUT) if INPUT in ts.channel_types else None
    x = observed.data
    u = None if inputs is None else inputs.data
    n_val = int(round(cfg.validation_fraction * len(x)))
    if 0 < n_val < MIN_VALIDATION_SAMPLES:
        log.warning("validation tail of %d samples is too short to score (< %d); training on all %d samples",
                    n_val, MIN_VALIDATION_SAMPLES, len(x))
        n_val = 0
    n_fit = len(x) - n_val
    if n_fit < cfg.seq_len + 2:
        raise DsrpipeError(
            f"{data_path}: {n_fit} training samples ({n_val} more held out for validation) are fewer than "
            f"train.seq_len + 2 = {cfg.seq_len + 2}; lower train.seq_len or use a longer recording")
    label = f"sub-{ts.subject} {cfg.model} seed {cfg.seed}"
    checkpoint = Path(run_dir) / CHECKPOINT_FILE
    result, retries, used = _train_with_retries(x[:n_fit], None if u is None else u[:n_fit], cfg, label, checkpoint)
    validation = None
    if n_val:
        validation = validation_scores(result.model, result.readout, x[n_fit:],
                                       None if u is None else u[n_fit:])
        log.info("validation on the last %d training samples: D_stsp %.4g, D_H %.4g", n_val,
                 validation["d_stsp"], validation["d_h"])
    info = {
        "train": to_dict(cfg),
        "divergence_retries": retries,
        "effective_train": to_dict(used) if used != cfg else None,
        "backend": result.backend,
        "train_time_s": result.train_time_s,
        "final_loss": float(result.history["loss"].iloc[-1]),
        "stf_tau": result.stf_tau,
        "validation": validation,
        "data": {"path": str(data_path), "subject": ts.subject, "channels": observed.channels,
                 "inputs": [] if inputs is None else inputs.channels, "dt": ts.dt,
                 "n_samples": int(len(x)), "n_fit": int(n_fit), "n_validation": int(n_val),
                 "standardisation": ts.meta.get("standardisation")},
    }
    save_run(run_dir, result.model, result.history, info, readout=result.readout)
    checkpoint.unlink(missing_ok=True)
    log.info("trained %s in %.1f s (%s path); final loss %.4g -> %s", label, result.train_time_s,
             result.backend, info["final_loss"], run_dir)
    return result


def _train_with_retries(x, u, cfg: TrainConfig, label: str, checkpoint: Path) -> tuple[TrainResult, list, TrainConfig]:
    """Train; on divergence apply ``cfg.on_divergence`` up to ``cfg.max_retries`` times.

    Returns the result, one record per diverged attempt and the settings that finally ran.
    Each attempt is deterministic, so a rerun of a killed job retraces the same attempts
    and resumes the last one from its checkpoint.
    """
    retries: list[dict] = []
    current = cfg
    while True:
        try:
            result = train(x, current, inputs=u, callbacks=[Progress(current.epochs, current.log_every, label=label)],
                           checkpoint=checkpoint)
            return result, retries, current
        except TrainingDivergedError as exc:
            checkpoint.unlink(missing_ok=True)
            retries.append({"seed": current.seed, "lr": current.lr, "reason": str(exc)})
            if cfg.on_divergence == "fail" or len(retries) > cfg.max_retries:
                tried = "; ".join(f"seed {r['seed']}, lr {r['lr']:g}" for r in retries)
                raise TrainingDivergedError(
                    f"{label}: training diverged in {len(retries)} attempt(s) ({tried}); last: {exc}. "
                    "Nothing was saved. Lower train.lr, raise train.alpha or train.grad_clip_norm, "
                    "or check the data for outliers."
                ) from exc
            if cfg.on_divergence == "lower_lr":
                current = dataclasses.replace(current, lr=current.lr / 2, lr_end=min(current.lr_end, current.lr / 2))
            else:
                current = dataclasses.replace(current, seed=current.seed + 1000)
            log.warning("%s: %s; retry %d of %d with seed %d, lr %g", label, exc, len(retries), cfg.max_retries,
                        current.seed, current.lr)
