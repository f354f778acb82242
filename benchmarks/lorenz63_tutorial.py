"""Train and evaluate on the CNS 2023 tutorial's Lorenz-63 data; compare with the published numbers.

Runs the real command line (``dsrpipe train`` with defaults, ``dsrpipe evaluate --dt 0.01``)
on ``../shared/data/lorenz63`` (or --data-dir) and prints our D_stsp, D_H and lambda_max next to
the tutorial's pretrained shPLRNN (0.233 / 0.081 / 0.905; true lambda_max 0.906).

    python benchmarks/lorenz63_tutorial.py [--data-dir DIR] [--out DIR] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PUBLISHED = {"d_stsp": 0.233, "d_h": 0.081, "max_lyapunov": 0.905}
TRUE_MAX_LYAPUNOV = 0.906


def main() -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(here.parent.parent / "shared" / "data" / "lorenz63"))
    parser.add_argument("--out", default="benchmark-results/lorenz63")
    parser.add_argument("--set", nargs="*", default=[], help="training overrides, e.g. epochs=1000")
    args = parser.parse_args()
    data = Path(args.data_dir)
    train, test = data / "lorenz63_train.npy", data / "lorenz63_test.npy"
    if not train.exists():
        print(f"tutorial data not found in {data}; pass --data-dir", file=sys.stderr)
        return 1
    out = Path(args.out)
    cmd = [sys.executable, "-m", "dsrpipe.cli", "train", str(train), "--out", str(out)]
    if args.set:
        cmd += ["--set", *args.set]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    t_train = time.perf_counter() - t0
    metrics_path = out / "metrics.json"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dsrpipe.cli", "evaluate", str(out), "--test", str(test),
                    "--out", str(metrics_path), "--dt", "0.01"], check=True, stdout=subprocess.DEVNULL)
    t_eval = time.perf_counter() - t0
    m = json.loads(metrics_path.read_text())
    print(f"\nLorenz-63 tutorial data ({train.name} -> {test.name}); overrides: {args.set or 'none'}")
    print(f"{'metric':<14}{'dsrpipe':>10}{'published':>11}")
    for key in PUBLISHED:
        print(f"{key:<14}{m[key]:>10.3f}{PUBLISHED[key]:>11.3f}")
    print(f"{'true lambda_max':<14}{'':>10}{TRUE_MAX_LYAPUNOV:>11.3f}")
    print(f"fixed points found: {len(m['fixed_points'])} "
          f"({sum(fp['stable'] for fp in m['fixed_points'])} stable); published: 3 unstable")
    print(f"training {m['train_time_s']:.1f} s in-loop ({m['backend']} path), {t_train:.1f} s wall; "
          f"evaluation {t_eval:.1f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
