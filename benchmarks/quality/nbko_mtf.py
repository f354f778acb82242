"""NBKO task fMRI: task-phase prediction on the held-out block, MTF against BOLD-alone DSR and decoders.

For each participant: the ROI table is preprocessed and prepared as in
``config/examples/nbko_fmri.yaml`` (blocks 1-4 train, block 5 test), and three models are
trained at the same budget (the ``train`` section of that config, ``--set`` on top):

- **MTF** with ``config/examples/nbko_fmri_mtf.yaml`` on top (BOLD through the HRF, the
  5-class task-phase label, the 5 task inputs). Its label accuracy on block 5
  (``cross_modal``): the label predicted by its own categorical decoder from the latent
  trajectory forced by the encoder with the label features masked ("MTF"), and from the
  generated orbit driven by the inputs ("MTF gen").
- **GTF+in**: the plain BOLD model of the NBKO example (shPLRNN, identity readout, no
  label channels), the 5 task inputs driving it as external inputs.
- **GTF**: the same on BOLD alone (no task inputs, no labels).

A GTF model has no label decoder, so its task phase is decoded from its latent trajectory
by a multinomial logistic regression fitted on blocks 1-4 only, per block: "forced" is the
GTF trajectory with the run's alpha (``z_t = (1-a) F(z_{t-1}, u_t) + a x_t`` on the forced
units), "gen" the free-running orbit from the block's first volume by the evaluation
protocol (0.25 T transient repeating the block's inputs, then T steps aligned with it).
References that see no dynamics (logistic regressions fitted on blocks 1-4): the BOLD
volume at t ("BOLD LR"), BOLD and inputs at t, the inputs at t alone. Chance: the block-5
share of its most frequent phase ("major", what ``cross_modal`` reports) and one over the
number of phases that occur in blocks 1-4 ("uniform": 1/5; the label view also has a
``none`` category for volumes without a label, which never occurs here). NBKO's phase
schedule is the same in every block, so the volume index within the block, and with it
the input history, determines the phase ("in hist" = 1.0): only decoders without the
inputs and without block timing ("BOLD LR", "GTF f") measure what BOLD says about the phase. Across participants: median accuracies, and for MTF against chance and
against each BOLD-alone decoder the median paired difference with a bootstrap 95 % CI
(10,000 resamples of participants, seed 0) and a Wilcoxon signed-rank p. The evaluation's invariants (Lyapunov, SCYFI, basins) run at a
small budget: the accuracies and D_stsp do not depend on them.

    nice -n 15 python benchmarks/quality/nbko_mtf.py [--subjects 01 02] [--set epochs=40 ...]

Needs ../shared/data/nbko_fmri (skips with a message without it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "nbko_fmri"


def softmax_regression(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, n_classes: int, l2: float = 1e-2):
    """Multinomial logistic regression (L-BFGS, L2 on the weights); predicted classes of ``x_test``."""
    torch.manual_seed(0)
    mean, sd = x.mean(0), x.std(0) + 1e-9
    X = torch.tensor((x - mean) / sd)
    Y = torch.tensor(y, dtype=torch.long)
    W = torch.zeros(X.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(X @ W + b, Y) + l2 * (W ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (torch.tensor((x_test - mean) / sd) @ W + b).argmax(1).numpy()


BLOCK = 72  # volumes per NBKO block
CHEAP_EVALUATE = {"lyapunov_steps": 1000, "lyapunov_transient": 100, "fixed_point_inits": 20,
                  "max_cycle_order": 1, "basin_grid": 0}


@torch.no_grad()
def gtf_latents(run_dir: Path, x: np.ndarray, u: np.ndarray | None, mode: str) -> np.ndarray:
    """Latent trajectory (T, M) of a trained GTF run over one block ``x`` (T, N) with inputs ``u`` (T, K).

    ``forced``: generalized teacher forcing with the run's alpha on the readout's forced units;
    ``generated``: the evaluation protocol's free-running orbit from ``x[0]`` (0.25 T transient
    repeating the block's inputs, then T steps aligned with the block)."""
    from dsrpipe.training.checkpoint import load_reconstruction

    model, readout, cfg = load_reconstruction(run_dir)
    model, readout = model.double(), readout.double()
    T = len(x)
    xt = torch.as_tensor(x, dtype=torch.float64)
    ut = None if u is None or not getattr(model, "input_dim", 0) else torch.as_tensor(u, dtype=torch.float64)
    z = readout.initial_state(xt[0])
    if mode == "forced":
        out = [z]
        alpha, k = float(cfg["train"]["alpha"]), readout.n_forced
        for t in range(1, T):
            z = model.step(z[None], None if ut is None else ut[t][None])[0]
            z = torch.cat([(1 - alpha) * z[:k] + alpha * readout.teacher(xt[t]), z[k:]])
            out.append(z)
        return torch.stack(out).numpy()
    n_drop = round(0.25 * T)  # as dsrpipe.evaluation.validation_metrics
    drive = None if ut is None else torch.cat([torch.as_tensor(np.resize(u, (n_drop, u.shape[1]))), ut])
    return model.generate(z, n_drop + T, inputs=drive)[n_drop:].numpy()


