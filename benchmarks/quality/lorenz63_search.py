"""The documented search behind the Lorenz-63 training defaults (issue 10).

Trains every setting of a small grid x seed on the CNS 2023 tutorial data
(``lorenz63_train.npy``, last 10 % held out for validation; one process and one thread
per model, ``--jobs`` at a time), scores each model on ``lorenz63_test.npy`` by the
evaluation protocol (:func:`lorenz63_methods.train_and_score`) and checks its fixed points:
SCYFI (:func:`dsrpipe.analysis.scyfi`, order 1, 300 random states plus 200 test points
lifted to latent space) finds them, the readout maps them to data space, and each of the
three true Lorenz fixed points (sigma 10, rho 28, beta 8/3) is matched to the nearest
one found. The true points are standardised with the mean and standard deviation of a
long simulated Lorenz orbit (50,000 samples at dt 0.01, the data's own scale: the
tutorial data are a standardised Lorenz orbit with ~5 % observation noise). A true point
counts as found when a recovered one lies within ``--fp-tol`` (standardised units; the
three true points are 2.1-3.1 apart) and as unstable when that point has an eigenvalue
outside the unit circle. Stable fixed points anywhere count separately: a stable point
next to the chaotic attractor is how a restart "collapses".

Per setting the table gives the median over seeds of D_stsp, D_H, lambda_max (from the
first test point, 100,000 steps after 1,000, per time unit), its error against the true
0.906, lambda_max from a second start (the test orbit's midpoint: equal to the first on a
single attractor, different when the model is multistable), the median counts of true
fixed points found / found unstable / stable points, the training time per model (wall
and CPU seconds, one thread), and the test metrics of the restart the validation rule
selects (smallest validation D_stsp on the training data's tail;
:mod:`dsrpipe.training.selection`), next to the tutorial's pretrained model.

Every finished run is appended to ``--out`` (CSV, rewritten atomically), and runs already
there are not repeated, so a coarse pass (``--seeds 3``) and a later pass with more seeds
(``--seeds 5 --settings ...``) add up; ``--table-only`` prints the table from the file.

    python benchmarks/quality/lorenz63_search.py [--data-dir DIR] [--seeds 3] [--jobs 1]
        [--settings NAME ...] [--out CSV] [--table-only]

Skips with a message when the data are absent.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lorenz63_methods import PUBLISHED, TRUE_MAX_LYAPUNOV, train_and_score

#: setting name -> overrides on top of the TrainConfig defaults (shPLRNN M 3, L 50, GTF alpha 0.125,
#: epochs x 50 batches of 16 x 75, RAdam lr 1e-3 -> 1e-5 exponential, gradient norm clipped at 10) and
#: ``smooth_sigma`` (prepare.smooth_sigma, see lorenz63_methods.train_and_score). The first pass ran at
#: the then default of 1000 epochs, so its rows pin ``epochs`` (the default is 2000 since that pass).
SETTINGS = {
    "default": {"epochs": 1000},  # the defaults of the first pass (1000 epochs)
    "epochs 2000": {"epochs": 2000},  # the one collapsed seed of the defaults recovered at 1500
    "epochs 3000": {"epochs": 3000},
    "alpha 0.1": {"epochs": 1000, "alpha": 0.1},  # weaker forcing: longer free-running stretches
    "alpha 0.2": {"epochs": 1000, "alpha": 0.2},  # stronger forcing: smoother loss, shorter horizon
    "adaptive alpha": {"epochs": 1000, "alpha_mode": "adaptive"},  # Hess et al. 2023; 2.5x the cost per step
    "epochs 2000 adaptive alpha": {"epochs": 2000, "alpha_mode": "adaptive"},  # at the default budget
    "L 100": {"epochs": 1000, "hidden_dim": 100},  # more linear regions
    "lr_end 1e-4": {"epochs": 1000, "lr_end": 1e-4},  # less decay: more movement late in training
    "seq_len 150": {"epochs": 2000, "seq_len": 150},  # longer windows (2x the cost per step)
    "seq_len 125": {"epochs": 2000, "seq_len": 125},
    "seq_len 150 epochs 1500": {"epochs": 1500, "seq_len": 150},
    "seq_len 200": {"epochs": 2000, "seq_len": 200},
    "seq_len 150 smooth 3": {"epochs": 2000, "seq_len": 150, "smooth_sigma": 3.0},
    "no clipping": {"epochs": 1000, "grad_clip_norm": None},
    "epochs 2000 alpha 0.2": {"epochs": 2000, "alpha": 0.2},
    "epochs 2000 L 100": {"epochs": 2000, "hidden_dim": 100},
    # denoising the training orbit (prepare.smooth_sigma, dsrpipe.preprocessing.common.smooth_time):
    # the training file carries ~5 % observation noise, the test file none (issue 10, second pass)
    "smooth 1": {"epochs": 2000, "smooth_sigma": 1.0},
    "smooth 1.5": {"epochs": 2000, "smooth_sigma": 1.5},
    "smooth 2": {"epochs": 2000, "smooth_sigma": 2.0},
    "smooth 3": {"epochs": 2000, "smooth_sigma": 3.0},
    "smooth 4": {"epochs": 2000, "smooth_sigma": 4.0},
    "smooth 3 alpha 0.2": {"epochs": 2000, "smooth_sigma": 3.0, "alpha": 0.2},
    "smooth 2 alpha 0.1": {"epochs": 2000, "smooth_sigma": 2.0, "alpha": 0.1},
    "smooth 2 epochs 3000": {"epochs": 3000, "smooth_sigma": 2.0},
    # third pass (session 6): the low lambda_max persists on a clean simulated orbit, so it is the training's,
    # not the noise's; settings that change what the loss rewards or how precisely it converges
    "no clipping e2000": {"epochs": 2000, "grad_clip_norm": None},
    "lr_end 1e-6": {"epochs": 2000, "lr_end": 1e-6},  # the lab's GTF-shPLRNN default end rate
    "batch 32": {"epochs": 2000, "batch_size": 32},
    "alpha 0.15": {"epochs": 2000, "alpha": 0.15},
    "teacher_noise 0.05": {"epochs": 2000, "teacher_noise": 0.05},
    "teacher_noise 0.1": {"epochs": 2000, "teacher_noise": 0.1},
    "clipped e2000": {"epochs": 2000, "model": "clipped-shPLRNN"},  # the lab's default model
    # the CNS 2023 notebook's own recipe: 5000 single batches (= 100 epochs of 50) at a constant lr 1e-3
    "tutorial recipe": {"epochs": 100, "lr_end": 1e-3},
    "constant lr e400": {"epochs": 400, "lr_end": 1e-3},
    # the defaults on a noise-free simulated orbit in place of the training file (lorenz63_methods.clean_training_orbit)
    "clean orbit": {"epochs": 2000, "clean_orbit": True},
    "M 6": {"epochs": 2000, "latent_dim": 6},  # three unobserved latent units (identity readout)
    "clipped alpha 0.1": {"epochs": 2000, "model": "clipped-shPLRNN", "alpha": 0.1},
    "clipped lr_end 1e-6": {"epochs": 2000, "model": "clipped-shPLRNN", "lr_end": 1e-6},
    "clipped L 100": {"epochs": 2000, "model": "clipped-shPLRNN", "hidden_dim": 100},
    "clipped L 100 lr_end 1e-6": {"epochs": 2000, "model": "clipped-shPLRNN", "hidden_dim": 100, "lr_end": 1e-6},
}
#: the coarse pass (3 seeds); the adaptive, seq_len and clipping rows are opt-in (cost or prior runs)
COARSE = ["default", "epochs 2000", "alpha 0.1", "alpha 0.2", "L 100", "lr_end 1e-4"]
TRUE_FP_COUNT = 3
DT = 0.01


def lorenz_standardised_fixed_points(n_samples: int = 50_000) -> np.ndarray:
    """The three Lorenz-63 fixed points (3, 3) standardised with a long simulated orbit's mean and std."""
    from dsrpipe.systems import lorenz63_fixed_points, simulate_lorenz63

    x = simulate_lorenz63(n_samples, dt=DT)
    return (lorenz63_fixed_points() - x.mean(0)) / x.std(0)


