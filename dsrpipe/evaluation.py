"""The evaluate stage: validation metrics and invariants of one trained model.

Protocol (REFERENCE.md): generate 1.25 T steps from the first test point,
drop the first 0.25 T, compare the remaining T steps with the held-out test
series of length T. Lyapunov spectrum and fixed points come from the model's
own ``step`` and ``jacobian``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dsrpipe import DsrpipeError
from dsrpipe.analysis.baselines import BASELINES
from dsrpipe.analysis import (
    fixed_points,
    kaplan_yorke_dimension,
    lyapunov_spectrum,
    power_spectrum_distance,
    prediction_error,
    state_space_divergence,
    state_space_divergence_gmm,
)
from dsrpipe.config import EvaluateConfig, to_dict
from dsrpipe.io.atomic import atomic_path, write_json
from dsrpipe.io.timeseries import TimeSeries, write_timeseries
from dsrpipe.models import LatentModel
from dsrpipe.training.checkpoint import load_run
from dsrpipe.training.forcing import initial_state

log = logging.getLogger(__name__)


def generate_orbit(model: LatentModel, x0: np.ndarray, n_steps: int, n_drop: int) -> np.ndarray:
    """Free-running orbit from the observation ``x0``; returns (n_steps, N) after dropping ``n_drop`` steps."""
    model = model.double()
    z0 = initial_state(torch.tensor(x0, dtype=torch.float64), model.latent_dim)
    orbit = model.generate(z0, n_drop + n_steps)[n_drop:, : len(x0)]
    return orbit.numpy()


def validation_metrics(model: LatentModel, x: np.ndarray, cfg: EvaluateConfig) -> tuple[dict[str, Any], np.ndarray]:
    """D_stsp, D_H and PE(n) of ``model`` on the test series ``x`` (T, N), by the evaluation protocol.

    Returns the metrics (plus ``generated_finite``) and the generated orbit (T, N).
    A diverging orbit scores inf on D_stsp and D_H.
    """
    T = len(x)
    gen = generate_orbit(model, x[0], T, int(round(0.25 * T)))
    finite = bool(np.isfinite(gen).all())
    if not finite:
        log.warning("the generated orbit of %s diverges (non-finite values)", model.name)
        d_stsp = d_h = math.inf
    else:
        if cfg.d_stsp_method == "gmm":
            d_stsp = state_space_divergence_gmm(x, gen, scaling=cfg.gmm_scaling, seed=cfg.seed)
        else:
            d_stsp = state_space_divergence(x, gen, n_bins=cfg.n_bins)
        d_h = power_spectrum_distance(x, gen, sigma=cfg.psd_sigma)
    pe = prediction_error(model, x, n=cfg.pe_steps)
    log.info("%s: D_stsp %.4g, D_H %.4g, PE(%d) %.4g", model.name, d_stsp, d_h, cfg.pe_steps, pe)
    return {"d_stsp": float(d_stsp), "d_h": float(d_h), f"pe_{cfg.pe_steps}": float(pe),
            "generated_finite": finite}, gen


def compare_with_truth(truth: dict, spectrum: np.ndarray, fps: list, mean: np.ndarray, std: np.ndarray) -> dict:
    """True vs recovered invariants; true fixed points are standardised like the data."""
    true_fps = (np.asarray(truth.get("fixed_points_raw", []), dtype=float).reshape(-1, len(mean)) - mean) / std
    found = np.array([fp.z for fp in fps]).reshape(-1, len(mean)) if fps else np.empty((0, len(mean)))
    errors = [float(np.min(np.linalg.norm(found - fp, axis=1))) if len(found) else math.nan for fp in true_fps]
    true_spec = truth.get("lyapunov_spectrum", [])
    return {
        "truth": {
            "lyapunov_spectrum": true_spec,
            "max_lyapunov": truth.get("max_lyapunov"),
            "kaplan_yorke_dimension": truth.get("kaplan_yorke_dimension"),
            "fixed_points": true_fps.tolist(),
            "fixed_points_stable": truth.get("fixed_points_stable", []),
            "description": truth.get("description", ""),
        },
        "truth_comparison": {
            "max_lyapunov_error": float(spectrum[0] - truth["max_lyapunov"]) if "max_lyapunov" in truth else math.nan,
            "fixed_point_errors": errors,
            "n_fixed_points_true": int(len(true_fps)),
            "n_fixed_points_found": int(len(found)),
        },
    }


def evaluate_model(
    model: LatentModel,
    test: TimeSeries,
    cfg: EvaluateConfig,
    *,
    dt: float | None = None,
    truth: dict | None = None,
    train: TimeSeries | None = None,
) -> tuple[dict[str, Any], np.ndarray, list]:
    """Metrics of ``model`` on the standardised test series.

    With ``train`` (the training segment), the same validation metrics of the
    baselines (training mean, VAR(1) fitted on ``train``) go under ``baselines``.

    Returns
    -------
    metrics : dict
        ``d_stsp``, ``d_h``, ``pe_<n>``, ``lyapunov_spectrum``, ``max_lyapunov``,
        ``kaplan_yorke_dimension``, ``fixed_points`` and, with ``truth``, the comparison.
    generated : ndarray, shape (T, N)
    fixed_points : list of FixedPoint
    """
    x = test.data
    T, N = x.shape
    if model.latent_dim < N:
        raise DsrpipeError(f"model has {model.latent_dim} latent units but the test data has {N} channels")
    dt = dt if dt is not None else test.dt
    model = model.double()
    validation, gen = validation_metrics(model, x, cfg)
    finite = validation.pop("generated_finite")

    z0 = initial_state(torch.tensor(x[0], dtype=torch.float64), model.latent_dim)
    spectrum = lyapunov_spectrum(model, z0, cfg.lyapunov_steps, n_transient=cfg.lyapunov_transient, dt=dt)
    rng = np.random.default_rng(cfg.seed)
    inits = x[rng.choice(T, size=min(T, 100), replace=False)]
    inits = np.hstack([inits, np.zeros((len(inits), model.latent_dim - N))])
    fps = fixed_points(model, method=cfg.fixed_point_method, n_inits=cfg.fixed_point_inits, seed=cfg.seed,
                       init_points=inits)
    log.info("Lyapunov spectrum %s; %d fixed point(s)", np.round(spectrum, 4).tolist(), len(fps))
    metrics: dict[str, Any] = {
        **validation,
        "lyapunov_spectrum": [float(v) for v in spectrum],
        "max_lyapunov": float(spectrum[0]),
        "kaplan_yorke_dimension": float(kaplan_yorke_dimension(spectrum)),
        "lyapunov_units": "per time unit" if dt else "per step",
        "fixed_points": [fp.to_dict() for fp in fps],
        "generated_finite": finite,
        "dt": dt,
        "n_test_samples": int(T),
        "evaluate_config": to_dict(cfg),
    }
    if train is not None:
        metrics["baselines"] = {name: validation_metrics(cls.fit(train.data), x, cfg)[0]
                                for name, cls in BASELINES.items()}
    if truth is not None:
        stdz = test.meta.get("standardisation", {})
        mean = np.asarray(stdz.get("mean", np.zeros(N)), dtype=float)
        std = np.asarray(stdz.get("std", np.ones(N)), dtype=float)
        metrics.update(compare_with_truth(truth, spectrum, fps, mean, std))
    return metrics, gen, fps


def read_truth(path: str | os.PathLike) -> dict:
    """Read a ground-truth JSON (as written by the demo)."""
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DsrpipeError(f"{path}: cannot read ground truth ({exc})") from exc


def evaluate_run(
    run_dir: str | os.PathLike,
    test: TimeSeries,
    cfg: EvaluateConfig,
    metrics_out: str | os.PathLike,
    *,
    generated_out: str | os.PathLike | None = None,
    fixed_points_out: str | os.PathLike | None = None,
    dt: float | None = None,
    truth: dict | None = None,
    train: TimeSeries | None = None,
) -> dict[str, Any]:
    """Evaluate the trained run in ``run_dir`` and write metrics (JSON), orbit and fixed points (Parquet)."""
    model, run_cfg = load_run(run_dir)
    metrics, gen, fps = evaluate_model(model, test, cfg, dt=dt, truth=truth, train=train)
    data_info = run_cfg.get("data", {})
    metrics = {
        "subject": str(data_info.get("subject", test.subject)),
        "model": run_cfg["model"]["name"],
        "seed": int(run_cfg.get("train", {}).get("seed", 0)),
        "n_params": int(run_cfg["model"]["n_params"]),
        "train_time_s": float(run_cfg.get("train_time_s", math.nan)),
        "backend": run_cfg.get("backend"),
        "modality": test.modality,
        **metrics,
    }
    if generated_out is not None:
        write_timeseries(TimeSeries(gen, test.channels, dt=test.dt, subject=test.subject, modality=test.modality,
                                    meta={"generated_by": str(run_dir)}), generated_out)
    if fixed_points_out is not None:
        table = pd.DataFrame(
            [{**{f"z{i}": v for i, v in enumerate(fp.z)}, "stable": fp.stable,
              "max_abs_eigenvalue": float(np.max(np.abs(fp.eigenvalues)))} for fp in fps]
        )
        with atomic_path(fixed_points_out) as tmp:
            table.to_parquet(tmp, index=False)
    write_json(metrics, metrics_out)
    return metrics
