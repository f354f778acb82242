"""GPU check: the PyTorch training path on CUDA against the CPU paths, in one run.

Times one GTF training step (forward, BPTT, RAdam) on the GPU (torch path, float64 and
float32 models) and on the CPU (torch path, Numba kernel) for small and large models.
A second table times the batched-models PyTorch path (``BatchedTorchStepper``, what
``train_many_torch`` runs: R models on a model axis, vmap over the models' own step) per
model and step, for R = 1, 8, 32, on the CPU (1 thread) and on the GPU when there is one.

    python benchmarks/gpu_training.py [--steps 50] [--batched-steps 10] [--only-batched]
"""

from __future__ import annotations

import argparse
import time

import torch

from dsrpipe.config import TrainConfig
from dsrpipe.models import build_model
from dsrpipe.models.readout import Readout
from dsrpipe.training.batched_torch import BatchedTorchStepper
from dsrpipe.training.fast import NumbaStepper
from dsrpipe.training.forcing import forcing_weights
from dsrpipe.training.loop import TorchStepper

SIZES = [(3, 50, 16, 75), (20, 200, 16, 75), (100, 1000, 16, 75)]
#: sizes and numbers of models of the batched-models table
BATCHED_SIZES = [(3, 50, 16, 75), (20, 200, 16, 75)]
BATCHED_R = (1, 8, 32)


def per_step(stepper, batches, sync) -> float:
    weights = forcing_weights("gtf", batches[0].shape[1] - 1, 0.125).to(batches[0].device)
    stepper.step(batches[0], 1e-3, weights)
    sync()
    t0 = time.perf_counter()
    for b in batches:
        stepper.step(b, 1e-3, weights)
    sync()
    return (time.perf_counter() - t0) / len(batches) * 1e3


def batched_per_model(M, L, S, T, R, steps, device, dtype, sync) -> tuple[float, float]:
    """(wall, process CPU) ms per model and optimiser step of R models trained together
    (random batches)."""
    cfg = TrainConfig(latent_dim=M, hidden_dim=L, batch_size=S, seq_len=T)
    models, readouts = [], []
    for r in range(R):
        torch.manual_seed(r)
        models.append(build_model("shPLRNN", M=M, L=L).to(device, dtype))
        readouts.append(Readout("identity", M, M).to(device, dtype))
    stack = BatchedTorchStepper(models, readouts, cfg)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(R, S, T + 1, M, generator=gen, dtype=torch.float64).to(device, dtype) for _ in range(2)]
    weights = forcing_weights("gtf", T, 0.125)
    active = torch.ones(R, dtype=torch.bool, device=device)
    stack.step(batches[0], 1e-3, weights, active)  # warm-up
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        stack.step(batches[i % 2], 1e-3, weights, active)
    sync()
    return (time.perf_counter() - t0) / (steps * R) * 1e3, (time.process_time() - c0) / (steps * R) * 1e3


def batched_table(steps: int, cuda: bool) -> None:
    print(f"batched-models PyTorch path (train_many_torch's stepper): ms per model and step, batch 16 x 75, "
          f"{steps} steps")
    print("(cpu: wall and this process's CPU time, which on a shared machine excludes time other jobs held "
          "the core; gpu: wall)")
    print(f"{'M':>4}{'L':>6}{'R':>5}{'cpu wall':>10}{'cpu time':>10}" +
          (f"{'gpu f64':>10}{'gpu f32':>10}" if cuda else ""))
    for M, L, S, T in BATCHED_SIZES:
        for R in BATCHED_R:
            row = list(batched_per_model(M, L, S, T, R, steps, "cpu", torch.float64, lambda: None))
            if cuda:
                for dtype in (torch.float64, torch.float32):
                    row.append(batched_per_model(M, L, S, T, R, steps, "cuda", dtype, torch.cuda.synchronize)[0])
            print(f"{M:>4}{L:>6}{R:>5}" + "".join(f"{v:>10.3f}" for v in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batched-steps", type=int, default=10, help="steps per cell of the batched-models table")
    parser.add_argument("--only-batched", action="store_true", help="only the batched-models table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, GPU: {torch.cuda.get_device_name() if cuda else 'none'}; ms per step")
    if args.only_batched:
        batched_table(args.batched_steps, cuda)
        return
    print(f"{'M':>4}{'L':>6}{'cpu torch':>11}{'cpu numba':>11}{'gpu f64':>9}{'gpu f32':>9}")
    for M, L, S, T in SIZES:
        cfg = TrainConfig(latent_dim=M, hidden_dim=L, batch_size=S, seq_len=T)
        gen = torch.Generator().manual_seed(0)
        batches = [torch.randn(S, T + 1, M, generator=gen, dtype=torch.float64) for _ in range(args.steps)]
        row = []
        for stepper in (TorchStepper, NumbaStepper):
            model, readout = build_model("shPLRNN", M=M, L=L).double(), Readout("identity", M, M).double()
            row.append(per_step(stepper(model, readout, cfg), batches[:10] if stepper is TorchStepper else batches,
                                lambda: None))
        if cuda:
            for dtype in (torch.float64, torch.float32):
                model = build_model("shPLRNN", M=M, L=L).to("cuda", dtype)
                readout = Readout("identity", M, M).to("cuda", dtype)
                dev_batches = [b.to("cuda", dtype) for b in batches]
                row.append(per_step(TorchStepper(model, readout, cfg), dev_batches, torch.cuda.synchronize))
        print(f"{M:>4}{L:>6}" + "".join(f"{v:>11.3f}" if i < 2 else f"{v:>9.3f}" for i, v in enumerate(row)))
    batched_table(args.batched_steps, cuda)


if __name__ == "__main__":
    main()
