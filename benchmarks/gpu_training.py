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
from dsrpipe.models.readout import Readout
from dsrpipe.training.fast import NumbaStepper
from dsrpipe.training.forcing import forcing_weights
from dsrpipe.training.loop import TorchStepper

SIZES = [(3, 50, 16, 75), (20, 200, 16, 75), (100, 1000, 16, 75)]


def per_step(stepper, batches, sync) -> float:
    weights = forcing_weights("gtf", batches[0].shape[1] - 1, 0.125).to(batches[0].device)
    stepper.step(batches[0], 1e-3, weights)
    sync()
    t0 = time.perf_counter()
    for b in batches:
        stepper.step(b, 1e-3, weights)
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


if __name__ == "__main__":
    main()
