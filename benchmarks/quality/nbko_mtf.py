"""NBKO task fMRI: task-phase prediction on the held-out block, MTF against BOLD-only decoders.

For each participant: the ROI table is preprocessed and prepared as in
``config/examples/nbko_fmri.yaml`` (blocks 1-4 train, block 5 test), an MTF model is
trained with ``config/examples/nbko_fmri_mtf.yaml`` on top (BOLD through the HRF, the
5-class task-phase label, the 5 task inputs) and evaluated. Its label accuracy on block 5
(``cross_modal``: the label predicted from BOLD and inputs through the latent model forced
by the encoder with the label features masked; and from the generated orbit) is compared
with two decoders fitted on blocks 1-4 that see no dynamics: multinomial logistic
regression from the BOLD volume at t (BOLD-only), and from BOLD and the task inputs at t.
Chance: the most frequent phase of block 5.

    nice -n 15 python benchmarks/quality/nbko_mtf.py [--subjects 01 02] [--set epochs=40 ...]

Needs ../shared/data/nbko_fmri (skips with a message without it).
"""

from __future__ import annotations

import argparse
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", nargs="+", default=["01", "02"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="train overrides")
    parser.add_argument("--out", help="keep the runs in this folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found (the NBKO ROI tables of ../shared/data)")
        return 0
    from dsrpipe.config import EvaluateConfig, PrepareConfig, TrainConfig, from_mapping, parse_value
    from dsrpipe.evaluation import evaluate_run
    from dsrpipe.io.timeseries import load_series
    from dsrpipe.preprocessing import prepare_file
    from dsrpipe.preprocessing.dispatch import preprocess_recording
    from dsrpipe.preprocessing.fmri import FMRIConfig
    from dsrpipe.training.mtf_views import series_to_views, view_spec
    from dsrpipe.training.run import train_file

    base = yaml.safe_load((ROOT / "config/examples/nbko_fmri.yaml").read_text())
    mtf = yaml.safe_load((ROOT / "config/examples/nbko_fmri_mtf.yaml").read_text())
    train_keys = {**base["train"], **mtf["train"]}
    train_keys.update({k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)})
    train_cfg = from_mapping(TrainConfig, train_keys, "train")
    eval_cfg = from_mapping(EvaluateConfig, base["evaluate"], "evaluate")
    out = Path(args.out or tempfile.mkdtemp(prefix="nbko_mtf_"))
    print(f"train: {train_keys}")
    print(f"{'sub':>4} {'MTF acc':>8} {'MTF gen':>8} {'BOLD LR':>8} {'BOLD+in':>8} {'chance':>7} "
          f"{'D_stsp':>7} {'train s':>8}")
    rows = []
    for sub in args.subjects:
        d = out / f"sub-{sub}"
        d.mkdir(parents=True, exist_ok=True)
        preprocess_recording(DATA / f"sub-{sub}_bold_roi.tsv", d / "pre.parquet", modality="fmri", subject=sub,
                             fmri=from_mapping(FMRIConfig, base["fmri"], "fmri"))
        prepare_file(d / "pre.parquet", d / "train.parquet", d / "test.parquet", subject=sub,
                     cfg=from_mapping(PrepareConfig, base["prepare"], "prepare"))
        start = time.perf_counter()
        train_file(d / "train.parquet", d / "mtf", train_cfg)
        train_s = time.perf_counter() - start
        test, train = load_series(d / "test.parquet", types=None), load_series(d / "train.parquet", types=None)
        metrics = evaluate_run(d / "mtf", test, eval_cfg, d / "mtf" / "metrics.json",
                               train=load_series(d / "train.parquet"))
        name, label = next((k, v) for k, v in metrics["cross_modal"].items() if v["kind"] == "categorical")
        spec = view_spec(train, hrf=False)
        (tr_views, tr_in), (te_views, te_in) = series_to_views(train, spec), series_to_views(test, spec)
        y, y_test = tr_views[name].data[:, 0].astype(int), te_views[name].data[:, 0].astype(int)
        n_classes = len(next(v for v in spec["views"] if v["name"] == name)["categories"])
        bold_tr, bold_te = tr_views["continuous"].data, te_views["continuous"].data
        acc_bold = float(np.mean(softmax_regression(bold_tr, y, bold_te, n_classes) == y_test))
        acc_in = float(np.mean(softmax_regression(np.hstack([bold_tr, tr_in]), y, np.hstack([bold_te, te_in]),
                                                  n_classes) == y_test))
        row = (sub, label["accuracy"], label["accuracy_generated"], acc_bold, acc_in, label["chance"],
               metrics["d_stsp"], train_s)
        rows.append(row)
        print(f"{row[0]:>4} {row[1]:8.3f} {row[2]:8.3f} {row[3]:8.3f} {row[4]:8.3f} {row[5]:7.3f} {row[6]:7.2f} "
              f"{row[7]:8.1f}", flush=True)
    if len(rows) > 1:
        med = np.median(np.array([r[1:] for r in rows], dtype=float), axis=0)
        print(f"{'med':>4} {med[0]:8.3f} {med[1]:8.3f} {med[2]:8.3f} {med[3]:8.3f} {med[4]:7.3f} {med[5]:7.2f} "
              f"{med[6]:8.1f}")
    print(f"runs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
