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
    from dsrpipe.config import subject_covariate_columns

    if not BIDS:  # extra columns are covariates; a misspelt known column is an error
        subject_covariate_columns(SUBJECTS.columns, config["subjects"])
    validate(SUBJECTS, schema="../schemas/subjects.schema.yaml")
    SUBJECTS = SUBJECTS.astype(object).where(SUBJECTS.notna(), None)  # validate() turns None back into NaN
    repeated = SUBJECTS[SUBJECTS.duplicated(["subject", "modality"], keep=False)]
    if len(repeated):
        rows = "; ".join(f"sub-{subject} {modality}: rows {', '.join(str(i + 1) for i in g.index)} "
                         f"({', '.join(g['path'])})"
                         for (subject, modality), g in repeated.groupby(["subject", "modality"], sort=False))
        raise ValueError(  # rows counted from 1, the header not counted
            f"{config['subjects'] or config['bids']['root']}: several rows of the same modality for one subject: "
            f"{rows}. A subject has one recording per modality (several modalities make it multimodal, "
            "joined for train.method: mtf). Keep one of the rows, or give the other recording its own subject "
            "label, or join same-modality recordings beforehand into one table."
        )
    for row in SUBJECTS.itertuples():
        if row.modality != "timeseries" and row.dt is not None:
            raise ValueError(f"{config['subjects']}: subject {row.subject}: dt is only for timeseries rows; "
                             f"{row.modality} recordings carry their own sampling interval (fmri.tr for ROI tables)")
        if row.modality != "fmri" and (row.atlas or row.masks or row.confounds):
            raise ValueError(f"{config['subjects']}: subject {row.subject}: atlas, masks and confounds are "
                             f"fMRI options, not for modality {row.modality}")
# Every row: one recording, preprocessed by its modality (outputs named by subject and modality).
RECORDINGS = SUBJECTS.set_index(["subject", "modality"], drop=False)
# One row per subject. A subject with several rows (modalities) is multimodal: its recordings are
# preprocessed row by row, behaviour rows on the grid of the subject's neural recording, and merged into
# one typed series (rule merge_recordings) that prepare_data reads. Its modality (reports, group table) is
# the first non-behaviour row's, as merge keeps it.
_NEURAL_FIRST = SUBJECTS.assign(_behaviour=SUBJECTS["modality"].eq("behaviour")).sort_values("_behaviour", kind="stable")
MULTIMODAL = {s: list(g["modality"]) for s, g in _NEURAL_FIRST.groupby("subject", sort=False) if len(g) > 1}
SUBJECTS = _NEURAL_FIRST.drop(columns="_behaviour").drop_duplicates("subject").set_index("subject", drop=False)
SUBJECTS = SUBJECTS.loc[pd.unique(RECORDINGS["subject"])]  # the table's subject order


wildcard_constraints:
    subject="|".join(SUBJECTS["subject"]),
    model="|".join(map(re.escape, SETTINGS)),
    seed=r"\d+",
    modality="|".join(MODALITIES),


PREPARED_TRAIN = str(paths.prepared("{subject}", "train", RESULTS))
PREPARED_TEST = str(paths.prepared("{subject}", "test", RESULTS))
PREPROCESSED = str(paths.preprocessed("{subject}", "{modality}", RESULTS))
MERGED = str(paths.merged("{subject}", RESULTS))
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
    key = (wildcards.subject, wildcards.modality)
    if key not in RECORDINGS.index:
        kinds = ", ".join(RECORDINGS.loc[[wildcards.subject], "modality"])
        raise ValueError(f"sub-{wildcards.subject} has no {wildcards.modality} recording (only {kinds})")
    row = RECORDINGS.loc[key]
    masks = [m.strip() for m in (row["masks"] or "").split(";") if m.strip()]
    rec = {"path": row["path"], "atlas": row["atlas"], "masks": masks, "confounds": row["confounds"],
           "session": row["session"], "dt": row["dt"], "participant": PARTICIPANTS.get(wildcards.subject, {})}
    reference = behaviour_reference(wildcards.subject, wildcards.modality)
    if reference is not None:  # only then (a new params key would rerun every existing preprocess job)
        rec["reference"] = reference
    return rec


def behaviour_reference(subject, modality):
    """A multimodal subject's behaviour row is put on the grid of its neural recording (the first other row):
    labels and inputs by zero-order hold, continuous measures by linear interpolation."""
    if modality != "behaviour" or subject not in MULTIMODAL:
        return None
    return PREPROCESSED.format(subject=subject, modality=MULTIMODAL[subject][0])


def recording_files(wildcards):
    """The recording and its option files that exist. A missing one is not an input, so it fails this
    subject's job with a message naming the file instead of stopping the whole workflow."""
    rec = _recording(wildcards)
    files = [rec["path"], rec["atlas"], *rec["masks"], rec["confounds"]]
    present = [f for f in files if f is not None and Path(f).exists()]
    return present + ([rec["reference"]] if "reference" in rec else [])  # built by this workflow


def recording_options(wildcards):
    return _recording(wildcards)


def modality_config(wildcards):
    """Only this modality's config section (so changing eeg.* reruns EEG subjects only)."""
    return config.get(wildcards.modality, {}) if wildcards.modality != "timeseries" else {}


def prepare_input(wildcards):
    """Demo subjects are prepared from the simulated series, others from their preprocessed recording."""
    if DEMO:
        return SUBJECTS.loc[wildcards.subject, "path"]
    if wildcards.subject in MULTIMODAL:
        return MERGED.format(subject=wildcards.subject)
    return PREPROCESSED.format(subject=wildcards.subject, modality=SUBJECTS.loc[wildcards.subject, "modality"])


def merge_inputs(wildcards):
    """A multimodal subject's preprocessed recordings, the neural one first (its modality is kept)."""
    return [PREPROCESSED.format(subject=wildcards.subject, modality=m) for m in MULTIMODAL[wildcards.subject]]


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
