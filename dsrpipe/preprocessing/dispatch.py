"""One preprocessing stage for every modality: a recording in, the dsrpipe Parquet series out.

:func:`preprocess_recording` picks the modality's module by name (a registry,
like the model registry), runs it with that modality's narrow config and
writes the result atomically, so training never sees where data came from.
The modality modules are imported only when used: reading a plain table does
not import MNE, nibabel or Neo.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from dsrpipe import DsrpipeError
from dsrpipe.io.timeseries import TimeSeries, load_series, write_timeseries
from dsrpipe.preprocessing.common import _sha256, check_data

log = logging.getLogger(__name__)

MODALITIES = ("eeg", "fmri", "spikes", "behaviour", "timeseries")
#: fMRI inputs with these suffixes are ready ROI tables (one column per ROI), not NIfTI images
ROI_TABLE_SUFFIXES = (".tsv", ".csv", ".parquet")


def _eeg(path: Path, *, subject: str, cfg: Any, **_: Any) -> TimeSeries:
    from dsrpipe.preprocessing.eeg import EEGConfig, preprocess_eeg

    return preprocess_eeg(path, cfg or EEGConfig(), subject=subject)


def _fmri(path: Path, *, subject: str, cfg: Any, atlas: Path | None, masks: Sequence[Path],
          confounds: Path | None, **_: Any) -> TimeSeries:
    from dsrpipe.preprocessing.fmri import FMRIConfig, extract_roi_timeseries, roi_table_timeseries

    cfg = cfg or FMRIConfig()
    if path.suffix.lower() not in ROI_TABLE_SUFFIXES:
        return extract_roi_timeseries(path, atlas_path=atlas, mask_paths=masks, cfg=cfg, subject=subject,
                                      confounds_path=confounds)
    if atlas is not None or masks or confounds is not None:
        raise DsrpipeError(f"{path}: an ROI table takes no atlas, masks or confounds (it is already ROI series)")
    return roi_table_timeseries(path, cfg=cfg, subject=subject)


def _spikes(path: Path, *, subject: str, cfg: Any, **_: Any) -> TimeSeries:
    from dsrpipe.preprocessing.spikes import SpikesConfig, bin_spike_trains

    return bin_spike_trains(path, cfg or SpikesConfig(), subject=subject)


def _behaviour(path: Path, *, subject: str, cfg: Any, reference: Path | None, **_: Any) -> TimeSeries:
    from dsrpipe.io.timeseries import read_timeseries
    from dsrpipe.preprocessing.behaviour import BehaviourConfig, preprocess_behaviour

    ref = None if reference is None else read_timeseries(reference, types=None)
    return preprocess_behaviour(path, cfg or BehaviourConfig(), subject=subject, reference=ref)


def _timeseries(path: Path, *, subject: str, dt: float | None, **_: Any) -> TimeSeries:
    ts = load_series(path, dt=dt, types=None)  # a dsrpipe series keeps its labels and inputs
    ts.subject = subject
    ts.meta.setdefault("provenance", {}).update({"source": str(path), "sha256": _sha256(path)})
    return ts


def config_class(modality: str) -> type:
    """The typed config of a modality's section (``eeg``, ``fmri``, ``spikes``, ``behaviour``)."""
    if modality == "eeg":
        from dsrpipe.preprocessing.eeg import EEGConfig as cls
    elif modality == "fmri":
        from dsrpipe.preprocessing.fmri import FMRIConfig as cls
    elif modality == "spikes":
        from dsrpipe.preprocessing.spikes import SpikesConfig as cls
    elif modality == "behaviour":
        from dsrpipe.preprocessing.behaviour import BehaviourConfig as cls
    else:
        raise DsrpipeError(f"modality {modality!r} has no config section; sections: eeg, fmri, spikes, behaviour")
    return cls


_READERS: dict[str, Callable[..., TimeSeries]] = {"eeg": _eeg, "fmri": _fmri, "spikes": _spikes,
                                                  "behaviour": _behaviour, "timeseries": _timeseries}


