"""NBKO task fMRI: does each participant's reconstruction beat both baselines (mean, VAR(1)) on block 5?

For each participant the ROI table is preprocessed and prepared as in
``config/examples/nbko_fmri.yaml`` (blocks 1-4 train, block 5 = the last 72 volumes
test), one GTF model is trained with that config's ``train`` section plus ``--set``
overrides and evaluated through the project's API (:func:`dsrpipe.training.run.train_file`,
:func:`dsrpipe.evaluation.evaluate_run`, the test segment's task inputs driving the model
as in the workflow). Printed per participant: D_stsp (GMM) and PE(20) of the model and of
the two baselines the evaluation fits on blocks 1-4 (training mean, VAR(1)); whether the
model beats both on each metric; and, to show what is predictable at all 20 volumes ahead,
two references that are not baselines of the target: VARX(1), i.e. VAR(1) with the task
inputs ``x_{t+1} = A x_t + B u_{t+1} + c`` (least squares on blocks 1-4, iterated 20 steps
with the test inputs), and ``sd gen/test``, the standard deviation of the generated orbit
over that of block 5 (amplitude). ``var test`` is block 5's mean variance in training
standard units: the mean baseline's PE(20) is about that.

Only D_stsp and PE are needed, so the evaluation's invariants run at a small budget
(``--eval-set`` to change: Lyapunov 1,000 steps, 20 SCYFI inits, fixed points only, no
basins); D_stsp and PE do not depend on them.

    nice -n 15 python benchmarks/quality/nbko_baselines.py --subjects 01 04 07 14 \\
        --set epochs=40 batches_per_epoch=25 [--no-inputs] [--out DIR]

Needs ../shared/data/nbko_fmri (skips with a message without it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "nbko_fmri"
CHEAP_EVALUATE = {"lyapunov_steps": 1000, "lyapunov_transient": 100, "fixed_point_inits": 20,
                  "max_cycle_order": 1, "basin_grid": 0}


def varx_pe(x_train: np.ndarray, u_train: np.ndarray | None, x_test: np.ndarray, u_test: np.ndarray | None,
            n: int = 20) -> float:
    """PE(n) of a least-squares VARX(1) ``x_{t+1} = A x_t + B u_{t+1} + c`` (plain VAR(1) without inputs),
    iterated n steps from every test point with the test inputs; same starts and targets as PE(n)."""
    def design(x, u, k):  # rows predict time k.., from states x and inputs at k..
        cols = [x] + ([] if u is None else [u[k:k + len(x)]]) + [np.ones((len(x), 1))]
        return np.hstack(cols)

    coef, *_ = np.linalg.lstsq(design(x_train[:-1], u_train, 1), x_train[1:], rcond=None)
    z = x_test[:-n]
    for k in range(1, n + 1):
        z = design(z, u_test, k) @ coef
    return float(np.mean((z - x_test[n:]) ** 2))


def prepare_subject(sub: str, base: dict, out: Path) -> tuple[Path, Path]:
    """Preprocess and split one participant's ROI table as the NBKO example config does."""
    from dsrpipe.config import PrepareConfig, from_mapping
    from dsrpipe.preprocessing import prepare_file
    from dsrpipe.preprocessing.dispatch import preprocess_recording
    from dsrpipe.preprocessing.fmri import FMRIConfig

    d = out / f"sub-{sub}"
    d.mkdir(parents=True, exist_ok=True)
    train, test = d / "train.parquet", d / "test.parquet"
    if not (train.exists() and test.exists()):
        preprocess_recording(DATA / f"sub-{sub}_bold_roi.tsv", d / "pre.parquet", modality="fmri", subject=sub,
                             fmri=from_mapping(FMRIConfig, base["fmri"], "fmri"))
        prepare_file(d / "pre.parquet", train, test, subject=sub,
                     cfg=from_mapping(PrepareConfig, base["prepare"], "prepare"))
    return train, test


