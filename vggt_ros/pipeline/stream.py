"""Stamp rules of a live stream: glitches are dropped, a real restart resets once.

A camera driver or a network hiccup can deliver one frame late, twice, or with a stale stamp;
that frame is dropped and counted, and the trajectory goes on. A bag played in a loop, or a
``/clock`` that jumps back under ``use_sim_time``, restarts its stamps for good: every frame
that follows is older than the last accepted one, and they increase among themselves. Only
``restart_frames`` such frames in a row (no newer frame between them) confirm a restart, so the
trajectory resets exactly once per loop and never because of an isolated glitch. The frames
before the confirming one are dropped (a loop loses ``restart_frames - 1`` frames).
"""
from __future__ import annotations

from enum import Enum
from typing import Optional

__all__ = ["StampVerdict", "StampGuard"]


class StampVerdict(Enum):
    ACCEPT = "accept"
    DUPLICATE = "duplicate_stamp"  # the same stamp as the last accepted frame
    OUT_OF_ORDER = "out_of_order"  # older than the last accepted frame: dropped
    RESTART = "restart"  # the stream's stamps restarted: new trajectory, frame accepted


class StampGuard:
    """Classifies each frame's stamp against the stream so far (see module docstring)."""

    def __init__(self, restart_frames: int) -> None:
        if restart_frames < 1:
            raise ValueError(f"restart_frames must be >= 1, got {restart_frames}")
        self.restart_frames = restart_frames
        self.last: Optional[int] = None
        self._run: list[int] = []  # consecutive older, increasing stamps: a restart candidate

    def clear(self) -> None:
        """Forget the stream (after any reset)."""
        self.last = None
        self._run = []

    def check(self, stamp_ns: int) -> StampVerdict:
        """The verdict for the next frame. The caller calls :meth:`accept` once the frame
        passed its other checks, so a frame rejected for another reason leaves no stamp."""
        if self.last is None or stamp_ns > self.last:
            return StampVerdict.ACCEPT
        if stamp_ns == self.last:
            return StampVerdict.DUPLICATE
        if self._run and stamp_ns > self._run[-1]:
            self._run.append(stamp_ns)
        else:
            self._run = [stamp_ns]
        if len(self._run) < self.restart_frames:
            return StampVerdict.OUT_OF_ORDER
        return StampVerdict.RESTART

    def accept(self, stamp_ns: int) -> None:
        """``stamp_ns`` is now the stream's last stamp."""
        self.last = stamp_ns
        self._run = []

    def restart_reason(self, stamp_ns: int) -> str:
        """Why a RESTART verdict was given for ``stamp_ns`` (before the reset clears it)."""
        return (f"stamps restarted: {self.restart_frames} consecutive frames older than the "
                f"last stamp {self.last} ns, now at {stamp_ns} ns (bag loop, or /clock jumped "
                f"back?): new trajectory")
