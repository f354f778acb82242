"""Evaluation of a multimodal (MTF) run on the held-out test segment.

The test segment becomes the run's views (:mod:`dsrpipe.training.mtf_views`). Then:

- **generation** (the protocol of :mod:`dsrpipe.evaluation`): from the encoder state of
  the first test point the latent model runs 1.25 T steps driven by the test inputs
  (the dropped 0.25 T transient repeats them), every view is decoded and the first
  0.25 T dropped. The main view (continuous channels, else counts as standardised
  rates) gets D_stsp, D_H, and PE(n) from every test point (start ``(enc_t, 0)``;
  an fMRI view convolves the encoder states before t and the predictions after t
  with its HRF); baselines (training mean, VAR(1)) on the same channels.
- **cross-modal prediction**: each label, ordinal and count view is predicted from the
  latent trajectory forced (GTF with the run's alpha) by the encoder with that view's
  own features masked (set to their training mean), i.e. from the other modalities and
  the dynamics: label/ordinal accuracy against chance (the test segment's most frequent
  class), count-rate correlation with the observed counts. Label accuracy of the
  generated orbit (time-aligned through the inputs) is reported too.
- **dynamics**: Lyapunov spectrum, fixed points, cycles and basins of the latent model
  (:func:`dsrpipe.evaluation.analyse_dynamics` on the forced latent test trajectory).
- **observation fit** (:func:`observation_fit_table`, written as ``observation_fit.parquet``): per
  dynamic view the observed test data, the decoded means from the forced and from the generated
  latent trajectory (BOLD through the HRF, Poisson rates exp(Gamma z + g)), and those latent
  trajectories; the report draws the BOLD fit and rates vs counts from it.

References
----------
Brenner, M. et al. (2024). Integrating multimodal data for joint generative modeling of
complex dynamics. ICML.
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
from dsrpipe.analysis import (
    power_spectrum_distance,
    state_space_divergence,
    state_space_divergence_gmm,
)
from dsrpipe.analysis.divergence import DIVERGENCE_NORM, OrbitDivergedError, first_divergence
from dsrpipe.analysis.lyapunov import lyapunov_analysis, single_threaded
from dsrpipe.config import EvaluateConfig
from dsrpipe.io.atomic import atomic_path
from dsrpipe.io.timeseries import CONTINUOUS, COUNT, TimeSeries, write_timeseries
from dsrpipe.paths import OBSERVATION_FIT_FILE
from dsrpipe.training.mtf_model import MultimodalPLRNN, View
from dsrpipe.training.mtf_views import DYNAMIC_KINDS, series_to_views

log = logging.getLogger(__name__)


def _stack(model: MultimodalPLRNN, views: dict[str, View], inputs: np.ndarray | None) -> torch.Tensor:
    """Views and inputs in the model's column layout: (T, D)."""
    cols = model.layout.columns
    T = len(next(iter(views.values())).data)
    x = torch.zeros(T, max(s.stop for s in cols.values()), dtype=torch.float64)
    for name, v in views.items():
        x[:, cols[name]] = torch.as_tensor(np.asarray(v.data, dtype=np.float64).reshape(T, -1))
    if inputs is not None:
        x[:, cols["inputs"]] = torch.as_tensor(np.asarray(inputs, dtype=np.float64).reshape(T, -1))
    return x


def _encode(model: MultimodalPLRNN, x: torch.Tensor, masked: str | None = None) -> torch.Tensor:
    """Encoder states (T, K); ``masked``: that view's features are set to their training mean."""
    f = model.features(x)
    if masked is not None:
        start = 0
        for name, d in model.decoders.items():
            if name == masked:
                f = f.clone()
                f[:, start:start + d.n_features] = 0.0
            start += d.n_features
    return model.encoder(f)


def _main_view(spec: dict) -> dict:
    return next(v for v in spec["views"] if v["kind"] in DYNAMIC_KINDS)


def _observed(spec_view: dict, decoded: np.ndarray) -> np.ndarray:
    """Decoded means of a dynamic view on the scale of the prepared series (counts standardised)."""
    if spec_view["kind"] == "poisson":
        return (decoded - np.asarray(spec_view["mean"])) / np.asarray(spec_view["std"])
    return decoded


def _driving(inputs: np.ndarray | None, n_drop: int) -> torch.Tensor | None:
    if inputs is None:
        return None
    u = np.concatenate([np.resize(inputs, (n_drop, inputs.shape[1])), inputs]) if n_drop else inputs
    return torch.as_tensor(u, dtype=torch.float64)