def without_inputs(path: Path) -> Path:
    """A copy of a prepared series with the BOLD channels only (no task inputs, no labels)."""
    from dsrpipe.io.timeseries import CONTINUOUS, load_series, write_timeseries

    out = path.with_name(path.stem + "_bold.parquet")
    if not out.exists():
        write_timeseries(load_series(path, types=None).select(CONTINUOUS), out)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", nargs="+", default=["01", "04", "07", "14"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="train overrides")
    parser.add_argument("--eval-set", nargs="*", default=[], metavar="KEY=VALUE", help="evaluate overrides")
    parser.add_argument("--no-inputs", action="store_true", help="train and evaluate on BOLD alone (no task inputs)")
    parser.add_argument("--out", help="keep data and runs in this folder (default: a temporary one)")
    parser.add_argument("--tag", default="run", help="run folder name under sub-<id>/ (default: run)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found (the NBKO ROI tables of ../shared/data)")
        return 0
    # the mean baseline's constant orbit makes D_H warn once per ROI; the short validation tail warns per run
    logging.basicConfig(level=logging.ERROR)
    from dsrpipe.config import EvaluateConfig, TrainConfig, from_mapping, parse_value
    from dsrpipe.evaluation import evaluate_run, read_inputs
    from dsrpipe.io.timeseries import CONTINUOUS, load_series
    from dsrpipe.training.run import train_file

    def overrides(items):
        return {k: parse_value(v) for k, v in (item.split("=", 1) for item in items)}

    base = yaml.safe_load((ROOT / "config/examples/nbko_fmri.yaml").read_text())
    train_keys = {**base["train"], **overrides(args.set)}
    eval_keys = {**base["evaluate"], **CHEAP_EVALUATE, **overrides(args.eval_set)}
    train_cfg = from_mapping(TrainConfig, train_keys, "train")
    eval_cfg = from_mapping(EvaluateConfig, eval_keys, "evaluate")
    out = Path(args.out or tempfile.mkdtemp(prefix="nbko_baselines_"))
    print(f"train: {train_keys}{'  (BOLD alone, no task inputs)' if args.no_inputs else '  (task inputs drive)'}")
    print(f"evaluate: {eval_keys}")
    head = (f"{'sub':>4} {'D_stsp':>7} {'mean':>7} {'VAR1':>7} {'PE20':>6} {'mean':>6} {'VAR1':>6} {'VARX':>6} "
            f"{'var test':>8} {'sd g/t':>6} {'D<both':>6} {'PE<both':>7} {'both':>5} {'train s':>7}")
    print(head)
    rows = []
    for sub in args.subjects:
        train_path, test_path = prepare_subject(sub, base, out)
        if args.no_inputs:
            train_path, test_path = without_inputs(train_path), without_inputs(test_path)
        run = out / f"sub-{sub}" / args.tag
        start = time.perf_counter()
        train_file(train_path, run, train_cfg)
        train_s = time.perf_counter() - start
        inputs = read_inputs(test_path)
        m = evaluate_run(run, test_path, eval_cfg, run / "metrics.json", generated_out=run / "generated.parquet",
                         train=train_path, inputs=inputs)
        tr, te = load_series(train_path, types=None), load_series(test_path, types=None)
        x_tr, x_te = tr.select(CONTINUOUS).data, te.select(CONTINUOUS).data
        gen = load_series(run / "generated.parquet").data
        sd_ratio = float(np.mean(gen.std(0)) / np.mean(x_te.std(0))) if np.isfinite(gen).all() else float("nan")
        b = m["baselines"]
        d, pe = m["d_stsp"], m["pe_20"]
        beat_d = d < min(b["mean"]["d_stsp"], b["var1"]["d_stsp"])
        beat_pe = pe < min(b["mean"]["pe_20"], b["var1"]["pe_20"])
        row = {"sub": sub, "d_stsp": d, "mean_d": b["mean"]["d_stsp"], "var1_d": b["var1"]["d_stsp"], "pe": pe,
               "mean_pe": b["mean"]["pe_20"], "var1_pe": b["var1"]["pe_20"],
               "varx_pe": varx_pe(x_tr, read_inputs(train_path), x_te, inputs),
               "var_test": float(x_te.var(0).mean()), "sd_ratio": sd_ratio, "beat_d": bool(beat_d),
               "beat_pe": bool(beat_pe), "both": bool(beat_d and beat_pe), "train_s": train_s}
        rows.append(row)
        print(f"{sub:>4} {d:7.2f} {row['mean_d']:7.2f} {row['var1_d']:7.2f} {pe:6.3f} {row['mean_pe']:6.3f} "
              f"{row['var1_pe']:6.3f} {row['varx_pe']:6.3f} {row['var_test']:8.3f} {sd_ratio:6.2f} "
              f"{'yes' if beat_d else 'no':>6} {'yes' if beat_pe else 'no':>7} {'yes' if row['both'] else 'no':>5} "
              f"{train_s:7.1f}", flush=True)
    keys = ["d_stsp", "mean_d", "var1_d", "pe", "mean_pe", "var1_pe", "varx_pe", "var_test", "sd_ratio"]
    med = {k: float(np.nanmedian([r[k] for r in rows])) for k in keys}
    print(f"{'med':>4} {med['d_stsp']:7.2f} {med['mean_d']:7.2f} {med['var1_d']:7.2f} {med['pe']:6.3f} "
          f"{med['mean_pe']:6.3f} {med['var1_pe']:6.3f} {med['varx_pe']:6.3f} {med['var_test']:8.3f} "
          f"{med['sd_ratio']:6.2f}")
    n = len(rows)
    print(f"beats both baselines: D_stsp {sum(r['beat_d'] for r in rows)}/{n}, PE(20) {sum(r['beat_pe'] for r in rows)}/{n}, "
          f"both {sum(r['both'] for r in rows)}/{n}; VARX(1) PE(20) below both baselines "
          f"{sum(r['varx_pe'] < min(r['mean_pe'], r['var1_pe']) for r in rows)}/{n}; "
          f"training {sum(r['train_s'] for r in rows):.0f} s in all")
    (out / f"{args.tag}_summary.json").write_text(json.dumps({"train": train_keys, "no_inputs": args.no_inputs,
                                                              "rows": rows}, indent=1))
    print(f"runs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
