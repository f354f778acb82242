"""Output names, built in one place from BIDS-like entities."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path("results")


def subject_dir(subject: str, root: str | Path = RESULTS) -> Path:
    return Path(root) / f"sub-{subject}"


def prepared(subject: str, split: str, root: str | Path = RESULTS) -> Path:
    """``results/sub-<id>/data/sub-<id>_split-<train|test>.parquet``."""
    return subject_dir(subject, root) / "data" / f"sub-{subject}_split-{split}.parquet"


def preprocessed(subject: str, modality: str, root: str | Path = RESULTS) -> Path:
    """``results/sub-<id>/data/sub-<id>_desc-preproc_<modality>.parquet``: one recording after its
    modality's preprocessing, before the split (what ``prepare`` reads)."""
    return subject_dir(subject, root) / "data" / f"sub-{subject}_desc-preproc_{modality}.parquet"


def merged(subject: str, root: str | Path = RESULTS) -> Path:
    """``results/sub-<id>/data/sub-<id>_desc-merged.parquet``: a multimodal subject's preprocessed
    recordings joined on one grid (what ``prepare`` reads for it)."""
    return subject_dir(subject, root) / "data" / f"sub-{subject}_desc-merged.parquet"


def run_dir(subject: str, model: str, seed: int | str, root: str | Path = RESULTS) -> Path:
    """``results/sub-<id>/model-<name>_seed-<n>``."""
    return subject_dir(subject, root) / f"model-{model}_seed-{seed}"


def run_file(subject: str, model: str, seed: int | str, name: str, root: str | Path = RESULTS) -> Path:
    return run_dir(subject, model, seed, root) / name


def group_file(name: str, root: str | Path = RESULTS) -> Path:
    """``results/group/<name>``."""
    return Path(root) / "group" / name


# File names inside a run directory, shared by training, evaluation and reports.
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
TRAIN_LOG_FILE = "training_log.parquet"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.json"
GENERATED_FILE = "generated.parquet"
LYAPUNOV_FILE = "lyapunov.parquet"
FIXED_POINTS_FILE = "fixed_points.parquet"
CYCLES_FILE = "cycles.parquet"
BASINS_FILE = "basins.parquet"
OBSERVATION_FIT_FILE = "observation_fit.parquet"  # MTF runs: data vs decoded means per view (BOLD fit, rates)