@torch.no_grad()
def generate_mtf(model: MultimodalPLRNN, x: torch.Tensor, inputs: np.ndarray | None, n_steps: int,
                 n_drop: int) -> tuple[np.ndarray, dict[str, np.ndarray], int | None]:
    """Latent orbit (n_steps, M) from the encoder state of ``x``'s first row and every view decoded (after
    dropping ``n_drop`` generated steps; fMRI views see the dropped steps as HRF history), and the step of
    the first diverged latent state (:func:`~dsrpipe.analysis.divergence.first_divergence`, transient
    included; None when bounded)."""
    z0 = model.initial_state(x)
    s = _driving(inputs, n_drop)
    if s is None:
        z = model.latent.generate(z0, n_drop + n_steps)
    else:
        z = model.latent.generate(z0[None], n_drop + n_steps, s[:, None])[:, 0]
    decoded = model.decode(z)
    return z[n_drop:].numpy(), {k: v[n_drop:].numpy() for k, v in decoded.items()}, first_divergence(z.numpy())


@torch.no_grad()
def prediction_error_curve_mtf(model: MultimodalPLRNN, view: dict, target: np.ndarray, x: torch.Tensor,
                               inputs: np.ndarray | None, n_max: int) -> np.ndarray:
    """PE(n), n = 1 .. n_max, of the dynamic view ``view`` (its spec entry): decoded means vs
    ``target`` (T, N) on the prepared series' scale.

    From every start t the latent model iterates n steps from ``(enc_t, 0)`` (inputs of the steps
    into t + k); the decoded prediction is compared with ``target[t + n]``. An HRF view convolves the
    encoder states up to t and the predictions after t.
    """
    decoder = model.decoders[view["name"]]
    T = len(target)
    if T <= n_max:
        raise DsrpipeError(f"PE({n_max}) needs more than {n_max} test samples, got {T}")
    K, M = model.forcing_dim, model.latent.latent_dim
    enc = _encode(model, x)
    z = torch.cat([enc[:-1], enc.new_zeros(T - 1, M - K)], dim=1)
    s = None if inputs is None else torch.as_tensor(inputs, dtype=torch.float64)
    rows = torch.arange(T - 1)
    preds = []
    for n in range(1, n_max + 1):
        z = model.latent.step(z) if s is None else model.latent.step(z, s[torch.clamp(rows + n, max=T - 1)])
        preds.append(z[:, :K])
    tgt = torch.as_tensor(target, dtype=torch.float64)
    curve = np.empty(n_max)
    hist = len(decoder.hrf) if getattr(decoder, "temporal", False) else 0
    for n in range(1, n_max + 1):
        S = T - n
        if hist:
            past = enc[torch.clamp(torch.arange(S)[:, None] + torch.arange(-hist + 1, 1)[None], min=0)]
            window = torch.cat([past, torch.stack(preds[:n], dim=1)[:S]], dim=1)
            out = decoder.mean(window)[:, -1]
        else:
            out = decoder.mean(preds[n - 1][:S])
        out = torch.as_tensor(_observed(view, out.numpy()))
        curve[n - 1] = float(torch.mean((out - tgt[n:]) ** 2))
    return curve


@torch.no_grad()
def _forced(model: MultimodalPLRNN, x: torch.Tensor, alpha: float, interval: int, masked: str | None) -> torch.Tensor:
    """The GTF-forced latent trajectory (T, M) of the test segment: z~_0 = (enc_0, 0), then
    z~_t = F(z~_{t-1}) + C s_t with the first K units pulled toward enc_t every ``interval`` steps."""
    enc = _encode(model, x, masked)
    s = model.layout.get(x, "inputs")
    K, M = model.forcing_dim, model.latent.latent_dim
    z = torch.cat([enc[0], enc.new_zeros(M - K)])
    out = [z]
    for t in range(1, len(x)):
        z = model.latent.step(z, None if s is None else s[t])
        if t % interval == 0:
            z = torch.cat([(1 - alpha) * z[:K] + alpha * enc[t], z[K:]])
        out.append(z)
    return torch.stack(out)


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probs.argmax(-1) == labels))


