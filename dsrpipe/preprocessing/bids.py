"""BIDS mode: find the EEG and BOLD recordings of a BIDS dataset and build the subjects table from them.

File discovery is mne-bids' (:func:`mne_bids.find_matching_paths`), which
parses BIDS entities for every datatype, so nothing BIDS-specific is
hand-rolled here; pybids would add a SQL index and a heavier dependency for
the same queries. ``participants.tsv`` gives per-subject covariates.

The result is the same table as a hand-written subjects TSV (columns
``subject``, ``session``, ``modality``, ``path``, ``atlas``, ``masks``,
``confounds``, ``dt``), so BIDS subjects become Snakemake wildcards through the
same path; one row per recording. A subject with recordings of two
datatypes gives two rows (a multimodal subject); two recordings of one
datatype (several sessions, tasks or runs) are an error that names them and
the key that narrows the selection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dsrpipe import DsrpipeError

log = logging.getLogger(__name__)

#: BIDS datatype -> (dsrpipe modality, BIDS suffix, file extensions read)
DATATYPES = {
    "eeg": ("eeg", "eeg", (".edf", ".bdf", ".vhdr", ".set", ".fif")),
    "func": ("fmri", "bold", (".nii.gz", ".nii")),
}
TABLE_COLUMNS = ("subject", "session", "modality", "path", "atlas", "masks", "confounds", "dt")


def _labels(value: Any, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, int)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise DsrpipeError(f"bids.{key} must be a list of labels or null, got {value!r}")
    return tuple(str(v).split("-", 1)[1] if str(v).startswith(("sub-", "ses-", "run-")) else str(v) for v in value)


@dataclass(frozen=True)
class BIDSConfig:
    """Which recordings of a BIDS dataset the workflow processes.

    Attributes
    ----------
    root : str or None
        The dataset root (with ``participants.tsv`` and ``sub-*`` folders), or
        an fMRIPrep derivatives folder; None: BIDS mode off.
    datatypes : tuple of str
        ``eeg`` (``*_eeg.edf|bdf|vhdr|set|fif``) and/or ``func``
        (``*_bold.nii.gz``).
    task : str or None
        Only recordings of this task (None: any).
    subjects, sessions, runs : tuple of str or None
        Only these labels (without ``sub-``/``ses-``/``run-``; None: all).
    space : str or None
        Only BOLD files with this ``space-`` entity (fMRIPrep derivatives).
    atlas : str or None
        ``func``: the 3-D label atlas on the BOLD grid for every subject
        (e.g. in the space named by ``space``); BOLD needs it.
    """

    root: str | None = None
    datatypes: tuple[str, ...] = ("eeg", "func")
    task: str | None = None
    subjects: tuple[str, ...] | None = None
    sessions: tuple[str, ...] | None = None
    runs: tuple[str, ...] | None = None
    space: str | None = None
    atlas: str | None = None

    def __post_init__(self) -> None:
        datatypes = self.datatypes if isinstance(self.datatypes, (list, tuple)) else [self.datatypes]
        object.__setattr__(self, "datatypes", tuple(str(d) for d in datatypes))
        if unknown := sorted(set(self.datatypes) - set(DATATYPES)):
            raise DsrpipeError(f"bids.datatypes: unknown {unknown}; expected {', '.join(DATATYPES)}")
        if not self.datatypes:
            raise DsrpipeError("bids.datatypes must not be empty")
        for key in ("subjects", "sessions", "runs"):
            object.__setattr__(self, key, _labels(getattr(self, key), key))


def read_participants(root: Path) -> pd.DataFrame:
    """``participants.tsv`` indexed by subject label (without ``sub-``); empty if absent."""
    path = root / "participants.tsv"
    if not path.is_file():
        log.info("%s: no participants.tsv; no covariates", root)
        return pd.DataFrame(index=pd.Index([], name="subject"))
    try:
        df = pd.read_csv(path, sep="\t", na_values=["n/a"], dtype={"participant_id": str})
    except Exception as exc:
        raise DsrpipeError(f"{path}: cannot read participants table ({type(exc).__name__}: {exc})") from exc
    if "participant_id" not in df.columns:
        raise DsrpipeError(f"{path}: no participant_id column")
    df["subject"] = df.pop("participant_id").str.replace(r"^sub-", "", regex=True)
    return df.set_index("subject")


def discover(cfg: BIDSConfig) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """The recordings of a BIDS dataset as a subjects table, and each subject's covariates.

    Returns
    -------
    table : DataFrame
        One row per recording with :data:`TABLE_COLUMNS` (paths absolute),
        sorted by subject and modality.
    covariates : dict
        Subject label -> its ``participants.tsv`` row (JSON-ready; missing
        values as None).

    Raises
    ------
    DsrpipeError
        No root or no such folder, no matching recording, a requested subject
        without recordings, two recordings of one subject and datatype, BOLD
        without ``bids.atlas``, an atlas file that does not exist.
    """
    import mne_bids

    if cfg.root is None:
        raise DsrpipeError("bids.root is not set")
    root = Path(cfg.root)
    if not root.is_dir():
        raise DsrpipeError(f"{root}: BIDS root (bids.root) not found")
    if "func" in cfg.datatypes:
        if cfg.atlas is None:
            raise DsrpipeError(f"{root}: BOLD recordings (bids.datatypes: func) need bids.atlas, a label atlas "
                               "on the BOLD grid")
        if not Path(cfg.atlas).is_file():
            raise DsrpipeError(f"{cfg.atlas}: atlas (bids.atlas) not found")
    rows = []
    for datatype in cfg.datatypes:
        modality, suffix, extensions = DATATYPES[datatype]
        paths = mne_bids.find_matching_paths(
            root, subjects=list(cfg.subjects) if cfg.subjects else None,
            sessions=list(cfg.sessions) if cfg.sessions else None, tasks=cfg.task, runs=list(cfg.runs) if cfg.runs
            else None, spaces=cfg.space if datatype == "func" else None, datatypes=datatype, suffixes=suffix,
            extensions=list(extensions))
        for bp in paths:
            rows.append({"subject": bp.subject, "session": bp.session, "modality": modality,
                         "path": str(bp.fpath.resolve()), "atlas": cfg.atlas if modality == "fmri" else None,
                         "masks": None, "confounds": None, "dt": None, "_name": bp.fpath.name})
    if not rows:
        raise DsrpipeError(f"{root}: no recordings match bids.datatypes={list(cfg.datatypes)}, task={cfg.task}, "
                           f"subjects={cfg.subjects}, sessions={cfg.sessions}, runs={cfg.runs}")
    table = pd.DataFrame(rows).sort_values(["subject", "modality", "_name"], ignore_index=True)
    repeated = table[table.duplicated(["subject", "modality"], keep=False)]
    if len(repeated):
        names = "; ".join(f"sub-{s} {m}: {', '.join(g['_name'])}" for (s, m), g in repeated.groupby(
            ["subject", "modality"]))
        raise DsrpipeError(f"{root}: several recordings of one subject and modality ({names}); choose one with "
                           "bids.task, bids.sessions or bids.runs")
    if cfg.subjects and (absent := sorted(set(cfg.subjects) - set(table["subject"]))):
        raise DsrpipeError(f"{root}: no matching recordings for bids.subjects {absent}")
    participants = read_participants(root)
    covariates = {}
    for subject in table["subject"].unique():
        row = participants.loc[subject] if subject in participants.index else pd.Series(dtype=object)
        covariates[subject] = {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
                               for k, v in row.items()}
    log.info("%s: %d recording(s) of %d subject(s)", root, len(table), table["subject"].nunique())
    table = table.drop(columns="_name")[list(TABLE_COLUMNS)]
    return table.astype(object).where(table.notna(), None), covariates


def discover_from_mapping(section: dict[str, Any] | None) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """:func:`discover` from the ``bids`` config section (for the workflow)."""
    from dsrpipe.config import from_mapping

    return discover(from_mapping(BIDSConfig, section, "bids"))

