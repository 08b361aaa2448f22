"""Plain data passed between the stages of the pipeline (no rclpy, no torch).

Conventions used everywhere in vggt_ros:
* stamps are integer nanoseconds (``stamp_ns``), as in ROS header stamps and rosbag;
* images are HxWx3 uint8 RGB NumPy arrays;
* poses are 4x4 float64 matrices. ``cam_from_world`` maps world points into the camera's
  OpenCV optical frame (x right, y down, z forward; REP-103 ``*_optical_frame``);
  ``odom_from_cam`` is its inverse once the window is placed in the odom frame;
* "model pixels" are pixels of the preprocessed (crop/pad, 518-wide) image the network saw;
  "original pixels" are pixels of the camera image. ``PreprocessMapping`` converts between them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence

import math

import numpy as np


@dataclass(frozen=True)
class PreprocessMapping:
    """How one original image maps onto the model input, per axis.

    x_model = x_orig * scale - offset_x and y_model = y_orig * scale_y - offset_y, with pixel
    centres at integer coordinates (ROS/OpenCV). The two scales differ because the resized side
    is rounded to a multiple of 14 (up to several model pixels over an image); ``scale_y`` None
    means "same as ``scale``". ``offset_x/offset_y`` include the crop (positive), the padding
    (negative) and the resampler's half-pixel term. ``valid`` is the model-pixel box
    (x0, y0, x1, y1) covered by real image content (padding excluded).
    """

    original_size: tuple[int, int]  # (width, height) of the camera image
    model_size: tuple[int, int]  # (width, height) of the network input
    scale: float
    offset_x: float
    offset_y: float
    valid: tuple[int, int, int, int]
    scale_y: Optional[float] = None

    def __post_init__(self) -> None:
        if self.scale <= 0 or self._scales()[1] <= 0:
            raise ValueError(f"mapping scales must be > 0, got {self.scale}, {self.scale_y}")

    def _scales(self) -> np.ndarray:
        return np.array([self.scale, self.scale if self.scale_y is None else self.scale_y])

    def _offsets(self) -> np.ndarray:
        return np.array([self.offset_x, self.offset_y])

    def to_model(self, uv: np.ndarray) -> np.ndarray:
        return np.asarray(uv, dtype=np.float64) * self._scales() - self._offsets()

    def to_original(self, uv: np.ndarray) -> np.ndarray:
        return (np.asarray(uv, dtype=np.float64) + self._offsets()) / self._scales()

    def intrinsics_to_original(self, k_model: np.ndarray) -> np.ndarray:
        k = np.array(k_model, dtype=np.float64)
        k[:2, :] = (k[:2, :] + self._offsets()[:, None] * k[2:3, :]) / self._scales()[:, None]
        return k

    def intrinsics_to_model(self, k_orig: np.ndarray) -> np.ndarray:
        k = np.array(k_orig, dtype=np.float64)
        k[:2, :] = k[:2, :] * self._scales()[:, None] - self._offsets()[:, None] * k[2:3, :]
        return k

    def sample_original(self, image: np.ndarray) -> np.ndarray:
        """An original-grid image [H,W] sampled at every model pixel -> [h,w] float32.

        Nearest neighbour, because interpolating depth across an edge would invent depths that
        exist nowhere; NaN where the model pixel falls outside the original image or outside
        ``valid`` (padding)."""
        image = np.asarray(image, dtype=np.float32)
        width, height = self.original_size
        if image.shape != (height, width):
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, the frame was "
                             f"{width}x{height}")
        mw, mh = self.model_size
        u, v = np.meshgrid(np.arange(mw, dtype=np.float64), np.arange(mh, dtype=np.float64))
        uv = self.to_original(np.stack([u.ravel(), v.ravel()], axis=1))
        col = np.rint(uv[:, 0]).astype(np.int64)
        row = np.rint(uv[:, 1]).astype(np.int64)
        x0, y0, x1, y1 = self.valid
        inside = ((col >= 0) & (col < width) & (row >= 0) & (row < height)
                  & (u.ravel() >= x0) & (u.ravel() < x1) & (v.ravel() >= y0) & (v.ravel() < y1))
        out = np.full(mw * mh, np.nan, dtype=np.float32)
        out[inside] = image[row[inside], col[inside]]
        return out.reshape(mh, mw)


@dataclass
class CameraIntrinsics:
    """A camera's calibration as given by sensor_msgs/CameraInfo (original pixels)."""

    k: np.ndarray  # 3x3
    width: int
    height: int


