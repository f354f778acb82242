"""Every model and teacher-forcing method on the CNS 2023 tutorial's Lorenz-63 data.

Trains each method x seed on ``lorenz63_train.npy`` (through the Python API, one process
per run, ``--jobs`` in parallel), evaluates on ``lorenz63_test.npy`` by the evaluation
protocol (REFERENCE.md: 30 bins, sigma 20, 1.25 T generated, first 0.25 T dropped) and
prints the median over seeds of D_stsp, D_H and lambda_max next to the tutorial's
pretrained shPLRNN (0.233 / 0.081 / 0.905; true lambda_max 0.906), plus training time
per model and the path (numba kernel or PyTorch) that ran.

The selected restart (smallest validation D_stsp on the training data's held-out tail)
is reported too: its test metrics are what a user of the workflow gets.

    python benchmarks/quality/lorenz63_methods.py [--data-dir DIR] [--seeds 5] [--epochs 1000]
        [--jobs N] [--methods NAME ...]

Skips with a message when the data are absent.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import numpy as np

PUBLISHED = {"d_stsp": 0.233, "d_h": 0.081, "max_lyapunov": 0.905}
TRUE_MAX_LYAPUNOV = 0.906

#: method name -> TrainConfig overrides (the tutorial's sizes unless the model needs more units)
METHODS = {
    "shPLRNN GTF a=0.125": dict(model="shPLRNN", hidden_dim=50),
    "clipped-shPLRNN GTF": dict(model="clipped-shPLRNN", hidden_dim=50),
    "shPLRNN adaptive GTF": dict(model="shPLRNN", hidden_dim=50, alpha_mode="adaptive"),
    "shPLRNN STF (tau est.)": dict(model="shPLRNN", hidden_dim=50, forcing="stf"),
    "PLRNN M=15 GTF": dict(model="PLRNN", latent_dim=15),
    "ALRNN M=15 P=6 GTF": dict(model="ALRNN", latent_dim=15, n_relu=6),
    "dendPLRNN M=15 B=10 GTF": dict(model="dendPLRNN", latent_dim=15, n_bases=10),
    "clipped-dendPLRNN M=15 B=10": dict(model="clipped-dendPLRNN", latent_dim=15, n_bases=10),
}


def clean_training_orbit(n_samples: int = 90_000) -> np.ndarray:
    """A noise-free stand-in for ``lorenz63_train.npy``: a simulated Lorenz-63 orbit (dt 0.01, the
    file's length), standardised like the tutorial's, without its ~5 % observation noise."""
    from dsrpipe.systems import simulate_lorenz63

    x = simulate_lorenz63(n_samples + 10_000, dt=0.01, seed=123)
    x = (x - x.mean(0)) / x.std(0)
    return x[:n_samples]


def train_and_score(overrides: dict, seed: int, data_dir) -> tuple[dict, object, np.ndarray]:
    """Train one model on the tutorial's training orbit and score it on its test orbit.

    The training data's last ``validation_fraction`` is held out and scored (training data
    only, :func:`dsrpipe.training.selection.validation_scores`); the test orbit is used only
    after training, by the evaluation protocol (1.25 T generated from its first point, the
    first 0.25 T dropped; 30 bins; sigma 20; lambda_max over 100,000 steps after 1,000).

    Parameters
    ----------
    overrides : dict
        TrainConfig keys (``epochs`` included) on top of the defaults, and optionally
        ``smooth_sigma``: the ``prepare.smooth_sigma`` option, i.e. the training orbit
        (the whole file, before the validation tail is cut off, as the workflow's
        prepared training segment) Gaussian-smoothed along time by
        :func:`dsrpipe.preprocessing.common.smooth_time`. The test orbit is never smoothed.
        ``clean_orbit: True`` trains on :func:`clean_training_orbit` instead of the file (a check
        of what the file's observation noise does; scored on the same test orbit).
    seed : int
    data_dir : path
        Folder with ``lorenz63_train.npy`` and ``lorenz63_test.npy``.

    Returns
    -------
    row : dict
        ``seed``, ``backend``, ``train_s`` (wall), ``train_cpu_s`` (this process's CPU time),
        ``val_d_stsp``, ``val_d_h`` (worst of the validation starts), ``val_d_stsp_first`` (from the
        tail's first point alone), ``d_stsp``, ``d_h``, ``max_lyapunov``, ``ky``.
    result : TrainResult
        The trained model and readout.
    x_test : ndarray, shape (T, 3)
    """
    import torch

    from dsrpipe.analysis import (kaplan_yorke_dimension, lyapunov_spectrum, power_spectrum_distance,
                                  state_space_divergence)
    from dsrpipe.config import TrainConfig
    from dsrpipe.models.readout import generate_observations
    from dsrpipe.preprocessing.common import smooth_time
    from dsrpipe.training import train
    from dsrpipe.training.selection import validation_scores

    torch.set_num_threads(1)
    overrides = dict(overrides)
    smooth_sigma = float(overrides.pop("smooth_sigma", 0.0))
    if overrides.pop("clean_orbit", False):
        x_train = smooth_time(clean_training_orbit(), smooth_sigma)
    else:
        x_train = smooth_time(np.load(Path(data_dir) / "lorenz63_train.npy").astype(np.float64), smooth_sigma)
    x_test = np.load(Path(data_dir) / "lorenz63_test.npy").astype(np.float64)
    cfg = TrainConfig(**{**overrides, "seed": seed})
    n_val = int(round(cfg.validation_fraction * len(x_train)))
    t0, c0 = time.perf_counter(), time.process_time()
    result = train(x_train[: len(x_train) - n_val], cfg)
    t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
    val = validation_scores(result.model, result.readout, x_train[len(x_train) - n_val:])
    T = len(x_test)
    gen = generate_observations(result.model, result.readout, x_test[0], T, int(round(0.25 * T)))
    row = {"seed": seed, "backend": result.backend, "train_s": t_train, "train_cpu_s": c_train,
           "val_d_stsp": val["d_stsp"], "val_d_h": val["d_h"],
           # the tail's first point alone (the selection rule before session 6) and the worst of its starts
           "val_d_stsp_first": (val.get("d_stsp_starts") or [val["d_stsp"]])[0]}
    if not np.isfinite(gen).all():
        return {**row, "d_stsp": np.inf, "d_h": np.inf, "max_lyapunov": np.nan, "ky": np.nan}, result, x_test
    z0 = result.readout.double().initial_state(torch.tensor(x_test[0]))
    spec = lyapunov_spectrum(result.model.double(), z0, 100_000, n_transient=1000, dt=0.01)
    row.update(d_stsp=state_space_divergence(x_test, gen, n_bins=30),
               d_h=power_spectrum_distance(x_test, gen, sigma=20.0), max_lyapunov=float(spec[0]),
               ky=float(kaplan_yorke_dimension(spec)))
    return row, result, x_test


def run_one(args) -> dict:
    """One method x seed (a picklable task for the process pool): the row of :func:`train_and_score`."""
    method, overrides, seed, epochs, data_dir = args
    row, _, _ = train_and_score({**overrides, "epochs": epochs}, seed, data_dir)
    return {"method": method, **row}


def main() -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(here.parents[2] / "shared" / "data" / "lorenz63"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=max(1, mp.cpu_count()))
    parser.add_argument("--methods", nargs="*", default=list(METHODS), help=f"from: {', '.join(METHODS)}")
    args = parser.parse_args()
    data = Path(args.data_dir)
    if not (data / "lorenz63_train.npy").exists():
        print(f"skipped: tutorial data not found in {data} (pass --data-dir)")
        return 0
    tasks = [(m, METHODS[m], s, args.epochs, str(data)) for m in args.methods for s in range(args.seeds)]
    print(f"{len(tasks)} runs ({len(args.methods)} methods x {args.seeds} seeds, {args.epochs} epochs x 50 "
          f"steps) on {args.jobs} processes", flush=True)
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        rows = []
        for row in pool.imap_unordered(run_one, tasks):
            rows.append(row)
            print(f"  {row['method']:<28} seed {row['seed']}: D_stsp {row['d_stsp']:.3f} D_H {row['d_h']:.3f} "
                  f"lmax {row['max_lyapunov']:.3f} ({row['backend']}, {row['train_s']:.0f} s)", flush=True)
    print(f"\nLorenz-63 tutorial data, median over {args.seeds} seeds; 'selected' = the restart with the "
          f"smallest validation D_stsp (training data only). Wall {time.perf_counter() - t0:.0f} s.")
    head = f"{'method':<28}{'D_stsp':>8}{'D_H':>7}{'lmax':>8}{'KY':>6} | {'sel D_stsp':>10}{'sel D_H':>8}" \
           f"{'sel lmax':>9} | {'train s':>8} path"
    print(head)
    print(f"{'published (tutorial)':<28}{PUBLISHED['d_stsp']:>8.3f}{PUBLISHED['d_h']:>7.3f}"
          f"{PUBLISHED['max_lyapunov']:>8.3f}{'':>6} | (true lambda_max {TRUE_MAX_LYAPUNOV})")
    for method in args.methods:
        rs = [r for r in rows if r["method"] == method]
        med = {k: statistics.median(r[k] for r in rs) for k in ("d_stsp", "d_h", "max_lyapunov", "ky", "train_s")}
        sel = min(rs, key=lambda r: (r["val_d_stsp"], r["seed"]))
        print(f"{method:<28}{med['d_stsp']:>8.3f}{med['d_h']:>7.3f}{med['max_lyapunov']:>8.3f}{med['ky']:>6.2f} | "
              f"{sel['d_stsp']:>10.3f}{sel['d_h']:>8.3f}{sel['max_lyapunov']:>9.3f} | {med['train_s']:>8.0f} "
              f"{rs[0]['backend']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