def decode_blocks(run_dir: Path, x_tr, u_tr, y_tr, x_te, u_te, y_te, n_classes: int, mode: str) -> float:
    """Block-5 accuracy of a logistic regression fitted on the latents of blocks 1-4 (each block run alone)."""
    feats = [gtf_latents(run_dir, x_tr[a:a + BLOCK], None if u_tr is None else u_tr[a:a + BLOCK], mode)
             for a in range(0, len(x_tr), BLOCK)]
    f_te = gtf_latents(run_dir, x_te, u_te, mode)
    if not (np.isfinite(f_te).all() and all(np.isfinite(f).all() for f in feats)):
        return float("nan")  # a diverged orbit has no accuracy
    return float(np.mean(softmax_regression(np.vstack(feats), y_tr, f_te, n_classes) == y_te))


def input_history(u: np.ndarray, lags: int = 16) -> np.ndarray:
    """The inputs at t, t-1, ..., t-lags+1 side by side (zeros before the block's start): (T, K * lags)."""
    return np.hstack([np.vstack([np.zeros((k, u.shape[1])), u[:len(u) - k]]) for k in range(lags)])


def paired(a: np.ndarray, b: np.ndarray, n_boot: int = 10_000) -> str:
    """Median of a - b over participants, bootstrap 95 % CI, Wilcoxon signed-rank p (NaN pairs dropped)."""
    from scipy.stats import wilcoxon

    d = (a - b)[np.isfinite(a - b)]
    if len(d) < 2:
        return f"{np.median(d):+.3f}" if len(d) else "n/a"
    rng = np.random.default_rng(0)
    boot = np.median(d[rng.integers(0, len(d), (n_boot, len(d)))], axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    p = wilcoxon(d).pvalue if np.any(d != 0) else 1.0
    return f"{np.median(d):+.3f} [{lo:+.3f}, {hi:+.3f}] p={p:.3g} ({int(np.sum(d > 0))}/{len(d)} > 0)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", nargs="+", default=["01", "02"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="train overrides (all three models)")
    parser.add_argument("--out", help="keep the runs in this folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found (the NBKO ROI tables of ../shared/data)")
        return 0
    logging.basicConfig(level=logging.ERROR)  # per-run warnings (short validation tail, constant baseline D_H)
    from dsrpipe.config import (
        EvaluateConfig,
        PrepareConfig,
        TrainConfig,
        from_mapping,
        parse_value,
    )
    from dsrpipe.evaluation import evaluate_run
    from dsrpipe.io.timeseries import CONTINUOUS, INPUT, load_series, write_timeseries
    from dsrpipe.preprocessing import prepare_file
    from dsrpipe.preprocessing.dispatch import preprocess_recording
    from dsrpipe.preprocessing.fmri import FMRIConfig
    from dsrpipe.training.mtf_views import series_to_views, view_spec
    from dsrpipe.training.run import train_file

    base = yaml.safe_load((ROOT / "config/examples/nbko_fmri.yaml").read_text())
    mtf = yaml.safe_load((ROOT / "config/examples/nbko_fmri_mtf.yaml").read_text())
    sets = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    mtf_keys = {**base["train"], **mtf["train"], **sets}
    gtf_keys = {**base["train"], **sets}
    mtf_cfg = from_mapping(TrainConfig, mtf_keys, "train")
    gtf_cfg = from_mapping(TrainConfig, gtf_keys, "train")
    # label accuracy and D_stsp do not depend on the invariants: run those at a small budget
    eval_cfg = from_mapping(EvaluateConfig, {**base["evaluate"], **CHEAP_EVALUATE}, "evaluate")
    out = Path(args.out or tempfile.mkdtemp(prefix="nbko_mtf_"))
    print(f"MTF train: {mtf_keys}\nGTF train: {gtf_keys}")
    cols = ["MTF", "MTF gen", "GTF+in f", "GTF+in g", "GTF f", "GTF g", "BOLD LR", "BOLD+in", "in LR",
            "in hist", "major", "uniform", "D MTF", "D GTF+in", "D GTF", "train s"]
    print(f"{'sub':>4} " + " ".join(f"{c:>8}" for c in cols))
    rows = []
    for sub in args.subjects:
        d = out / f"sub-{sub}"
        d.mkdir(parents=True, exist_ok=True)
        preprocess_recording(DATA / f"sub-{sub}_bold_roi.tsv", d / "pre.parquet", modality="fmri", subject=sub,
                             fmri=from_mapping(FMRIConfig, base["fmri"], "fmri"))
        prepare_file(d / "pre.parquet", d / "train.parquet", d / "test.parquet", subject=sub,
                     cfg=from_mapping(PrepareConfig, base["prepare"], "prepare"))
        test, train = load_series(d / "test.parquet", types=None), load_series(d / "train.parquet", types=None)
        if train.n_samples != 4 * BLOCK or test.n_samples != BLOCK:
            raise SystemExit(f"sub-{sub}: expected 4 training blocks and 1 test block of {BLOCK} volumes, got "
                             f"{train.n_samples} and {test.n_samples} rows")
        for name, series in (("train", train), ("test", test)):  # BOLD alone: no inputs, no labels
            write_timeseries(series.select(CONTINUOUS), d / f"{name}_bold.parquet")
        start = time.perf_counter()
        train_file(d / "train.parquet", d / "mtf", mtf_cfg)
        train_file(d / "train.parquet", d / "gtf_in", gtf_cfg)  # continuous channels modelled, inputs drive
        train_file(d / "train_bold.parquet", d / "gtf", gtf_cfg)
        train_s = time.perf_counter() - start
        bold_tr, bold_te = train.select(CONTINUOUS).data, test.select(CONTINUOUS).data
        in_tr, in_te = train.select(INPUT).data, test.select(INPUT).data
        metrics = evaluate_run(d / "mtf", test, eval_cfg, d / "mtf" / "metrics.json",
                               train=load_series(d / "train.parquet"))
        d_gtf = {}
        for run, tr_path, te_path, u in (("gtf_in", "train", "test", in_te), ("gtf", "train_bold", "test_bold", None)):
            d_gtf[run] = evaluate_run(d / run, d / f"{te_path}.parquet", eval_cfg, d / run / "metrics.json",
                                      train=d / f"{tr_path}.parquet", inputs=u)["d_stsp"]
        name, label = next((k, v) for k, v in metrics["cross_modal"].items() if v["kind"] == "categorical")
        spec = view_spec(train, hrf=False)
        y = series_to_views(train, spec)[0][name].data[:, 0].astype(int)
        y_test = series_to_views(test, spec)[0][name].data[:, 0].astype(int)
        n_classes = len(next(v for v in spec["views"] if v["name"] == name)["categories"])

        def lr(a, b, y=y, y_test=y_test, n_classes=n_classes):
            return float(np.mean(softmax_regression(a, y, b, n_classes) == y_test))

        acc = [label["accuracy"], label["accuracy_generated"]]
        for run, u_tr, u_te in (("gtf_in", in_tr, in_te), ("gtf", None, None)):
            acc += [decode_blocks(d / run, bold_tr, u_tr, y, bold_te, u_te, y_test, n_classes, mode)
                    for mode in ("forced", "generated")]
        acc += [lr(bold_tr, bold_te), lr(np.hstack([bold_tr, in_tr]), np.hstack([bold_te, in_te])),
                lr(in_tr, in_te), lr(np.vstack([input_history(in_tr[a:a + BLOCK]) for a in range(0, len(in_tr), BLOCK)]),
                                     input_history(in_te)), label["chance"], 1.0 / len(np.unique(y))]
        row = [*acc, metrics["d_stsp"], d_gtf["gtf_in"], d_gtf["gtf"], train_s]
        rows.append(row)
        print(f"{sub:>4} " + " ".join(f"{v:8.3f}" if i < 12 else f"{v:8.2f}" if i < 15 else f"{v:8.1f}"
                                      for i, v in enumerate(row)), flush=True)
    table = np.array(rows, dtype=float)
    med = np.nanmedian(table, axis=0)
    print(f"{'med':>4} " + " ".join(f"{v:8.3f}" if i < 12 else f"{v:8.2f}" if i < 15 else f"{v:8.1f}"
                                    for i, v in enumerate(med)))
    if len(rows) > 1:
        c = {name: table[:, i] for i, name in enumerate(cols)}
        print("paired over participants: median difference [bootstrap 95 % CI], Wilcoxon p (n > 0)")
        for a, b in (("MTF", "major"), ("MTF", "uniform"), ("MTF gen", "major"), ("MTF", "GTF+in f"),
                     ("MTF", "GTF f"), ("MTF gen", "GTF+in g"), ("MTF", "BOLD LR"), ("GTF f", "major"),
                     ("GTF+in g", "major"), ("GTF+in g", "in hist"), ("MTF gen", "in hist"), ("GTF g", "major"),
                     ("BOLD LR", "major")):
            print(f"  {a:>8} - {b:<8} {paired(c[a], c[b])}")
    print(f"{len(rows)} participants; runs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