@dataclass
class Frame:
    """One camera image entering the pipeline."""

    stamp_ns: int
    image: np.ndarray  # HxWx3 uint8 RGB, original resolution
    frame_id: str
    camera_info: Optional[CameraIntrinsics] = None
    # Metric scale inputs (pipeline/scale_measure.py), attached by the node or the mapper when
    # a depth image or the robot's odometry matched this frame's stamp:
    depth_m: Optional[np.ndarray] = None  # HxW float32 metres, registered to ``image``; NaN/0: none
    odom_from_camera: Optional[np.ndarray] = None  # 4x4 camera pose from wheel odometry (m)


@dataclass
class WindowPrediction:
    """What a predictor returns for one window, in the window's own frame.

    Frame 0 of the window is the world origin and the scale is arbitrary (VGGT's normalised
    units), exactly as the network predicts it. Arrays are indexed by the window's frames.
    """

    stamps_ns: list[int]
    cam_from_world: np.ndarray  # [S,4,4] float64
    intrinsics: np.ndarray  # [S,3,3] float64, model pixels
    depth: np.ndarray  # [S,h,w] float32, window units
    depth_conf: np.ndarray  # [S,h,w] float32, >= 1 (VGGT's 1+exp) or any positive weight
    images: np.ndarray  # [S,h,w,3] uint8, the model-resolution RGB (for colouring points)
    mappings: list[PreprocessMapping]  # per frame
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds


@dataclass
class TrackPrediction:
    """Point tracks for one window, frame order as given to the predictor."""

    stamps_ns: list[int]
    tracks_uv: np.ndarray  # [S,N,2] original pixels of each frame
    visibility: np.ndarray  # [S,N] 0..1
    confidence: np.ndarray  # [S,N] 0..1
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds


class Predictor(Protocol):
    """Anything that turns a window of frames into geometry: the VGGT wrapper or a test double."""

    def predict(self, frames: Sequence[Frame]) -> WindowPrediction: ...

    def track(self, frames: Sequence[Frame], query_uv: np.ndarray) -> TrackPrediction:
        """Track ``query_uv`` ([N,2] original pixels of frames[0]) through all frames."""
        ...

    def describe(self) -> dict[str, str]:
        """Device, precision, model name: for diagnostics and summaries."""
        ...


@dataclass
class ChainingStatus:
    """How a window was placed in odom; reported in diagnostics and summaries."""

    method: str  # "first" | "points" | "centres" | "previous_scale" | "reset"
    scale: float  # Sim(3) scale applied to the window (odom units per window unit)
    residual: float = float("nan")  # robust RMS residual of the fit, odom units
    inlier_ratio: float = float("nan")
    num_points: int = 0
    warning: str = ""  # non-empty when a fallback was used or the fit looked poor


@dataclass(frozen=True)
class ScaleMeasurement:
    """Metres per window unit of one window, measured by a depth sensor or the robot's odometry
    (pipeline/scale_measure.py); NaN when nothing could be measured."""

    scale: float = float("nan")
    uncertainty: float = float("nan")  # relative 1-sigma
    samples: int = 0  # pixels (depth) or keyframes (odometry) used
    rejected: int = 0  # samples rejected as outliers
    reason: str = ""  # why there is no measurement

    @property
    def valid(self) -> bool:
        return math.isfinite(self.scale) and self.scale > 0


