"""Why a run has no results: the error its first failed job wrote to its log.

Every workflow job logs to ``logs/sub-<id>/<stage>.log`` (see the rules'
``log:``) and records its error there before failing (``dsrpipe.cli.logged``).
The group report of what is available (``snakemake report_available``) lists
each missing run with that message, so one read of the report says which
subjects failed, in which stage and why.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: an error record of dsrpipe's log format: ``HH:MM:SS ERROR <logger>: <message>``
_ERROR = re.compile(r"^\S+ ERROR [\w.]+: (.*)$")


def log_error(path: str | os.PathLike) -> str | None:
    """The first error message in a job's log file, or None when it holds none.

    An unexpected exception (logged as ``unexpected error`` with its traceback)
    is summarised by the traceback's last line.
    """
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for i, line in enumerate(lines):
        match = _ERROR.match(line)
        if match:
            message = match.group(1).strip()
            if message == "unexpected error":
                tail = [t.strip() for t in lines[i + 1:] if t.strip()]
                message = f"unexpected error: {tail[-1]}" if tail else message
            return message
    tail = [t.strip() for t in lines if t.strip()]
    if any(t.startswith("Traceback") for t in tail):  # a crash before logging was set up
        return tail[-1]
    return None


def describe_missing_run(subject: str, setting: str, seed: int | str, modality: str | None,
                         logs: str | os.PathLike = "logs") -> str:
    """``sub-<id> <setting> seed <n>: <stage> failed: <message> (<log file>)``, or why nothing is known.

    The stages are looked at in pipeline order (preprocess, of every recording
    of a multimodal subject, its own modality first; merge; prepare, train,
    evaluate); the first whose log holds an error is the cause.
    """
    folder = Path(logs) / f"sub-{subject}"
    run = f"sub-{subject} {setting} seed {seed}"
    own = f"preprocess_{modality or 'timeseries'}.log"
    others = sorted(p.name for p in folder.glob("preprocess_*.log") if p.name != own)
    stages = [*(("preprocess", name) for name in (own, *others)), ("merge", "merge.log"),
              ("prepare", "prepare.log"), ("train", f"model-{setting}_seed-{seed}_train.log"),
              ("evaluate", f"model-{setting}_seed-{seed}_evaluate.log")]
    for stage, name in stages:
        message = log_error(folder / name)
        if message is not None:
            return f"{run}: {stage} failed: {message} ({folder / name})"
    return f"{run}: no results and no error in {folder}/ (not run yet, or killed: rerun the workflow)"
