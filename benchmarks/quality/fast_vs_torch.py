"""Reconstruction quality of the fused Numba path against the PyTorch reference path.

Trains the tutorial's shPLRNN (M = 3, L = 50, GTF alpha 0.125, the default training
settings) on the CNS 2023 tutorial's Lorenz-63 data once with ``train.backend: numba``
and once with ``train.backend: torch`` per seed, evaluates both by the protocol of
``lorenz63_methods.py`` (whose ``run_one`` does the training and evaluation) and prints
D_stsp, D_H and lambda_max per seed and path, the fast-minus-reference difference per
seed, and the spread over seeds (the run-to-run noise the difference is judged against).

Both paths compute in float64 from the same seeded batches, so for one seed they follow
the same parameter trajectory up to rounding; over tens of thousands of steps the
rounding differences can grow, which is why the seeds' spread is the yardstick.

    python benchmarks/quality/fast_vs_torch.py [--data-dir DIR] [--seeds 0 1] [--epochs 1000] [--jobs 1]

Skips with a message when the data are absent.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTING = {"model": "shPLRNN", "hidden_dim": 50}
PATHS = {"numba": {**SETTING, "backend": "numba"}, "torch": {**SETTING, "backend": "torch"}}
METRICS = ("d_stsp", "d_h", "max_lyapunov")


def _methods_module():
    spec = importlib.util.spec_from_file_location("lorenz63_methods", HERE / "lorenz63_methods.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_one(task) -> dict:
    return _methods_module().run_one(task)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(HERE.parents[2] / "shared" / "data" / "lorenz63"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seed values")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    data = Path(args.data_dir)
    if not (data / "lorenz63_train.npy").exists():
        print(f"skipped: tutorial data not found in {data} (pass --data-dir)")
        return 0
    tasks = [(path, PATHS[path], seed, args.epochs, str(data)) for seed in args.seeds for path in PATHS]
    print(f"{len(tasks)} runs (shPLRNN M 3 L 50, seeds {args.seeds} x {len(PATHS)} paths, {args.epochs} epochs "
          f"x 50 steps) on {args.jobs} process(es)", flush=True)
    t0 = time.perf_counter()
    rows = []
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for row in pool.imap_unordered(run_one, tasks):
            rows.append(row)
            print(f"  {row['method']:<6} seed {row['seed']}: D_stsp {row['d_stsp']:.4f} D_H {row['d_h']:.4f} "
                  f"lmax {row['max_lyapunov']:.4f} (ran {row['backend']}, {row['train_s']:.0f} s)", flush=True)
    for row in rows:  # the override must have selected the path asked for
        assert row["backend"] == row["method"], f"asked for {row['method']}, ran {row['backend']}"
    by = {(r["method"], r["seed"]): r for r in rows}
    print(f"\nwall {time.perf_counter() - t0:.0f} s")
    print(f"{'seed':>4}  " + "".join(f"{p + ' ' + m:>20}" for m in METRICS for p in PATHS)
          + "".join(f"{'diff ' + m:>20}" for m in METRICS))
    seeds = args.seeds
    for s in seeds:
        vals = "".join(f"{by[(p, s)][m]:>20.4f}" for m in METRICS for p in PATHS)
        diffs = "".join(f"{by[('numba', s)][m] - by[('torch', s)][m]:>20.2e}" for m in METRICS)
        print(f"{s:>4}  {vals}{diffs}")
    print("\nper path: median, and range over seeds (run-to-run noise)")
    for p in PATHS:
        parts = []
        for m in METRICS:
            v = [by[(p, s)][m] for s in seeds]
            parts.append(f"{m} {statistics.median(v):.4f} [{min(v):.4f}, {max(v):.4f}]")
        train_s = statistics.median(by[(p, s)]["train_s"] for s in seeds)
        print(f"  {p:<6} " + "; ".join(parts) + f"; training {train_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
