"""The frame-in, odom-out core shared by the live ROS node and the offline bag mapper.

``Pipeline.add_frame`` validates a frame, selects keyframes, and when a window of keyframes is
complete runs the predictor synchronously, chains the window into odom and fuses its points into
the voxel map. Nothing here imports rclpy or torch: the predictor is injected.

Two parts of a window run beside the worker thread (``pipeline/background.py``): the window's
confident map points (``Chainer.pixels``, which needs the depth but not the poses) while the pose
solver's track request keeps the device busy, and the map fusion of the window's points while
the next window is predicted. At most one fusion is in flight; ``map`` waits for it, so a
reader of ``map`` sees every returned window fused, and ``map_cloud`` returns the map as fused
so far without waiting.

Pipelined (``PipelineConfig.pipelined``, off by default): a window has a device stage (the
network's prediction and the pose solver's track request) and a host stage (the pose solve,
the chaining: CPU work while the device idles). With frames waiting, the host stage of window k
runs on a second thread while the caller already runs window k+1's device stage; each stage
keeps its windows in order, so the results are the same, returned one window later (or by
``collect`` as soon as the caller has no frame waiting: the node does that, so a node keeping up
loses no latency). A failure on either side is counted and recovered from as without it, and a
window that finished meanwhile is still returned (``WindowFailed.results``).

Threading: the node calls ``add_frame``/``flush``/``reset`` from ONE worker thread and ``track``
from a service thread. The worker holds ``_lock`` while it processes; after each window it swaps
in an immutable snapshot (the window's frames and its keyframes' first placements) under a short
``_snapshot_lock``. ``track`` only takes that short lock, so a tracking request never waits for
a window that is being predicted. If the predictor is not safe to call from two threads at once
(one GPU), the predictor serialises its own calls.

Stream rules (why): an isolated late, stale or repeated stamp is a glitch: the frame is
dropped and counted (``out_of_order``, ``duplicate_stamp``); stamps that consistently restart
(a bag played in a loop, ``/clock`` jumping back) start a new trajectory once (reset, counted),
instead of corrupting the current one (``pipeline/stream.py``); a camera whose
resolution changes mid-stream is more often a glitch than a new camera, so frames of a new size
are rejected until ``size_change_reset_frames`` consecutive frames confirm it, then the pipeline
resets to the new size; a CameraInfo with NaN/inf or non-positive focal length rejects the frame
(``bad_camera_info``), because publishing depth or points against a broken calibration would be
silently wrong.
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass, fields, replace
from typing import Optional

import numpy as np

from vggt_ros.pipeline.background import run_beside
from vggt_ros.pipeline.chaining import Chainer, WindowPixels, check_prediction
from vggt_ros.pipeline.covariance import UncertaintyTracker
from vggt_ros.pipeline.depth_alignment import align_to_depth
from vggt_ros.pipeline.intrinsics import (FOCAL_DISAGREEMENT_WARN, INTRINSICS_SOURCES,
                                          IntrinsicsStatus, apply_intrinsics)
from vggt_ros.pipeline.map_fusion import VoxelMap
from vggt_ros.pipeline.pose_depth import POSE_DEPTHS, with_sensor_depth
from vggt_ros.pipeline.pose_solver import (DISAGREEMENT_WARN_DEG, POSE_SOURCES, PoseSolver,
                                           PoseSolverConfig, WindowTracks, gather_tracks)
from vggt_ros.pipeline.scale_filter import (MEASURED_SOURCES, SCALE_SOURCES, ScaleFilter,
                                            ScaleFilterConfig)
from vggt_ros.pipeline.scale_measure import depth_scale, odometry_scale
from vggt_ros.pipeline.stream import StampGuard, StampVerdict
from vggt_ros.pipeline.tracking import track_window
from vggt_ros.pipeline.types import (ChainingStatus, Frame, KeyframeResult, PoseHealth,
                                     Predictor, ScaleMeasurement, ScaleStatus,
                                     WindowPrediction, WindowResult)
from vggt_ros.pipeline.window import WindowManager
from vggt_ros.settings import BY_NAME, overlap_problem

def _default(name: str):
    return BY_NAME[name].default


REJECTION_KINDS = ("size_change", "frame_id", "duplicate_stamp", "out_of_order", "bad_image",
                   "bad_camera_info")


@dataclass
class PipelineConfig:
    """Pipeline settings; ``validate()`` names the offending field."""

    # User-facing fields take their defaults from vggt_ros.settings (the one table shared by
    # the node's parameters, vggt_map's options and config/vggt.yaml); the rest are internal.
    window_size: int = _default("window_size")
    overlap: int = _default("overlap")
    keyframe_stride: int = _default("keyframe_stride")
    keyframe_min_interval: float = _default("keyframe_min_interval")  # seconds of stamp time
    keyframe_min_motion: float = _default("keyframe_min_motion")  # mean abs. thumbnail diff
    min_window_frames: int = 0  # shortest final window flush() emits; 0 = overlap + 1
    conf_threshold: float = _default("conf_threshold")  # absolute (VGGT confidence is >= 1)
    conf_percentile: float = _default("conf_percentile")  # drop the least confident X %
    voxel_size: float = _default("voxel_size")  # map units
    max_map_points: int = _default("max_map_points")
    max_window_points: int = 200_000
    scale_source: str = _default("scale_source")
    metric_scale: float = _default("metric_scale")  # scale_source fixed: metres per window unit
    depth_min_range: float = _default("depth_min_range")  # metres
    depth_max_range: float = _default("depth_max_range")  # metres
    scale_min_travel: float = _default("scale_min_travel")  # metres
    scale_max_rate: float = _default("scale_max_rate")
    scale_max_uncertainty: float = _default("scale_max_uncertainty")
    scale_drift_per_window: float = 0.02  # relative 1-sigma of the chained scale per window
    huber_delta: float = 0.1  # relative to the overlap's median depth
    irls_iters: int = 5
    max_scale_jump: float = 3.0
    size_change_reset_frames: int = 5
    stamp_restart_frames: int = 3  # consecutive older, increasing stamps that confirm a restart
    max_track_points: int = _default("max_track_points")
    intrinsics_source: str = _default("intrinsics_source")
    pose_source: str = _default("pose_source")
    pose_queries: int = _default("pose_queries")
    pose_anchors: int = _default("pose_anchors")
    pose_depth: str = _default("pose_depth")
    track_history_windows: int = _default("track_history_windows")
    pipelined: bool = _default("pipelined")

    @classmethod
    def from_settings(cls, values: dict) -> "PipelineConfig":
        """The config for a dict of user settings (node parameters, CLI options): every key
        that names a field is used, the others (device, frames, ...) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def validate(self) -> None:
        choices = {"intrinsics_source": INTRINSICS_SOURCES, "pose_source": POSE_SOURCES,
                   "scale_source": SCALE_SOURCES, "pose_depth": POSE_DEPTHS}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in choices:
                if value not in choices[f.name]:
                    raise ValueError(f"PipelineConfig.{f.name} must be one of "
                                     f"{list(choices[f.name])}, got {value!r}")
                continue
            if isinstance(f.default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"PipelineConfig.{f.name} must be true or false, got "
                                     f"{value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                    value):
                raise ValueError(f"PipelineConfig.{f.name} must be a finite number, got {value!r}")
        checks = [
            ("window_size", self.window_size >= 2, ">= 2"),
            ("overlap", self.overlap >= 1 and overlap_problem(self.window_size, self.overlap)
             is None, "in [1, window_size - 1]"),
            ("keyframe_stride", self.keyframe_stride >= 1, ">= 1"),
            ("keyframe_min_interval", self.keyframe_min_interval >= 0.0, ">= 0"),
            ("keyframe_min_motion", 0.0 <= self.keyframe_min_motion <= 1.0, "in [0, 1]"),
            ("min_window_frames", self.min_window_frames == 0
             or self.overlap < self.min_window_frames <= self.window_size,
             "0 (auto) or in [overlap + 1, window_size]"),
            ("conf_threshold", self.conf_threshold >= 0.0, ">= 0"),
            ("conf_percentile", 0.0 <= self.conf_percentile < 100.0, "in [0, 100)"),
            ("voxel_size", self.voxel_size > 0.0, "> 0"),
            ("max_map_points", self.max_map_points >= 1, ">= 1"),
            ("max_window_points", self.max_window_points >= 1, ">= 1"),
            ("metric_scale", self.metric_scale >= 0.0, ">= 0 (0 = non-metric)"),
            ("metric_scale", (self.metric_scale > 0.0) == (self.scale_source == "fixed"),
             "> 0 with scale_source fixed (its value) and 0 with any other scale_source"),
            ("depth_max_range", self.depth_max_range > self.depth_min_range >= 0.0,
             "> depth_min_range >= 0"),
            ("scale_min_travel", self.scale_min_travel >= 0.0, ">= 0"),
            ("scale_max_rate", self.scale_max_rate > 0.0, "> 0"),
            ("scale_max_uncertainty", self.scale_max_uncertainty > 0.0, "> 0"),
            ("scale_drift_per_window", self.scale_drift_per_window > 0.0, "> 0"),
            ("huber_delta", self.huber_delta > 0.0, "> 0"),
            ("irls_iters", self.irls_iters >= 1, ">= 1"),
            ("max_scale_jump", self.max_scale_jump > 1.0, "> 1"),
            ("size_change_reset_frames", self.size_change_reset_frames >= 1, ">= 1"),
            ("stamp_restart_frames", self.stamp_restart_frames >= 1, ">= 1"),
            ("max_track_points", self.max_track_points >= 1, ">= 1"),
            ("pose_queries", self.pose_queries >= 8, ">= 8"),
            ("pose_anchors", self.pose_anchors >= 1, ">= 1"),
            ("track_history_windows", self.track_history_windows >= 1, ">= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"PipelineConfig.{name} must be {rule}, got "
                                 f"{getattr(self, name)!r}")


class FrameRejected(Exception):
    """A frame the pipeline refused; ``kind`` is one of REJECTION_KINDS."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


class WindowFailed(Exception):
    """A window the predictor or the chaining could not handle (out of memory, NaN poses, ...).

    The pipeline has already recovered when this is raised: the failure is counted and, because
    the next window's overlap keyframes were never placed, the trajectory is reset (odom, map and
    buffered keyframes; counted as a reset with this reason) and restarts with the next window.
    The caller only logs it and keeps going. ``results`` holds the windows that finished in
    the same call (pipelined, an earlier window can finish while a later one fails): the caller
    uses them as if the call had returned them.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.results: list[WindowResult] = []


class _PlacementFailed(Exception):
    """A window whose host stage raised on the placing thread (pipelined)."""

    def __init__(self, window: list[Frame], error: Exception) -> None:
        super().__init__(str(error))
        self.window = window
        self.error = error


class TrackRequestError(Exception):
    """A tracking request that cannot be answered (unknown stamp, bad points, no window)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class TrackAnswer:
    stamps_ns: list[int]  # the window's keyframes, in window order
    query_index: int  # which of them the queries were given on
    tracks_uv: np.ndarray  # [S,N,2] original pixels, window order
    visibility: np.ndarray  # [S,N]
    confidence: np.ndarray  # [S,N]
    points_odom: np.ndarray  # [N,3] the queries' surface points in odom (NaN where unknown)
    points_valid: np.ndarray  # [N] bool


@dataclass(frozen=True)
class _Snapshot:
    """The last processed window, as track() needs it; never mutated after creation."""

    frames: tuple[Frame, ...]
    keyframes: dict[int, KeyframeResult]  # first placements, by stamp

    @property
    def stamps(self) -> list[int]:
        return [f.stamp_ns for f in self.frames]


@dataclass
class _Predicted:
    """A window after its device stage (``Pipeline._predict``): what its host stage
    (``Pipeline._place``) needs to finish it."""

    window: list[Frame]
    prediction: WindowPrediction  # with the intrinsics of record
    intrinsics: IntrinsicsStatus
    tracks: WindowTracks  # the pose solver's
    pixels: Optional[Future]  # the window's map points, when started beside the track request
    started: float  # perf_counter() when the window's prediction began
    timings: dict[str, float]  # predict, track, track.*


class Pipeline:
    """Frames in, odom-placed windows out (see module docstring)."""

    def __init__(self, predictor: Predictor, config: PipelineConfig) -> None:
        config.validate()
        self.predictor = predictor
        self.config = config
        self._map = VoxelMap(config.voxel_size, config.max_map_points)
        self._map_lock = threading.Lock()  # held by the fusion while it changes the map
        self._fusion: Optional[Future[float]] = None  # the last window's fusion (its seconds)
        self._failed_fusions = 0
        self._windows = WindowManager(
            window_size=config.window_size, overlap=config.overlap,
            keyframe_stride=config.keyframe_stride,
            keyframe_min_interval=config.keyframe_min_interval,
            keyframe_min_motion=config.keyframe_min_motion,
            min_window_frames=config.min_window_frames or config.overlap + 1)
        self._scale_filter = (ScaleFilter(ScaleFilterConfig(
            config.scale_source, max_rate=config.scale_max_rate,
            drift_per_window=config.scale_drift_per_window,
            max_uncertainty=config.scale_max_uncertainty))
            if config.scale_source in MEASURED_SOURCES else None)
        self._chainer = Chainer(
            conf_threshold=config.conf_threshold, conf_percentile=config.conf_percentile,
            metric_scale=config.metric_scale, huber_delta=config.huber_delta,
            irls_iters=config.irls_iters, max_scale_jump=config.max_scale_jump,
            max_window_points=config.max_window_points, scale_filter=self._scale_filter,
            pose_seams=config.pose_source != "camera_head")
        self._pose_solver = PoseSolver(PoseSolverConfig(
            pose_source=config.pose_source, num_queries=config.pose_queries,
            anchors=config.pose_anchors, conf_threshold=config.conf_threshold))
        self._lock = threading.RLock()  # worker-side state
        self._snapshot_lock = threading.Lock()
        # The last windows, newest last: what track() can answer for.
        self._snapshots: deque[_Snapshot] = deque(maxlen=config.track_history_windows)
        self._last_pose: Optional[PoseHealth] = None
        self._pose_counts: Counter[str] = Counter()
        self._frames_in = 0
        self._windows_done = 0
        self._rejected: Counter[str] = Counter()
        self._resets = 0
        self._last_reset_reason = ""
        self._failed_windows = 0
        self._last_error = ""
        self._last_chaining: Optional[ChainingStatus] = None
        self._last_scale: Optional[ScaleStatus] = None
        self._uncertainty = UncertaintyTracker()
        # pipelined: the window being placed beside the caller, and placed windows not yet
        # returned (they are returned, in order, by the next add_frame / flush / collect)
        self._placing: Optional[Future[WindowResult]] = None
        self._ready: list[WindowResult] = []
        self._timings: dict[str, float] = {}
        self._stamps = StampGuard(config.stamp_restart_frames)
        self._clear_stream()

    def _clear_stream(self) -> None:
        self._size: Optional[tuple[int, int]] = None  # (width, height)
        self._frame_id: Optional[str] = None
        self._stamps.clear()
        self._new_size: Optional[tuple[int, int]] = None
        self._new_size_count = 0

    # ----------------------------------------------------------------------------- frames in
    def add_frame(self, frame: Frame) -> list[WindowResult]:
        """Offer one frame; returns the windows it completed (0 or 1). Raises FrameRejected."""
        with self._lock:
            self._frames_in += 1
            try:
                self._accept(frame)
            except FrameRejected as rejection:
                self._rejected[rejection.kind] += 1
                raise
            window = self._windows.add(frame)
            if window is None:
                return self._finished()
            return self._run(window)

    def flush(self) -> list[WindowResult]:
        """End of stream: process the remaining keyframes as a final, shorter window (and,
        pipelined, wait for every window still being placed)."""
        with self._lock:
            window = self._windows.flush()
            done = self._run(window) if window is not None else []
            try:
                return done + self.collect()
            except WindowFailed as failed:
                failed.results = done + failed.results
                raise

    def collect(self) -> list[WindowResult]:
        """Pipelined: the windows placed so far and not yet returned, waiting for the one being
        placed (the caller has no frame waiting: take the window now rather than with the next
        frame). Raises WindowFailed if that window failed. Not pipelined: always []."""
        with self._lock:
            return self._finished(failure=self._settle())

    def reset(self, reason: str) -> None:
        """Start a new trajectory: buffered keyframes, odom, map and track snapshot are dropped
        (pipelined: a window being placed is finished first and still returned)."""
        with self._lock:
            self._settle()
            self._reset(reason)

    def _reset(self, reason: str, keep_buffered: bool = False) -> None:
        """``reset`` without waiting for a window being placed (see ``_window_failed`` for
        ``keep_buffered``)."""
        with self._lock:
            if not keep_buffered:
                self._windows.reset()
            self._chainer.reset(reason)
            self._uncertainty.restart()
            self._wait_for_fusion()
            with self._map_lock:
                self._map.clear()
            self._clear_stream()
            with self._snapshot_lock:
                self._snapshots.clear()
            self._resets += 1
            self._last_reset_reason = reason

    @property
    def map(self) -> VoxelMap:
        """The voxel map with every window returned so far fused into it (waits for the fusion
        still running beside the worker). For the thread that adds frames; other threads
        read ``map_cloud``."""
        with self._lock:
            self._settle()  # a window being placed (pipelined) is fused first
            self._wait_for_fusion()
            return self._map

    def map_cloud(self) -> tuple[np.ndarray, np.ndarray]:
        """(points [M,3] float32, colours [M,3] uint8) of the map as fused so far, consistent
        with each other; never waits for a window being processed."""
        with self._map_lock:
            return self._map.points(), self._map.colors()

    def _map_size(self) -> int:
        with self._map_lock:
            return len(self._map)

    def _wait_for_fusion(self) -> float:
        """Seconds the last window's fusion took (0 without one), once it has finished."""
        fusion = self._fusion
        return fusion.result() if fusion is not None else 0.0

    def _fuse(self, points: np.ndarray, colors: np.ndarray) -> float:
        """Insert a window's points (on the fusion thread); its seconds. A failure loses only
        this window's points: it is counted and named in ``last_error``."""
        start = time.perf_counter()
        with self._map_lock:
            try:
                self._map.insert(points, colors)
            except ValueError as err:
                self._failed_fusions += 1
                self._last_error = f"map fusion of a window's points failed: {err}"
        return time.perf_counter() - start

    def _accept(self, frame: Frame) -> None:
        """Validate ``frame`` against the stream; may reset (bag loop, confirmed new size)."""
        image = frame.image
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
                and image.dtype == np.uint8 and image.shape[0] > 0 and image.shape[1] > 0):
            desc = (f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray)
                    else type(image).__name__)
            raise FrameRejected("bad_image", f"need a non-empty HxWx3 uint8 RGB image, got {desc}")
        height, width = image.shape[:2]
        if self._frame_id is not None and frame.frame_id != self._frame_id:
            raise FrameRejected("frame_id", f"frame_id {frame.frame_id!r} differs from the "
                                            f"stream's {self._frame_id!r}")
        _check_camera_info(frame, width, height)
        stamp = int(frame.stamp_ns)
        verdict = self._stamps.check(stamp)
        if verdict is StampVerdict.DUPLICATE:
            raise FrameRejected("duplicate_stamp", f"stamp {stamp} ns was already received")
        if verdict is StampVerdict.OUT_OF_ORDER:
            raise FrameRejected("out_of_order", f"stamp {stamp} ns is older than the last "
                                f"frame's {self._stamps.last} ns: dropped (a restart needs "
                                f"{self.config.stamp_restart_frames} such frames in a row)")
        if verdict is StampVerdict.RESTART:
            self.reset(self._stamps.restart_reason(stamp))
        if self._size is not None and (width, height) != self._size:
            if self._new_size != (width, height):
                self._new_size, self._new_size_count = (width, height), 0
            self._new_size_count += 1
            if self._new_size_count < self.config.size_change_reset_frames:
                raise FrameRejected(
                    "size_change", f"image is {width}x{height}, stream is "
                    f"{self._size[0]}x{self._size[1]} ({self._new_size_count}/"
                    f"{self.config.size_change_reset_frames} frames before resetting to it)")
            self.reset(f"image size changed to {width}x{height}")
        self._new_size, self._new_size_count = None, 0
        self._size = (width, height)
        self._frame_id = frame.frame_id
        self._stamps.accept(stamp)

    # ----------------------------------------------------------------------------- windows
    def _run(self, window: list[Frame]) -> list[WindowResult]:
        """Process a completed window; the windows finished with it, in order.

        Pipelined (``config.pipelined``), a window's host stage (pose solve, chaining: CPU
        work) runs on a second thread while the caller goes on to the next window's device
        stage (the network and the track request), so a stream whose frames wait (a bag, a
        node falling behind) is processed at the pace of the slower stage instead of the sum
        of both. Each stage still runs its windows in order, so the results are those of the
        unpipelined pipeline; a window is returned by the call after the one that completed
        it (or by ``collect``)."""
        if not self.config.pipelined:
            return [self._process(window)]
        try:
            predicted = self._predict(window, pixels_beside=False)
        except Exception as err:  # noqa: BLE001 - any predictor failure (OOM included) is survivable
            self._settle()  # the window being placed is still returned
            failed = self._window_failed(window, err)
            failed.__cause__ = err
            return self._finished(failure=failed)
        failure = self._settle()
        self._placing = run_beside("vggt-window-place", self._place_or_raise, predicted)
        return self._finished(failure=failure)

    def _place_or_raise(self, predicted: _Predicted) -> WindowResult:
        """``_place`` on the placing thread; a failure keeps its window for ``_settle``."""
        try:
            return self._place(predicted)
        except Exception as err:  # noqa: BLE001 - reported by _settle on the caller's thread
            raise _PlacementFailed(predicted.window, err) from err

    def _settle(self) -> Optional[WindowFailed]:
        """Wait for the window being placed (pipelined): its result is kept for the next
        return; its failure is counted and the trajectory restarts (keeping the keyframes
        buffered for the next window: that window is already predicted and is placed as the
        new trajectory's first); the WindowFailed is returned for the caller to raise."""
        placing, self._placing = self._placing, None
        if placing is None:
            return None
        try:
            self._ready.append(placing.result())
        except _PlacementFailed as failed:
            return self._window_failed(failed.window, failed.error, keep_buffered=True)
        return None

    def _finished(self, failure: Optional[WindowFailed] = None) -> list[WindowResult]:
        """The placed windows not yet returned, oldest first (pipelined; else empty); with a
        ``failure``, raised carrying them (``WindowFailed.results``)."""
        ready, self._ready = self._ready, []
        if failure is not None:
            failure.results = ready
            raise failure
        return ready

    def _process(self, window: list[Frame]) -> WindowResult:
        """One window from start to finish on the calling thread."""
        try:
            return self._place(self._predict(window, pixels_beside=True))
        except Exception as err:  # noqa: BLE001 - any predictor failure (OOM included) is survivable
            raise self._window_failed(window, err) from err

    def _predict(self, window: list[Frame], pixels_beside: bool) -> _Predicted:
        """The window's device stage: the network's prediction with the intrinsics of record,
        and the pose solver's tracks. With ``pixels_beside`` the window's map points start on a
        second thread first, so they overlap the track request; only valid when the previous
        window is already placed (``Chainer.pixels`` needs to know which keyframes are new)."""
        start = time.perf_counter()
        prediction = self.predictor.predict(window)
        predicted = time.perf_counter()
        check_prediction(prediction, window)
        prediction, intrinsics = apply_intrinsics(prediction, window,
                                                  self.config.intrinsics_source)
        pixels = (run_beside("vggt-window-pixels", self._window_pixels, prediction, window)
                  if pixels_beside else None)
        tracks, track_timings = self._gather_tracks(prediction, window)
        return _Predicted(window=window, prediction=prediction, intrinsics=intrinsics,
                          tracks=tracks, pixels=pixels, started=start,
                          timings={"predict": predicted - start, **track_timings})

    def _place(self, predicted: _Predicted) -> WindowResult:
        """The window's host stage: poses solved from its tracks, the window chained into odom,
        its fusion started beside; then the pipeline's state moves on to it."""
        window, prediction = predicted.window, predicted.prediction
        pixels = predicted.pixels or run_beside("vggt-window-pixels", self._window_pixels,
                                                prediction, window)
        # The depth scale needs only the network's depth, and the poses rest on the sensor's
        # depth in the window's units (pose_depth sensor); the odometry scale compares the
        # solved poses with the robot's.
        measurement = (self._measure_scale(prediction, window)
                       if self.config.scale_source == "depth" else None)
        solving = time.perf_counter()
        prediction, pose = self._solve_poses(prediction, window, predicted.intrinsics,
                                             predicted.tracks, measurement)
        t2 = time.perf_counter()
        if measurement is None:
            measurement = self._measure_scale(prediction, window)
        window_pixels, pixels_seconds = pixels.result()
        result = self._chainer.place(prediction, window, index=self._windows_done,
                                     measurement=measurement, pixels=window_pixels)
        t3 = time.perf_counter()
        previous_fusion = self._wait_for_fusion()  # at most one window's fusion in flight
        self._fusion = run_beside("vggt-map-fusion", self._fuse, result.points, result.colors)
        t4 = time.perf_counter()
        # "fuse" is what this window waited for the map; the fusions themselves run beside the
        # worker: "fuse.background" is the previous window's, "chain.pixels" ran beside "track".
        timings = {**predicted.timings, "solve": t2 - solving, "chain": t3 - t2,
                   "fuse": t4 - t3, "window": t4 - predicted.started,
                   "chain.pixels": pixels_seconds, "fuse.background": previous_fusion}
        timings.update({f"predict.{k}": v for k, v in prediction.timings.items()})
        result.timings = timings
        result.pose = pose
        result.uncertainty = self._uncertainty.window(result)
        self._count_pose(pose)
        self._windows_done += 1
        snapshot = _Snapshot(frames=tuple(window), keyframes=self._chainer.keyframes())
        with self._snapshot_lock:
            self._snapshots.append(snapshot)
            self._last_chaining = result.chaining
            self._last_scale = result.scale
            self._last_pose = pose
            self._timings = timings
        return result

    def _window_failed(self, window: list[Frame], err: Exception,
                       keep_buffered: bool = False) -> WindowFailed:
        """Count a window that could not be processed and start a new trajectory (see
        ``WindowFailed``); ``keep_buffered`` keeps the keyframes waiting for the next window
        (pipelined: they belong to a window that is already predicted and will be placed)."""
        reason = (f"window of {len(window)} keyframes ending at {window[-1].stamp_ns} ns "
                  f"failed: {type(err).__name__}: {err}")
        self._failed_windows += 1
        self._last_error = reason
        self._reset(reason, keep_buffered)
        return WindowFailed(reason)

    def _window_pixels(self, prediction: WindowPrediction, window: list[Frame]
                       ) -> tuple[WindowPixels, float]:
        """``Chainer.pixels`` of the window and its seconds (runs beside the pose solver)."""
        start = time.perf_counter()
        pixels = self._chainer.pixels(prediction, window)
        return pixels, time.perf_counter() - start

    def _gather_tracks(self, prediction: WindowPrediction, window: list[Frame]
                       ) -> tuple[WindowTracks, dict[str, float]]:
        """The pose solver's queries tracked through the window (it runs in every pose_source:
        its health numbers check the camera head too), and the seconds of the track requests
        ("track", and their own stages summed as "track.*")."""
        start = time.perf_counter()
        track_stages: Counter[str] = Counter()

        def track(frames: list[Frame], anchor: int, uv: np.ndarray):
            answer = track_window(self.predictor, frames, anchor, uv)
            track_stages.update(answer.timings)
            return answer

        tracks = gather_tracks(prediction, window, track, self._pose_solver.config)
        return tracks, {"track": time.perf_counter() - start,
                        **{f"track.{k}": v for k, v in track_stages.items()}}

    def _solve_poses(self, prediction: WindowPrediction, window: list[Frame],
                     intrinsics: IntrinsicsStatus, tracks: WindowTracks,
                     depth_measurement: Optional[ScaleMeasurement]
                     ) -> tuple[WindowPrediction, PoseHealth]:
        """The window's poses from its tracks and depth. With pose_depth sensor and the window's
        depth scale measured, the tracks are lifted with the sensor's depth where it has a
        reading (pose_depth.py) and the solved poses aligned to the depth images
        (depth_alignment.py), both in the window's units through the measured scale."""
        sensor = (self.config.pose_depth == "sensor" and depth_measurement is not None
                  and depth_measurement.valid)
        ranges = (self.config.depth_min_range, self.config.depth_max_range)
        sensor_queries = aligned = 0
        if sensor:
            tracks, sensor_queries = with_sensor_depth(tracks, prediction, window,
                                                       depth_measurement.scale, *ranges)
        solution = self._pose_solver.solve(prediction, tracks)
        poses = solution.cam_from_world
        if sensor and self.config.pose_source != "camera_head":
            poses, aligned = align_to_depth(poses, prediction, window, depth_measurement.scale,
                                            *ranges)
        pose = replace(solution.health, intrinsics_source=intrinsics.source,
                       sensor_depth_queries=sensor_queries, depth_aligned_frames=aligned,
                       focal_disagreement=intrinsics.focal_disagreement,
                       warning="; ".join(w for w in (intrinsics.warning, solution.health.warning)
                                         if w))
        return replace(prediction, cam_from_world=poses), pose

    def _measure_scale(self, prediction: WindowPrediction, window: list[Frame]
                       ) -> ScaleMeasurement:
        """The window's metric scale from the configured sensor (scale_source depth or
        odometry), on the calibrated depth (and, for odometry, the solved poses) the chaining
        places."""
        source = self.config.scale_source
        if source == "depth":
            return depth_scale(prediction, window, self.config.conf_threshold,
                               self.config.conf_percentile, self.config.depth_min_range,
                               self.config.depth_max_range)
        if source == "odometry":
            return odometry_scale(prediction, window, self.config.scale_min_travel)
        return ScaleMeasurement(reason=f"scale_source {source} measures nothing")

    def _scale_stats(self, last: Optional[ScaleStatus]) -> dict:
        """The scale part of ``stats``: ``scale_status`` is "metric" only while the source is
        healthy (always for fixed, never for none, for a sensor per the scale filter)."""
        source = self.config.scale_source
        if last is None:
            metric = source == "fixed"
            value = self.config.metric_scale if metric else 1.0
            reason = {"none": "no scale source: VGGT's arbitrary units",
                      "fixed": ""}.get(source, f"waiting for the first window ({source})")
            uncertainty = float("nan")
        else:
            metric, value, reason, uncertainty = (last.metric, last.scale, last.reason,
                                                  last.uncertainty)
        counts = self._scale_filter
        return {"scale_status": "metric" if metric else "non-metric", "scale": {
            "source": source, "metric": metric, "value": value, "uncertainty": uncertainty,
            "windows_scaled": counts.windows_scaled if counts else 0,
            "windows_skipped": counts.windows_skipped if counts else 0,
            "windows_rejected": counts.windows_rejected if counts else 0,
            "verdict": last.verdict if last else "", "reason": reason}}

    def _count_pose(self, pose: PoseHealth) -> None:
        self._pose_counts["fallback_frames"] += pose.fallback_frames
        self._pose_counts["extrapolated_frames"] += pose.extrapolated_frames
        self._pose_counts["disagreement_windows"] += int(
            pose.disagreement_deg > DISAGREEMENT_WARN_DEG)
        self._pose_counts["degenerate_windows"] += int(pose.degenerate)
        self._pose_counts["focal_warning_windows"] += int(
            pose.focal_disagreement > FOCAL_DISAGREEMENT_WARN)

    # ----------------------------------------------------------------------------- tracking
    def track(self, stamp_ns: int, query_uv: np.ndarray) -> TrackAnswer:
        """Track ``query_uv`` ([N,2] original pixels of keyframe ``stamp_ns``; 0 = the newest
        keyframe) through the newest of the last ``track_history_windows`` windows that holds
        that keyframe, and place the queries in odom. Older windows re-run the network on their
        stored keyframes (the same ``track_window`` path the pose solver uses)."""
        with self._snapshot_lock:
            history = list(self._snapshots)
        if not history:
            raise TrackRequestError("no window has been processed yet")
        if stamp_ns == 0:
            snap, q = history[-1], len(history[-1].frames) - 1
        else:
            found = [(h, h.stamps.index(stamp_ns)) for h in reversed(history)
                     if stamp_ns in h.stamps]
            if not found:
                first, last = history[0].stamps[0], history[-1].stamps[-1]
                raise TrackRequestError(
                    f"stamp {stamp_ns} ns is not a keyframe of the last {len(history)} windows "
                    f"({first}..{last} ns); use the stamp of a keyframe (the stamps on /tf) "
                    f"no older than track_history_windows={self.config.track_history_windows} "
                    f"windows")
            snap, q = found[0]
        height, width = snap.frames[q].image.shape[:2]
        query_uv = self._check_queries(query_uv, width, height)
        pred = track_window(self.predictor, snap.frames, q, query_uv)
        points, valid = _query_points(snap.keyframes[snap.stamps[q]], query_uv)
        return TrackAnswer(stamps_ns=snap.stamps, query_index=q,
                           tracks_uv=pred.tracks_uv,
                           visibility=pred.visibility, confidence=pred.confidence,
                           points_odom=points, points_valid=valid)

    def _check_queries(self, query_uv: np.ndarray, width: int, height: int) -> np.ndarray:
        try:
            query_uv = np.asarray(query_uv, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TrackRequestError(f"query points are not numeric: {err}") from None
        if query_uv.ndim != 2 or query_uv.shape[1] != 2 or len(query_uv) == 0:
            raise TrackRequestError(f"query points must be a non-empty [N,2] array, got "
                                    f"shape {query_uv.shape}")
        if len(query_uv) > self.config.max_track_points:
            raise TrackRequestError(f"{len(query_uv)} query points, at most "
                                    f"{self.config.max_track_points} allowed")
        if not np.isfinite(query_uv).all():
            raise TrackRequestError("query points contain NaN or inf")
        outside = ((query_uv < 0).any(axis=1) | (query_uv[:, 0] > width - 1)
                   | (query_uv[:, 1] > height - 1))
        if outside.any():
            raise TrackRequestError(f"query points {np.flatnonzero(outside).tolist()} lie outside "
                                    f"the {width}x{height} image")
        return query_uv

    # ----------------------------------------------------------------------------- diagnostics
    @property
    def stats(self) -> dict:
        """Counters and last-window facts for diagnostics (a fresh dict)."""
        with self._snapshot_lock:
            last_chaining, timings = self._last_chaining, dict(self._timings)
            last_pose = self._last_pose
            last_scale = self._last_scale
        out = {
            "frames_in": self._frames_in,
            "keyframes": self._windows.keyframes,
            "dropped_non_keyframes": self._windows.dropped_non_keyframes,
            "windows": self._windows_done,
            "resets": self._resets,
            "failed_windows": self._failed_windows,
            "last_error": self._last_error,
            "last_reset_reason": self._last_reset_reason,
            "last_chaining": last_chaining,
            "last_pose": last_pose,
            "pose_source": self.config.pose_source,
            "intrinsics_source": last_pose.intrinsics_source if last_pose else "none yet",
            "timings": timings,
            "map_points": self._map_size(),
            "failed_fusions": self._failed_fusions,
            **self._scale_stats(last_scale),
        }
        out.update({f"rejected_{kind}": self._rejected[kind] for kind in REJECTION_KINDS})
        out.update({f"pose_{kind}": count for kind, count in self._pose_counts.items()})
        return out


def _check_camera_info(frame: Frame, width: int, height: int) -> None:
    info = frame.camera_info
    if info is None:
        return
    k = np.asarray(info.k, dtype=np.float64)
    if k.shape != (3, 3) or not np.isfinite(k).all():
        raise FrameRejected("bad_camera_info", f"K must be a finite 3x3 matrix, got shape "
                                               f"{k.shape}")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise FrameRejected("bad_camera_info", f"focal lengths must be positive, got fx={k[0, 0]}"
                                               f", fy={k[1, 1]}")
    if (info.width, info.height) != (width, height):
        raise FrameRejected("bad_camera_info", f"CameraInfo is {info.width}x{info.height}, "
                                               f"image is {width}x{height}")


def _query_points(keyframe: KeyframeResult, query_uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Odom points of query pixels from the keyframe's published depth and pose (NaN where the
    depth is unknown or the pixel falls outside the model image)."""
    uv = keyframe.mapping.to_model(query_uv)
    height, width = keyframe.depth.shape
    pix = np.rint(uv).astype(int)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < width) & (pix[:, 1] >= 0) & (pix[:, 1] < height)
    depth = np.full(len(uv), np.nan)
    depth[inside] = keyframe.depth[pix[inside, 1], pix[inside, 0]]
    rays = np.column_stack([uv, np.ones(len(uv))]) @ np.linalg.inv(keyframe.intrinsics).T
    cam = rays * depth[:, None]
    odom = cam @ keyframe.odom_from_cam[:3, :3].T + keyframe.odom_from_cam[:3, 3]
    return odom, np.isfinite(depth)
