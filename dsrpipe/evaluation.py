"""The evaluate stage: validation metrics and invariants of one trained model.

Protocol (REFERENCE.md): generate 1.25 T steps from the first test point,
drop the first 0.25 T, compare the remaining T steps with the held-out test
series of length T. Lyapunov spectrum and fixed points come from the model's
own ``step`` and ``jacobian``; for piecewise-linear models also k-cycles
(SCYFI), the linear subregions the attractor visits and, on request,
virtual fixed points, all through the model's ``region`` / ``affine``.
Then the attractor's class (from the spectrum), the PE(n) curve and the
basins of attraction in the data's PCA plane.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dsrpipe import DsrpipeError
from dsrpipe.analysis import (
    fixed_points,
    kaplan_yorke_dimension,
    power_spectrum_distance,
    prediction_error,
    state_space_divergence,
    state_space_divergence_gmm,
)
from dsrpipe.analysis.baselines import BASELINES
from dsrpipe.analysis.basins import BasinResult, basin_map, basins
from dsrpipe.analysis.cycles import Cycle, exhaustive_cycles, scyfi, virtual_fixed_points
from dsrpipe.analysis.divergence import DIVERGENCE_NORM, OrbitDivergedError, first_divergence
from dsrpipe.analysis.fixed_points import MAX_EXHAUSTIVE_L, FixedPoint
from dsrpipe.analysis.lyapunov import (
    LyapunovResult,
    classify_attractor,
    lyapunov_analysis,
    orbit_period,
    single_threaded,
)
from dsrpipe.analysis.metrics import prediction_error_curve
from dsrpipe.analysis.symbolic import symbolic_dynamics
from dsrpipe.config import EvaluateConfig, to_dict
from dsrpipe.io.atomic import atomic_path, write_json
from dsrpipe.io.timeseries import TimeSeries, write_timeseries
from dsrpipe.models import LatentModel
from dsrpipe.paths import BASINS_FILE, CYCLES_FILE, LYAPUNOV_FILE
from dsrpipe.models.readout import Readout, generate_observations
from dsrpipe.training.checkpoint import is_multimodal_run, load_reconstruction
from dsrpipe.training.forcing import initial_state

log = logging.getLogger(__name__)


def generate_orbit(model: LatentModel, x0: np.ndarray, n_steps: int, n_drop: int, readout: Readout | None = None,
                   inputs: np.ndarray | None = None) -> np.ndarray:
    """Free-running orbit from the observation ``x0``; returns (n_steps, N) after dropping ``n_drop`` steps.

    ``readout`` maps ``x0`` into latent space and the orbit back (default: identity with zeros
    in the extra units); ``inputs`` (n_drop + n_steps, K) drive a model with external inputs."""
    if hasattr(model, "generate") and isinstance(model, LatentModel):
        return generate_observations(model, readout, x0, n_steps, n_drop, inputs)
    model = model.double()  # a baseline model (no readout)
    z0 = initial_state(torch.tensor(x0, dtype=torch.float64), model.latent_dim)
    return model.generate(z0, n_drop + n_steps)[n_drop:, : len(x0)].numpy()


def _driving_inputs(inputs: np.ndarray | None, n_drop: int) -> np.ndarray | None:
    """Inputs for an orbit of n_drop + T steps aligned with a test series of T samples: the
    transient repeats the test inputs (their values before the series are unknown)."""
    if inputs is None:
        return None
    return np.concatenate([np.resize(inputs, (n_drop, inputs.shape[1])), inputs]) if n_drop else inputs


def _lift(readout: Readout | None, x: np.ndarray, latent_dim: int) -> torch.Tensor:
    """Observations (K, N) as latent states (K, M) through the readout (zeros in the extra units without one)."""
    xt = torch.as_tensor(np.array(x, dtype=np.float64))  # a copy: series read from Parquet are read-only
    return initial_state(xt, latent_dim) if readout is None else readout.double().initial_state(xt).detach()


def validation_metrics(model: LatentModel, x: np.ndarray, cfg: EvaluateConfig, readout: Readout | None = None,
                       inputs: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """D_stsp, D_H and PE(n) of ``model`` on the test series ``x`` (T, N), by the evaluation protocol.

    Returns the metrics (plus ``generated_finite``, ``diverged`` and ``diverged_at_step``)
    and the generated orbit (T, N). An orbit that diverges (:func:`first_divergence`,
    transient included; steps counted from ``x[0]`` = 0) scores inf on D_stsp and D_H:
    its distribution and spectrum are infinitely far from the data's.
    """
    T = len(x)
    n_drop = int(round(0.25 * T))
    orbit = generate_orbit(model, np.array(x[0]), n_drop + T, 0, readout, _driving_inputs(inputs, n_drop))
    gen = orbit[n_drop:]
    finite = bool(np.isfinite(gen).all())
    bad = first_divergence(orbit)  # row i is step i + 1 from x[0]
    bad = None if bad is None else bad + 1
    if bad is not None:
        log.warning("the generated orbit of %s diverges at step %d of %d (a state of norm above %g or "
                    "non-finite): D_stsp and D_H are inf", model.name, bad, n_drop + T, DIVERGENCE_NORM)
        d_stsp = d_h = math.inf
    else:
        if cfg.d_stsp_method == "gmm":
            d_stsp = state_space_divergence_gmm(x, gen, scaling=cfg.gmm_scaling, seed=cfg.seed)
        else:
            d_stsp = state_space_divergence(x, gen, n_bins=cfg.n_bins)
        d_h = power_spectrum_distance(x, gen, sigma=cfg.psd_sigma)
    pe = prediction_error(model, x, n=cfg.pe_steps, readout=readout, inputs=inputs)
    log.info("%s: D_stsp %.4g, D_H %.4g, PE(%d) %.4g", model.name, d_stsp, d_h, cfg.pe_steps, pe)
    return {"d_stsp": float(d_stsp), "d_h": float(d_h), f"pe_{cfg.pe_steps}": float(pe),
            "generated_finite": finite, "diverged": bad is not None, "diverged_at_step": bad}, gen


def compare_with_truth(truth: dict, spectrum: np.ndarray, fps: list, mean: np.ndarray, std: np.ndarray,
                       readout: Readout | None = None) -> dict:
    """True vs recovered invariants; true fixed points are standardised like the data and compared
    with the recovered ones seen through the readout."""
    N = len(mean)
    true_fps = (np.asarray(truth.get("fixed_points_raw", []), dtype=float).reshape(-1, N) - mean) / std
    found = np.array([fp.z for fp in fps]) if fps else np.empty((0, N))
    if len(found):
        found = (found[:, :N] if readout is None
                 else readout.double().observe(torch.as_tensor(found, dtype=torch.float64)).detach().numpy())
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


@dataclass
class Evaluation:
    """Everything the evaluate stage computes for one model.

    Attributes
    ----------
    metrics : dict
        The metrics.json content (without the run's identity keys).
    generated : ndarray, shape (T, N)
        The free-running orbit compared with the test series.
    fixed_points : list of FixedPoint
    tables : dict of DataFrame
        ``cycles``, ``basins``, ``lyapunov`` (see :func:`analyse_dynamics`).
    """

    metrics: dict[str, Any]
    generated: np.ndarray
    fixed_points: list
    tables: dict[str, pd.DataFrame]


def evaluate_model(model: LatentModel, test: TimeSeries, cfg: EvaluateConfig, **kwargs) -> tuple[dict[str, Any],
                                                                                                 np.ndarray, list]:
    """``(metrics, generated, fixed_points)`` of :func:`evaluate`."""
    result = evaluate(model, test, cfg, **kwargs)
    return result.metrics, result.generated, result.fixed_points


def evaluate(
    model: LatentModel,
    test: TimeSeries,
    cfg: EvaluateConfig,
    *,
    dt: float | None = None,
    truth: dict | None = None,
    train: TimeSeries | None = None,
    readout: Readout | None = None,
    inputs: np.ndarray | None = None,
) -> Evaluation:
    """Metrics and invariants of ``model`` on the standardised test series.

    With ``train`` (the training segment), the same validation metrics of the
    baselines (training mean, VAR(1) fitted on ``train``) and their PE curves
    go under ``baselines``.

    Returns
    -------
    Evaluation
        ``metrics`` holds ``d_stsp``, ``d_h``, ``pe_<n>``, ``lyapunov_spectrum``,
        ``max_lyapunov``, ``kaplan_yorke_dimension``, ``fixed_points``, the
        entries of :func:`analyse_dynamics` (``attractor_class``, ``attractor``,
        ``cycles``, ``n_cycles``, ``n_visited_regions``, ``symbolic_dynamics``,
        ``pe_curve``, ``basins``, ``n_attractors``, ...), the divergence record and,
        with ``truth``, the comparison.

    Divergence. An orbit diverges at its first state that is non-finite or of norm above
    :data:`~dsrpipe.analysis.divergence.DIVERGENCE_NORM`. Three stages look: ``generation``
    (the orbit compared with the test data, from ``x[0]``), ``lyapunov`` (the autonomous
    orbit from ``x[0]``, transient included) and ``prediction`` (the n-step predictions
    from every test point: RMS error above the bound). ``diverged`` is true when any
    did; ``diverged_stage`` names the first of them in that order and
    ``diverged_at_step`` its step (the horizon n for ``prediction``); ``divergence``
    holds ``bound`` and each stage's step (None: bounded). A diverged generation
    scores inf on D_stsp and D_H; a diverged Lyapunov orbit has no attractor: NaN
    spectrum and Kaplan-Yorke dimension, ``attractor_class`` ``diverged``, no symbolic
    dynamics. Fixed points, cycles, basins and baselines are properties of the map
    and the data and are computed as usual, so every output is written.

    ``readout`` (the model's trained readout; default identity with zeros in the extra
    units) maps data into latent space and orbits back; ``inputs`` (T, K), the test
    segment's external inputs, drive generation and predictions of a model with inputs
    (fixed points, cycles and the Lyapunov spectrum are those of the autonomous map).

    Torch runs single-threaded inside (every op here is a small batched one,
    see :func:`~dsrpipe.analysis.lyapunov.single_threaded`).
    """
    with single_threaded():
        return _evaluate(model, test, cfg, dt=dt, truth=truth, train=train, readout=readout, inputs=inputs)


def check_finite(ts: TimeSeries, what: str, source: str | os.PathLike | None = None) -> None:
    """Raise a DsrpipeError naming the file (or subject), sample and channel when ``ts`` holds NaN/inf.

    prepare rejects such values, so they mean a series that was edited or written by another tool."""
    bad = ~np.isfinite(ts.data)
    if bad.any():
        t, c = np.argwhere(bad)[0]
        where = str(source) if source is not None else f"the {what} series of subject {ts.subject}"
        raise DsrpipeError(f"{where}: {int(bad.sum())} non-finite value(s) (NaN/inf), the first at sample {t}, "
                           f"channel {ts.channels[c]!r}; the {what} series must be finite: rerun "
                           "`dsrpipe prepare` on the recording (it rejects NaN/inf with the file named)")


def _evaluate(model, test, cfg, *, dt, truth, train, readout=None, inputs=None) -> Evaluation:
    x = test.data
    T, N = x.shape
    if readout is None and model.latent_dim < N:
        raise DsrpipeError(f"model has {model.latent_dim} latent units but the test data has {N} channels")
    if readout is not None and readout.n_obs != N:
        raise DsrpipeError(f"the model's readout has {readout.n_obs} channels but the test data has {N}")
    if inputs is not None and len(inputs) != T:
        raise DsrpipeError(f"{len(inputs)} input samples for a test series of {T}")
    check_finite(test, "test")
    if train is not None:
        check_finite(train, "training")
    dt = dt if dt is not None else test.dt
    model = model.double()
    validation, gen = validation_metrics(model, x, cfg, readout, inputs)
    finite = validation.pop("generated_finite")
    divergence = {"bound": DIVERGENCE_NORM, "generation": validation.pop("diverged_at_step"),
                  "lyapunov": None, "prediction": None}
    validation.pop("diverged")

    z0 = _lift(readout, x[0], model.latent_dim)
    try:
        lyap = lyapunov_analysis(model, z0, cfg.lyapunov_steps, n_transient=cfg.lyapunov_transient, dt=dt,
                                 n_trace=cfg.lyapunov_trace, keep_orbit=True, bound=DIVERGENCE_NORM)
    except OrbitDivergedError as exc:  # an unbounded orbit has no attractor and no spectrum
        log.warning("the Lyapunov orbit of %s from the first test point diverges at step %d: spectrum, "
                    "Kaplan-Yorke dimension and attractor class are not defined (NaN / 'diverged')",
                    model.name, exc.step)
        lyap, divergence["lyapunov"] = None, exc.step
    spectrum = lyap.exponents if lyap is not None else np.full(model.latent_dim, math.nan)
    rng = np.random.default_rng(cfg.seed)
    inits = _lift(readout, x[rng.choice(T, size=min(T, 100), replace=False)], model.latent_dim).numpy()
    dynamics = analyse_dynamics(model, x, lyap, inits, cfg, dt, readout=readout, inputs=inputs)
    fps = dynamics.pop("fixed_points")
    rms = np.sqrt(np.asarray(dynamics["metrics"]["pe_curve"], dtype=float))
    if not (rms <= DIVERGENCE_NORM).all():  # n-step predictions from the test points leave the bound (or NaN)
        divergence["prediction"] = int(np.flatnonzero(~(rms <= DIVERGENCE_NORM))[0]) + 1
    stages = divergence_stages(divergence)
    log.info("Lyapunov spectrum %s (%s); %d fixed point(s)", np.round(spectrum, 4).tolist(),
             dynamics["metrics"]["attractor_class"], len(fps))
    metrics: dict[str, Any] = {
        **validation,
        **dynamics_record(spectrum, lyap is not None, fps, dynamics["metrics"], finite, divergence, dt, T, cfg),
    }
    if stages:
        log.warning("%s diverges (%s): reported as diverged", model.name,
                    ", ".join(f"{k} at step {divergence[k]}" for k in stages))
    if train is not None:
        metrics["baselines"] = {}
        for name, cls in BASELINES.items():
            baseline = cls.fit(train.data)
            scores = validation_metrics(baseline, x, cfg)[0]
            scores.pop("generated_finite")
            metrics["baselines"][name] = {
                **scores, "pe_curve": prediction_error_curve(baseline, x, cfg.pe_curve_steps).tolist()}
    if truth is not None:
        stdz = test.meta.get("standardisation", {})
        mean = np.asarray(stdz.get("mean", np.zeros(N)), dtype=float)
        std = np.asarray(stdz.get("std", np.ones(N)), dtype=float)
        metrics.update(compare_with_truth(truth, spectrum, fps, mean, std, readout))
    return Evaluation(metrics, gen, fps, dynamics["tables"])


def divergence_stages(divergence: dict) -> list[str]:
    """The evaluation stages (in pipeline order) that saw the model's orbit leave the bound."""
    return [k for k in ("generation", "lyapunov", "prediction") if divergence[k] is not None]


def dynamics_record(spectrum: np.ndarray, has_spectrum: bool, fixed_points: list, dynamics: dict, finite: bool,
                    divergence: dict, dt: float | None, n_test: int, cfg: EvaluateConfig) -> dict[str, Any]:
    """The ``metrics.json`` keys every evaluation (GTF and MTF runs) shares: the Lyapunov spectrum and
    Kaplan-Yorke dimension, fixed points, the attractor analysis of :func:`analyse_dynamics`, and the
    divergence record (``diverged``, its first stage and step)."""
    stages = divergence_stages(divergence)
    return {
        "lyapunov_spectrum": [float(v) for v in spectrum],
        "max_lyapunov": float(spectrum[0]),
        "kaplan_yorke_dimension": float(kaplan_yorke_dimension(spectrum)) if has_spectrum else math.nan,
        "lyapunov_units": "per time unit" if dt else "per step",
        "fixed_points": [fp.to_dict() for fp in fixed_points],
        **dynamics,
        "generated_finite": finite,
        "diverged": bool(stages),
        "diverged_stage": stages[0] if stages else None,
        "diverged_at_step": divergence[stages[0]] if stages else None,
        "divergence": divergence,
        "dt": dt,
        "n_test_samples": int(n_test),
        "evaluate_config": to_dict(cfg),
    }


def analyse_dynamics(model: LatentModel, x: np.ndarray, lyap: LyapunovResult, inits: np.ndarray,
                     cfg: EvaluateConfig, dt: float | None, readout: Readout | None = None,
                     inputs: np.ndarray | None = None) -> dict[str, Any]:
    """Fixed points, cycles, symbolic dynamics, attractor class, PE curve and basins of one model.

    Parameters
    ----------
    model : LatentModel (float64)
    x : ndarray, shape (T, N)
        Standardised test series.
    lyap : LyapunovResult or None
        With ``orbit`` (the states on the attractor); None when that orbit diverged:
        the attractor class is then ``diverged`` and there is no symbolic dynamics
        (``n_visited_regions`` None, no virtual fixed points).
    inits : ndarray, shape (K, M)
        Test points lifted to latent space, extra SCYFI initial states.
    cfg : EvaluateConfig
    dt : float or None
        Sampling interval of ``lyap.exponents`` (None: per step).

    Returns
    -------
    dict
        ``fixed_points`` (list of FixedPoint), ``metrics`` (JSON-ready entries
        for metrics.json) and ``tables`` (DataFrames ``cycles``, ``basins``,
        ``lyapunov`` for the Parquet outputs).
    """
    if lyap is None:  # the orbit from the data diverged: no attractor to classify or to code symbolically
        attractor: dict[str, Any] = {"class": "diverged", "n_positive": None, "n_zero": None, "n_negative": None,
                                     "tolerance": None, "period": 0}
    else:
        per_step = lyap.exponents * dt if dt else lyap.exponents
        period = orbit_period(lyap.orbit[-min(len(lyap.orbit), 201):], max_period=100)
        attractor = classify_attractor(per_step, rel_tol=cfg.classify_rel_tol, abs_tol=10.0 / cfg.lyapunov_steps,
                                       period=period)
        attractor["period"] = int(period or 0)
    metrics: dict[str, Any] = {"attractor_class": attractor["class"], "attractor": attractor}
    cycles: list[Cycle] = []
    if getattr(model, "piecewise_linear", False):
        cycles = scyfi(model, cfg.max_cycle_order, n_inits=cfg.fixed_point_inits, init_points=inits, seed=cfg.seed)
        if cfg.fixed_point_method == "exhaustive":
            cycles = exhaustive_cycles(model, 1, max_codes=2**MAX_EXHAUSTIVE_L) + [c for c in cycles if c.order > 1]
        fps = [FixedPoint.from_cycle(c) for c in cycles if c.order == 1]
        sym = symbolic_dynamics(model, lyap.orbit) if lyap is not None else None
        metrics["n_visited_regions"] = sym.n_regions if sym is not None else None
        metrics["symbolic_dynamics"] = sym.to_dict() if sym is not None else None
        if cfg.virtual_fixed_points:
            metrics["virtual_fixed_points"] = ([c.to_dict() for c in virtual_fixed_points(model, sym.codes)]
                                               if sym is not None else [])
    else:
        fps = fixed_points(model, method=cfg.fixed_point_method, n_inits=cfg.fixed_point_inits, seed=cfg.seed,
                           init_points=inits)
        metrics["n_visited_regions"] = None
    metrics["cycles"] = [c.to_dict() for c in cycles if c.order > 1]
    metrics["n_cycles"] = {str(k): sum(c.order == k for c in cycles) for k in range(1, cfg.max_cycle_order + 1)}
    metrics["pe_curve"] = prediction_error_curve(model, x, cfg.pe_curve_steps, readout=readout,
                                                 inputs=inputs).tolist()

    basin = None
    if cfg.basin_grid:
        kwargs = dict(n_transient=cfg.basin_transient, n_record=cfg.basin_record, dist_tol=cfg.basin_dist_tol,
                      rel_tol=cfg.classify_rel_tol)
        if cfg.basin_inits == "grid":
            basin = basin_map(model, x, n_grid=cfg.basin_grid, **kwargs)
        else:
            rng = np.random.default_rng(cfg.seed + 1)
            pts = x[rng.choice(len(x), size=min(len(x), cfg.basin_grid**2), replace=False)]
            basin = basins(model, _lift(readout, pts, model.latent_dim).numpy(), **kwargs)
        metrics["basins"] = {"n_attractors": basin.n_attractors, "n_diverging": int((basin.labels < 0).sum()),
                             "n_inits": int(len(basin.labels)), "inits": cfg.basin_inits,
                             "attractors": basin.attractors.to_dict(orient="records")}
        metrics["n_attractors"] = basin.n_attractors
    return {"fixed_points": fps, "metrics": metrics,
            "tables": {"cycles": cycles_table(fps, cycles, model.latent_dim), "basins": basins_table(basin),
                       "lyapunov": lyapunov_table(lyap, model.latent_dim)}}


def cycles_table(fps: list[FixedPoint], cycles: list[Cycle], M: int) -> pd.DataFrame:
    """One row per point of every fixed point and cycle: ``cycle, order, point, z0..z{M-1}, stable, type,
    max_abs_eigenvalue``. Fixed points come from ``fps`` when ``cycles`` has none of order 1 (smooth maps)."""
    objects = [(c.order, c.states, c.stable, c.kind, c.eigenvalues) for c in cycles]
    if not any(c.order == 1 for c in cycles):
        objects = [(1, fp.z[None], fp.stable, fp.kind, fp.eigenvalues) for fp in fps] + objects
    rows = [{"cycle": i, "order": order, "point": j, **{f"z{m}": float(v) for m, v in enumerate(z)},
             "stable": bool(stable), "type": kind, "max_abs_eigenvalue": float(np.max(np.abs(eig)))}
            for i, (order, states, stable, kind, eig) in enumerate(objects) for j, z in enumerate(states)]
    columns = ["cycle", "order", "point", *[f"z{m}" for m in range(M)], "stable", "type", "max_abs_eigenvalue"]
    return pd.DataFrame(rows, columns=columns)


def basins_table(basin: BasinResult | None) -> pd.DataFrame:
    """The basin label of every initial condition: ``u, v, label`` on a grid, ``z0..`` and ``label`` otherwise."""
    if basin is None:
        return pd.DataFrame({"u": pd.Series(dtype=float), "v": pd.Series(dtype=float),
                             "label": pd.Series(dtype=np.int64)})
    if basin.grid is not None:
        return basin.grid_table()
    table = pd.DataFrame(basin.inits, columns=[f"z{m}" for m in range(basin.inits.shape[1])])
    table["label"] = basin.labels
    return table


def lyapunov_table(lyap: LyapunovResult | None, M: int | None = None) -> pd.DataFrame:
    """The convergence trace: ``step`` and ``lambda_1 .. lambda_M`` (running estimates, largest first);
    no rows when ``lyap`` is None (a diverged orbit; ``M`` gives the columns)."""
    if lyap is None:
        if M is None:
            raise DsrpipeError("lyapunov_table needs M without a Lyapunov result")
        return pd.DataFrame({"step": pd.Series(dtype=np.int64),
                             **{f"lambda_{i + 1}": pd.Series(dtype=float) for i in range(M)}})
    table = pd.DataFrame(lyap.trace, columns=[f"lambda_{i + 1}" for i in range(lyap.trace.shape[1])])
    table.insert(0, "step", lyap.trace_steps)
    return table


def read_inputs(path: str | os.PathLike) -> np.ndarray | None:
    """The external-input channels (type ``input``) of a series file, or None when it has none."""
    from dsrpipe.io.timeseries import INPUT, load_series

    ts = load_series(path, types=None)
    return ts.select(INPUT).data if INPUT in ts.channel_types else None


def read_truth(path: str | os.PathLike) -> dict:
    """Read a ground-truth JSON (as written by the demo)."""
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DsrpipeError(f"{path}: cannot read ground truth ({exc})") from exc


def evaluate_run(
    run_dir: str | os.PathLike,
    test: TimeSeries | str | os.PathLike,
    cfg: EvaluateConfig,
    metrics_out: str | os.PathLike,
    *,
    generated_out: str | os.PathLike | None = None,
    fixed_points_out: str | os.PathLike | None = None,
    cycles_out: str | os.PathLike | None = None,
    basins_out: str | os.PathLike | None = None,
    lyapunov_out: str | os.PathLike | None = None,
    dt: float | None = None,
    truth: dict | None = None,
    train: TimeSeries | str | os.PathLike | None = None,
    inputs: np.ndarray | None = None,
) -> dict[str, Any]:
    """Evaluate the trained run in ``run_dir``; write metrics (JSON), orbit, fixed points, cycles, basins and the
    Lyapunov convergence trace (Parquet). Outputs not given go beside ``metrics_out`` under their
    :mod:`dsrpipe.paths` names (cycles, basins, Lyapunov trace) or are skipped (orbit, fixed points).

    ``test`` and ``train`` may be series files (then an error about their content names the file).
    A model whose orbits diverge is reported, not failed: see the ``diverged*`` and ``divergence``
    entries of :func:`evaluate` (every output file is still written)."""
    if is_multimodal_run(run_dir):  # an MTF run: decoders per view, see dsrpipe.evaluation_mtf
        from dsrpipe.evaluation_mtf import evaluate_mtf_run

        return evaluate_mtf_run(run_dir, test, cfg, metrics_out, generated_out=generated_out,
                                fixed_points_out=fixed_points_out, cycles_out=cycles_out, basins_out=basins_out,
                                lyapunov_out=lyapunov_out, dt=dt, truth=truth, train=train, inputs=inputs)
    from dsrpipe.io.timeseries import read_timeseries

    if not isinstance(test, TimeSeries):
        source, test = test, read_timeseries(test)
        check_finite(test, "test", source)
    if train is not None and not isinstance(train, TimeSeries):
        source, train = train, read_timeseries(train)
        check_finite(train, "training", source)
    model, readout, run_cfg = load_reconstruction(run_dir)
    result = evaluate(model, test, cfg, dt=dt, truth=truth, train=train, readout=readout, inputs=inputs)
    metrics, gen, fps, tables = result.metrics, result.generated, result.fixed_points, result.tables
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
    write_analysis_outputs(metrics, fps, tables, metrics_out, fixed_points_out, cycles_out, basins_out, lyapunov_out)
    return metrics


def write_analysis_outputs(metrics: dict, fixed_points: list, tables: dict[str, pd.DataFrame], metrics_out,
                           fixed_points_out=None, cycles_out=None, basins_out=None, lyapunov_out=None) -> None:
    """Write the fixed points, the cycles/basins/Lyapunov tables (beside ``metrics_out`` unless given)
    and, last, ``metrics.json``, each atomically; shared by GTF and MTF evaluation."""
    if fixed_points_out is not None:
        table = pd.DataFrame(
            [{**{f"z{i}": v for i, v in enumerate(fp.z)}, "stable": fp.stable,
              "max_abs_eigenvalue": float(np.max(np.abs(fp.eigenvalues)))} for fp in fixed_points]
        )
        with atomic_path(fixed_points_out) as tmp:
            table.to_parquet(tmp, index=False)
    here = Path(metrics_out).parent
    for name, path in (("cycles", cycles_out or here / CYCLES_FILE), ("basins", basins_out or here / BASINS_FILE),
                       ("lyapunov", lyapunov_out or here / LYAPUNOV_FILE)):
        with atomic_path(path) as tmp:
            tables[name].to_parquet(tmp, index=False)
    write_json(metrics, metrics_out)
