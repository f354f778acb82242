"""Restart selection from training data only.

Each run scores its model on the held-out tail of its own training segment
(``train.validation_fraction``): orbits generated from several points of the
tail (:data:`VALIDATION_STARTS`, evenly spaced, the first point among them),
each run 5 tail lengths after a dropped transient of 0.25 T and scored against
the whole tail, and the worst of them counts. A model with a
stable state next to its chaotic attractor (a "collapsed" restart) runs well
from most points and falls into that state from some; one start may miss this,
several rarely do. The selected restart of a subject is the run with the
smallest validation D_stsp (D_H breaks ties); the test segment is never used.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from dsrpipe import DsrpipeError
from dsrpipe.io.atomic import write_json
from dsrpipe.paths import CONFIG_FILE

log = logging.getLogger(__name__)

#: shortest validation tail that is scored
MIN_VALIDATION_SAMPLES = 100
#: D_stsp by binning below this many channels, by the Gaussian mixture estimate from it on
GMM_FROM_CHANNELS = 6
#: the validation orbit is checked for divergence over at least this many steps
DIVERGENCE_HORIZON = 10_000
#: validation orbits start from this many evenly spaced points of the tail (models without inputs)
VALIDATION_STARTS = 8
#: each validation orbit runs this many tail lengths (models without inputs; D_H takes its first T)
VALIDATION_ORBIT_TAILS = 5


def validation_scores(model, readout, x_val: np.ndarray, inputs: np.ndarray | None = None,
                      n_starts: int = VALIDATION_STARTS) -> dict:
    """D_stsp and D_H of the free-running model on the validation tail ``x_val`` (T, N).

    Orbits start from ``n_starts`` evenly spaced points of the tail (its first point among
    them) and run :data:`VALIDATION_ORBIT_TAILS` x T steps after a dropped transient of
    0.25 T; each is scored against the whole tail (D_H on its first T steps) and the worst
    D_stsp counts (``d_stsp``, with that orbit's ``d_h``; ``d_stsp_starts`` lists every
    start's). A model driven by ``inputs`` runs T steps from the tail's first point only,
    where its inputs line up with the tail. The longer orbits matter on short tails: on the
    EEG's 771-sample tail one model's 8 starts scored 3.8-11.4 with T-step orbits and within
    0.6-1.6 of each other with 5 T (benchmarks/README.md).

    The first orbit is run on past the tail, to :data:`DIVERGENCE_HORIZON` steps or ten
    tails, whichever is longer: a model whose orbit diverges there or from any other start
    (see :func:`dsrpipe.analysis.divergence.first_divergence`) scores inf, so selection never
    picks a restart that looks good on the short tail and explodes on a test-length orbit.
    """
    from dsrpipe.analysis.divergence import first_divergence
    from dsrpipe.models.readout import generate_observations

    T = len(x_val)
    n_drop = int(round(0.25 * T))
    n_total = max(DIVERGENCE_HORIZON, 10 * T)
    u = None
    if inputs is not None:
        # inputs outside the tail are unknown: the tail's inputs, repeated, before (the dropped
        # transient) and after it (the divergence check)
        k = inputs.shape[1]
        u = np.concatenate([np.resize(inputs, (n_drop, k)), inputs, np.resize(inputs, (n_total - T, k))])
    starts = [0] if inputs is not None else sorted({int(i) for i in np.linspace(0, T - 1, max(1, n_starts))})
    n_scored = T if inputs is not None else VALIDATION_ORBIT_TAILS * T
    scores = []
    for start in starts:
        orbit = (generate_observations(model, readout, x_val[0], max(n_total, n_scored), n_drop, u) if start == 0 else
                 generate_observations(model, readout, x_val[start], n_scored, n_drop))
        step = first_divergence(orbit)
        if step is not None:  # on the tail, after it, or from another start
            return {"d_stsp": math.inf, "d_h": math.inf, "method": None, "diverged_at_step": int(n_drop + step),
                    "diverged_from": start}
        scores.append(score_generated(x_val, orbit[:n_scored]))
    worst = max(range(len(scores)), key=lambda i: scores[i]["d_stsp"])
    return {**scores[worst], "worst_start": starts[worst], "d_stsp_starts": [sc["d_stsp"] for sc in scores]}


def score_generated(x_val: np.ndarray, gen: np.ndarray) -> dict:
    """Validation D_stsp (GMM from GMM_FROM_CHANNELS channels, else binned) of a generated series
    against the held-out tail, and D_H of its first ``len(x_val)`` steps; inf for a non-finite orbit."""
    from dsrpipe.analysis import power_spectrum_distance, state_space_divergence, state_space_divergence_gmm

    if not np.isfinite(gen).all():
        return {"d_stsp": math.inf, "d_h": math.inf, "method": None}
    if x_val.shape[1] >= GMM_FROM_CHANNELS:
        d_stsp, method = state_space_divergence_gmm(x_val, gen, seed=0), "gmm"
    else:
        d_stsp, method = state_space_divergence(x_val, gen, n_bins=30), "binning"
    return {"d_stsp": float(d_stsp), "d_h": float(power_spectrum_distance(x_val, gen[: len(x_val)])), "method": method}


def _score(config: dict) -> tuple[float, float]:
    val = config.get("validation") or {}
    d = val.get("d_stsp")
    h = val.get("d_h")
    return (math.inf if d is None or not math.isfinite(d) else d,
            math.inf if h is None or not math.isfinite(h) else h)


def select_restart(run_dirs: list[str | os.PathLike], out: str | os.PathLike | None = None) -> dict:
    """Pick the run with the smallest validation D_stsp among ``run_dirs`` (one subject's restarts).

    Writes ``out`` (JSON) when given. Runs without a validation score rank last;
    with no score at all the first run is selected and the reason recorded.
    """
    if not run_dirs:
        raise DsrpipeError("restart selection needs at least one run directory")
    rows = []
    for d in run_dirs:
        path = Path(d) / CONFIG_FILE
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DsrpipeError(f"{path}: cannot read the run config ({exc})") from exc
        d_stsp, d_h = _score(config)
        rows.append({"run": str(d), "seed": config.get("train", {}).get("seed"), "val_d_stsp": d_stsp,
                     "val_d_h": d_h})
    best = min(range(len(rows)), key=lambda i: (rows[i]["val_d_stsp"], rows[i]["val_d_h"], i))
    scored = any(math.isfinite(r["val_d_stsp"]) for r in rows)
    result = {"selected": rows[best]["run"], "seed": rows[best]["seed"],
              "rule": "smallest validation D_stsp (the worst of several starts) on the training segment's held-out tail"
              if scored else "no run has a validation score; the first run is used",
              "candidates": [{**r, "val_d_stsp": r["val_d_stsp"] if math.isfinite(r["val_d_stsp"]) else None,
                              "val_d_h": r["val_d_h"] if math.isfinite(r["val_d_h"]) else None} for r in rows]}
    log.info("selected %s (validation D_stsp %s) of %d restarts", result["selected"],
             result["candidates"][best]["val_d_stsp"], len(rows))
    if out is not None:
        write_json(result, out)
    return result
