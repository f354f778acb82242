"""Train from a file into run directories (the train stage, shared by CLI and workflow)."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dsrpipe import DsrpipeError
from dsrpipe.config import TrainConfig, to_dict
from dsrpipe.io.timeseries import CONTINUOUS, COUNT, INPUT, TimeSeries, load_series
from dsrpipe.paths import CHECKPOINT_FILE
from dsrpipe.training.checkpoint import save_run
from dsrpipe.training.loop import TrainingDivergedError, TrainResult, train
from dsrpipe.training.progress import Progress
from dsrpipe.training.selection import MIN_VALIDATION_SAMPLES, validation_scores

log = logging.getLogger(__name__)


@dataclass
class _Data:
    """A training file split into the fitted part and the validation tail."""

    path: str
    series: TimeSeries
    observed: TimeSeries
    inputs: TimeSeries | None
    n_fit: int
    n_val: int

    @property
    def x(self) -> np.ndarray:
        return self.observed.data

    @property
    def u(self) -> np.ndarray | None:
        return None if self.inputs is None else self.inputs.data

    def fit(self) -> tuple[np.ndarray, np.ndarray | None]:
        u = self.u
        return self.x[: self.n_fit], None if u is None else u[: self.n_fit]


def _load(data_path, cfg: TrainConfig) -> _Data:
    """Continuous and count channels are modelled, ``input`` channels drive the model; the
    last ``cfg.validation_fraction`` of the series is held out for restart selection."""
    ts = load_series(data_path, types=None)
    observed = ts.select(CONTINUOUS, COUNT)
    inputs = ts.select(INPUT) if INPUT in ts.channel_types else None
    n = observed.n_samples
    n_val = int(round(cfg.validation_fraction * n))
    if 0 < n_val < MIN_VALIDATION_SAMPLES:
        log.warning("validation tail of %d samples is too short to score (< %d); training on all %d samples",
                    n_val, MIN_VALIDATION_SAMPLES, n)
        n_val = 0
    if n - n_val < cfg.seq_len + 2:
        raise DsrpipeError(
            f"{data_path}: {n - n_val} training samples ({n_val} more held out for validation) are fewer than "
            f"train.seq_len + 2 = {cfg.seq_len + 2}; lower train.seq_len or use a longer recording")
    return _Data(str(data_path), ts, observed, inputs, n - n_val, n_val)


def _label(data: _Data, cfg: TrainConfig) -> str:
    return f"sub-{data.series.subject} {cfg.model} seed {cfg.seed}"


def _finish(run_dir, data: _Data, cfg: TrainConfig, result: TrainResult, retries: list, used: TrainConfig) -> None:
    """Score the validation tail and write the run directory."""
    validation = None
    if data.n_val:
        u = data.u
        validation = validation_scores(result.model, result.readout, data.x[data.n_fit:],
                                       None if u is None else u[data.n_fit:])
        log.info("%s: validation on the last %d training samples: D_stsp %.4g, D_H %.4g", _label(data, cfg),
                 data.n_val, validation["d_stsp"], validation["d_h"])
    info = {
        "train": to_dict(cfg),
        "divergence_retries": retries,
        "effective_train": to_dict(used) if used != cfg else None,
        "backend": result.backend,
        "train_time_s": result.train_time_s,
        "final_loss": float(result.history["loss"].iloc[-1]),
        "stf_tau": result.stf_tau,
        "validation": validation,
        "data": {"path": data.path, "subject": data.series.subject, "channels": data.observed.channels,
                 "inputs": [] if data.inputs is None else data.inputs.channels, "dt": data.series.dt,
                 "n_samples": int(len(data.x)), "n_fit": int(data.n_fit), "n_validation": int(data.n_val),
                 "standardisation": data.series.meta.get("standardisation")},
    }
    save_run(run_dir, result.model, result.history, info, readout=result.readout)
    log.info("trained %s in %.1f s (%s path); final loss %.4g -> %s", _label(data, cfg), result.train_time_s,
             result.backend, info["final_loss"], run_dir)


def train_file(data_path: str | os.PathLike, run_dir: str | os.PathLike, cfg: TrainConfig) -> TrainResult:
    """Train on the series in ``data_path`` (dsrpipe Parquet or a plain table used as it is)
    and write ``model.pt``, ``config.json`` and ``training_log.parquet`` to ``run_dir``.

    Continuous and count channels are modelled; ``input`` channels drive the model
    as external inputs. The last ``cfg.validation_fraction`` of the series is held
    out and scored (validation D_stsp, D_H) for restart selection.

    With ``cfg.method == "mtf"`` every channel type is modelled by multimodal teacher
    forcing (:func:`dsrpipe.training.mtf_run.train_mtf_file`; returns its
    :class:`~dsrpipe.training.multimodal.MultimodalResult`).
    """
    if cfg.method == "mtf":
        from dsrpipe.training.mtf_run import train_mtf_file

        return train_mtf_file(data_path, run_dir, cfg)
    data = _load(data_path, cfg)
    checkpoint = Path(run_dir) / CHECKPOINT_FILE
    x, u = data.fit()
    result, retries, used = _train_with_retries(x, u, cfg, _label(data, cfg), checkpoint)
    _finish(run_dir, data, cfg, result, retries, used)
    checkpoint.unlink(missing_ok=True)
    return result


def train_file_many(data_path: str | os.PathLike, run_dirs: dict[int, str | os.PathLike], cfg: TrainConfig,
                    threads: int | None = None) -> None:
    """Train one model per seed (the keys of ``run_dirs``) on one file, together in one process
    (:func:`dsrpipe.training.batched.train_many`), and write each run directory as
    :func:`train_file` would. Each model equals the one ``train_file`` trains with its seed
    on the fused kernel, or, with ``device: cuda``, ``backend: torch`` or a setting without a
    kernel, on the PyTorch path (trained together by
    :func:`dsrpipe.training.batched_torch.train_many_torch`; equal up to rounding). A seed
    that diverges is retrained alone under the divergence policy; MTF seeds are trained one
    after another.
    """
    from dsrpipe.training.batched import train_many
    from dsrpipe.training.batched_torch import torch_many_available
    from dsrpipe.training.fast import fast_path_available
    from dsrpipe.training.loop import build_from_config

    seeds = sorted(int(s) for s in run_dirs)
    if cfg.method == "mtf":
        log.info("training %d MTF seeds one after another (MTF has no fused kernel)", len(seeds))
        for seed in seeds:
            train_file(data_path, run_dirs[seed], dataclasses.replace(cfg, seed=seed))
        return
    data = _load(data_path, cfg)
    x, u = data.fit()
    model, readout = build_from_config(cfg, x.shape[1], 0 if u is None else u.shape[1])
    available, why = fast_path_available(model, readout, cfg)
    torch_path = not available or cfg.backend == "torch" or cfg.device != "cpu"
    torch_ok, torch_why = torch_many_available(cfg)
    if len(seeds) == 1 or (torch_path and not torch_ok):
        log.info("training %d seeds one after another (%s)", len(seeds),
                 "one seed" if len(seeds) == 1 else torch_why)
        for seed in seeds:
            train_file(data_path, run_dirs[seed], dataclasses.replace(cfg, seed=seed))
        return
    if torch_path:
        log.info("training %d seeds together with the batched PyTorch path (%s)", len(seeds),
                 why or f"backend {cfg.backend}, device {cfg.device}")
    results = train_many(x, cfg, seeds, inputs=u, threads=threads)
    failed = []
    for item in results:
        seed_cfg = dataclasses.replace(cfg, seed=item.seed)
        if item.result is not None:
            _finish(run_dirs[item.seed], data, seed_cfg, item.result, [], seed_cfg)
        else:
            log.warning("%s: %s; retraining it alone under train.on_divergence", _label(data, seed_cfg), item.error)
            failed.append(item.seed)
    errors = []
    for seed in failed:
        try:
            train_file(data_path, run_dirs[seed], dataclasses.replace(cfg, seed=seed))
        except TrainingDivergedError as exc:
            errors.append(str(exc))
    if errors:
        raise TrainingDivergedError(" | ".join(errors) + " (the other seeds of this job were saved)")


def _train_with_retries(x, u, cfg: TrainConfig, label: str, checkpoint: Path) -> tuple[TrainResult, list, TrainConfig]:
    """Train; on divergence apply ``cfg.on_divergence`` up to ``cfg.max_retries`` times.

    Returns the result, one record per diverged attempt and the settings that finally ran.
    Each attempt is deterministic, so a rerun of a killed job retraces the same attempts
    and resumes the last one from its checkpoint.
    """
    def fit(current: TrainConfig) -> TrainResult:
        return train(x, current, inputs=u, callbacks=[Progress(current.epochs, current.log_every, label=label)],
                     checkpoint=checkpoint)

    return _with_retries(fit, cfg, label, on_diverged=lambda: checkpoint.unlink(missing_ok=True))


def _with_retries(fit, cfg: TrainConfig, label: str, on_diverged=None) -> tuple[Any, list, TrainConfig]:
    """``fit(settings)`` under the divergence policy: on :class:`TrainingDivergedError` call
    ``on_diverged`` and retry with half the lr (``lower_lr``) or another seed (``reseed``),
    at most ``cfg.max_retries`` times; returns the result, the retry records and the settings used."""
    retries: list[dict] = []
    current = cfg
    while True:
        try:
            return fit(current), retries, current
        except TrainingDivergedError as exc:
            if on_diverged is not None:
                on_diverged()
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
