"""GPU check: the PyTorch training path on CUDA against the CPU paths, in one run.

Times one GTF training step (forward, BPTT, RAdam) on the GPU (torch path, float64 and
float32 models) and on the CPU (torch path, Numba kernel) for small and large models.

    python benchmarks/gpu_training.py [--steps 50]
"""

from __future__ import annotations

import argparse
import time

import torch

from dsrpipe.config import TrainConfig
from dsrpipe.models import build_model
from dsrpipe.training.loop import NumbaStepper, TorchStepper

SIZES = [(3, 50, 16, 75), (20, 200, 16, 75), (100, 1000, 16, 75)]


def per_step(stepper, batches, sync) -> float:
    stepper.step(batches[0], 1e-3)
    sync()
    t0 = time.perf_counter()
    for b in batches:
        stepper.step(b, 1e-3)
    sync()
    return (time.perf_counter() - t0) / len(batches) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, GPU: {torch.cuda.get_device_name() if cuda else 'none'}; ms per step")
    print(f"{'M':>4}{'L':>6}{'cpu torch':>11}{'cpu numba':>11}{'gpu f64':>9}{'gpu f32':>9}")
    for M, L, S, T in SIZES:
        cfg = TrainConfig(latent_dim=M, hidden_dim=L, batch_size=S, seq_len=T)
        gen = torch.Generator().manual_seed(0)
        batches = [torch.randn(S, T + 1, M, generator=gen, dtype=torch.float64) for _ in range(args.steps)]
        row = []
        row.append(per_step(TorchStepper(build_model("shPLRNN", M=M, L=L).double(), cfg), batches[:10], lambda: None))
        row.append(per_step(NumbaStepper(build_model("shPLRNN", M=M, L=L).double(), cfg), batches, lambda: None))
        if cuda:
            for dtype in (torch.float64, torch.float32):
                model = build_model("shPLRNN", M=M, L=L).to("cuda", dtype)
                dev_batches = [b.to("cuda", dtype) for b in batches]
                row.append(per_step(TorchStepper(model, cfg), dev_batches, torch.cuda.synchronize))
        print(f"{M:>4}{L:>6}" + "".join(f"{v:>11.3f}" if i < 2 else f"{v:>9.3f}" for i, v in enumerate(row)))


if __name__ == "__main__":
    main()
