"""Re-score saved runs' validation tails with the current selection rule.

For each ``seed-*`` run folder under the given folders (as ``eeg64.py --out DIR`` writes
them, next to ``train.parquet``), loads the model and readout, cuts the run's own validation
tail out of ``train.parquet`` (``n_fit`` / ``n_validation`` from its ``config.json``) and scores
it with :func:`dsrpipe.training.selection.validation_scores`: the stored score, the current
one (the worst of the starts) and every start's. Prints the median of the current scores per
folder, so runs trained under an older rule can be compared by the current one without
retraining.

    python benchmarks/quality/revalidate.py DIR [DIR ...]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    from dsrpipe.io.timeseries import read_timeseries
    from dsrpipe.training.checkpoint import load_reconstruction
    from dsrpipe.training.selection import validation_scores

    if not argv:
        print(__doc__)
        return 2
    for folder in map(Path, argv):
        x = np.asarray(read_timeseries(folder / "train.parquet").data, dtype=float)
        current = []
        for run in sorted(folder.glob("seed-*")):
            if not (run / "model.pt").exists():
                continue
            model, readout, cfg = load_reconstruction(run)
            n_fit, n_val = cfg["data"]["n_fit"], cfg["data"]["n_validation"]
            v = validation_scores(model, readout, x[n_fit:n_fit + n_val])
            stored = (cfg.get("validation") or {}).get("d_stsp")
            current.append(v["d_stsp"])
            print(f"{run}: stored {stored:.3f}, now {v['d_stsp']:.3f} (first start {v['d_stsp_starts'][0]:.3f}; "
                  f"all {[round(s, 2) for s in v['d_stsp_starts']]})", flush=True)
        if current:
            print(f"{folder}: median validation D_stsp now {statistics.median(current):.3f} over {len(current)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