def cross_modal_scores(model: MultimodalPLRNN, views: dict[str, View], x: torch.Tensor, generated: dict,
                       alpha: float, interval: int) -> dict[str, dict[str, Any]]:
    """Per label, ordinal and count view: its prediction from the other views through the forced latent
    trajectory (and, for labels, from the generated orbit) on the test segment."""
    out: dict[str, dict[str, Any]] = {}
    K = model.forcing_dim
    for name, view in views.items():
        kind, data = view.kind, np.asarray(view.data)
        if kind not in ("categorical", "ordinal", "poisson"):
            continue
        z = _forced(model, x, alpha, interval, masked=name)[:, :K]
        decoder = model.decoders[name]
        with torch.no_grad():
            if kind == "poisson":
                rates = decoder.mean(z).numpy()
                r = [np.corrcoef(rates[:, i], data[:, i])[0, 1] for i in range(data.shape[1])
                     if np.std(data[:, i]) > 0 and np.std(rates[:, i]) > 0]
                out[name] = {"kind": kind, "rate_correlation": float(np.mean(r)) if r else math.nan,
                             "n_channels_scored": len(r)}
                continue
            labels = data[:, 0].astype(int) if kind == "categorical" else data.astype(int)
            probs = (decoder.mean(z) if kind == "categorical" else decoder.level_probabilities(z)).numpy()
        freq = np.bincount(labels.ravel()) / labels.size
        entry = {"kind": kind, "accuracy": _accuracy(probs, labels), "chance": float(freq.max())}
        if kind == "categorical":
            entry["accuracy_generated"] = _accuracy(generated[name], labels)
            entry["n_categories"] = int(decoder.n_categories)
        out[name] = entry
    return out


@torch.no_grad()
def observation_fit_table(model: MultimodalPLRNN, spec: dict, views: dict[str, View], z_forced: np.ndarray,
                          z_generated: np.ndarray, decoded: dict[str, np.ndarray]) -> pd.DataFrame:
    """The test segment seen through each dynamic view's observation model, one row per test sample.

    Parameters
    ----------
    model : MultimodalPLRNN
    spec : dict
        The run's view spec (``config.json``'s ``mtf.spec``).
    views : dict of str to View
        The test segment's views (:func:`~dsrpipe.training.mtf_views.series_to_views`).
    z_forced : ndarray, shape (T, M)
        The GTF-forced latent test trajectory (:func:`_forced`).
    z_generated : ndarray, shape (T, M)
        The generated latent orbit, aligned with the test samples (:func:`generate_mtf`).
    decoded : dict of str to ndarray
        Each view decoded from ``z_generated`` (:func:`generate_mtf`; an fMRI view with the dropped
        transient as HRF history).

    Returns
    -------
    DataFrame
        ``step`` (0 .. T-1), then for each channel ``c`` of a gaussian, fmri or poisson view
        ``observed:c`` (the view's data: prepared BOLD or continuous values, raw counts),
        ``forced:c`` and ``generated:c`` (the decoder's mean from the forced and the generated latent
        trajectory: HRF-convolved BOLD, Poisson rates in counts per sample), and for the K decoded
        latent units ``latent_forced:z<i>`` and ``latent_generated:z<i>`` (i = 1 .. K).
    """
    K = model.forcing_dim
    from_forced = model.decode(torch.as_tensor(np.asarray(z_forced), dtype=torch.float64))
    T = len(z_forced)
    columns: dict[str, np.ndarray] = {"step": np.arange(T)}
    for v in spec["views"]:
        if v["kind"] not in DYNAMIC_KINDS:
            continue
        observed = np.asarray(views[v["name"]].data, dtype=np.float64).reshape(T, -1)
        forced = from_forced[v["name"]].numpy()
        generated = np.asarray(decoded[v["name"]], dtype=np.float64)
        for j, c in enumerate(v["channels"]):
            columns.update({f"observed:{c}": observed[:, j], f"forced:{c}": forced[:, j],
                            f"generated:{c}": generated[:, j]})
    for i in range(K):
        columns[f"latent_forced:z{i + 1}"] = np.asarray(z_forced)[:, i]
        columns[f"latent_generated:z{i + 1}"] = np.asarray(z_generated)[:, i]
    return pd.DataFrame(columns)


