# Plumbing only: config validation, the subjects table, output names, input functions.
import re
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

import dsrpipe
from dsrpipe import paths

validate(config, schema="../schemas/config.schema.yaml")

RESULTS = config["results_dir"]
BIDS = config["bids"]["root"] is not None
DEMO = config["subjects"] is None and not BIDS
if BIDS and config["subjects"] is not None:
    raise ValueError(f"config: set either subjects ({config['subjects']}) or bids.root ({config['bids']['root']}), "
                     "not both")
SEEDS = config["seeds"]
# Training settings: one without a grid (labelled by the model name), else one per grid
# combination (labels <model>-<i>, listed in results/group/settings.tsv).
from dsrpipe.settings import expand_grid

SETTINGS = expand_grid(config["train"], config.get("grid"))

MODALITIES = ("eeg", "fmri", "spikes", "behaviour", "timeseries")
OPTIONAL_COLUMNS = ("session", "modality", "dt", "atlas", "masks", "confounds")

if DEMO:
    SUBJECTS = pd.DataFrame(
        {
            "subject": [str(s["id"]) for s in config["demo"]["subjects"]],
            "path": [f"resources/demo/sub-{s['id']}_timeseries.parquet" for s in config["demo"]["subjects"]],
            "dt": [config["demo"]["dt"]] * len(config["demo"]["subjects"]),
        }
    )
elif BIDS:  # the same table, found by mne-bids; participants.tsv rows are kept as covariates
    from dsrpipe.preprocessing.bids import discover_from_mapping

    SUBJECTS, PARTICIPANTS = discover_from_mapping(config["bids"])
else:
    SUBJECTS = pd.read_csv(config["subjects"], sep="\t", comment="#",
                           dtype={c: str for c in ("subject", "session", "path", "atlas", "masks", "confounds")})
if not BIDS:
    PARTICIPANTS = {}
for column in OPTIONAL_COLUMNS:
    if column not in SUBJECTS.columns:
        SUBJECTS[column] = None
SUBJECTS = SUBJECTS.astype(object).where(SUBJECTS.notna(), None)
SUBJECTS["modality"] = SUBJECTS["modality"].map(lambda m: m or "timeseries")
if not DEMO:
    validate(SUBJECTS, schema="../schemas/subjects.schema.yaml")
    SUBJECTS = SUBJECTS.astype(object).where(SUBJECTS.notna(), None)  # validate() turns None back into NaN
    if SUBJECTS["subject"].duplicated().any():
        repeated = sorted(set(SUBJECTS.loc[SUBJECTS["subject"].duplicated(), "subject"]))
        raise ValueError(
            f"{config['subjects'] or config['bids']['root']}: several rows for subject(s) {', '.join(repeated)}. "
            "The workflow takes one recording per subject. For multimodal training (train.method: mtf) give "
            "one table with every modality as typed channels: an fMRI ROI table with input_* and label_* "
            "columns (fmri modality), or a dsrpipe Parquet series (timeseries modality) that you combine "
            "beforehand, e.g. the BOLD file from `dsrpipe preprocess --modality fmri` plus a behaviour file "
            "on its grid from `dsrpipe preprocess --modality behaviour --reference BOLD.parquet`, joined with "
            "`dsrpipe merge BOLD.parquet BEHAVIOUR.parquet --out SUBJECT.parquet` (see README, "
            "'Multimodal training')."
        )
    for row in SUBJECTS.itertuples():
        if row.modality != "timeseries" and row.dt is not None:
            raise ValueError(f"{config['subjects']}: subject {row.subject}: dt is only for timeseries rows; "
                             f"{row.modality} recordings carry their own sampling interval (fmri.tr for ROI tables)")
        if row.modality != "fmri" and (row.atlas or row.masks or row.confounds):
            raise ValueError(f"{config['subjects']}: subject {row.subject}: atlas, masks and confounds are "
                             f"fMRI options, not for modality {row.modality}")
SUBJECTS = SUBJECTS.set_index("subject", drop=False)


wildcard_constraints:
    subject="|".join(SUBJECTS["subject"]),
    model="|".join(map(re.escape, SETTINGS)),
    seed=r"\d+",
    modality="|".join(MODALITIES),


