"""The train stage with ``train.method: mtf``: one multimodal PLRNN from one prepared file.

The views come from the file's channel types (:mod:`dsrpipe.training.mtf_views`), the
model and loss from :mod:`dsrpipe.training.multimodal`. The shared ``train`` keys map
onto :class:`~dsrpipe.training.multimodal.MTFConfig` (``alpha`` is the forcing weight
toward the encoder signals; ``forcing: stf`` forces with alpha 1 every ``stf_tau``
steps); divergence is handled by ``train.on_divergence`` as for GTF.

Checkpoints as for GTF: every ``train.checkpoint_every`` epochs and on SIGTERM/SIGINT to
``run_dir/checkpoint.pt``; a rerun resumes from it and ends as the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from dsrpipe import DsrpipeError
from dsrpipe.config import TrainConfig, to_dict
from dsrpipe.paths import CHECKPOINT_FILE
from dsrpipe.training.checkpoint import save_multimodal_run
from dsrpipe.training.mtf_model import View
from dsrpipe.training.mtf_views import DYNAMIC_KINDS, series_to_views, view_spec
from dsrpipe.training.multimodal import MTFConfig, MultimodalResult, train_multimodal
from dsrpipe.training.progress import Progress

log = logging.getLogger(__name__)


def mtf_config(cfg: TrainConfig, spec: dict) -> MTFConfig:
    """The MTF settings of a train config for the views in ``spec`` (M defaults to the number of
    continuous and count channels, K to M)."""
    n_dynamic = sum(len(v["channels"]) for v in spec["views"] if v["kind"] in DYNAMIC_KINDS)
    M = cfg.latent_dim or n_dynamic
    K = cfg.mtf_forcing_dim or M
    if K > M:
        raise DsrpipeError(f"train.mtf_forcing_dim = {K} is larger than the latent dimension M = {M} "
                           "(train.latent_dim, or the number of continuous and count channels when null)")
    gauss = [v for v in spec["views"] if v["kind"] == "gaussian" and v["options"].get("readout") == "identity"]
    if gauss and K < len(gauss[0]["channels"]):
        raise DsrpipeError(f"train.readout identity decodes the {len(gauss[0]['channels'])} continuous channels from "
                           f"the first K = {K} latent units; raise train.mtf_forcing_dim / train.latent_dim or use "
                           "train.readout: affine")
    stf = cfg.forcing == "stf"
    return MTFConfig(model=cfg.model, latent_dim=M, forcing_dim=K, hidden_dim=cfg.hidden_dim, n_bases=cfg.n_bases,
                     n_relu=cfg.n_relu, encoder_kernel=cfg.mtf_encoder_kernel, alpha=1.0 if stf else cfg.alpha,
                     forcing_interval=cfg.stf_tau if stf else 1, w_rec=cfg.mtf_w_rec, w_pred=cfg.mtf_w_pred,
                     w_latent=cfg.mtf_w_latent, epochs=cfg.epochs, batches_per_epoch=cfg.batches_per_epoch,
                     batch_size=cfg.batch_size, seq_len=cfg.seq_len, lr=cfg.lr, lr_end=cfg.lr_end,
                     grad_clip_norm=cfg.grad_clip_norm, teacher_noise=cfg.teacher_noise, seed=cfg.seed,
                     threads=cfg.threads)


def _head(views: dict[str, View], n: int, start: int = 0) -> dict[str, View]:
    return {k: dataclasses.replace(v, data=v.data[start:start + n]) for k, v in views.items()}


def train_mtf_file(data_path: str | os.PathLike, run_dir: str | os.PathLike, cfg: TrainConfig) -> MultimodalResult:
    """Train a multimodal PLRNN on ``data_path`` and write ``run_dir`` (model.pt, config.json with
    ``method: mtf`` and the view spec, training_log.parquet); see :func:`dsrpipe.training.run.train_file`."""
    from dsrpipe.evaluation_mtf import validation_scores_mtf
    from dsrpipe.training.run import _label, _load, _with_retries

    data = _load(data_path, cfg)
    if cfg.backend == "numba":
        log.warning("train.backend numba: MTF trains on the PyTorch path only")
    checkpoint = Path(run_dir) / CHECKPOINT_FILE
    spec = view_spec(data.series, readout=cfg.readout, hrf=cfg.mtf_hrf, source=str(data_path))
    views, inputs = series_to_views(data.series, spec, str(data_path))
    fit_views = _head(views, data.n_fit)
    fit_inputs = None if inputs is None else inputs[: data.n_fit]
    label = _label(data, cfg)
    log.info("%s: MTF views %s, %d input(s)", label, {v["name"]: v["kind"] for v in spec["views"]},
             len(spec["inputs"]))

    def fit(current: TrainConfig) -> MultimodalResult:
        return train_multimodal(fit_views, mtf_config(current, spec), inputs=fit_inputs,
                                callbacks=[Progress(current.epochs, current.log_every, label=label)],
                                checkpoint=checkpoint, checkpoint_every=current.checkpoint_every)

    result, retries, used = _with_retries(fit, cfg, label, on_diverged=lambda: checkpoint.unlink(missing_ok=True))
    mcfg = mtf_config(used, spec)
    validation = None
    if data.n_val:
        val_inputs = None if inputs is None else inputs[data.n_fit:]
        validation = validation_scores_mtf(result.model, spec, _head(views, data.n_val, data.n_fit), val_inputs)
        log.info("%s: validation on the last %d training samples: D_stsp %.4g, D_H %.4g", label, data.n_val,
                 validation["d_stsp"], validation["d_h"])
    info = {
        "train": to_dict(cfg),
        "divergence_retries": retries,
        "effective_train": to_dict(used) if used != cfg else None,
        "backend": "torch",
        "train_time_s": result.train_time_s,
        "final_loss": float(result.history["loss"].iloc[-1]),
        "stf_tau": mcfg.forcing_interval if cfg.forcing == "stf" else None,
        "validation": validation,
        "mtf": {"spec": spec, "latent_dim": mcfg.latent_dim, "forcing_dim": mcfg.forcing_dim,
                "encoder_kernel": mcfg.encoder_kernel, "alpha": mcfg.alpha, "forcing_interval": mcfg.forcing_interval},
        "data": {"path": data.path, "subject": data.series.subject, "channels": data.observed.channels,
                 "inputs": list(spec["inputs"]), "dt": data.series.dt, "n_samples": int(data.series.n_samples),
                 "n_fit": int(data.n_fit), "n_validation": int(data.n_val), "modality": data.series.modality,
                 "standardisation": data.series.meta.get("standardisation")},
    }
    save_multimodal_run(run_dir, result.model, result.history, info)
    checkpoint.unlink(missing_ok=True)
    log.info("trained %s (MTF) in %.1f s; final loss %.4g -> %s", label, result.train_time_s, info["final_loss"],
             run_dir)
    return result

