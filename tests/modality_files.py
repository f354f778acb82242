"""Small real recordings written with the modality libraries themselves (MNE, nibabel, Neo).

Sizes are tiny on purpose: the workflow test trains one model per file.
"""

from pathlib import Path

import numpy as np

EEG_CHANNELS = ["Fp1", "Fp2", "F3", "F4", "Cz", "Pz", "O1", "O2"]
EEG_SFREQ, EEG_SECONDS = 256.0, 20.0
FMRI_SHAPE, FMRI_VOLUMES, FMRI_TR = (6, 6, 4), 150, 2.0
SPIKE_UNITS, SPIKE_SECONDS = ("a", "b", "c"), 60.0


def write_eeg(path: Path, seed: int = 0) -> Path:
    """8 channels, 20 s at 256 Hz (a 10 Hz rhythm, a slower one, noise) as FIF."""
    import mne

    rng = np.random.default_rng(seed)
    t = np.arange(int(EEG_SFREQ * EEG_SECONDS)) / EEG_SFREQ
    phase = rng.uniform(0, 2 * np.pi, size=(2, len(EEG_CHANNELS), 1))
    data = (np.sin(2 * np.pi * 10 * t + phase[0]) + 0.5 * np.sin(2 * np.pi * 3 * t + phase[1])
            + 0.2 * rng.normal(size=(len(EEG_CHANNELS), t.size)))
    raw = mne.io.RawArray(1e-5 * data, mne.create_info(EEG_CHANNELS, EEG_SFREQ, "eeg"), verbose="error")
    raw.save(path, overwrite=True, verbose="error")
    return path


def write_fmri(directory: Path, stem: str = "sub-01", seed: int = 0) -> tuple[Path, Path]:
    """A 6 x 6 x 4 x 150 BOLD image (TR 2 s) with three planted ROI signals and its label atlas."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    atlas = np.zeros(FMRI_SHAPE, dtype=np.int16)
    atlas[:3, :, :2], atlas[3:, :3, :], atlas[3:, 3:, 2:] = 1, 2, 3
    t = np.arange(FMRI_VOLUMES) * FMRI_TR
    signals = np.column_stack([np.sin(2 * np.pi * f * t + k) for k, f in enumerate((0.03, 0.05, 0.08))])
    bold = 100 + 0.3 * rng.normal(size=FMRI_SHAPE + (FMRI_VOLUMES,))
    for j in range(3):
        bold[atlas == j + 1] += signals[:, j]
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    bold_img = nib.Nifti1Image(bold.astype(np.float32), affine)
    bold_img.header.set_xyzt_units("mm", "sec")
    bold_img.header.set_zooms((3.0, 3.0, 3.0, FMRI_TR))
    paths = directory / f"{stem}_bold.nii.gz", directory / f"{stem}_atlas.nii.gz"
    nib.save(bold_img, str(paths[0]))
    nib.save(nib.Nifti1Image(atlas, affine), str(paths[1]))
    return paths


def write_spikes(path: Path, seed: int = 0) -> Path:
    """Three Poisson units (5, 10, 20 Hz) over 60 s in one segment, as a NeoMatlabIO .mat file."""
    import neo
    import quantities as pq
    from neo.io import NeoMatlabIO

    rng = np.random.default_rng(seed)
    seg = neo.Segment()
    for unit, rate in zip(SPIKE_UNITS, (5.0, 10.0, 20.0)):
        times = np.sort(rng.uniform(0, SPIKE_SECONDS, size=int(rate * SPIKE_SECONDS)))
        seg.spiketrains.append(neo.SpikeTrain(times * pq.s, t_start=0 * pq.s, t_stop=SPIKE_SECONDS * pq.s,
                                              name=unit))
    block = neo.Block(name="session")
    block.segments.append(seg)
    NeoMatlabIO(str(path)).write_block(block)
    return path


def task_cue(n: int) -> np.ndarray:
    """The task input at volume k: 1 on the first 3 of every 15 volumes."""
    return (np.arange(n) % 15 < 3).astype(int)


def task_phase(n: int) -> np.ndarray:
    """The task phase at volume k: 0 and 1 alternating every 25 volumes."""
    return (np.arange(n) // 25) % 2


def write_roi_table(path: Path, seed: int = 0, blocks: int = 2, volumes: int = 75, task: bool = True) -> Path:
    """An NBKO-like ROI table: block, volume, three ROI series and (``task``) one task input and a one-hot
    2-phase label."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = blocks * volumes
    t = np.arange(n) * FMRI_TR
    cue = task_cue(n)
    df = pd.DataFrame({"block": np.repeat(np.arange(1, blocks + 1), volumes),
                       "volume": np.tile(np.arange(1, volumes + 1), blocks)})
    for k, f in enumerate((0.03, 0.05, 0.08)):
        df[f"roi_{k + 1:02d}"] = np.sin(2 * np.pi * f * t + k) + 0.5 * cue + 0.2 * rng.normal(size=n)
    if task:
        df["input_cue"] = cue
        phase = task_phase(n)
        df["label_1"], df["label_2"] = (phase == 0).astype(int), (phase == 1).astype(int)
    df.to_csv(path, sep="\t", index=False)
    return path


def write_task_samples(path: Path, volumes: int = 150, tr: float = FMRI_TR, step: float = 0.5) -> Path:
    """The task of :func:`write_roi_table` as its own per-sample behaviour table, sampled every ``step`` s
    (finer than the TR): time, input_cue and a text label_phase (``encode``/``hold``), constant within a volume."""
    import pandas as pd

    t = step * np.arange(round(volumes * tr / step))
    volume = np.floor(t / tr + 1e-9).astype(int)
    pd.DataFrame({"time": t, "input_cue": task_cue(volumes)[volume],
                  "label_phase": np.array(["encode", "hold"])[task_phase(volumes)[volume]]}).to_csv(
        path, sep="\t", index=False)
    return path


def write_behaviour_samples(path: Path, seed: int = 0, n: int = 400, dt: float = 0.05) -> Path:
    """A per-sample behaviour table: time, three continuous measures, a light input and a text label."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    t = dt * np.arange(n)
    pd.DataFrame({"time": t, "speed": np.sin(2 * np.pi * 0.5 * t) + 0.1 * rng.normal(size=n),
                  "pupil": np.cos(2 * np.pi * 0.3 * t) + 0.1 * rng.normal(size=n),
                  "lick": np.sin(2 * np.pi * 0.9 * t + 1) + 0.1 * rng.normal(size=n),
                  "input_light": (t % 4 < 1).astype(int),
                  "label_state": np.where(t % 6 < 3, "rest", "run")}).to_csv(path, sep="\t", index=False)
    return path