PREPARED_TRAIN = str(paths.prepared("{subject}", "train", RESULTS))
PREPARED_TEST = str(paths.prepared("{subject}", "test", RESULTS))
PREPROCESSED = str(paths.preprocessed("{subject}", "{modality}", RESULTS))
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
    "prepare": COMMON_CODE + package_code("preprocessing/__init__.py", "preprocessing/common.py"),
    "train": COMMON_CODE + package_code("training", "models", "observation.py", "evaluation_mtf.py"),
    "evaluate": COMMON_CODE + package_code("evaluation.py", "evaluation_mtf.py", "analysis", "models",
                                           "observation.py", "training/checkpoint.py", "training/mtf_model.py",
                                           "training/mtf_views.py"),
    "report": COMMON_CODE + package_code("reporting"),
}


# One GPU per training job when training runs on CUDA (SLURM: --gpus=1); none otherwise.
TRAIN_GPU = {"gpu": 1} if config["train"]["device"] == "cuda" else {}


def preprocess_code(wildcards):
    """The dispatcher and only the module of this subject's modality: editing eeg.py reruns EEG subjects."""
    modality_module = {"timeseries": [], "fmri": ["preprocessing/fmri.py", "preprocessing/behaviour.py"]}.get(
        wildcards.modality, [f"preprocessing/{wildcards.modality}.py"])  # fMRI ROI tables use behaviour's labels
    return CODE["prepare"] + package_code("preprocessing/dispatch.py", *modality_module)


def _recording(wildcards):
    row = SUBJECTS.loc[wildcards.subject]
    if row["modality"] != wildcards.modality:
        raise ValueError(f"sub-{wildcards.subject} is a {row['modality']} recording, not {wildcards.modality}")
    masks = [m.strip() for m in (row["masks"] or "").split(";") if m.strip()]
    return {"path": row["path"], "atlas": row["atlas"], "masks": masks, "confounds": row["confounds"],
            "session": row["session"], "dt": row["dt"], "participant": PARTICIPANTS.get(wildcards.subject, {})}


def recording_files(wildcards):
    """The recording and its option files that exist. A missing one is not an input, so it fails this
    subject's job with a message naming the file instead of stopping the whole workflow."""
    rec = _recording(wildcards)
    files = [rec["path"], rec["atlas"], *rec["masks"], rec["confounds"]]
    return [f for f in files if f is not None and Path(f).exists()]


def recording_options(wildcards):
    return _recording(wildcards)


def modality_config(wildcards):
    """Only this modality's config section (so changing eeg.* reruns EEG subjects only)."""
    return config.get(wildcards.modality, {}) if wildcards.modality != "timeseries" else {}


def prepare_input(wildcards):
    """Demo subjects are prepared from the simulated series, others from their preprocessed recording."""
    if DEMO:
        return SUBJECTS.loc[wildcards.subject, "path"]
    return PREPROCESSED.format(subject=wildcards.subject, modality=SUBJECTS.loc[wildcards.subject, "modality"])


def subject_dt(wildcards):
    return SUBJECTS.loc[wildcards.subject, "dt"]


def truth_input(wildcards):
    """Ground truth exists for demo subjects only."""
    return [f"resources/demo/sub-{wildcards.subject}_truth.json"] if DEMO else []


def all_runs(name):
    return expand(RUN_FILE(name), subject=SUBJECTS["subject"], model=list(SETTINGS), seed=SEEDS)


def available_runs():
    """Runs whose metrics exist now (subject, setting, seed), and those that are missing (failed or not run)."""
    done, missing = [], []
    for subject in SUBJECTS["subject"]:
        for setting in SETTINGS:
            for seed in SEEDS:
                metrics = RUN_FILE(paths.METRICS_FILE).format(subject=subject, model=setting, seed=seed)
                if Path(metrics).exists():
                    done.append((subject, setting, seed))
                else:
                    missing.append(f"sub-{subject} {setting} seed {seed} (see logs/sub-{subject}/)")
    return done, missing


def all_tests():
    return [PREPARED_TEST.format(subject=s) for s in SUBJECTS["subject"] for _ in SETTINGS for _ in SEEDS]
