"""A mapping run's output folder, replaced as a whole: never a mix of two runs.

Why: the outputs (trajectory, map, COLMAP model, bag, report, summary) describe one run
together. Written one by one into the folder, an interrupted run left new files beside an
earlier run's. Here every file is written into a hidden sibling folder, and only the complete
set is swapped in by two renames, with SIGINT/SIGTERM held back between them. A run that is
aborted removes its sibling and leaves the earlier set untouched. (Only a hard kill between the
two renames, microseconds, can leave the earlier set in ``.NAME.old-RUN`` beside it.)
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Collection, Iterator

HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class OutputError(RuntimeError):
    """The output folder cannot be written (the message names the folder and what to fix)."""


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT/SIGTERM wait (are delivered afterwards) while the body runs."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _staging(final: Path, kind: str) -> Path:
    """A new hidden sibling of ``final``; OutputError naming ``final`` when it cannot be made."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{final.name}.{kind}-", dir=final.parent))
    except OSError as exc:
        raise OutputError(f"cannot write the output folder {final}: {exc.strerror or exc} in "
                          f"{final.parent}; choose another --out or fix its permissions"
                          ) from exc


class OutputSet:
    """Stage a run's files in :attr:`dir`; :meth:`commit` swaps them in, :meth:`abort` drops
    them. ``names`` are the entries an output set may hold: an existing folder holding
    anything else is refused rather than replaced (it is not an earlier run's set)."""

    def __init__(self, final: str | os.PathLike, names: Collection[str]) -> None:
        self.final = Path(final)
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        check_output_folder(self.final, names)
        self.dir = _staging(self.final, "partial")

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """An OSError about a staged file (disk full, permissions) comes out as an OutputError
        naming the output folder: the user knows that one, not the hidden sibling."""
        try:
            yield
        except OSError as exc:
            names = (str(exc.filename or ""), str(exc.filename2 or ""))
            if not any(name.startswith(str(self.dir)) for name in names):
                raise
            raise OutputError(f"cannot write the output folder {self.final}: "
                              f"{exc.strerror or exc}; free space, fix its permissions or "
                              f"choose another --out") from exc

    def commit(self) -> Path:
        """Put the staged set in place of any earlier one; returns the final folder."""
        with _signals_held():
            old = None
            if self.final.exists():
                old = self.final.with_name(f".{self.final.name}.old-{self.run_id}")
                os.rename(self.final, old)
            os.rename(self.dir, self.final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return self.final

    def abort(self) -> None:
        """Drop the staged files; the final folder is left as it was."""
        shutil.rmtree(self.dir, ignore_errors=True)


def check_output_folder(final: str | os.PathLike, names: Collection[str]) -> None:
    """OutputError unless ``final`` can receive an output set: it is new, or an earlier set
    (only ``names`` in it), and its parent folder is writable. Cheap: run it before long work."""
    final = Path(final)
    if final.exists():
        if not final.is_dir():
            raise OutputError(f"output folder {final} is a file; choose another --out")
        foreign = sorted(p.name for p in final.iterdir() if p.name not in names)
        if foreign:
            raise OutputError(f"output folder {final} holds files that are not vggt_map "
                              f"outputs ({', '.join(foreign[:5])}); choose a new or empty "
                              f"--out folder, a run replaces the whole folder")
    shutil.rmtree(_staging(final, "check"))
