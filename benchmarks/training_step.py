"""Training step cost: the fused Numba path against the plain PyTorch loop, in one run.

The baseline is the project's reference path (``train.backend: torch``): the model's
``step`` called once per time step under generalized teacher forcing, autograd and
``torch.optim.RAdam``. Both paths train the same model on the same batches.

    python benchmarks/training_step.py [--steps 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from dsrpipe.config import TrainConfig
from dsrpipe.models import build_model
from dsrpipe.training.loop import NumbaStepper, TorchStepper

SIZES = [  # (M, L, batch, sequence length)
    (3, 50, 16, 75),    # CNS 2023 tutorial
    (20, 200, 16, 75),
]


def time_stepper(stepper, batches, lr=1e-3) -> float:
    stepper.step(batches[0], lr)  # warm-up (JIT load, allocator)
    t0 = time.perf_counter()
    for b in batches:
        stepper.step(b, lr)
    stepper.finish()
    return (time.perf_counter() - t0) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {args.threads}, {args.steps} steps per path")
    print(f"{'M':>4}{'L':>6}{'batch':>7}{'seq':>5}{'torch ms/step':>15}{'numba ms/step':>15}{'ratio':>8}")
    for M, L, S, T in SIZES:
        cfg = TrainConfig(latent_dim=M, hidden_dim=L, batch_size=S, seq_len=T)
        gen = torch.Generator().manual_seed(0)
        batches = [torch.randn(S, T + 1, M, generator=gen, dtype=torch.float64) for _ in range(args.steps)]
        torch.manual_seed(0)
        ref = TorchStepper(build_model("shPLRNN", M=M, L=L).double(), cfg)
        t_ref = time_stepper(ref, batches[: max(20, args.steps // 4)])
        torch.manual_seed(0)
        fast = NumbaStepper(build_model("shPLRNN", M=M, L=L).double(), cfg)
        t_fast = time_stepper(fast, batches)
        print(f"{M:>4}{L:>6}{S:>7}{T:>5}{t_ref * 1e3:>15.3f}{t_fast * 1e3:>15.3f}{t_ref / t_fast:>8.1f}")


if __name__ == "__main__":
    main()
