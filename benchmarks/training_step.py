"""Training step cost: the fused Numba paths against the plain PyTorch loop, in one run.

The baseline is the project's reference path (``train.backend: torch``): the model's
``step`` called once per time step under generalized teacher forcing (alpha 0.125),
autograd, gradient-norm clipping and ``torch.optim.RAdam``, float64. Against it:

* ``numba``: the fused kernel for one model (``NumbaStepper``, 1 thread);
* ``numba t=2``: the same kernel with the batch's two chunks of windows on 2 threads
  (``train.threads: 2``; bit-identical parameters to 1 thread);
* ``many``: ``train_many`` with R models of the same setting in one process (a Numba
  prange over models), per model and step, batch sampling included;
* ``torch batched``: ``train_many_torch`` (the GPU path, here on the CPU, 1 thread): R models
  on a model axis in PyTorch (vmap over the models), per model and step, sampling included.

CPU time of this process is printed next to wall time: on a shared machine wall time
includes time other jobs held the cores. ``--compile`` also measures the first-call
JIT cost in fresh processes (empty and warm Numba cache).

    python benchmarks/training_step.py [--steps 100] [--models 32] [--threads 2] [--readout affine] [--compile]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np
import torch

from dsrpipe.config import TrainConfig
from dsrpipe.models import build_model
from dsrpipe.models.readout import Readout
from dsrpipe.training.batched import train_many
from dsrpipe.training.batched_torch import train_many_torch
from dsrpipe.training.fast import NumbaStepper
from dsrpipe.training.forcing import forcing_weights
from dsrpipe.training.loop import TorchStepper

SIZES = [  # (M, L, batch, sequence length)
    (3, 50, 16, 75),    # CNS 2023 tutorial
    (20, 200, 16, 75),
]


def make_stepper(kind, M, L, cfg, threads=1):
    torch.manual_seed(0)
    cfg = dataclasses.replace(cfg, threads=threads)
    model = build_model("shPLRNN", M=M, L=L).double()
    readout = Readout(cfg.readout, M, M).double()
    return (TorchStepper if kind == "torch" else NumbaStepper)(model, readout, cfg)


def time_stepper(stepper, batches, weights, lr=1e-3, repeat=1) -> tuple[float, float]:
    """(wall, cpu) seconds per step: the fastest of ``repeat`` passes over ``batches`` (as
    ``timeit`` advises: on a shared machine the slower passes measure the neighbours)."""
    stepper.step(batches[0], lr, weights)  # warm-up (JIT load, allocator)
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        for b in batches:
            stepper.step(b, lr, weights)
        stepper.finish()
        best_wall = min(best_wall, (time.perf_counter() - w0) / len(batches))
        best_cpu = min(best_cpu, (time.process_time() - c0) / len(batches))
    return best_wall, best_cpu


def time_many(M, L, S, T, R, threads, steps, readout="identity") -> tuple[float, float]:
    """(wall, cpu) seconds per model and step of ``train_many`` with R models; cpu is the
    process's CPU time over all threads, the setup (building R models) subtracted."""
    x = np.random.default_rng(0).standard_normal((2000, M))

    def run(n):
        cfg = TrainConfig(latent_dim=M, hidden_dim=L, batch_size=S, seq_len=T, epochs=1, batches_per_epoch=n,
                          threads=threads, readout=readout)
        c0 = time.process_time()
        out = train_many(x, cfg, range(R), threads=threads)
        return out[0].result.history["wall_time_s"].iloc[-1], time.process_time() - c0

    run(2)  # warm-up (JIT load)
    _, cpu_short = run(2)
    wall, cpu = run(steps + 2)
    return wall / ((steps + 2) * R), (cpu - cpu_short) / (steps * R)


def time_many_torch(M, L, S, T, R, steps, readout="identity") -> tuple[float, float]:
    """(wall, cpu) seconds per model and step of ``train_many_torch`` with R models on 1 thread,
    measured as :func:`time_many` measures ``train_many``."""
    x = np.random.default_rng(0).standard_normal((2000, M))

    def run(n):
        cfg = TrainConfig(latent_dim=M, hidden_dim=L, batch_size=S, seq_len=T, epochs=1, batches_per_epoch=n,
                          threads=1, readout=readout)
        c0 = time.process_time()
        out = train_many_torch(x, cfg, range(R), threads=1)
        return out[0].result.history["wall_time_s"].iloc[-1], time.process_time() - c0

    run(1)  # warm-up (imports, allocator)
    _, cpu_short = run(1)
    wall, cpu = run(steps + 1)
    return wall / ((steps + 1) * R), (cpu - cpu_short) / (steps * R)


