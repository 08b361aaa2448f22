"""Keyframe selection and overlapping windows of keyframes.

Keyframes: a frame becomes a keyframe when its stamp is at least ``keyframe_min_interval``
seconds after the last keyframe's (less a 10 % tolerance for stamp jitter; a rule in stamp time
gives the same keyframes from a 10 Hz and a 30 Hz camera, and the node applies it before
decoding, see :func:`interval_elapsed`) AND at least ``keyframe_stride`` such frames have passed
since the last keyframe AND (if ``keyframe_min_motion`` > 0) its image differs enough from the
last keyframe's. Image change is the mean absolute difference of block-averaged grayscale
thumbnails (about 32 px wide), in [0, 1] (1 = black vs white everywhere): one vectorised
subtraction per frame, cheap enough for a camera callback, and it rises with camera motion
because the image content moves. VGGT-Long's authors report that dense low-motion input makes
drift grow, which is what the motion test prevents.

Non-keyframes are dropped and counted, never queued: a live node must not build a backlog.

Idle flush: a live camera that stops (or pauses) would leave its last keyframes waiting for a
window that never fills; :class:`IdleTimer` says when the stream has been quiet long enough
for the caller to ``flush()`` them, once per quiet period.

Windows: every ``window_size`` keyframes form a window; the next window starts with the last
``overlap`` keyframes of the previous one (they carry the chaining correspondences). At the end
of a stream ``flush()`` emits the remaining keyframes as a shorter final window when it holds at
least ``min_window_frames`` keyframes and at least one keyframe not yet in any window.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from vggt_ros.pipeline.types import Frame
from vggt_ros.settings import BY_NAME, overlap_problem

THUMB_WIDTH = 32
INTERVAL_TOLERANCE = 0.1  # a frame this fraction of the interval early still counts


def interval_elapsed(stamp_ns: int, last_ns: Optional[int], min_interval_s: float) -> bool:
    """Whether a frame stamped ``stamp_ns`` is far enough after ``last_ns`` (None: no frame
    yet) to be a keyframe candidate. A stamp not newer than ``last_ns`` passes: whether it is a
    duplicate, a glitch or a restart is the stamp rules' decision (``pipeline/stream.py``)."""
    if last_ns is None or min_interval_s <= 0 or stamp_ns <= last_ns:
        return True
    return stamp_ns - last_ns >= round(min_interval_s * (1.0 - INTERVAL_TOLERANCE) * 1e9)