def fixed_point_check(model, readout, x_test: np.ndarray, true_fps: np.ndarray, tol: float) -> dict:
    """SCYFI fixed points of ``model`` matched (through ``readout``) to the standardised true ones."""
    import torch

    from dsrpipe.analysis import scyfi

    idx = np.linspace(0, len(x_test) - 1, 200).astype(int)
    with torch.no_grad():
        inits = readout.double().initial_state(torch.as_tensor(x_test[idx])).numpy()
    fps = [c for c in scyfi(model.double(), 1, n_inits=300, init_points=inits, seed=0) if c.order == 1]
    out = {"n_fp": len(fps), "n_fp_stable": sum(c.stable for c in fps), "fp_found": 0, "fp_unstable": 0,
           "fp_max_dist": np.nan}
    if not fps:
        return out
    with torch.no_grad():
        seen = readout.double().observe(torch.as_tensor(np.array([c.states[0] for c in fps]))).numpy()
    dists = []
    for fp in true_fps:
        d = np.linalg.norm(seen - fp, axis=1)
        j = int(np.argmin(d))
        dists.append(float(d[j]))
        if d[j] <= tol:
            out["fp_found"] += 1
            out["fp_unstable"] += int(not fps[j].stable)
    out["fp_max_dist"] = max(dists)
    return out