def preprocess_recording(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    modality: str,
    subject: str,
    eeg: Any = None,
    fmri: Any = None,
    spikes: Any = None,
    behaviour: Any = None,
    dt: float | None = None,
    session: str | None = None,
    atlas: str | os.PathLike | None = None,
    masks: Sequence[str | os.PathLike] = (),
    confounds: str | os.PathLike | None = None,
    reference: str | os.PathLike | None = None,
    participant: dict[str, Any] | None = None,
) -> TimeSeries:
    """Preprocess one recording with its modality's module and write it to ``out``.

    Parameters
    ----------
    path : path-like
        The recording: an EEG file (``eeg``), a 4-D NIfTI or a ready ROI table
        (``.tsv``/``.csv``/``.parquet``; ``fmri``), a Neo-readable file
        (``spikes``), an events or per-sample table (``behaviour``) or a T x N
        table (``timeseries``).
    out : path-like
        Parquet file to write (atomically: it appears complete or not at all).
    modality : {"eeg", "fmri", "spikes", "behaviour", "timeseries"}
    subject : str
    eeg, fmri, spikes, behaviour : EEGConfig, FMRIConfig, SpikesConfig, BehaviourConfig, optional
        The config of the modality used (default: the dataclass defaults);
        the others are ignored.
    dt : float, optional
        Sampling interval in seconds of a ``timeseries`` table (overrides a stored one).
    session : str, optional
        Kept in ``meta["recording"]``.
    atlas, masks, confounds : path-like, optional
        fMRI NIfTI only: label atlas or binary masks, and a confounds table.
    reference : path-like, optional
        Behaviour only: a preprocessed recording (dsrpipe Parquet) whose
        sampling interval and length the labels and inputs are aligned to.
    participant : dict, optional
        Covariates of the participant (a BIDS ``participants.tsv`` row), kept
        in ``meta["recording"]["participant"]``.

    Returns
    -------
    TimeSeries
        What was written: (T, N), ``dt`` in seconds, ``modality`` set,
        ``meta["recording"]`` with modality, session and option files, and
        ``channel_types`` (see :mod:`dsrpipe.io.timeseries`): an fMRI ROI
        table's ``input_*`` and ``label_*`` columns are ``input`` and ``label``
        channels after the BOLD ones, a behaviour table gives ``input``,
        ``label``, ``ordinal`` and ``continuous`` channels.

    Raises
    ------
    DsrpipeError
        Unknown modality, options that do not belong to the modality, or any
        problem with the file (the message names it); nothing is written.
    """
    if modality not in _READERS:
        raise DsrpipeError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    path = Path(path)
    masks = [Path(m) for m in masks]
    if modality != "fmri" and (atlas is not None or masks or confounds is not None):
        raise DsrpipeError(f"{path}: atlas, masks and confounds are fMRI options, not for modality {modality}")
    if modality != "behaviour" and reference is not None:
        raise DsrpipeError(f"{path}: a reference recording is a behaviour option, not for modality {modality}")
    if modality != "timeseries" and dt is not None:
        raise DsrpipeError(f"{path}: dt is only for timeseries tables; modality {modality} "
                           "carries its own sampling interval (fmri.tr for ROI tables)")
    if not path.is_file():
        raise DsrpipeError(f"{path}: {modality} recording not found")
    cfg = {"eeg": eeg, "fmri": fmri, "spikes": spikes, "behaviour": behaviour}.get(modality)
    ts = _READERS[modality](path, subject=subject, cfg=cfg, dt=dt, atlas=None if atlas is None else Path(atlas),
                            masks=masks, confounds=None if confounds is None else Path(confounds),
                            reference=None if reference is None else Path(reference))
    check_data(ts.data, list(ts.channels), source=str(path), min_samples=2, channel_types=ts.channel_types)
    ts.meta["recording"] = {"modality": modality, "session": session, "source": str(path),
                            "atlas": None if atlas is None else str(atlas), "masks": [str(m) for m in masks],
                            "confounds": None if confounds is None else str(confounds),
                            "reference": None if reference is None else str(reference),
                            "participant": participant or {}}
    write_timeseries(ts, out)
    log.info("%s: %s, %d samples x %d channels, dt %s s -> %s", path, modality, ts.n_samples, ts.n_channels,
             ts.dt, out)
    return ts
