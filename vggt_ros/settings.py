"""The user-facing settings of vggt_ros, defined once.

The live node declares each entry as a ROS parameter (with its description and range), the
offline mapper exposes each as a ``--name`` command-line option, and ``config/vggt.yaml``
lists them all; tests check the three agree. ``group`` says which object consumes a setting:
``pipeline`` -> PipelineConfig fields of the same name, ``predictor`` ->
``vggt_ros.inference.builder.build_predictor``, ``sensors`` -> the scale sensors' topics and
stamp matching (the live node and ``vggt_map``), ``ros`` -> only the live node (frames, topics,
publishing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    description: str
    group: str  # "pipeline" | "predictor" | "sensors" | "ros"
    min: Optional[float] = None
    max: Optional[float] = None
    choices: tuple = ()
    multiple_of: Optional[int] = None

    @property
    def type(self) -> type:
        return type(self.default)

    def check(self, value: Any) -> Optional[str]:
        """Return why ``value`` is not acceptable, or None if it is."""
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            return f"{self.name} must be a {self.type.__name__}, got {value!r}"
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {list(self.choices)}, got {value!r}"
        if self.min is not None and value < self.min:
            return f"{self.name} must be >= {self.min}, got {value!r}"
        if self.max is not None and value > self.max:
            return f"{self.name} must be <= {self.max}, got {value!r}"
        if self.multiple_of and value % self.multiple_of:
            return f"{self.name} must be a multiple of {self.multiple_of}, got {value!r}"
        return None


SETTINGS: tuple[Setting, ...] = (
    # Model and inference.
    Setting("checkpoint", "", "Path to the VGGT weights (.pt or .safetensors, e.g. the official "
            "model.pt). Empty: the small demo model shipped with the package. Never downloaded.",
            "predictor"),
    Setting("device", "auto", "Inference device: auto (CUDA if available), cpu, cuda, cuda:N.",
            "predictor"),
    Setting("precision", "auto", "auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16, fp16.",
            "predictor", choices=("auto", "fp32", "bf16", "fp16")),
    Setting("preprocess_mode", "crop", "How frames become model input: crop (518 wide, centre "
            "crop of tall images) or pad (whole image, white padding), as the official code.",
            "predictor", choices=("crop", "pad")),
    Setting("image_size", 0, "Model input width in pixels (multiple of 14); 0 = the model's own "
            "training size (518 for VGGT-1B, the demo model's size for the embedded model).",
            "predictor", min=0, max=1036, multiple_of=14),
    Setting("compile_model", True, "On CUDA, torch.compile the network for each new window "
            "shape: the first window of a shape takes ~10 s longer, every later one is ~1.3x "
            "faster. false: the uncompiled fast path (no start-up delay).", "predictor"),
    Setting("compile_cache_dir", "", "Where torch.compile keeps its compiled graphs between runs "
            "(CUDA with compile_model), so a second start does not compile again; a "
            "sub-directory per torch version and model code keeps stale graphs out. Empty: "
            "~/.cache/vggt_ros/torch_compile.", "predictor"),
    Setting("sparse_global_attention", 0.0, "Opt-in approximation for long windows (offline "
            "mapping, window_size >= 32) on the fast path (CUDA): 0 = exact global attention; "
            "a value in (0, 1] runs block-sparse global attention (arXiv 2509.07120) in windows "
            "of 32 or more keyframes, each query block keeping the key blocks that cover 90 "
            "percent of its estimated attention mass, at most this share of them. Changes the "
            "results; speed and accuracy cost in docs/PERFORMANCE.md.", "predictor",
            min=0.0, max=1.0),
    Setting("tracker_precision", "fp32", "Arithmetic of the track head's iterative tracker "
            "on the fast path (CUDA), which the pose solver calls once per window: fp32 (the "
            "official arithmetic), tf32 (TensorFloat-32 matrix products: on an H200 the request "
            "at 256 queries takes 20 instead of 37 ms) or bf16. Changes the tracks slightly; "
            "measured in docs/PERFORMANCE.md.", "predictor", choices=("fp32", "tf32", "bf16")),
    # Windowing and keyframes.
    Setting("window_size", 8, "Keyframes per VGGT window.", "pipeline", min=2, max=256),
    Setting("overlap", 2, "Keyframes shared by consecutive windows (used to chain them; "
            "must be smaller than window_size).", "pipeline", min=1, max=255),
    Setting("keyframe_stride", 1, "Use every N-th frame that passed keyframe_min_interval as a "
            "keyframe candidate.",
            "pipeline", min=1, max=1000),
    Setting("keyframe_min_interval", 0.1, "Minimum stamp time in seconds between two keyframe "
            "candidates (a tolerance of a tenth absorbs stamp jitter), so keyframes cover the same "
            "motion at 10 and at 30 Hz; frames sooner are skipped before decoding. 0 = off.",
            "pipeline", min=0.0, max=60.0),
    Setting("keyframe_min_motion", 0.0, "Minimum image change (0..1, mean absolute grey-level "
            "difference to the last keyframe) for a candidate to become a keyframe; 0 = off.",
            "pipeline", min=0.0, max=1.0),
    # Depth / map filtering.
    Setting("conf_threshold", 1.5, "Depth confidence below which pixels are invalid (NaN in "
            "depth, left out of clouds). VGGT confidences are >= 1.", "pipeline", min=0.0),
    Setting("conf_percentile", 20.0, "Also drop this percentage of the least confident pixels "
            "of each frame.", "pipeline", min=0.0, max=100.0),
    Setting("voxel_size", 0.02, "Voxel edge of the accumulated map, in map units.", "pipeline",
            min=1e-6, max=100.0),
    Setting("max_map_points", 2_000_000, "Upper bound on points kept in the accumulated map.",
            "pipeline", min=1000),
    # Metric scale.
    Setting("scale_source", "none", "Where metres come from: none (VGGT's arbitrary units, "
            "reported non-metric), fixed (metric_scale), depth (a depth image registered to "
            "the colour camera: median sensor/predicted depth ratio per window), odometry (the "
            "robot's wheel odometry: its travel over the window's keyframe stamps).",
            "pipeline", choices=("none", "fixed", "depth", "odometry")),
    Setting("metric_scale", 0.0, "With scale_source fixed: known metres per VGGT unit of the "
            "first window (later windows are chained to it); 0 with any other source.",
            "pipeline", min=0.0),
    Setting("depth_min_range", 0.2, "Nearest sensor depth in metres used (for the scale and, "
            "with pose_depth sensor, the poses); closer readings are not trusted.", "pipeline",
            min=0.0, max=100.0),
    Setting("depth_max_range", 6.0, "Farthest sensor depth in metres used (for the scale and, "
            "with pose_depth sensor, the poses): a depth camera's error grows with the square "
            "of the range.", "pipeline",
            min=0.01, max=1000.0),
    Setting("scale_min_travel", 0.2, "Odometry source: metres the robot must move within a "
            "window for its scale to be measured; a window with less keeps the previous scale.",
            "pipeline", min=0.0, max=100.0),
    Setting("scale_max_rate", 0.05, "Largest relative scale change one window's measurement "
            "may cause (0.05 = 5 in a hundred), so one bad window cannot jump the map.",
            "pipeline", min=0.001, max=1.0),
    Setting("scale_max_uncertainty", 0.05, "The scale is reported metric while its relative "
            "1-sigma uncertainty is at most this (it grows with every window not measured).",
            "pipeline", min=0.001, max=1.0),
    # Scale sensors (node subscriptions, vggt_map topics).
    Setting("depth_topic", "/camera/depth/image_raw", "scale_source depth: a depth image, "
            "16UC1 millimetres or 32FC1 metres. Registered (aligned) to the colour camera it is "
            "used as is; otherwise it is reprojected into the colour camera with its own "
            "CameraInfo and the static transform between the two optical frames on /tf_static.",
            "sensors"),
    Setting("depth_info_topic", "", "The depth image's sensor_msgs/CameraInfo; empty: "
            "depth_topic's sibling camera_info (/camera/depth/image_raw -> "
            "/camera/depth/camera_info), as image_transport names it.", "sensors"),
    Setting("odom_topic", "/odom", "scale_source odometry: the robot's nav_msgs/Odometry "
            "(wheel odometry); empty: read odom_tf_parent -> odom_tf_child from /tf instead. "
            "The camera mount from its child frame to the camera frame is read from "
            "/tf_static.", "sensors"),
    Setting("odom_tf_parent", "odom", "With an empty odom_topic: the parent frame of the "
            "robot's odometry transform on /tf.", "sensors"),
    Setting("odom_tf_child", "base_link", "With an empty odom_topic: the child frame of the "
            "robot's odometry transform on /tf.", "sensors"),
    Setting("sensor_stamp_tolerance", 0.02, "Largest stamp difference in seconds between a "
            "colour frame and the depth image used with it.", "sensors", min=0.0, max=1.0),
    Setting("odom_max_gap", 0.5, "Odometry samples further apart than this many seconds are "
            "not interpolated between (the odometry stalled).", "sensors", min=0.001,
            max=60.0),
    # Intrinsics and poses.
    Setting("intrinsics_source", "camera_info", "camera_info: a calibrated CameraInfo, when "
            "frames carry one, is the intrinsics of record (depth, points, poses, COLMAP); "
            "predicted: always VGGT's own focal length.", "pipeline",
            choices=("camera_info", "predicted")),
    Setting("pose_source", "refined", "Where window poses come from: camera_head (VGGT's camera "
            "head as is), tracks (PnP on the track head's tracks lifted with the predicted "
            "depth), refined (tracks + a bundle adjustment of the window's poses and depths).",
            "pipeline", choices=("camera_head", "tracks", "refined")),
    Setting("pose_queries", 256, "Pixels tracked per anchor keyframe to solve a window's poses.",
            "pipeline", min=8, max=4096),
    Setting("pose_anchors", 1, "Keyframes per window whose pixels are tracked for the pose "
            "solver (the first, then evenly spaced); more anchors see more of the window.",
            "pipeline", min=1, max=8),
    Setting("pose_depth", "sensor", "With scale_source depth, which depth the window poses "
            "rest on: sensor (the pose solver lifts its tracks with the depth image where it "
            "has a reading, then aligns each keyframe's depth image to the window's first by "
            "point-to-plane ICP, taken where it explains the depth image clearly better: the "
            "motion is measured by the sensor, as RGB-D odometry), network (the predicted "
            "depth only: the motion's scale is then the tracks', 15 percent short with the "
            "demo model). No effect with another scale_source.", "pipeline",
            choices=("sensor", "network")),
    Setting("track_history_windows", 8, "How many recent windows track_points can answer for "
            "(their keyframes are kept for re-running the track head).", "pipeline",
            min=1, max=100),
    Setting("max_track_points", 256, "Most query points one track_points request may carry.",
            "pipeline", min=1, max=4096),
    Setting("pipelined", False, "Place each window (pose solve, chaining: host CPU work) on a "
            "second thread while the next window is predicted: when frames wait (a bag, a node "
            "falling behind) windows are processed at the pace of the slower of the two stages "
            "instead of their sum; the same results. A window is then returned with the next "
            "window's frames, or as soon as no frame is waiting (the node). Pays on a GPU; "
            "docs/PERFORMANCE.md has the measurement.", "pipeline"),
    # ROS frames and outputs.
    Setting("odom_frame", "odom", "Fixed frame of the chained trajectory (REP-105: z up, "
            "odom -> body starts at identity).", "ros"),
    Setting("base_frame", "", "If set, publish odom -> base_frame using the static base_frame -> "
            "camera optical transform from /tf_static; else odom -> <optical frame>_body, a "
            "camera-body frame (x forward, z up) the node owns.", "ros"),
    Setting("camera_frame", "", "Camera optical frame id; empty = the image header frame_id.",
            "ros"),
    Setting("image_transport", "raw", "How the camera images arrive, as image_transport names "
            "it: raw (sensor_msgs/Image on image) or compressed (sensor_msgs/CompressedImage, "
            "JPEG or PNG, on image's compressed sub-topic, e.g. /camera/image_raw/compressed "
            "when image is remapped to /camera/image_raw).", "ros",
            choices=("raw", "compressed")),
    Setting("publish_tf", True, "Publish the camera (or base) pose on /tf.", "ros"),
    Setting("tf_mode", "odom_tree", "Which pose edge goes on /tf: odom_tree (odom_frame -> "
            "base or camera body), separate_odom (the inverse, body -> odom_frame: for a robot "
            "whose wheel odometry owns odom -> base_link; set odom_frame to e.g. vggt_odom), "
            "odometry_only (no pose on /tf: the odometry message is for robot_localization).",
            "ros", choices=("odom_tree", "separate_odom", "odometry_only")),
    Setting("publish_depth", True, "Publish depth, depth/camera_info, depth/confidence.", "ros"),
    Setting("publish_points", True, "Publish each window's cloud on points.", "ros"),
    Setting("publish_map", True, "Publish the accumulated voxel map on map_points.", "ros"),
    Setting("map_publish_period", 2.0, "Seconds between map_points messages.", "ros",
            min=0.1, max=3600.0),
    Setting("idle_flush_timeout", 1.0, "Seconds without a frame after which the keyframes "
            "waiting for a window are processed and published (a stopped camera loses none); "
            "0 = off.", "ros", min=0.0, max=3600.0),
    Setting("queue_size", 8, "Input frames buffered for the worker; the oldest are dropped "
            "(and counted) when it is full.", "ros", min=1, max=1000),
    Setting("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", "ros",
            min=0.1, max=60.0),
    # Lifecycle and start-up.
    Setting("autostart", True, "Configure and activate at start-up (a plain node). false: a "
            "managed node that waits, unconfigured, for its lifecycle transitions "
            "(configure, activate, ...).", "ros"),
    Setting("warmup_image_width", 640, "Width in pixels of the camera images the model is "
            "warmed up for at configure: every window shape is run once on dummy frames of "
            "this size, so no window after activate waits for a compile. 0 = no warm-up.",
            "ros", min=0, max=16384),
    Setting("warmup_image_height", 480, "Height in pixels of the warm-up frames (see "
            "warmup_image_width). 0 = no warm-up.", "ros", min=0, max=16384),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def defaults(group: Optional[str] = None) -> dict[str, Any]:
    return {s.name: s.default for s in SETTINGS if group is None or s.group == group}


def of_group(values: dict[str, Any], group: str) -> dict[str, Any]:
    """The entries of ``values`` that belong to ``group``, to pass on by name (e.g. the
    ``predictor`` settings as ``build_predictor``'s keyword arguments)."""
    return {s.name: values[s.name] for s in SETTINGS if s.group == group}


def overlap_problem(window_size: int, overlap: int) -> Optional[str]:
    """The one rule between two settings: consecutive windows share ``overlap`` keyframes (the
    chaining correspondences), so each window must also bring at least one new keyframe."""
    if overlap >= window_size:
        return "overlap must be smaller than window_size"
    return None


def validate(values: dict[str, Any]) -> list[str]:
    """Check known settings; returns the reasons of every rejected value (empty = all fine)."""
    problems = [f"unknown setting {k!r}" for k in values if k not in BY_NAME]
    problems += [r for k, v in values.items() if k in BY_NAME and (r := BY_NAME[k].check(v))]
    if "overlap" in values and "window_size" in values:
        problem = overlap_problem(values["window_size"], values["overlap"])
        problems += [problem] if problem else []
    return problems
