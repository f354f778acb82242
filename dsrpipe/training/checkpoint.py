"""A training run on disk: state dict, JSON config and the training log."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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


def save_run(run_dir: str | os.PathLike, model: LatentModel, history: pd.DataFrame, info: dict[str, Any],
             readout: Readout | None = None) -> None:
    """Write ``model.pt`` (state dict), ``training_log.parquet`` and ``config.json``.

    The readout's parameters (a few numbers) go into ``config.json`` under
    ``readout``, exactly (JSON floats round-trip). ``config.json`` is written
    last: its presence marks a complete run.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / MODEL_FILE) as tmp:
        torch.save(model.state_dict(), tmp)
    with atomic_path(run_dir / TRAIN_LOG_FILE) as tmp:
        history.to_parquet(tmp, index=False)
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
    spec = config.get("readout")
    if spec is None:
        n_obs = len(config.get("data", {}).get("channels") or []) or model.latent_dim
        return model, Readout("identity", n_obs, model.latent_dim).double(), config
    readout = Readout(spec["kind"], spec["n_obs"], spec["latent_dim"]).double()
    shapes = {k: v.shape for k, v in readout.state_dict().items()}  # an empty (0, N) map is saved as []
    readout.load_state_dict({k: torch.tensor(v, dtype=torch.float64).reshape(shapes[k])
                             for k, v in spec["state"].items()})
    return model, readout, config
