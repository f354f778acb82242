"""Peak memory of training and of EEG preprocessing, each in a fresh subprocess.

(a) Training memory does not grow with the number of epochs: ``dsrpipe train`` on the
    same prepared data with ``--epochs`` A and B (default 10 and 100), on the fused
    Numba path and on the PyTorch path; the peak resident set sizes should agree.
(b) A 64-channel, 1-hour EEG at 200 Hz (synthesised with MNE: pink-ish noise plus
    an alpha rhythm, written as FIF, float32 on disk) through
    ``dsrpipe preprocess --modality eeg`` with the default EEG settings (average
    reference, 50 Hz notch, 0.5-40 Hz band-pass, resampling to 128 Hz). The peak is
    printed next to the size of the raw data at float64 (what MNE holds in memory)
    and the baseline of a process that only imports dsrpipe and MNE.

Peak RSS comes from ``os.wait4`` on each child (Linux ``ru_maxrss``, KiB), so every
number belongs to one command alone.

    python benchmarks/memory.py [--part train|eeg|all] [--epochs 10 100] [--minutes 60] [--eeg-set KEY=VALUE ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MiB = 1024 * 1024
N_CHANNELS, SFREQ = 64, 200.0


def peak_rss(cmd: list[str], **kwargs) -> tuple[float, float]:
    """Run ``cmd``; (peak RSS in MiB, wall s). Raises with its stderr if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs)
    err_file = proc.stderr
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = err_file.read()
    err_file.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    return usage.ru_maxrss * 1024 / MiB, time.perf_counter() - t0


def dsrpipe_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dsrpipe.cli", *args]


def part_train(tmp: Path, epochs: tuple[int, int]) -> None:
    from dsrpipe.systems import simulate_lorenz63

    x = simulate_lorenz63(20_000, dt=0.01, seed=1)
    np.save(tmp / "lorenz.npy", x)
    train, test = tmp / "train.parquet", tmp / "test.parquet"
    subprocess.run(dsrpipe_cmd("prepare", str(tmp / "lorenz.npy"), "--subject", "01", "--train-out", str(train),
                               "--test-out", str(test)), check=True, capture_output=True)
    print(f"(a) training peak RSS, 20,000 x 3 Lorenz-63 samples, shPLRNN M 3 L 50, batch 16 x 75, "
          f"epochs {epochs[0]} vs {epochs[1]}")
    for backend, batches in (("numba", 20), ("torch", 4)):
        rows = []
        for n in epochs:
            run = tmp / f"run-{backend}-{n}"
            rss, wall = peak_rss(dsrpipe_cmd("train", str(train), "--out", str(run), "--set", f"epochs={n}",
                                             f"batches_per_epoch={batches}", f"backend={backend}",
                                             "checkpoint_every=0"))
            rows.append(rss)
            print(f"    {backend:<6} {n:>5} epochs x {batches} steps: peak RSS {rss:7.1f} MiB ({wall:.0f} s)",
                  flush=True)
        print(f"    {backend:<6} difference {rows[1] - rows[0]:+.1f} MiB ({(rows[1] / rows[0] - 1) * 100:+.1f} %)")


SYNTH = """
import sys, numpy as np, mne
from scipy.signal import lfilter
path, minutes = sys.argv[1], float(sys.argv[2])
n, sfreq = {n}, {sfreq}
T = int(round(minutes * 60 * sfreq))
rng = np.random.default_rng(0)
data = np.empty((n, T))
t = np.arange(T) / sfreq
for i in range(n):  # AR(1) noise (1/f^2 above ~0.3 Hz) plus a 10 Hz rhythm and white noise, ~10 uV
    white = rng.standard_normal(T)
    red = lfilter([1.0], [1.0, -0.99], white)
    data[i] = 1e-6 * (5 * red / red.std() + 10 * np.sin(2 * np.pi * 10 * t + i) + 2 * white)
ch = [f"EEG{{i:03d}}" for i in range(n)]
raw = mne.io.RawArray(data, mne.create_info(ch, sfreq, "eeg"), verbose="error")
raw.save(path, overwrite=True, verbose="error")
"""


def _synth(path: Path, minutes: float) -> None:
    if not path.exists():
        subprocess.run([sys.executable, "-c", SYNTH.format(n=N_CHANNELS, sfreq=SFREQ), str(path), str(minutes)],
                       check=True)


def part_eeg(tmp: Path, minutes: float, settings: list[str]) -> None:
    """Peak RSS of the 1-hour recording and of a 1-minute one (the fixed cost: imports, MNE, pyarrow)."""
    rows = []
    for length in (1.0, minutes):
        fif = tmp / f"sub-{length:g}min_eeg.fif"
        t0 = time.perf_counter()
        _synth(fif, length)
        n_samples = round(length * 60 * SFREQ)
        raw64 = N_CHANNELS * n_samples * 8 / MiB
        out = tmp / f"sub-{length:g}min_desc-preproc_eeg.parquet"
        extra = ["--set", *settings] if settings else []
        rss, wall = peak_rss(dsrpipe_cmd("preprocess", "--modality", "eeg", str(fif), "--out", str(out),
                                         "--subject", "01", *extra))
        rows.append((rss, raw64))
        print(f"(b) EEG {N_CHANNELS} channels x {length:g} min at {SFREQ:g} Hz ({n_samples:,} samples; FIF "
              f"{fif.stat().st_size / MiB:.0f} MiB on disk, {raw64:.0f} MiB at float64): dsrpipe preprocess "
              f"--modality eeg peak RSS {rss:.0f} MiB, {wall:.0f} s (data written {time.perf_counter() - t0:.0f} s "
              f"before); output {out.stat().st_size / MiB:.0f} MiB", flush=True)
    (short, short64), (long_, long64) = rows
    print(f"    peak = {long_:.0f} MiB = {long_ / long64:.2f} x the raw data at float64; above the short "
          f"recording's fixed cost: {(long_ - short) / (long64 - short64):.2f} x the raw data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("train", "eeg", "all"), default="all")
    parser.add_argument("--epochs", type=int, nargs=2, default=(10, 100))
    parser.add_argument("--minutes", type=float, default=60.0, help="EEG recording length")
    parser.add_argument("--eeg-set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="EEG settings for preprocess (e.g. resample_hz=null)")
    parser.add_argument("--keep", help="work in this directory (kept) instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.keep or scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        if args.part in ("train", "all"):
            part_train(tmp, tuple(args.epochs))
        if args.part in ("eeg", "all"):
            part_eeg(tmp, args.minutes, args.eeg_set)


if __name__ == "__main__":
    main()