def compile_cost() -> None:
    """First-step time of NumbaStepper and train_many in fresh processes: empty, then warm cache."""
    code = ("import time; t0 = time.perf_counter(); import numpy as np, torch; "
            "from dsrpipe.config import TrainConfig; from dsrpipe.models import build_model; "
            "from dsrpipe.models.readout import Readout; from dsrpipe.training.fast import NumbaStepper; "
            "from dsrpipe.training.batched import train_many; from dsrpipe.training.forcing import forcing_weights; "
            "t1 = time.perf_counter(); cfg = TrainConfig(latent_dim=3, hidden_dim=50); "
            "s = NumbaStepper(build_model('shPLRNN', M=3, L=50).double(), Readout('identity', 3, 3).double(), cfg); "
            "s.step(torch.zeros(16, 76, 3, dtype=torch.float64), 1e-3, forcing_weights('gtf', 75, 0.1)); "
            "t2 = time.perf_counter(); "
            "train_many(np.random.default_rng(0).standard_normal((500, 3)), "
            "TrainConfig(hidden_dim=50, epochs=1, batches_per_epoch=1), [0, 1], threads=2); "
            "t3 = time.perf_counter(); print(f'{t1 - t0:.1f} {t2 - t1:.1f} {t3 - t2:.1f}')")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("empty cache", "warm cache"):
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            imp, single, many = out.stdout.split()
            print(f"first call, {label}: imports {imp} s, NumbaStepper first step {single} s, "
                  f"train_many first call {many} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="Numba steps per size (torch: a quarter, >= 10)")
    parser.add_argument("--models", type=int, default=32, help="R for the many-models row")
    parser.add_argument("--threads", type=int, default=2, help="Numba threads for the many-models row")
    parser.add_argument("--readout", choices=("identity", "affine"), default="identity",
                        help="the readout (N = M); both paths cover both")
    parser.add_argument("--compile", action="store_true", help="also measure the first-call JIT cost")
    parser.add_argument("--repeat", type=int, default=5,
                        help="passes per single-model path (torch loop, numba); the fastest is reported")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f}; torch {torch.__version__}, "
          f"numba {numba.__version__}; torch and numba (single model) on 1 thread; {args.readout} readout")
    print(f"{'M':>4}{'L':>6}{'batch':>7}{'seq':>5}  {'path':<18}{'ms/step wall':>13}{'ms/step cpu':>12}"
          f"{'ratio wall':>11}{'ratio cpu':>10}")
    # phases, not sizes, outermost: the torch loops run before any Numba parallel region, whose
    # idle OpenMP workers spin for a while afterwards and would take a core (and CPU time) from them
    cases = {}
    for M, L, S, T in SIZES:
        cfg = TrainConfig(latent_dim=M, hidden_dim=L, batch_size=S, seq_len=T, readout=args.readout)
        gen = torch.Generator().manual_seed(0)
        batches = [torch.randn(S, T + 1, M, generator=gen, dtype=torch.float64) for _ in range(args.steps)]
        cases[(M, L, S, T)] = (cfg, batches, forcing_weights("gtf", T, 0.125))
    rows = {key: [] for key in cases}
    for (M, L, S, T), (cfg, batches, weights) in cases.items():
        rows[(M, L, S, T)].append(("torch (baseline)", time_stepper(make_stepper("torch", M, L, cfg),
                                                                    batches[: max(10, args.steps // 4)], weights,
                                                                    repeat=args.repeat)))
    for M, L, S, T in cases:  # torch too, so before any Numba parallel region
        rows[(M, L, S, T)].append((f"torch batched R={args.models}",
                                   time_many_torch(M, L, S, T, args.models, max(3, args.steps // 20), args.readout)))
    for (M, L, S, T), (cfg, batches, weights) in cases.items():
        rows[(M, L, S, T)].append(("numba", time_stepper(make_stepper("numba", M, L, cfg), batches, weights,
                                                                 repeat=args.repeat)))
    for (M, L, S, T), (cfg, batches, weights) in cases.items():
        rows[(M, L, S, T)].append(("numba t=2", time_stepper(make_stepper("numba", M, L, cfg, threads=2), batches,
                                                             weights, repeat=args.repeat)))
    for M, L, S, T in cases:
        rows[(M, L, S, T)].append((f"many R={args.models} t={args.threads}",
                                   time_many(M, L, S, T, args.models, args.threads, max(10, args.steps // 4),
                                             args.readout)))
    for (M, L, S, T), measured in rows.items():
        ref = measured[0][1]
        for label, (wall, cpu) in measured:
            print(f"{M:>4}{L:>6}{S:>7}{T:>5}  {label:<18}{wall * 1e3:>13.3f}{cpu * 1e3:>12.3f}"
                  f"{ref[0] / wall:>11.1f}{ref[1] / cpu:>10.1f}")
    print_targets(rows, args.models)
    if args.compile:
        compile_cost()


def print_targets(rows: dict, R: int) -> None:
    """Issue 6's targets against this run's wall-time ratios (per model and step, vs the torch loop)."""
    def ratio(key, label):
        ref = rows[key][0][1][0]
        return next(ref / wall for name, (wall, _) in rows[key] if name.startswith(label))

    tutorial, large = (3, 50, 16, 75), (20, 200, 16, 75)
    print("targets (wall-time ratio vs the torch loop on 1 thread):")
    if tutorial in rows:
        print(f"  M=3, L=50, fused kernel on 1 thread >= 30x: {ratio(tutorial, 'numba'):.1f}x")
        print(f"  {R} models per job, per model >= 40x: {ratio(tutorial, 'many'):.1f}x at M=3, L=50")
    if large in rows:
        print(f"  M=20, L=200 >= 10x: {ratio(large, 'numba t=2'):.1f}x on the job's 2 threads "
              f"({ratio(large, 'numba'):.1f}x on 1 thread)")


if __name__ == "__main__":
    main()
