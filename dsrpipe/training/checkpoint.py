"""A training run on disk: state dict, JSON config and the training log.

A multimodal (MTF) run stores the whole :class:`~dsrpipe.training.mtf_model.MultimodalPLRNN`
state (``latent.``, ``encoder.``, ``decoders.`` keys) and ``method: mtf`` with its view
spec in ``config.json``; :func:`load_run` returns its latent model (for Lyapunov and
SCYFI), :func:`load_multimodal_run` the whole model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dsrpipe import DsrpipeError, __version__
from dsrpipe.io.atomic import atomic_path, write_json
from dsrpipe.models import LatentModel, build_model
from dsrpipe.models.readout import Readout
from dsrpipe.paths import CONFIG_FILE, MODEL_FILE, TRAIN_LOG_FILE


def software_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on (recorded with every run)."""
    import platform

    import numpy

    versions = {"python": platform.python_version(), "dsrpipe": __version__, "torch": torch.__version__,
                "numpy": numpy.__version__}
    try:
        import numba

        versions["numba"] = numba.__version__
    except ImportError:  # numba is optional at run time; the torch path runs without it
        pass
    return versions


def config_hash(settings: dict) -> str:
    """A short stable hash of a settings dict (sorted JSON), to tell runs of different settings apart."""
    import hashlib

    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_model_and_log(run_dir, model, history: pd.DataFrame) -> Path:
    """``model.pt`` (state dict) and ``training_log.parquet``, atomically; config.json comes after."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / MODEL_FILE) as tmp:
        torch.save(model.state_dict(), tmp)
    with atomic_path(run_dir / TRAIN_LOG_FILE) as tmp:
        history.to_parquet(tmp, index=False)
    return run_dir


def save_run(run_dir: str | os.PathLike, model: LatentModel, history: pd.DataFrame, info: dict[str, Any],
             readout: Readout | None = None) -> None:
    """Write ``model.pt`` (state dict), ``training_log.parquet`` and ``config.json``.

    The readout's parameters (a few numbers) go into ``config.json`` under
    ``readout``, exactly (JSON floats round-trip). ``config.json`` is written
    last: its presence marks a complete run.
    """
    run_dir = _write_model_and_log(run_dir, model, history)
    config = {
        "dsrpipe_version": __version__,
        "software": software_versions(),
        "config_hash": config_hash(info.get("train", {})),
        "model": {"name": model.name, "hyperparameters": model.hyperparameters(), "n_params": model.n_params},
        **info,
    }
    if readout is not None:
        config["readout"] = {**readout.hyperparameters(),
                             "state": {k: v.detach().cpu().tolist() for k, v in readout.state_dict().items()}}
    write_json(config, run_dir / CONFIG_FILE)


def load_run(run_dir: str | os.PathLike) -> tuple[LatentModel, dict[str, Any]]:
    """Load a trained model and its run config from ``run_dir``."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.exists():
        raise DsrpipeError(f"{run_dir}: not a dsrpipe run directory (no {CONFIG_FILE})")
    try:
        config = json.loads(cfg_path.read_text())
        spec = config["model"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise DsrpipeError(f"{cfg_path}: unreadable run config ({exc})") from exc
    model = build_model(spec["name"], **spec["hyperparameters"]).double()  # trained in float64: load exactly
    try:
        state = torch.load(run_dir / MODEL_FILE, map_location="cpu", weights_only=True)
        if config.get("method") == "mtf":  # the latent model of a multimodal run (encoder and decoders aside)
            state = {k[len("latent."):]: v for k, v in state.items() if k.startswith("latent.")}
        model.load_state_dict(state)
    except Exception as exc:
        raise DsrpipeError(f"{run_dir / MODEL_FILE}: cannot load model ({exc})") from exc
    model.eval()
    return model, config


def load_reconstruction(run_dir: str | os.PathLike) -> tuple[LatentModel, Readout, dict[str, Any]]:
    """Load a trained model, its readout and its run config from ``run_dir``.

    A run written before readouts were saved gets the identity readout with a zero
    initial map (what it was trained with).
    """
    model, config = load_run(run_dir)
    if config.get("method") == "mtf":
        raise DsrpipeError(f"{run_dir}: a multimodal (MTF) run has decoders, not a readout; load it with "
                           "dsrpipe.training.checkpoint.load_multimodal_run")
    spec = config.get("readout")
    if spec is None:
        n_obs = len(config.get("data", {}).get("channels") or []) or model.latent_dim
        return model, Readout("identity", n_obs, model.latent_dim).double(), config
    readout = Readout(spec["kind"], spec["n_obs"], spec["latent_dim"]).double()
    shapes = {k: v.shape for k, v in readout.state_dict().items()}  # an empty (0, N) map is saved as []
    readout.load_state_dict({k: torch.tensor(v, dtype=torch.float64).reshape(shapes[k])
                             for k, v in spec["state"].items()})
    return model, readout, config


def save_multimodal_run(run_dir: str | os.PathLike, model, history: pd.DataFrame, info: dict[str, Any]) -> None:
    """Write an MTF run: ``model.pt`` (the whole multimodal state dict), ``training_log.parquet`` and
    ``config.json`` (``method: mtf``; ``model`` describes the latent model; ``info`` must hold ``mtf``
    with the view spec, ``forcing_dim`` and ``encoder_kernel``). ``config.json`` is written last."""
    run_dir = _write_model_and_log(run_dir, model, history)
    latent = model.latent
    config = {
        "dsrpipe_version": __version__,
        "software": software_versions(),
        "config_hash": config_hash(info.get("train", {})),
        "method": "mtf",
        "model": {"name": latent.name, "hyperparameters": latent.hyperparameters(), "n_params": latent.n_params},
        **info,
    }
    config["mtf"] = {**info["mtf"], "n_params_total": int(sum(p.numel() for p in model.parameters()))}
    write_json(config, run_dir / CONFIG_FILE)


def load_multimodal_run(run_dir: str | os.PathLike):
    """Load an MTF run: ``(MultimodalPLRNN, config)``, float64, in eval mode."""
    from dsrpipe.training.mtf_model import Layout, MultimodalPLRNN
    from dsrpipe.training.mtf_views import dummy_views

    latent, config = load_run(run_dir)
    if config.get("method") != "mtf":
        raise DsrpipeError(f"{run_dir}: not a multimodal (MTF) run (method {config.get('method', 'gtf')!r})")
    try:
        mtf = config["mtf"]
        views = dummy_views(mtf["spec"])
        inputs = np.zeros((2, len(mtf["spec"]["inputs"]))) if mtf["spec"]["inputs"] else None
        layout, _ = Layout.stack(views, inputs)
        model = MultimodalPLRNN(latent, views, layout, mtf["forcing_dim"], mtf["encoder_kernel"]).double()
        model.load_state_dict(torch.load(Path(run_dir) / MODEL_FILE, map_location="cpu", weights_only=True))
    except (KeyError, RuntimeError, DsrpipeError) as exc:
        raise DsrpipeError(f"{run_dir}: cannot rebuild the multimodal model from {CONFIG_FILE} and {MODEL_FILE} "
                           f"({type(exc).__name__}: {exc})") from exc
    model.eval()
    return model, config


def is_multimodal_run(run_dir: str | os.PathLike) -> bool:
    """True when ``run_dir``'s ``config.json`` records ``method: mtf`` (False when unreadable or absent)."""
    try:
        return json.loads((Path(run_dir) / CONFIG_FILE).read_text()).get("method") == "mtf"
    except (OSError, ValueError, AttributeError):
        return False
