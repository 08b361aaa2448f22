"""Stamp rules of a live stream: glitches are dropped, a real restart resets once, and frames
lost before they arrived are counted from the stamps that did (:class:`GapCounter`).

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

import numpy as np

__all__ = ["StampVerdict", "StampGuard", "GapCounter"]


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


class GapCounter:
    """Frames a camera published that never arrived, estimated from the stamps that did.

    The camera period is the median of the last ``history`` positive stamp steps, each divided
    by the frames it spans (robust to a late frame and to heavy loss); a step of about k
    periods means k - 1 frames were lost on the way (in DDS, or before the node's queue).
    Nothing is counted until ``min_steps`` steps give a period; steps that go backwards are
    the stamp rules' business. A step longer than ``pause_s`` cannot be told apart from the
    stamps alone: a camera (or bag) that paused sent nothing, a node that got no frames for
    that long (CPU starved, a stalled network) lost them. Such steps are counted apart, as
    ``pauses`` with the frames the period says were due in them (``in_pauses``), so that every
    frame a steady camera sent is still accounted for, without calling a pause a loss. Only a
    camera with a known period pauses (a first frame long before the stream is no pause), and
    a step over ``clock_jump_s`` is a jump of the stamps' clock: no frames are estimated in it.
    """

    def __init__(self, history: int = 31, min_steps: int = 10, pause_s: float = 1.0,
                 clock_jump_s: float = 60.0) -> None:
        self.history = history
        self.min_steps = min_steps
        self.pause_ns = int(pause_s * 1e9)
        self.clock_jump_ns = int(clock_jump_s * 1e9)
        self.missing = 0
        self.pauses = 0
        self.in_pauses = 0
        self.longest_pause_ns = 0
        self._steps: list[int] = []
        self._last: Optional[int] = None

    @property
    def period_ns(self) -> Optional[float]:
        """The camera period measured from stamps, or None while too few steps are known."""
        if len(self._steps) < self.min_steps:
            return None
        return float(np.median(self._steps))

    def add(self, stamp_ns: int) -> int:
        """Take the next received stamp; returns the frames found missing before it."""
        last, self._last = self._last, stamp_ns
        if last is None or stamp_ns <= last:
            return 0
        step = stamp_ns - last
        period = self.period_ns
        if step > self.pause_ns:
            if period is not None and step <= self.clock_jump_ns:
                self.pauses += 1
                self.longest_pause_ns = max(self.longest_pause_ns, step)
                self.in_pauses += max(int(round(step / period)) - 1, 0)
            return 0
        frames = 1 if period is None else max(int(round(step / period)), 1)
        # One frame's share of the step: the estimate stays right under heavy loss.
        self._steps = (self._steps + [step // frames])[-self.history:]
        self.missing += frames - 1
        return frames - 1
