"""Atomic file creation: write under a temporary name in the target directory, then rename.

``os.replace`` within one directory is atomic on POSIX, so readers (and a user who interrupts
the mapper) only ever see either the previous complete file or the new complete file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to ``path`` (``mode`` "w" or "wb"); on a clean exit it is
    flushed, synced and renamed to ``path``, on an exception it is removed."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide outputs from other users
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": "\n"} if mode == "w"
                                    else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