@dataclass(frozen=True)
class ScaleStatus:
    """How a window's metric scale was set (pipeline/scale_filter.py); diagnostics and
    summaries report it, so a map is never called metric without a healthy source."""

    source: str  # none | fixed | depth | odometry
    metric: bool  # the units are metres and the source is healthy
    scale: float  # odom units per window unit applied to the window
    uncertainty: float = float("nan")  # relative 1-sigma of ``scale`` (0.01 = 1 %)
    measured: float = float("nan")  # this window's own measurement; NaN when it had none
    verdict: str = ""  # scaled | skipped | rejected | fixed | none
    reason: str = ""  # why a window was skipped or rejected, or what the source waits for


@dataclass(frozen=True)
class PoseUncertainty:
    """1-sigma errors of a placed keyframe (pipeline/covariance.py), isotropic so that they
    hold in any frame the pose is re-expressed in (REP-105 odom, base or camera body)."""

    position_std: float  # odom units, accumulated since the trajectory's start
    rotation_std: float  # radians, accumulated
    step_position_std: float  # odom units, between this keyframe and the one before
    step_rotation_std: float  # radians, between this keyframe and the one before


@dataclass
class PoseHealth:
    """How well one window's poses agree with its tracks (vggt_ros.pipeline.pose_solver);
    diagnostics and summaries report it, so a bad trajectory is visible without ground truth."""

    pose_source: str  # which poses the window used: camera_head | tracks | refined
    solved_frames: int = 0  # frames with a track-based pose (the window's first included)
    fallback_frames: int = 0  # frames that kept the camera head's pose (too few inliers)
    extrapolated_frames: int = 0  # frames whose tracks disagreed: moved on at their neighbours'
    observations: int = 0  # visible tracked pixels used
    inlier_ratio: float = float("nan")  # PnP inliers / visible observations (solved frames)
    reprojection_px: float = float("nan")  # median reprojection error of the chosen poses
    track_motion_px: float = float("nan")  # median tracked image motion from the anchors
    unexplained_motion: float = float("nan")  # reprojection_px / track_motion_px
    disagreement_deg: float = float("nan")  # largest solver vs camera-head rotation difference
    intrinsics_source: str = "predicted"  # camera_info | predicted
    focal_disagreement: float = float("nan")  # max |f_pred / f_cal - 1| with a calibration
    sensor_depth_queries: int = 0  # queries lifted with the depth sensor's depth (pose_depth)
    depth_aligned_frames: int = 0  # frames aligned to the depth sensor (depth_alignment)
    degenerate: bool = False  # the poses do not explain the image motion the tracks show
    warning: str = ""


@dataclass
class KeyframeResult:
    """One keyframe placed in odom: what the node publishes per keyframe."""

    stamp_ns: int
    frame_id: str
    odom_from_cam: np.ndarray  # 4x4 float64, optical frame pose in odom (map units)
    depth: np.ndarray  # [h,w] float32 map units, NaN where invalid or low confidence
    confidence: np.ndarray  # [h,w] float32 (VGGT depth confidence)
    intrinsics: np.ndarray  # 3x3, pixels of the depth image (= model pixels)
    image: np.ndarray  # [h,w,3] uint8 RGB aligned with depth
    mapping: PreprocessMapping
    intrinsics_original: np.ndarray  # 3x3, original camera pixels


@dataclass
class WindowResult:
    """Everything one processed window produced, already in the odom frame."""

    index: int
    stamps_ns: list[int]  # every keyframe of the window, in order
    new_keyframes: list[KeyframeResult]  # keyframes placed for the first time by this window
    points: np.ndarray  # [N,3] float32 confident Depth+Cam points of the window, odom
    colors: np.ndarray  # [N,3] uint8
    chaining: ChainingStatus
    pose: Optional[PoseHealth] = None
    timings: dict[str, float] = field(default_factory=dict)
    scale: Optional[ScaleStatus] = None
    uncertainty: Optional[PoseUncertainty] = None  # of the window's newest keyframe