def evaluate_mtf(model: MultimodalPLRNN, run_cfg: dict, test: TimeSeries, cfg: EvaluateConfig, *,
                 dt: float | None = None, train: TimeSeries | None = None, source: str = "test") -> dict[str, Any]:
    """Metrics of an MTF model on the test series (every channel type); returns ``metrics``,
    ``generated`` (T, N) on the modelled channels' scale, ``fixed_points``, ``tables`` and ``fit``
    (:func:`observation_fit_table`)."""
    from dsrpipe.analysis.baselines import BASELINES
    from dsrpipe.analysis.metrics import prediction_error_curve
    from dsrpipe.evaluation import analyse_dynamics, dynamics_record, validation_metrics

    mtf = run_cfg["mtf"]
    spec = mtf["spec"]
    views, inputs = series_to_views(test, spec, source)
    x = _stack(model, views, inputs)
    T = len(x)
    n_drop = int(round(0.25 * T))
    main = _main_view(spec)
    target = _observed(main, np.asarray(views[main["name"]].data))
    z_gen, decoded, bad = generate_mtf(model, x, inputs, T, n_drop)
    gen = _observed(main, decoded[main["name"]])
    finite = bool(np.isfinite(gen).all())
    divergence = {"bound": DIVERGENCE_NORM, "generation": bad, "lyapunov": None, "prediction": None}
    if bad is not None or not finite:
        log.warning("the generated latent orbit diverges at step %s: D_stsp and D_H are inf", bad)
        d_stsp = d_h = math.inf
    elif cfg.d_stsp_method == "gmm":
        d_stsp = state_space_divergence_gmm(target, gen, scaling=cfg.gmm_scaling, seed=cfg.seed)
        d_h = power_spectrum_distance(target, gen, sigma=cfg.psd_sigma)
    else:
        d_stsp = state_space_divergence(target, gen, n_bins=cfg.n_bins)
        d_h = power_spectrum_distance(target, gen, sigma=cfg.psd_sigma)
    n_pe = max(cfg.pe_steps, cfg.pe_curve_steps)
    curve = prediction_error_curve_mtf(model, main, target, x, inputs, n_pe)
    log.info("MTF %s view: D_stsp %.4g, D_H %.4g, PE(%d) %.4g", main["name"], d_stsp, d_h, cfg.pe_steps,
             curve[cfg.pe_steps - 1])
    cross = cross_modal_scores(model, views, x, decoded, mtf["alpha"], mtf["forcing_interval"])
    for name, entry in cross.items():
        log.info("MTF %s view: %s", name, {k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items()})

    dt = dt if dt is not None else test.dt
    latent = model.latent
    z_forced = _forced(model, x, mtf["alpha"], mtf["forcing_interval"], None).numpy()
    try:
        lyap = lyapunov_analysis(latent, torch.as_tensor(z_forced[0]), cfg.lyapunov_steps,
                                 n_transient=cfg.lyapunov_transient, dt=dt, n_trace=cfg.lyapunov_trace,
                                 keep_orbit=True, bound=DIVERGENCE_NORM)
    except OrbitDivergedError as exc:  # an unbounded orbit has no attractor and no spectrum
        log.warning("the latent Lyapunov orbit diverges at step %d: spectrum and attractor class undefined", exc.step)
        lyap, divergence["lyapunov"] = None, exc.step
    rms = np.sqrt(curve)
    if not (rms <= DIVERGENCE_NORM).all():
        divergence["prediction"] = int(np.flatnonzero(~(rms <= DIVERGENCE_NORM))[0]) + 1
    rng = np.random.default_rng(cfg.seed)
    inits = z_forced[rng.choice(T, size=min(T, 100), replace=False)]
    dynamics = analyse_dynamics(latent, z_forced, lyap, inits, cfg, dt)
    fps = dynamics.pop("fixed_points")
    dyn = dynamics["metrics"]
    dyn["pe_curve"] = curve[: cfg.pe_curve_steps].tolist()  # on the main view, not the latent states
    spectrum = lyap.exponents if lyap is not None else np.full(latent.latent_dim, math.nan)
    metrics: dict[str, Any] = {
        "method": "mtf",
        "d_stsp": float(d_stsp), "d_h": float(d_h), f"pe_{cfg.pe_steps}": float(curve[cfg.pe_steps - 1]),
        "main_view": main["name"],
        "views": {v["name"]: {"kind": v["kind"], "channels": v["channels"]} for v in spec["views"]},
        "cross_modal": cross,
        **dynamics_record(spectrum, lyap is not None, fps, dyn, finite, divergence, dt, T, cfg),
    }
    if train is not None and main["kind"] != "poisson":
        x_train = train.select(CONTINUOUS).data if CONTINUOUS in train.channel_types else train.data
        metrics["baselines"] = {}
        for name, cls in BASELINES.items():
            baseline = cls.fit(x_train)
            metrics["baselines"][name] = {**validation_metrics(baseline, target, cfg)[0],
                                          "pe_curve": prediction_error_curve(baseline, target,
                                                                             cfg.pe_curve_steps).tolist()}
    # the generated series on the modelled (continuous, count) channels of the test file
    channels = [c for c, t in zip(test.channels, test.channel_types) if t in (CONTINUOUS, COUNT)]
    columns = {}
    for v in spec["views"]:
        if v["kind"] in DYNAMIC_KINDS:
            columns.update(zip(v["channels"], _observed(v, decoded[v["name"]]).T))
    generated = np.column_stack([columns[c] for c in channels])
    fit = observation_fit_table(model, spec, views, z_forced, z_gen, decoded)
    return {"metrics": metrics, "generated": generated, "channels": channels, "fixed_points": fps,
            "tables": dynamics["tables"], "fit": fit}