def thumbnail(image: np.ndarray) -> np.ndarray:
    """Grayscale thumbnail (float32, 0..1) about THUMB_WIDTH px wide by block averaging."""
    gray = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32) / 255.0
    block = max(1, gray.shape[1] // THUMB_WIDTH)
    h, w = gray.shape[0] // block, gray.shape[1] // block
    if h == 0:
        block, h, w = 1, gray.shape[0], gray.shape[1]
    return gray[:h * block, :w * block].reshape(h, block, w, block).mean(axis=(1, 3))


def image_change(thumb_a: np.ndarray, thumb_b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails (0 = identical, 1 = maximal)."""
    if thumb_a.shape != thumb_b.shape:
        return 1.0  # different image sizes: certainly a change
    return float(np.mean(np.abs(thumb_a - thumb_b)))


class WindowManager:
    """Buffers keyframes and hands out complete, overlapping windows (see module docstring).

    The settings' lower bounds and the overlap rule come from ``vggt_ros.settings``, the one
    place they are stated; ``min_window_frames`` is internal and checked here.
    """

    def __init__(self, *, window_size: int, overlap: int, keyframe_stride: int = 1,
                 keyframe_min_interval: float = 0.0, keyframe_min_motion: float = 0.0,
                 min_window_frames: Optional[int] = None) -> None:
        if min_window_frames is None:
            min_window_frames = overlap + 1
        for name, value in (("window_size", window_size), ("overlap", overlap),
                            ("keyframe_stride", keyframe_stride),
                            ("keyframe_min_interval", keyframe_min_interval),
                            ("keyframe_min_motion", keyframe_min_motion)):
            lowest = BY_NAME[name].min
            if not value >= lowest:  # "not >=" also refuses NaN
                raise ValueError(f"{name} must be >= {lowest:g}, got {value}")
        problem = overlap_problem(window_size, overlap)
        if problem:
            raise ValueError(f"{problem}, got overlap {overlap} and window_size {window_size}")
        if not overlap < min_window_frames <= window_size:
            raise ValueError(f"min_window_frames must be in [overlap+1, window_size], "
                             f"got {min_window_frames}")
        self.window_size = window_size
        self.overlap = overlap
        self.keyframe_stride = keyframe_stride
        self.keyframe_min_interval = keyframe_min_interval
        self.keyframe_min_motion = keyframe_min_motion
        self.min_window_frames = min_window_frames
        self.frames_in = 0
        self.keyframes = 0
        self.dropped_non_keyframes = 0
        self.windows = 0
        self.reset()

    def reset(self) -> None:
        """Forget buffered keyframes (new trajectory); counters keep running."""
        self._buffer: list[Frame] = []
        self._new_in_buffer = 0  # keyframes in the buffer not yet part of an emitted window
        self._since_keyframe: Optional[int] = None  # None: no keyframe yet
        self._last_keyframe_stamp: Optional[int] = None
        self._last_thumb: Optional[np.ndarray] = None

    @property
    def pending(self) -> int:
        """Keyframes waiting for a window (including the carried-over overlap)."""
        return len(self._buffer)

    def is_keyframe(self, frame: Frame) -> bool:
        """Decide (and remember) whether ``frame`` is a keyframe; counts it either way.

        The first frame after a reset is always a keyframe.
        """
        self.frames_in += 1
        first = self._since_keyframe is None
        if not interval_elapsed(frame.stamp_ns, self._last_keyframe_stamp,
                                self.keyframe_min_interval):
            self.dropped_non_keyframes += 1
            return False
        if not first:
            self._since_keyframe += 1
            if self._since_keyframe < self.keyframe_stride:
                self.dropped_non_keyframes += 1
                return False
        if self.keyframe_min_motion > 0.0:
            thumb = thumbnail(frame.image)
            if not first and image_change(thumb, self._last_thumb) < self.keyframe_min_motion:
                self.dropped_non_keyframes += 1
                return False
            self._last_thumb = thumb
        self._since_keyframe = 0
        self._last_keyframe_stamp = frame.stamp_ns
        self.keyframes += 1
        return True

    def add(self, frame: Frame) -> Optional[list[Frame]]:
        """Offer a frame; returns a complete window when this keyframe fills one, else None."""
        if not self.is_keyframe(frame):
            return None
        self._buffer.append(frame)
        self._new_in_buffer += 1
        if len(self._buffer) < self.window_size:
            return None
        return self._emit()

    def flush(self) -> Optional[list[Frame]]:
        """End of stream: the remaining keyframes as a final, possibly shorter window."""
        if self._new_in_buffer == 0 or len(self._buffer) < self.min_window_frames:
            return None
        return self._emit()

    def _emit(self) -> list[Frame]:
        window = list(self._buffer)
        self._buffer = window[-self.overlap:]
        self._new_in_buffer = 0
        self.windows += 1
        return window


class IdleTimer:
    """Due once when no frame arrived for ``timeout_s`` seconds (0 = never); times are the
    caller's monotonic clock, so a paused bag or a stopped camera both count as idle."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._last_frame: Optional[float] = None  # None: nothing to flush since the last time

    def frame_arrived(self, now: float) -> None:
        self._last_frame = now

    def due(self, now: float) -> bool:
        """True once per quiet period that lasted ``timeout_s``."""
        if self.timeout_s <= 0 or self._last_frame is None:
            return False
        if now - self._last_frame < self.timeout_s:
            return False
        self._last_frame = None
        return True
