"""SCYFI cost and completeness: dsrpipe.analysis.scyfi against a plain per-initialisation loop
and, where the enumeration is small enough, against the exhaustive search.

The plain loop is the textbook SCYFI (Eisenmann et al. 2023) written straightforwardly
in PyTorch: one initial code sequence at a time, solve its cycle equation
``(I - J_k...J_1) z = q``, iterate the map k steps from the solution, accept it when it
visits exactly the guessed regions and closes, else take the visited regions as the
next guess (at most ``max_iter`` rounds). It starts from exactly the code sequences
dsrpipe's batched SCYFI starts from (the same seed: the regions visited from
``n_inits`` random states and ``n_inits`` random codes, per order), so both should
find the same objects; dsrpipe solves all sequences of a round as one batch and
drops duplicate guesses. ``exhaustive_cycles`` solves all 2^(R k) code sequences
(complete, the test oracle); it is run when 2^(R k) <= 2^20.

    python benchmarks/scyfi.py [--inits 300] [--max-iter 50] [--order 2]

Models are random (see ``make_model`` and ``CASES``), their couplings scaled so that
most have several fixed points or 2-cycles.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dsrpipe.analysis.cycles import MAX_EXHAUSTIVE_CODES, exhaustive_cycles, scyfi
from dsrpipe.models import build_model

#: (model, M, hidden units L or None, coupling gain, seed, cycle orders to run exhaustively); the gains give
#: each model a few fixed points or cycles (dsrpipe's default initialisation has one or none)
CASES = [("shPLRNN", 2, 10, 5.0, 2, (1, 2)), ("PLRNN", 8, None, 5.0, 1, (1, 2)), ("PLRNN", 15, None, 5.0, 1, (1,)),
         ("shPLRNN", 3, 50, 2.0, 1, ()), ("shPLRNN", 20, 200, 0.1, 1, ())]


def make_model(name: str, M: int, L: int | None, gain: float, seed: int):
    """A random model with several fixed points and cycles: A = 0.5, couplings N(0, gain^2 / fan-in),
    biases N(0, 1) (the shPLRNN's h1 N(0, 1/4))."""
    torch.manual_seed(seed)
    model = build_model(name, M=M, **({"L": L} if L else {})).double().requires_grad_(False)
    with torch.no_grad():
        model.A.fill_(0.5)
        if name == "PLRNN":
            model.W.copy_(torch.randn(M, M) * gain / M**0.5)
            model.h.copy_(torch.randn(M))
        else:
            model.W1.copy_(torch.randn(M, L) * gain / L**0.5)
            model.W2.copy_(torch.randn(L, M))
            model.h2.copy_(torch.randn(L))
            model.h1.copy_(0.5 * torch.randn(M))
    return model


@torch.no_grad()
def plain_scyfi(model, order: int, n_inits: int, max_iter: int, seed: int = 0, init_scale: float = 3.0,
                tol: float = 1e-7):
    """States (k, M) of every accepted k-cycle, one initial code sequence at a time (duplicates kept)."""
    M, R = model.latent_dim, model.region_size
    rng = np.random.default_rng(seed)
    starts = torch.as_tensor(rng.normal(0.0, init_scale, size=(n_inits, M)))
    for _ in range(1, order):  # scyfi draws the random codes of the lower orders first
        rng.random((n_inits, _, R))
    random_codes = torch.as_tensor(rng.random((n_inits, order, R)) < 0.5)
    seeds = []
    for z in starts:
        codes = []
        for _ in range(order):
            codes.append(model.region(z))
            z = model.step(z)
        seeds.append(torch.stack(codes))
    seeds += list(random_codes)
    found = []
    eye = torch.eye(M, dtype=torch.float64)
    for codes in seeds:
        for _ in range(max_iter):
            J, c = model.affine(codes)  # (k, M, M), (k, M)
            P, q = J[0], c[0]
            for i in range(1, order):
                P, q = J[i] @ P, J[i] @ q + c[i]
            try:
                z = torch.linalg.solve(eye - P, q)
            except RuntimeError:  # singular
                break
            states, visited, w = [], [], z
            for _ in range(order):
                states.append(w)
                visited.append(model.region(w))
                w = model.step(w)
            visited = torch.stack(visited)
            if torch.equal(visited, codes) and torch.linalg.vector_norm(w - z) < tol * (1 + torch.linalg.vector_norm(z)):
                found.append(torch.stack(states).numpy())
                break
            codes = visited
    return found


def distinct(cycles, rtol: float = 1e-6) -> list[np.ndarray]:
    """Distinct cycles of minimal period k (as sets of states) among (k, M) arrays."""
    kept = []
    for s in cycles:
        k = len(s)
        scale = 1.0 + np.abs(s).max()
        if any(np.max(np.abs(s[p] - s[0])) <= rtol * scale for p in range(1, k) if k % p == 0):
            continue  # a shorter cycle travelled several times
        s = s[np.lexsort(s.T[::-1])]
        if not any(np.max(np.abs(s - t)) <= rtol * scale for t in kept):
            kept.append(s)
    return kept


def overlap(a: list[np.ndarray], b: list[np.ndarray], rtol: float = 1e-6) -> int:
    """How many cycles of ``a`` are in ``b``."""
    return sum(any(np.max(np.abs(s - t)) <= rtol * (1.0 + np.abs(s).max()) for t in b) for s in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inits", type=int, default=300)
    parser.add_argument("--max-iter", type=int, default=50)
    parser.add_argument("--order", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"SCYFI up to order {args.order}, {args.inits} random states + {args.inits} random codes per order, "
          f"max_iter {args.max_iter}, torch {torch.__version__}, 1 thread")
    print(f"{'model':>8}{'M':>4}{'L':>5}{'gain':>5}{'k':>3}{'plain s':>9}{'dsrpipe s':>11}{'ratio':>7}"
          f"{'found plain':>13}{'dsrpipe':>9}{'both':>6}{'exhaustive':>16}{'exh. s':>8}")
    scyfi(make_model("PLRNN", 2, None, 1.0, 0), 1, n_inits=5)  # warm-up
    for name, M, L, gain, seed, exhaustive_orders in CASES:
        model = make_model(name, M, L, gain, seed)
        t0 = time.perf_counter()
        ours_all = scyfi(model, args.order, n_inits=args.inits, max_iter=args.max_iter)
        t_ours = time.perf_counter() - t0
        rows, t_plain_all = [], 0.0
        for k in range(1, args.order + 1):
            ours = distinct([c.states for c in ours_all if c.order == k])
            t0 = time.perf_counter()
            plain = distinct(plain_scyfi(model, k, args.inits, args.max_iter))
            t_plain = time.perf_counter() - t0
            t_plain_all += t_plain
            exh, t_exh = "-", "-"
            if k in exhaustive_orders and 2 ** (model.region_size * k) <= MAX_EXHAUSTIVE_CODES:
                t0 = time.perf_counter()
                full = distinct([c.states for c in exhaustive_cycles(model, k)])
                t_exh = f"{time.perf_counter() - t0:.2f}"
                exh = f"{len(full)} ({overlap(full, ours)} ours)"
            rows.append((k, t_plain, len(plain), len(ours), overlap(ours, plain), exh, t_exh))
        for k, t_plain, n_plain, n_ours, n_both, exh, t_exh in rows:
            # dsrpipe's time covers all orders in one call: shown, with the ratio over all orders, once
            t_show, ratio = (f"{t_ours:.2f}", f"{t_plain_all / t_ours:.1f}") if k == 1 else ("", "")
            print(f"{name:>8}{M:>4}{L or '-':>5}{gain:>5g}{k:>3}{t_plain:>9.2f}{t_show:>11}{ratio:>7}"
                  f"{n_plain:>13}{n_ours:>9}{n_both:>6}{exh:>16}{t_exh:>8}")

if __name__ == "__main__":
    main()
