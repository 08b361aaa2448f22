"""Ctrl-C and SIGTERM during a mapping run: the first asks for a clean stop, the second aborts.

Why two steps: a long run interrupted by mistake (or by a job scheduler's SIGTERM) should keep
the windows it already predicted, which takes a moment to write; a user who presses Ctrl-C
again does not want to wait. Aborting raises KeyboardInterrupt, and the output set being
staged is dropped (the folder keeps its previous complete set).
"""
from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Callable, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TwoStepInterrupt:
    """Context manager: on the first SIGINT/SIGTERM call ``request_stop(reason)``, on the
    next raise KeyboardInterrupt. The previous handlers come back on exit. Off the main thread
    (where Python cannot take signals) it does nothing."""

    def __init__(self, request_stop: Callable[[str], None], prog: str) -> None:
        self.request_stop = request_stop
        self.prog = prog
        self.received: Optional[signal.Signals] = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:  # noqa: ARG002
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)
        print(f"{self.prog}: {self.received.name}: stopping; writing the windows mapped so far "
              f"(again to abort and keep the previous outputs)", file=sys.stderr, flush=True)
        self.request_stop(f"interrupted by {self.received.name}")

    def __enter__(self) -> "TwoStepInterrupt":
        if threading.current_thread() is threading.main_thread():  # Python's signal rule
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