def run_setting(args) -> dict:
    """One setting x seed: training, test metrics, a second lambda_max and the fixed-point check."""
    name, overrides, seed, data_dir, true_fps, tol = args
    import torch

    from dsrpipe.analysis import OrbitDivergedError, lyapunov_spectrum

    row, result, x_test = train_and_score(overrides, seed, data_dir)
    row = {"setting": name, **row}
    z_mid = result.readout.double().initial_state(torch.tensor(x_test[len(x_test) // 2]))
    try:
        row["max_lyapunov_mid"] = float(lyapunov_spectrum(result.model.double(), z_mid, 100_000,
                                                          n_transient=1000, dt=DT)[0])
    except OrbitDivergedError:
        row["max_lyapunov_mid"] = np.nan
    row.update(fixed_point_check(result.model, result.readout, x_test, np.asarray(true_fps), tol))
    return row


def _write(rows: list[dict], out: Path) -> None:
    import pandas as pd

    from dsrpipe.io.atomic import atomic_path

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def _read(out: Path) -> list[dict]:
    import pandas as pd

    return pd.read_csv(out).to_dict("records") if out.exists() else []


def _has(row: dict, key: str) -> bool:
    """Whether ``row`` (from the CSV: a missing column reads as NaN) has a value for ``key``."""
    v = row.get(key)
    return v is not None and not (isinstance(v, float) and np.isnan(v))


def print_table(rows: list[dict], order: list[str]) -> None:
    """Medians per setting, the validation-selected restart, and the published reference."""
    def med(rs, k):
        vals = [float(r[k]) for r in rs]
        return statistics.median(vals) if vals else np.nan

    print(f"\n{'setting':<24}{'n':>3}{'D_stsp':>8}{'D_H':>7}{'lmax':>8}{'err%':>7}{'lmax2':>8}"
          f"{'FP f/u/st':>11}{'FP ok':>6} |{'sel D_stsp':>11}{'sel D_H':>8}{'sel lmax':>9}{'sel FP':>8}{'sel1 D_stsp':>12} |{'train s':>8}{'cpu s':>7}")
    print(f"{'published (tutorial)':<24}{'':>3}{PUBLISHED['d_stsp']:>8.3f}{PUBLISHED['d_h']:>7.3f}"
          f"{PUBLISHED['max_lyapunov']:>8.3f}{100 * (PUBLISHED['max_lyapunov'] / TRUE_MAX_LYAPUNOV - 1):>7.1f}"
          f"{'':>8}{'3/3/0':>11}{'':>6} | targets: D_stsp <= 0.20, D_H <= 0.07, lmax 0.888-0.924")
    for name in order:
        rs = [r for r in rows if r["setting"] == name]
        if not rs:
            continue
        lmax = med(rs, "max_lyapunov")
        sel = min(rs, key=lambda r: (float(r["val_d_stsp"]), float(r["val_d_h"]), int(r["seed"])))
        # the first-start rule (before session 6): rows written before then scored the first start only
        first = [float(r["val_d_stsp_first"]) if _has(r, "val_d_stsp_first") else float(r["val_d_stsp"]) for r in rs]
        sel1 = rs[min(range(len(rs)), key=lambda i: (first[i], int(rs[i]["seed"])))]
        multi = all(_has(r, "val_d_stsp_first") for r in rs)
        fp = f"{med(rs, 'fp_found'):g}/{med(rs, 'fp_unstable'):g}/{med(rs, 'n_fp_stable'):g}"
        ok = sum(int(r["fp_found"]) == int(r["fp_unstable"]) == TRUE_FP_COUNT and int(r["n_fp_stable"]) == 0
                 for r in rs)
        sel_fp = f"{int(sel['fp_found'])}/{int(sel['fp_unstable'])}/{int(sel['n_fp_stable'])}"
        print(f"{name:<24}{len(rs):>3}{med(rs, 'd_stsp'):>8.3f}{med(rs, 'd_h'):>7.3f}{lmax:>8.3f}"
              f"{100 * (lmax / TRUE_MAX_LYAPUNOV - 1):>7.1f}{med(rs, 'max_lyapunov_mid'):>8.3f}{fp:>11}{f'{ok}/{len(rs)}':>6} |"
              f"{float(sel['d_stsp']) if multi else float('nan'):>11.3f}{float(sel['d_h']) if multi else float('nan'):>8.3f}"
              f"{float(sel['max_lyapunov']) if multi else float('nan'):>9.3f}{sel_fp if multi else '-':>8}{float(sel1['d_stsp']):>12.3f} |"
              f"{med(rs, 'train_s'):>8.0f}{med(rs, 'train_cpu_s'):>7.0f}")
    print("\nn: seeds; lmax: median lambda_max from the first test point (true 0.906), err% against 0.906; "
          "lmax2: from the test orbit's midpoint; FP f/u/st: median true fixed points found / found and "
          "unstable / stable fixed points of the model; FP ok: seeds with all three found, unstable, and no stable fixed point; sel: the restart with the smallest validation "
          "D_stsp (training data only; the worst of 8 starts on the tail, nan where a row predates that rule); sel1 D_stsp: the restart the first-start rule "
          "(the tail's first point alone) selects.")
    print("\nper run:")
    for name in order:
        for r in sorted((r for r in rows if r["setting"] == name), key=lambda r: int(r["seed"])):
            print(f"  {name:<22} seed {int(r['seed'])}: D_stsp {float(r['d_stsp']):.3f} D_H {float(r['d_h']):.3f} "
                  f"lmax {float(r['max_lyapunov']):.3f}/{float(r['max_lyapunov_mid']):.3f} FP "
                  f"{int(r['fp_found'])}/{int(r['fp_unstable'])}/{int(r['n_fp_stable'])} (of {int(r['n_fp'])}, "
                  f"max dist {float(r['fp_max_dist']):.2f}) val D_stsp {float(r['val_d_stsp']):.3f} "
                  f"{float(r['train_s']):.0f} s ({float(r['train_cpu_s']):.0f} cpu)")


def main() -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(here.parents[2] / "shared" / "data" / "lorenz63"))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per setting")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--settings", nargs="*", default=COARSE, help=f"from: {', '.join(SETTINGS)}")
    parser.add_argument("--fp-tol", type=float, default=0.25,
                        help="largest distance (standardised units) of a recovered to a true fixed point")
    parser.add_argument("--out", default=str(here.parents[1] / "results" / "benchmarks" / "lorenz63_search.csv"))
    parser.add_argument("--table-only", action="store_true", help="print the table of --out, train nothing")
    args = parser.parse_args()
    data = Path(args.data_dir)
    if not (data / "lorenz63_train.npy").exists():
        print(f"skipped: tutorial data not found in {data} (pass --data-dir)")
        return 0
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    out = Path(args.out)
    rows = _read(out)
    if not args.table_only:
        for var in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")  # one thread per model (inherited by the spawned workers)
        done = {(r["setting"], int(r["seed"])) for r in rows}
        true_fps = lorenz_standardised_fixed_points().tolist()
        tasks = [(name, SETTINGS[name], seed, str(data), true_fps, args.fp_tol)
                 for seed in range(args.seeds) for name in args.settings if (name, seed) not in done]
        print(f"{len(tasks)} runs to do ({len(args.settings)} settings x {args.seeds} seeds, "
              f"{len(done)} already in {out}) on {args.jobs} processes", flush=True)
        t0 = time.perf_counter()
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            for row in pool.imap_unordered(run_setting, tasks):
                rows.append(row)
                _write(rows, out)
                print(f"  {row['setting']:<22} seed {row['seed']}: D_stsp {row['d_stsp']:.3f} D_H {row['d_h']:.3f} "
                      f"lmax {row['max_lyapunov']:.3f}/{row['max_lyapunov_mid']:.3f} FP {row['fp_found']}/"
                      f"{row['fp_unstable']}/{row['n_fp_stable']} ({row['train_s']:.0f} s, "
                      f"{row['train_cpu_s']:.0f} cpu)", flush=True)
        print(f"wall {time.perf_counter() - t0:.0f} s")
    print(f"\nLorenz-63 tutorial data ({data}); runs from {out}")
    print_table(rows, [s for s in SETTINGS if s in {r["setting"] for r in rows}])
    return 0


if __name__ == "__main__":
    sys.exit(main())
