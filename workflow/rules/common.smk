# Plumbing only: config validation, the subjects table, output names, input functions.
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

import dsrpipe
from dsrpipe import paths

validate(config, schema="../schemas/config.schema.yaml")

RESULTS = config["results_dir"]
DEMO = config["subjects"] is None
MODEL = config["train"]["model"]
SEEDS = config["seeds"]

if DEMO:
    SUBJECTS = pd.DataFrame(
        {
            "subject": [str(s["id"]) for s in config["demo"]["subjects"]],
            "path": [f"resources/demo/sub-{s['id']}_timeseries.parquet" for s in config["demo"]["subjects"]],
            "dt": [config["demo"]["dt"]] * len(config["demo"]["subjects"]),
        }
    ).set_index("subject", drop=False)
else:
    SUBJECTS = pd.read_csv(config["subjects"], sep="\t", dtype={"subject": str}, comment="#")
    if "dt" not in SUBJECTS.columns:
        SUBJECTS["dt"] = None
    SUBJECTS = SUBJECTS.astype(object).where(SUBJECTS.notna(), None)
    validate(SUBJECTS, schema="../schemas/subjects.schema.yaml")
    SUBJECTS = SUBJECTS.set_index("subject", drop=False)
    if SUBJECTS.index.has_duplicates:
        raise ValueError(f"{config['subjects']}: duplicate subjects {sorted(set(SUBJECTS.index[SUBJECTS.index.duplicated()]))}")


wildcard_constraints:
    subject="|".join(SUBJECTS["subject"]),
    seed=r"\d+",


PREPARED_TRAIN = str(paths.prepared("{subject}", "train", RESULTS))
PREPARED_TEST = str(paths.prepared("{subject}", "test", RESULTS))
RUN = str(paths.run_dir("{subject}", "{model}", "{seed}", RESULTS))
RUN_FILE = lambda name: f"{RUN}/{name}"

GROUP_OUTPUTS = [str(paths.group_file(name, RESULTS)) for name in ("runs.parquet", "summary.parquet", "report.html")]


# The package code each stage runs. Listed as inputs, so editing e.g. dsrpipe/analysis/
# reruns evaluation (and what follows) but not preparation or training. Snakemake's own
# "code" trigger only sees the rule's script, not the modules it imports.
PACKAGE = Path(dsrpipe.__file__).parent


def package_code(*parts):
    files = []
    for part in parts:
        target = PACKAGE / part
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    return sorted({str(f) for f in files})


COMMON_CODE = package_code("__init__.py", "config.py", "paths.py", "cli.py", "io")
CODE = {
    "demo": COMMON_CODE + package_code("demo.py", "systems.py", "analysis/lyapunov.py"),
    "prepare": COMMON_CODE + package_code("preprocessing"),
    "train": COMMON_CODE + package_code("training", "models"),
    "evaluate": COMMON_CODE + package_code("evaluation.py", "analysis", "models", "training/checkpoint.py"),
    "report": COMMON_CODE + package_code("reporting"),
}


def raw_input(wildcards):
    return SUBJECTS.loc[wildcards.subject, "path"]


def subject_dt(wildcards):
    return SUBJECTS.loc[wildcards.subject, "dt"]


def truth_input(wildcards):
    """Ground truth exists for demo subjects only."""
    return [f"resources/demo/sub-{wildcards.subject}_truth.json"] if DEMO else []


def all_runs(name):
    return expand(RUN_FILE(name), subject=SUBJECTS["subject"], model=MODEL, seed=SEEDS)


def available_runs():
    """Runs whose metrics exist now, and the subject/seed runs that are missing (failed or not run)."""
    done, missing = [], []
    for subject in SUBJECTS["subject"]:
        for seed in SEEDS:
            metrics = RUN_FILE(paths.METRICS_FILE).format(subject=subject, model=MODEL, seed=seed)
            if Path(metrics).exists():
                done.append((subject, seed))
            else:
                missing.append(f"sub-{subject} seed {seed} (see logs/sub-{subject}/)")
    return done, missing


def all_tests():
    return [PREPARED_TEST.format(subject=s) for s in SUBJECTS["subject"] for _ in SEEDS]
