"""Re-score saved runs' validation tails with the current selection rule.

For each ``seed-*`` run folder under the given folders (as ``eeg64.py --out DIR`` writes
them), loads the model and readout, splits the run's training file (``data.path`` in its
``config.json``) as training did (:func:`dsrpipe.training.run._load`: the validation tail and
its inputs) and scores the tail with :func:`dsrpipe.training.selection.validation_scores`:
the stored score, the current one (the worst of the starts) and every start's. Prints the median of the current scores per
folder, so runs trained under an older rule can be compared by the current one without
retraining.

    python benchmarks/quality/revalidate.py DIR [DIR ...]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from dsrpipe.config import TrainConfig, from_mapping
    from dsrpipe.training.checkpoint import load_reconstruction
    from dsrpipe.training.run import _load
    from dsrpipe.training.selection import validation_scores

    if not argv:
        print(__doc__)
        return 2
    for folder in map(Path, argv):
        current = []
        for run in sorted(folder.glob("seed-*")):
            if not (run / "model.pt").exists():
                continue
            model, readout, cfg = load_reconstruction(run)
            data = _load(cfg["data"]["path"], from_mapping(TrainConfig, cfg["train"], "train"))
            u = data.u
            v = validation_scores(model, readout, data.x[data.n_fit:], None if u is None else u[data.n_fit:])
            stored = (cfg.get("validation") or {}).get("d_stsp")
            current.append(v["d_stsp"])
            print(f"{run}: stored {stored:.3f}, now {v['d_stsp']:.3f} (first start {v['d_stsp_starts'][0]:.3f}; "
                  f"all {[round(s, 2) for s in v['d_stsp_starts']]})", flush=True)
        if current:
            print(f"{folder}: median validation D_stsp now {statistics.median(current):.3f} over {len(current)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
