"""MTF on multimodal Lorenz-63 against a unimodal (Gaussian-only) baseline trained the same way.

One Lorenz-63 orbit (dt 0.01) is seen as a noisy Gaussian view, 10 Poisson neurons and
4-class labels (``dsrpipe.training.mtf_data.multimodal_lorenz63``). Both settings train
the same model with the same MTF loop and seeds; the unimodal one sees only the Gaussian
view. Each model generates 1.25 T_test steps from the first test point, drops 0.25 T_test,
and its decoded Gaussian view is compared with the test segment (D_stsp, 30 bins; D_H,
sigma 20). For the multimodal models we also report how well the encoder states of the
test data decode the true Poisson rates (median correlation over neurons) and the labels
(accuracy; chance = the majority class). Reference rows: an independent orbit of the true
system (the best achievable) and a model that stays at the data mean.

    python benchmarks/multimodal_lorenz.py [--seeds 0 1 2] [--set epochs=300 alpha=0.2 ...]

Measured 2026-11-28 on the shared 2-core machine (defaults: 3,000 train / 5,000 test samples,
shPLRNN M=10, K=3, L=50, linear encoder, alpha 0.2, 100 x 20 batches of 16 x 50, lr 3e-3 -> 1e-4):

    setting      seed   D_stsp     D_H  rate r  label acc
    true system          2.669   0.020                      (an independent orbit)
    data mean           13.068
    unimodal        0    2.966   0.035
    unimodal        1   13.024   0.483
    multimodal      0   13.006   0.499   0.965     0.721
    multimodal      1   10.054   0.071   0.968     0.737
    (label chance 0.340; multimodal with --gauss-weight 5: 12.966, 11.693; --learn-noise: 10.960, 12.987)

With a complete, nearly noise-free Gaussian view the extra views do not help at this budget:
the encoder decodes rates and labels well, but the generated orbits of 2,000 steps are not yet
on the attractor (the lab trains 10-50 restarts for thousands of epochs).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from dsrpipe.analysis import power_spectrum_distance, state_space_divergence
from dsrpipe.training.mtf_data import multimodal_lorenz63
from dsrpipe.training.multimodal import (
    MTFConfig,
    View,
    generate_views,
    train_multimodal,
)


def parse_overrides(pairs: list[str]) -> dict:
    defaults, out = MTFConfig(), {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        current = getattr(defaults, key)
        out[key] = float(value) if current is None else type(current)(value)
    return out


def evaluate(result, data: dict, n_train: int) -> dict:
    n_test = len(data["gaussian"]) - n_train
    test = {k: data[k][n_train:] for k in ("gaussian", "counts", "labels")}
    names = {"gauss": "gaussian", "counts": "counts", "labels": "labels"}
    first = {name: test[names[name]] for name in result.kinds}
    out = generate_views(result, first, int(1.25 * n_test))
    gen = out["gauss"][int(0.25 * n_test):]
    row = {"d_stsp": state_space_divergence(test["gaussian"], gen),
           "d_h": power_spectrum_distance(test["gaussian"], gen)}
    if "counts" in result.kinds:
        model = result.model
        stacked = torch.zeros(n_test, max(s.stop for s in model.layout.columns.values()), dtype=torch.float64)
        for name in result.kinds:
            stacked[:, model.layout.columns[name]] = torch.tensor(test[names[name]].reshape(n_test, -1))
        with torch.no_grad():
            enc = model.encode(stacked)
            rates = model.decoders["counts"].mean(enc).numpy()
            labels = model.decoders["labels"].mean(enc).argmax(-1).numpy()
        true_rates = data["rates"][n_train:]
        row["rate_corr"] = float(np.median([np.corrcoef(rates[:, i], true_rates[:, i])[0, 1]
                                            for i in range(rates.shape[1])]))
        row["label_acc"] = float(np.mean(labels == test["labels"]))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--dt", type=float, default=0.01)
    parser.add_argument("--settings", nargs="*", default=["unimodal", "multimodal"])
    parser.add_argument("--gauss-weight", type=float, default=1.0, help="weight of the Gaussian view's NLL")
    parser.add_argument("--learn-noise", action="store_true", help="learn the Gaussian view's noise sd")
    parser.add_argument("--set", nargs="*", default=[], help="MTFConfig overrides, e.g. epochs=300")
    args = parser.parse_args()
    base = dataclasses.replace(MTFConfig(epochs=100, batches_per_epoch=20, lr=3e-3, lr_end=1e-4),
                               **parse_overrides(args.set))
    data = multimodal_lorenz63(args.n_train + args.n_test, dt=args.dt, seed=args.data_seed)
    n = args.n_train
    gauss = View(data["gaussian"][:n], "gaussian", {"learn_noise": args.learn_noise}, weight=args.gauss_weight)
    settings = {
        "unimodal": {"gauss": gauss},
        "multimodal": {"gauss": gauss, "counts": (data["counts"][:n], "poisson"),
                       "labels": (data["labels"][:n], "categorical")},
    }
    settings = {k: settings[k] for k in args.settings}
    test = data["gaussian"][n:]
    other = multimodal_lorenz63(args.n_test, dt=args.dt, seed=args.data_seed + 100)["gaussian"]
    mean = np.broadcast_to(data["gaussian"][:n].mean(0), test.shape)
    print(f"config: {base}; Gaussian view weight {args.gauss_weight}, learned noise {args.learn_noise}")
    print(f"\n{'setting':<12}{'seed':>5}{'D_stsp':>9}{'D_H':>8}{'rate r':>8}{'label acc':>10}{'train s':>9}")
    print(f"{'true system':<12}{'':>5}{state_space_divergence(test, other):9.3f}{power_spectrum_distance(test, other):8.3f}")
    print(f"{'data mean':<12}{'':>5}{state_space_divergence(test, mean):9.3f}{'':>8}")
    chance = np.bincount(data["labels"][n:].astype(int)).max() / args.n_test
    summary = {}
    for name, views in settings.items():
        rows = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            result = train_multimodal(views, dataclasses.replace(base, seed=seed))
            row = evaluate(result, data, n)
            rows.append(row)
            extra = (f"{row['rate_corr']:8.3f}{row['label_acc']:10.3f}" if "rate_corr" in row else f"{'':>18}")
            print(f"{name:<12}{seed:>5}{row['d_stsp']:9.3f}{row['d_h']:8.3f}{extra}{time.perf_counter() - t0:9.1f}",
                  flush=True)
        summary[name] = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    print(f"\nmedian over seeds {args.seeds} (label chance level {chance:.3f}):")
    for name, med in summary.items():
        print(f"  {name:<12}" + "  ".join(f"{k} {v:.3f}" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
