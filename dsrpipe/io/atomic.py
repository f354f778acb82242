"""Atomic file writes: an output either appears complete or not at all.

Snakemake treats any existing output as done, so every writer in dsrpipe
writes to a temporary file in the same folder and renames it into place.

The temporary name is unique per writer, ``.<name>.<host>.<pid>.<random>.tmp``:
two processes (or two nodes sharing the folder) never write the same
temporary file, and the hidden name never matches an output. A writer
killed mid-write (SIGKILL, node failure) leaves its temporary file behind;
the next write of the same target removes such leftovers first
(:func:`remove_stale_temporaries`): those of a process on this host that no
longer runs, and those of another host (or of an older dsrpipe, without a
pid in the name) not modified for :data:`STALE_AFTER_S` seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

logger = logging.getLogger(__name__)

#: a temporary file of another host (whose processes we cannot see) is stale after this many seconds
STALE_AFTER_S = 3600.0


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: the process's umask, read once at import (reading it means setting it, which is not thread-safe)
_UMASK = _read_umask()


def default_mode(directory: bool = False) -> int:
    """The mode ``open()`` (``mkdir()``) gives a new file (folder) under the process's umask;
    the tempfile module makes 0600 files and 0700 folders instead, which colleagues cannot read."""
    return (0o777 if directory else 0o666) & ~_UMASK


def _host() -> str:
    """This machine's name, reduced to characters safe in a file name."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike, *, now: float | None = None) -> list[Path]:
    """Delete leftover temporary files of ``path`` written by processes that are gone.

    Parameters
    ----------
    path : path-like
        The target file (its temporaries are ``.<name>.*.tmp`` beside it).
    now : float, optional
        Current time (seconds since the epoch), for tests.

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    now = time.time() if now is None else now
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.(?:(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.)?"
                         r"[A-Za-z0-9_]+\.tmp$")
    host = _host()
    removed = []
    for candidate in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        match = pattern.match(candidate.name)
        if match is None:
            continue
        try:
            if match["host"] == host:
                stale = not _pid_alive(int(match["pid"]))
            else:  # another node (shared file system) or an older name without host and pid
                stale = now - candidate.stat().st_mtime > STALE_AFTER_S
            if stale:
                candidate.unlink()
                removed.append(candidate)
        except FileNotFoundError:  # its writer just renamed or removed it
            continue
    if removed:
        logger.info("removed %d stale temporary file(s) of %s: %s", len(removed), path,
                    ", ".join(p.name for p in removed))
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped (``[*]``, ``[?]``, ``[[]``)."""
    return re.sub(r"([*?\[])", r"[\1]", name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` left as it was; stale
    temporaries of ``path`` from killed writers are removed first (see the module docstring).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host()}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, default_mode())  # not mkstemp's 0600
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_default, allow_nan=True) + "\n")
