"""Helpers for report tests: synthetic run folders, and a check of ``snakemake --report`` on a finished workflow.

``check_snakemake_report(workdir)`` is meant to be called from a workflow test after
its run has finished (it starts no training): it builds ``report.zip`` and checks
that every run's figures and the group report are in it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from dsrpipe import paths
from dsrpipe.io.timeseries import TimeSeries, write_timeseries
from dsrpipe.reporting.run_figures import FIGURES_DIR
from dsrpipe.systems import simulate_lorenz63

REPO = Path(__file__).resolve().parents[1]


def write_synthetic_run(root: Path, subject: str, seed: int, *, T: int = 400, label: str = "shPLRNN",
                        truth: bool = True) -> tuple[Path, Path]:
    """A run folder with every file training and evaluation write, from a short Lorenz-63 orbit.

    Returns ``(metrics_path, test_path)``. The "generated" orbit is a second
    Lorenz-63 orbit (another seed), so the figures show real attractors.
    """
    x = simulate_lorenz63(2 * T, rho=28.0, seed=int(subject) + 10 * seed)
    x = (x - x.mean(0)) / x.std(0)
    test_path = paths.prepared(subject, "test", root)
    test_path.parent.mkdir(parents=True, exist_ok=True)
    channels = ["x", "y", "z"]
    write_timeseries(TimeSeries(x[:T], channels, dt=0.01, subject=subject), test_path)
    run = paths.run_dir(subject, label, seed, root)
    run.mkdir(parents=True, exist_ok=True)
    write_timeseries(TimeSeries(x[T:], channels, dt=0.01, subject=subject), run / paths.GENERATED_FILE)
    epochs = np.arange(1, 21)
    pd.DataFrame({"epoch": epochs, "loss": np.geomspace(1, 0.05, 20), "alpha": np.linspace(0.3, 0.1, 20),
                  "lr": np.geomspace(1e-3, 1e-5, 20), "wall_time_s": epochs * 0.1}).to_parquet(
        run / paths.TRAIN_LOG_FILE, index=False)
    fp = [[1.3, 1.3, 0.9], [-1.3, -1.3, 0.9]]
    rows = [{"cycle": i, "order": 1, "point": 0, "z0": p[0], "z1": p[1], "z2": p[2], "stable": False,
             "type": "saddle", "max_abs_eigenvalue": 1.02} for i, p in enumerate(fp)]
    rows += [{"cycle": 2, "order": 2, "point": j, "z0": s * 0.5, "z1": s * 0.4, "z2": 0.1, "stable": True,
              "type": "stable node", "max_abs_eigenvalue": 0.9} for j, s in enumerate((1, -1))]
    pd.DataFrame(rows).to_parquet(run / paths.CYCLES_FILE, index=False)
    u, v = np.linspace(-2, 2, 6), np.linspace(-1.5, 1.5, 5)
    uu, vv = np.meshgrid(u, v)
    pd.DataFrame({"u": uu.ravel(), "v": vv.ravel(), "label": (uu.ravel() > 0).astype(np.int64)}).to_parquet(
        run / paths.BASINS_FILE, index=False)
    steps = np.geomspace(10, 2000, 12).astype(int)
    spectrum = [0.9, 0.0, -14.5]
    trace = np.array(spectrum) + np.outer(1 / np.sqrt(steps), [1.0, -0.5, 3.0])
    lyap = pd.DataFrame(trace, columns=["lambda_1", "lambda_2", "lambda_3"])
    lyap.insert(0, "step", steps)
    lyap.to_parquet(run / paths.LYAPUNOV_FILE, index=False)
    (run / paths.CONFIG_FILE).write_text(json.dumps({
        "model": {"name": "shPLRNN"}, "train": {"seed": seed}, "data": {"subject": subject},
        "readout": {"kind": "identity", "n_obs": 3, "latent_dim": 3, "state": {"init_map": []}}}))
    metrics = {
        "subject": subject, "model": "shPLRNN", "seed": seed, "dt": 0.01, "modality": "timeseries",
        "d_stsp": 0.2 + 0.1 * int(subject), "d_h": 0.1, "pe_20": 0.4, "n_params": 62, "train_time_s": 3.0,
        "lyapunov_spectrum": spectrum, "max_lyapunov": spectrum[0], "kaplan_yorke_dimension": 2.06,
        "lyapunov_units": "per time unit", "attractor_class": "chaotic", "n_visited_regions": 5,
        "n_cycles": {"1": 2, "2": 1}, "n_attractors": 2,
        "fixed_points": [{"state": p, "eigenvalues_real": [1.02, 0.5, 0.3], "eigenvalues_imag": [0, 0, 0],
                          "stable": False, "max_abs_eigenvalue": 1.02} for p in fp],
        "pe_curve": list(np.linspace(0.01, 0.4, 20)),
        "baselines": {"mean": {"d_stsp": 5.0, "d_h": 0.5, "pe_20": 1.0, "pe_curve": [1.0] * 20},
                      "var1": {"d_stsp": 3.0, "d_h": 0.3, "pe_20": 0.8, "pe_curve": list(np.linspace(0.05, 0.8, 20))}},
        "basins": {"n_attractors": 2, "n_diverging": 0, "n_inits": 30, "inits": "grid",
                   "attractors": [{"label": 0, "class": "fixed_point", "fraction": 0.5},
                                  {"label": 1, "class": "chaotic", "fraction": 0.5}]},
    }
    if truth:
        metrics["truth"] = {"lyapunov_spectrum": [0.906, 0.0, -14.572], "max_lyapunov": 0.906,
                            "kaplan_yorke_dimension": 2.062, "description": "Lorenz-63, rho = 28",
                            "fixed_points": [[0, 0, -1.5], *fp]}
        metrics["truth_comparison"] = {"max_lyapunov_error": -0.006, "fixed_point_errors": [float("nan"), 0.0, 0.0],
                                       "n_fixed_points_true": 3, "n_fixed_points_found": 2}
    metrics_path = run / paths.METRICS_FILE
    metrics_path.write_text(json.dumps(metrics))
    return metrics_path, test_path


def check_snakemake_report(workdir: Path, timeout: int = 300) -> Path:
    """Run ``snakemake --report report.zip`` in a finished workflow folder and check its contents.

    Asserts that the command succeeds, that the zip holds exactly the group
    ``report.html``, the group's scatter PNGs and every PNG of every run's ``figures/`` folder under
    ``results/`` (same bytes), that each subject has its category and each
    run its subcategory, and that the run caption was rendered. Returns the zip's path.
    """
    workdir = Path(workdir)
    out = workdir / "report.zip"
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(workdir), "--report", str(out)],
                          capture_output=True, text=True, timeout=timeout, cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    archive = zipfile.ZipFile(out)
    names = archive.namelist()
    # Snakemake stores each registered file as report/data/raw/<hash>/<file name>: match by name and content
    stored = {(Path(n).name, archive.read(n)) for n in names if n.startswith("report/data/raw/")}
    run_dirs = sorted(p for p in (workdir / "results").glob("sub-*/model-*_seed-*") if p.is_dir())
    assert run_dirs, f"no run folders under {workdir / 'results'}"
    expected = [workdir / "results" / "group" / "report.html"]
    for run in run_dirs:
        pngs = sorted((run / FIGURES_DIR).glob("*.png"))
        assert {p.stem for p in pngs} >= {"training", "timeseries", "spectra"}, f"{run}: figures {pngs}"
        expected += pngs
    expected += sorted((workdir / "results" / "group" / "scatter").glob("*.png"))  # metric-vs-covariate plots
    missing = [str(p.relative_to(workdir)) for p in expected if (p.name, p.read_bytes()) not in stored]
    assert not missing, f"not in {out}: {missing}"
    assert len(stored) == len(expected), f"{out}: {len(stored)} files registered, expected {len(expected)}"
    page = archive.read("report/report.html").decode()
    for run in run_dirs:  # one category per subject, one subcategory per run
        model, seed = run.name.rsplit("_seed-", 1)
        assert run.parent.name in page and f"{model} seed-{seed}" in page, f"{run}: no category in the report"
    assert "Run figure" in page  # the caption, rendered
    return out
