"""Lyapunov spectrum cost: dsrpipe.analysis.lyapunov_spectrum against a plain PyTorch loop.

The baseline iterates z <- F(z), Q <- J(z) Q and a QR decomposition every step, all in
torch, one step at a time (the straightforward implementation). dsrpipe generates the
orbit with the model's step, computes all Jacobians in batches and runs the QR
accumulation in a compiled (Numba) loop. Both give the same exponents (printed).

    python benchmarks/lyapunov.py [--steps 100000] [--model shPLRNN]

Every registered piecewise-linear model has a compiled orbit (dsrpipe.models.kernels);
``--model`` picks one (sizes: L = 50 / 200 hidden units for the shPLRNNs, B = 20 bases
for the dendPLRNNs, P = M / 2 ReLU units for the ALRNN).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dsrpipe.analysis import lyapunov_spectrum
from dsrpipe.models import MODELS, build_model
from dsrpipe.models.registry import size_arguments

SIZES = [(3, 50), (20, 200)]


@torch.no_grad()
def plain_torch_spectrum(model, z0, n_steps, n_transient):
    z = z0.clone()
    for _ in range(n_transient):
        z = model.step(z)
    Q = torch.eye(z.shape[-1], dtype=z.dtype)
    acc = torch.zeros(z.shape[-1], dtype=z.dtype)
    for _ in range(n_steps):
        Q = model.jacobian(z) @ Q
        z = model.step(z)
        Q, R = torch.linalg.qr(Q)
        acc += torch.log(torch.abs(torch.diagonal(R)))
    return torch.sort(acc / n_steps, descending=True).values.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="shPLRNN", choices=sorted(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.model}, {args.steps} steps, QR every step, torch {torch.__version__}, {args.threads} thread(s)")
    print(f"{'M':>4}{'L':>6}{'torch loop s':>14}{'dsrpipe s':>11}{'ratio':>8}  max |difference| of exponents")
    for M, L in SIZES:
        torch.manual_seed(1)
        sizes = size_arguments(args.model, {"hidden_dim": L, "n_bases": 20, "n_relu": M // 2})
        model = build_model(args.model, M=M, **sizes).double()
        z0 = torch.randn(M, dtype=torch.float64)
        lyapunov_spectrum(model, z0, 1000, n_transient=10)  # JIT load
        t0 = time.perf_counter()
        ours = lyapunov_spectrum(model, z0, args.steps, n_transient=1000)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = plain_torch_spectrum(model, z0, args.steps, 1000)
        t_ref = time.perf_counter() - t0
        print(f"{M:>4}{L:>6}{t_ref:>14.2f}{t_ours:>11.2f}{t_ref / t_ours:>8.1f}  {np.max(np.abs(ours - ref)):.2e}")


if __name__ == "__main__":
    main()
