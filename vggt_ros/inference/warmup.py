"""Warm-up: run the network once on every input shape the live pipeline will hand it.

Why: a compiled network builds one graph per input shape on the first call of that shape (14-16
s per window shape for VGGT-1B on an H200), and even an eager GPU network pays lazy
initialisation on its first call. A node that does this at ``configure`` starts ready; one that
does not delivers its first window, and every window of a new shape, seconds late.

Which shapes (``warmup_calls``), for a camera of a known size:

* every window length the pipeline can produce: ``window_size``, and each shorter length down
  to ``overlap + 1`` (an idle flush or the end of a stream emits the waiting keyframes as a
  shorter window; after a reset the buffer starts empty, so any length can occur);
* each length once with all frames new (the first window, the first after a reset) and once
  sliding on from the previous window's last ``overlap`` frames (only the new frames go through
  DINO when the fast path caches the others);
* the track requests of each length: the pose solver's (queries on the first frame) and a
  request on the newest frame (the ``track_points`` default), which puts that frame first.

The calls go through the public ``Predictor`` protocol with dummy frames, so whatever a
predictor compiles or caches per shape is covered without knowing its internals. An eager
network needs it too: on CPU the first calls of each new shape were 2-10x slower than later
ones (oneDNN builds its kernels per shape; docs/PERFORMANCE.md).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from vggt_ros.pipeline.tracking import track_window
from vggt_ros.pipeline.types import Frame, Predictor

__all__ = ["WarmupCall", "WarmupPlan", "WarmupReport", "WarmupError", "window_lengths",
           "plan_for_settings", "warmup_calls", "run_warmup"]

_FRAME_ID = "warmup"
_STAMP_STEP_NS = 100_000_000


class WarmupError(RuntimeError):
    """The model failed on a warm-up call: it would fail the same way on the first window."""


def window_lengths(window_size: int, overlap: int, min_window_frames: int = 0
                   ) -> tuple[int, ...]:
    """Every window length the pipeline can hand the predictor, longest first:
    ``window_size`` down to ``min_window_frames`` (0: ``overlap + 1``, the pipeline's default
    for the shortest flushed window)."""
    shortest = min_window_frames or overlap + 1
    if not 1 <= shortest <= window_size:
        raise ValueError(f"the shortest window ({shortest}) must be in [1, window_size="
                         f"{window_size}]")
    return tuple(range(window_size, shortest - 1, -1))


@dataclass(frozen=True)
class WarmupPlan:
    """What to warm up: the camera's image size (original pixels) and the pipeline's windows."""

    width: int
    height: int
    window_size: int
    overlap: int
    track_queries: int  # queries per track request (the pose solver's per anchor)
    min_window_frames: int = 0

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"warm-up image size must be positive, got "
                             f"{self.width}x{self.height}")
        if not 1 <= self.overlap < self.window_size:
            raise ValueError(f"overlap must be in [1, window_size - 1], got {self.overlap}")
        if self.track_queries < 1:
            raise ValueError(f"track_queries must be >= 1, got {self.track_queries}")


def plan_for_settings(values: dict) -> Optional[WarmupPlan]:
    """The warm-up of the node's settings (``warmup_image_width``/``_height``, ``window_size``,
    ``overlap``, ``pose_queries``); None when a warm-up size is 0 (no warm-up)."""
    width, height = values["warmup_image_width"], values["warmup_image_height"]
    if width <= 0 or height <= 0:
        return None
    return WarmupPlan(width=width, height=height, window_size=values["window_size"],
                      overlap=values["overlap"], track_queries=max(8, values["pose_queries"]))


@dataclass(frozen=True)
class WarmupCall:
    """One predictor call on dummy frames, named by their indices (equal index = same frame)."""

    kind: str  # "predict" | "track"
    frames: tuple[int, ...]
    query_frame: int = 0  # track: the frame whose pixels are queried (it goes first)

    @property
    def length(self) -> int:
        return len(self.frames)


def warmup_calls(plan: WarmupPlan) -> list[WarmupCall]:
    """The calls of ``plan`` in order (module docstring). Pure: no frames, no model."""
    lengths = window_lengths(plan.window_size, plan.overlap, plan.min_window_frames)
    calls: list[WarmupCall] = []
    next_frame = 0
    for length in lengths:
        fresh = tuple(range(next_frame, next_frame + length))
        next_frame += length
        calls.append(WarmupCall("predict", fresh))
        calls.append(WarmupCall("track", fresh, query_frame=0))
        calls.append(WarmupCall("track", fresh, query_frame=length - 1))
        new = length - plan.overlap
        if new >= 1:
            sliding = fresh[-plan.overlap:] + tuple(range(next_frame, next_frame + new))
            next_frame += new
            calls.append(WarmupCall("predict", sliding))
    return calls


@dataclass
class WarmupReport:
    """What the warm-up ran and how long it took (for logs, diagnostics and the benchmark)."""

    seconds: float = 0.0
    calls: int = 0
    window_lengths: tuple[int, ...] = ()
    image_size: tuple[int, int] = (0, 0)  # (width, height) of the dummy camera frames
    call_seconds: list[float] = field(default_factory=list)

    def summary(self) -> str:
        lengths = ", ".join(map(str, self.window_lengths))
        return (f"warm-up {self.seconds:.1f} s: every window shape ({self.calls} calls, "
                f"windows of {lengths} frames at {self.image_size[0]}x{self.image_size[1]})")


def dummy_frames(count: int, width: int, height: int, seed: int = 0) -> list[Frame]:
    """``count`` distinct noise images of the camera's size with increasing stamps."""
    rng = np.random.default_rng(seed)
    return [Frame(stamp_ns=(i + 1) * _STAMP_STEP_NS, frame_id=_FRAME_ID,
                  image=rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            for i in range(count)]


def _queries(count: int, width: int, height: int) -> np.ndarray:
    """``count`` query pixels on a diagonal through the image centre (the crop preprocessing
    keeps the centre; a portrait 1:3 image keeps its middle third)."""
    t = (np.arange(count) + 0.5) / count
    return np.column_stack([width * (0.4 + 0.2 * t), height * (0.4 + 0.2 * t[::-1])])


def run_warmup(predictor: Predictor, plan: WarmupPlan,
               log: Optional[Callable[[str], None]] = None) -> WarmupReport:
    """Run every call of ``plan`` on ``predictor``; raises WarmupError naming the call that
    failed. ``log`` gets one line per window length (a compiled warm-up takes minutes)."""
    calls = warmup_calls(plan)
    frames = dummy_frames(1 + max(i for call in calls for i in call.frames), plan.width,
                          plan.height)
    queries = _queries(plan.track_queries, plan.width, plan.height)
    report = WarmupReport(calls=len(calls), image_size=(plan.width, plan.height),
                          window_lengths=tuple(dict.fromkeys(c.length for c in calls)))
    start = time.perf_counter()
    for index, call in enumerate(calls):
        if log is not None and (index == 0 or call.length != calls[index - 1].length):
            log(f"warm-up: windows of {call.length} frames at {plan.width}x{plan.height}")
        window = [frames[i] for i in call.frames]
        t0 = time.perf_counter()
        try:
            if call.kind == "predict":
                predictor.predict(window)
            else:  # the pipeline's own path: the query frame goes first
                track_window(predictor, window, call.query_frame, queries)
        except Exception as err:  # noqa: BLE001 - reported with the shape that failed
            raise WarmupError(f"warm-up {call.kind} of a window of {call.length} frames at "
                              f"{plan.width}x{plan.height} failed: {type(err).__name__}: "
                              f"{err}") from err
        report.call_seconds.append(time.perf_counter() - t0)
    report.seconds = time.perf_counter() - start
    return report