def evaluate_mtf_run(run_dir: str | os.PathLike, test: TimeSeries | str | os.PathLike, cfg: EvaluateConfig,
                     metrics_out: str | os.PathLike, *, generated_out=None, fixed_points_out=None, cycles_out=None,
                     basins_out=None, lyapunov_out=None, dt: float | None = None, truth: dict | None = None,
                     train: TimeSeries | str | os.PathLike | None = None,
                     inputs: np.ndarray | None = None, fit_out=None) -> dict[str, Any]:
    """:func:`dsrpipe.evaluation.evaluate_run` for an MTF run (same outputs, and the observation fit,
    :func:`observation_fit_table`, as ``fit_out``, by default ``observation_fit.parquet`` beside
    ``metrics_out``). ``test`` is a series file
    (read with every channel type) or a series holding every channel type of the training file
    (``load_series(path, types=None)``); ``inputs`` is unused (the test series carries them);
    ``truth`` is not compared for MTF runs (logged)."""
    from dsrpipe.io.timeseries import load_series
    from dsrpipe.training.checkpoint import load_multimodal_run

    model, run_cfg = load_multimodal_run(run_dir)
    if not isinstance(test, TimeSeries):
        test = load_series(test, types=None)
    if train is not None and not isinstance(train, TimeSeries):
        train = load_series(train)
    if truth is not None:
        log.warning("%s: ground-truth comparison is not implemented for MTF runs; skipped", run_dir)
    with single_threaded():
        result = evaluate_mtf(model, run_cfg, test, cfg, dt=dt, train=train, source=f"{run_dir} test series")
    data_info = run_cfg.get("data", {})
    metrics = {
        "subject": str(data_info.get("subject", test.subject)),
        "model": run_cfg["model"]["name"],
        "seed": int(run_cfg.get("train", {}).get("seed", 0)),
        "n_params": int(run_cfg["mtf"].get("n_params_total", run_cfg["model"]["n_params"])),
        "train_time_s": float(run_cfg.get("train_time_s", math.nan)),
        "backend": run_cfg.get("backend"),
        "modality": test.modality,
        **result["metrics"],
    }
    if generated_out is not None:
        write_timeseries(TimeSeries(result["generated"], result["channels"], dt=test.dt, subject=test.subject,
                                    modality=test.modality, meta={"generated_by": str(run_dir)}), generated_out)
    with atomic_path(fit_out or Path(metrics_out).parent / OBSERVATION_FIT_FILE) as tmp:
        result["fit"].to_parquet(tmp, index=False)
    from dsrpipe.evaluation import write_analysis_outputs

    write_analysis_outputs(metrics, result["fixed_points"], result["tables"], metrics_out, fixed_points_out,
                           cycles_out, basins_out, lyapunov_out)
    return metrics


def validation_scores_mtf(model: MultimodalPLRNN, spec: dict, views: dict[str, View],
                          inputs: np.ndarray | None) -> dict[str, Any]:
    """D_stsp and D_H of the generated main view on a validation tail (restart selection), as
    :func:`dsrpipe.training.selection.validation_scores` for GTF runs."""
    from dsrpipe.training.selection import score_generated

    main = _main_view(spec)
    x = _stack(model, views, inputs)
    T = len(x)
    _, decoded, bad = generate_mtf(model, x, inputs, T, int(round(0.25 * T)))
    target = _observed(main, np.asarray(views[main["name"]].data))
    gen = _observed(main, decoded[main["name"]])
    if bad is not None:
        return {"d_stsp": math.inf, "d_h": math.inf, "method": None}
    return score_generated(target, gen)
