"""The live ROS 2 node ``vggt``: camera images in; poses on TF, depth, clouds, tracks out.

Threading (why it looks like this): camera callbacks must never wait for the GPU, so they only
decode the image and push a Frame into a bounded queue (oldest dropped and counted when full).
ONE worker thread owns the pipeline and publishes what each window produced. The track_points
service and the timers run in their own callback groups of a MultiThreadedExecutor, so a long
window never blocks them (the pipeline answers tracking from a snapshot of the last window).
Every publish is wrapped: under load DDS can refuse a sample, and a dropped message
must not kill the node. With a measured scale source the depth or odometry callbacks only
decode into a buffer (odometry from an Odometry topic, or the robot's odom -> base_link on /tf
when ``odom_topic`` is empty; depth with its own CameraInfo, reprojected into the colour
camera through /tf_static when it is not registered); the worker gives each frame the sensor
data matching its stamp (``pipeline/sensors.py``), waiting up to SENSOR_WAIT_S for data that
is a little late. Bad input (undecodable images, rejected frames, broken CameraInfo) is
counted per kind, logged once per kind (then at most every LOG_PERIOD_S), and reported in
/diagnostics; the node keeps running.

Lifecycle (a managed node, rclpy.lifecycle): ``configure`` checks the parameters, loads the
model and warms it up on every window shape (``inference/warmup.py``), so no window after
``activate`` waits for a compile; ``activate`` subscribes to the camera and starts the worker;
``deactivate`` stops both but keeps the pipeline (trajectory, map, waiting keyframes and queued
frames), so the next ``activate`` continues the same odom; ``cleanup`` frees the model and the
GPU memory. A failed transition is logged with its reason, reported in /diagnostics and leaves
the state it started from. /diagnostics and the lifecycle services work in every state. With
``autostart`` (the default) the node configures and activates itself: a plain node for
``ros2 run``, which exits with status 2 when it cannot start.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import Counter, deque
from typing import Any, Callable, Optional, Sequence

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Point
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import (LifecycleNode, LifecyclePublisher, LifecycleState,
                             TransitionCallbackReturn)
from rclpy.logging import get_logger
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.service import Service
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage

from vggt_ros import settings
from vggt_ros.inference.builder import build_predictor
from vggt_ros.inference.device import ModelUnavailableError
from vggt_ros.inference.warmup import WarmupError, plan_for_settings
from vggt_ros.io.images import ImageDecodeError
from vggt_ros.model import CheckpointError
from vggt_ros.msg import PointTrack
from vggt_ros.nodes import conversions as conv
from vggt_ros.nodes import params
from vggt_ros.nodes.rclpy_messages import message_class, qos_profile, to_rclpy
from vggt_ros.nodes.static_tf import StaticTransforms
from vggt_ros.pipeline.pipeline import FrameRejected, Pipeline, TrackRequestError, WindowFailed
from vggt_ros.pipeline.sensors import (DepthImage, OdometryTrack, SensorMatcher, StampedBuffer,
                                       camera_info_topic_of)
from vggt_ros.pipeline.stream import GapCounter
from vggt_ros.pipeline.types import CameraIntrinsics, Frame, Predictor, WindowResult
from vggt_ros.pipeline.window import IdleTimer, interval_elapsed
from vggt_ros.srv import TrackPoints
from vggt_ros.topics import messages
from vggt_ros.topics.diagnostics import (falling_behind, hardware_id, latency_values,
                                         pipeline_status, status_name)
from vggt_ros.topics.lifecycle_status import StartupRecord, idle_status, lifecycle_values
from vggt_ros.topics.odom_frame import Mount, camera_body_frame, camera_body_mount
from vggt_ros.topics.table import NODE_NAME, OUTPUTS
from vggt_ros.topics.window_outputs import Output, WindowOutputs

__all__ = ["VGGTNode", "DropOldestQueue", "main"]

LOG_PERIOD_S = 10.0  # repeat a per-kind warning at most this often
LATENCY_SAMPLES = 300  # the latest poses whose stamp-to-TF latency diagnostics summarise
SENSOR_WAIT_S = 0.2  # longest a frame waits for its depth image / odometry to arrive
SENSOR_ALIVE_NS = 1_000_000_000  # a sensor silent for longer than this is not waited for
DEPTH_BUFFER = 64  # depth images kept (2 s at 30 Hz: longer than a frame waits in the queue)

_TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
_TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)  # tf2's listener QoS
# Window output topic -> the publish_* switch that turns it off (odometry and path are always
# published; publish_map is read by the map timer, before it copies the map).
_SWITCHES = {"/tf": "publish_tf", "/tf_static": "publish_tf", "depth": "publish_depth",
             "depth/camera_info": "publish_depth",
             "depth/confidence": "publish_depth", "points": "publish_points"}


class DropOldestQueue:
    """Bounded FIFO between callbacks and the worker: a full queue drops its OLDEST item,
    because for live perception the newest image is the valuable one."""

    def __init__(self, maxlen: int) -> None:
        self._items: deque = deque(maxlen=maxlen)
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if len(self._items) == self._items.maxlen:
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def get(self, timeout: float) -> Optional[Any]:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        return len(self._items)


def ready_line(image_topic: str, values: dict[str, Any], model: dict[str, str], scale: str,
               frames: str) -> str:
    """The one human-readable line that says the node is up and how it is set."""
    size = model.get("image_size") or values["image_size"] or "the model's own"
    return (f"ready: {image_topic} -> {frames}; model {model.get('name', model.get('model', '?'))}"
            f" on {model.get('device', '?')} ({model.get('precision', '?')}, input width {size}); "
            f"windows of {values['window_size']} keyframes, overlap {values['overlap']}, a "
            f"keyframe at most every {values['keyframe_min_interval']:g} s; scale {scale}")


class VGGTNode(params.ExplainedRefusals, LifecycleNode):
    """See the module docstring. ``predictor`` injects a model (tests): it is used as given,
    without warm-up, and kept across cleanup; otherwise ``configure`` builds one from the
    ``checkpoint``/``device``/... parameters. ``command_line`` (the process's arguments) lets
    start-up report a ``-p`` that rcl dropped. Raises ``params.ParameterError`` when a
    parameter cannot even be declared, and with ``autostart`` whatever made configure fail
    (ParameterError, model loading errors, WarmupError)."""

    def __init__(self, predictor: Optional[Predictor] = None, node_name: str = NODE_NAME,
                 command_line: Sequence[str] = (), **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        # What the transitions build and release (set first: destroy_node may come early).
        self._injected_predictor = predictor
        self.predictor: Optional[Predictor] = None
        self.pipeline: Optional[Pipeline] = None
        self._model_description: dict[str, str] = {}
        self._startup = StartupRecord()
        self._configure_failure: Optional[Exception] = None
        self._active = threading.Event()
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._configured_entities: list = []  # lifecycle publishers, /tf_static, track_points
        self._output_publishers: dict[str, Any] = {}
        self.image_sub = self.camera_info_sub = None  # only while active
        self._sensor_subs: list = []  # depth / odometry of the scale source, only while active
        self._map_timer = None
        self._state_lock = threading.Lock()

        self.values = params.declare_and_read(self, command_line)
        self.add_on_set_parameters_callback(params.on_set_callback(lambda: self.values))
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._reset_counters()
        # /diagnostics is a plain publisher: the lifecycle state is reported in every state.
        diagnostics = OUTPUTS["/diagnostics"]
        self._output_publishers["/diagnostics"] = self.create_publisher(
            message_class(diagnostics.msgtype), "/diagnostics", qos_profile(diagnostics))
        self._diag_timer = self.create_timer(self.values["diagnostics_period"],
                                             self._publish_diagnostics,
                                             callback_group=MutuallyExclusiveCallbackGroup())
        if self.values["autostart"]:
            self._start()
        else:
            params.set_startup_parameters_writable(self, True)
            self.get_logger().info("unconfigured (autostart is false): waiting for the "
                                   "lifecycle transitions configure and activate")

    def _start(self) -> None:
        """Plain-node mode: configure and activate now; raise what made configure fail."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise self._configure_failure or RuntimeError("configure failed")
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError(f"activate failed: {self._startup.last_error}")

    def _reset_counters(self) -> None:
        """Per-configuration state shared by callbacks, the worker and the timers (guarded
        by _state_lock); a new configure starts a new trajectory and new counts."""
        self.rejected: Counter = Counter()  # input problem kind -> count
        self.output_errors: Counter = Counter()  # bad_output / publish_failed / failed_window / internal_error
        self._last_logged: dict[str, float] = {}
        self._resets_seen = 0
        self._camera_info: Optional[CameraIntrinsics] = None
        self._depth_info: Optional[CameraIntrinsics] = None  # the depth camera's own
        self._camera_frame = self.values["camera_frame"]  # else the last image's frame_id
        self._static_tf = StaticTransforms()
        self._base_tf_missing_logged = False
        self._optical_parent_logged = False
        self._outputs = WindowOutputs(self.values["odom_frame"], self._mount,
                                      lambda reason: self._output_error("bad_output", reason),
                                      tf_mode=self.values["tf_mode"])
        self._sensors = self._sensor_matcher()
        self._frames_in = 0  # image callbacks
        self._frames_rejected = 0  # images refused by decoding or by the pipeline
        self._skipped_by_interval = 0  # sooner than keyframe_min_interval: never decoded
        self._last_candidate_stamp: Optional[int] = None
        self._gaps = GapCounter()  # frames lost before the callback, from the stamps
        self._tf_latencies: deque = deque(maxlen=LATENCY_SAMPLES)  # image stamp -> /tf, s
        self._keyframes_out = 0
        self._windows = 0
        self._window_latency_s = float("nan")
        self._last_window: Optional[WindowResult] = None
        self._map_dirty = False
        # (time, frames_in, keyframes_out, queue drops, candidates) at the last diagnostics
        self._rate_mark = (time.monotonic(), 0, 0, 0, 0)
        self._queue = DropOldestQueue(self.values["queue_size"])
        self._idle = IdleTimer(self.values["idle_flush_timeout"])

    # --- lifecycle transitions ------------------------------------------------------------

    def _transition_failed(self, transition: str, err: BaseException) -> None:
        reason = str(err) if isinstance(err, (params.ParameterError, ModelUnavailableError,
                                              CheckpointError, WarmupError)) \
            else f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
        self._startup.last_error = f"{transition} failed: {reason}"
        self.get_logger().error(self._startup.last_error)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check the parameters, load and warm up the model, create the outputs. On any
        failure everything built is released and the node stays unconfigured."""
        try:
            self._configure()
        except Exception as err:  # noqa: BLE001 - reported; the node stays unconfigured
            self._configure_failure = err
            self._transition_failed("configure", err)
            self._release()
            params.set_startup_parameters_writable(self, True)
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        started = time.monotonic()
        values = {s.name: self.get_parameter(s.name).value for s in settings.SETTINGS}
        problems = params.check(values)
        if problems:
            raise params.ParameterError("; ".join(problems))
        self.values = values
        self._startup = StartupRecord()
        predictor = self._injected_predictor
        if predictor is None:
            predictor = build_predictor(**settings.of_group(values, "predictor"),
                                        log=self.get_logger().info,
                                        warn=self.get_logger().warning)
        self.predictor = predictor
        self._startup.model_load_s = time.monotonic() - started
        self._warm_up(predictor)
        self._model_description = dict(predictor.describe())
        self.pipeline = Pipeline(predictor, params.pipeline_config(values))
        self._reset_counters()
        self._make_configured_interfaces()
        params.set_startup_parameters_writable(self, False)
        self._startup.configure_s = time.monotonic() - started
        self.get_logger().info(
            f"configured in {self._startup.configure_s:.1f} s (model "
            f"{self._startup.model_load_s:.1f} s, {self._startup.warmup}); activate to start")

    def _warm_up(self, predictor: Predictor) -> None:
        """Every window shape the pipeline will run, on dummy frames of the warm-up size; an
        injected predictor is used as given."""
        if predictor is self._injected_predictor:
            self._startup.warmup = "none (injected predictor)"
            return
        plan = plan_for_settings(self.values)
        if plan is None:
            self._startup.warmup = "none (warmup_image_width or _height is 0)"
            return
        report = predictor.warm_up(plan, log=self.get_logger().info)
        self._startup.warmup_s = report.seconds
        self._startup.warmup = report.summary()

    def _make_configured_interfaces(self) -> None:
        """Outputs (lifecycle publishers: silent until activate), the camera mount from
        /tf_static (known before the first window) and the track_points service."""
        entities = self._configured_entities
        for name, topic in OUTPUTS.items():
            if name != "/diagnostics":
                publisher = self.create_lifecycle_publisher(message_class(topic.msgtype), name,
                                                            qos_profile(topic))
                self._output_publishers[name] = publisher
                entities.append(publisher)
        entities.append(self.create_subscription(TFMessage, "/tf_static", self._on_tf_static,
                                                 _TF_STATIC_QOS))
        entities.append(self.create_service(TrackPoints, "track_points", self._on_track_points,
                                            callback_group=MutuallyExclusiveCallbackGroup()))

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the outputs, start the worker, subscribe to the camera."""
        try:
            super().on_activate(state)  # enables the lifecycle publishers
            self._stop.clear()
            self._worker = threading.Thread(target=self._work, name="vggt_worker", daemon=True)
            self._worker.start()
            inputs = MutuallyExclusiveCallbackGroup()
            self.image_sub = self._subscribe_camera(inputs)
            self.camera_info_sub = self.create_subscription(
                CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data,
                callback_group=inputs)
            self._sensor_subs = []  # the scale source's sensor, if it has one
            if self._sensors is not None and self._sensors.depth is not None:
                self._sensor_subs.append(self.create_subscription(
                    Image, self.values["depth_topic"], self._on_depth, qos_profile_sensor_data,
                    callback_group=inputs))
                self._sensor_subs.append(self.create_subscription(
                    CameraInfo, camera_info_topic_of(self.values["depth_topic"],
                                                     self.values["depth_info_topic"]),
                    self._on_depth_info, qos_profile_sensor_data, callback_group=inputs))
            if self._sensors is not None and self._sensors.odometry is not None:
                if self.values["odom_topic"]:
                    self._sensor_subs.append(self.create_subscription(
                        Odometry, self.values["odom_topic"], self._on_odometry,
                        qos_profile_sensor_data, callback_group=inputs))
                else:  # the robot's odom -> base_link edge on /tf
                    self._sensor_subs.append(self.create_subscription(
                        TFMessage, "/tf", self._on_tf, _TF_QOS, callback_group=inputs))
            # Own group: copying the map waits for a window in progress; diagnostics must not.
            self._map_timer = self.create_timer(self.values["map_publish_period"],
                                                self._publish_map,
                                                callback_group=MutuallyExclusiveCallbackGroup())
            self._active.set()
            self._startup.last_error = ""
        except Exception as err:  # noqa: BLE001 - undone; the node stays inactive
            self._transition_failed("activate", err)
            self._stop_processing()
            super().on_deactivate(state)
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(ready_line(
            self.image_sub.topic_name, self.values, self._model_description,
            self.pipeline.stats["scale_status"], self._pose_frames()))
        return TransitionCallbackReturn.SUCCESS

    def _subscribe_camera(self, group: MutuallyExclusiveCallbackGroup) -> Subscription:
        """The camera subscription. compressed follows image_transport's naming: the image
        topic, after remapping, plus "/compressed", so remapping image moves both."""
        if self.values["image_transport"] == "compressed":
            return self.create_subscription(
                CompressedImage, self.resolve_topic_name("image") + "/compressed",
                self._on_image, qos_profile_sensor_data, callback_group=group)
        return self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data,
                                        callback_group=group)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop taking frames and processing; keep the pipeline, the queued frames and the
        latched outputs, so the next activate continues the same trajectory."""
        self._stop_processing()
        super().on_deactivate(state)  # disables the lifecycle publishers
        self._startup.last_error = ""
        waiting = len(self._queue)
        self.get_logger().info(f"inactive: camera unsubscribed, {waiting} queued frames and "
                               f"the trajectory kept for the next activate")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the model, the GPU memory and the outputs; the trajectory ends."""
        self._release()
        params.set_startup_parameters_writable(self, True)
        self._startup.last_error = ""
        self.get_logger().info("unconfigured: model and outputs released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised (a bug): release everything and go back to unconfigured."""
        self._startup.last_error = self._startup.last_error or "a transition raised an error"
        self.get_logger().error(f"error processing: releasing everything "
                                f"({self._startup.last_error})")
        self._stop_processing()
        self._release()
        params.set_startup_parameters_writable(self, True)
        return TransitionCallbackReturn.SUCCESS

    def _stop_processing(self) -> None:
        """Unsubscribe the camera, stop the worker (a window in progress is finished and
        published first) and the map timer."""
        self._active.clear()
        for subscription in (self.image_sub, self.camera_info_sub, *self._sensor_subs):
            if subscription is not None:
                self.destroy_subscription(subscription)
        self.image_sub = self.camera_info_sub = None
        self._sensor_subs = []
        self._stop.set()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=60.0)
        self._worker = None
        if self._map_timer is not None:
            self.destroy_timer(self._map_timer)
            self._map_timer = None

    def _release(self) -> None:
        """Destroy what configure built and free the model (unconfigured again)."""
        for entity in self._configured_entities:
            if isinstance(entity, LifecyclePublisher):
                self.destroy_lifecycle_publisher(entity)
            elif isinstance(entity, Service):
                self.destroy_service(entity)
            else:
                self.destroy_subscription(entity)
        self._configured_entities = []
        self._output_publishers = {name: publisher for name, publisher
                                   in self._output_publishers.items() if name == "/diagnostics"}
        predictor, self.predictor, self.pipeline = self.predictor, None, None
        self._model_description = {}
        if predictor is not None and predictor is not self._injected_predictor:
            predictor.close()

    def lifecycle_state(self) -> str:
        """The current lifecycle state's label (unconfigured, inactive, active, ...)."""
        return self._state_machine.current_state[1]

    # --- setup --------------------------------------------------------------------------

    def _pose_frames(self) -> str:
        """The TF edge this node publishes, in words for the ready line."""
        odom, base = self.values["odom_frame"], self.values["base_frame"]
        if base:
            return f"{odom} -> {base} (mount from /tf_static)"
        camera = self.values["camera_frame"] or "<image frame_id>"
        return f"{odom} -> {camera_body_frame(camera)} -> {camera}"

    def _sensor_matcher(self) -> Optional[SensorMatcher]:
        """The buffers of the scale source's sensor (None for none and fixed)."""
        source = self.values["scale_source"]
        if source not in ("depth", "odometry"):
            return None
        depth = StampedBuffer(DEPTH_BUFFER) if source == "depth" else None
        odometry = (OdometryTrack(int(self.values["odom_max_gap"] * 1e9))
                    if source == "odometry" else None)
        return SensorMatcher(int(self.values["sensor_stamp_tolerance"] * 1e9), depth,
                             odometry, self._camera_mount, self._depth_extrinsic)

    def _camera_mount(self, base: str, camera: str) -> Optional[np.ndarray]:
        with self._state_lock:
            return self._static_tf.lookup(base, camera)

    def _depth_extrinsic(self, colour: str, depth: str) -> Optional[np.ndarray]:
        """colour optical <- depth optical from /tf_static (the tf2 static lookup)."""
        with self._state_lock:
            return self._static_tf.between(colour, depth)

    def _apply_parameters(self, changed: Sequence[Parameter]) -> None:
        """Post-set: the on-set validator already accepted these (live parameters, and any
        parameter while unconfigured)."""
        for p in changed:
            if p.name in self.values:
                self.values[p.name] = p.value
            if p.name == "diagnostics_period":
                self._diag_timer.timer_period_ns = int(p.value * 1e9)
            elif p.name == "map_publish_period" and self._map_timer is not None:
                self._map_timer.timer_period_ns = int(p.value * 1e9)

    def destroy_node(self) -> None:
        self._stop_processing()
        self._release()
        super().destroy_node()

    # --- bookkeeping ----------------------------------------------------------------------

    def _count(self, counter: Counter, kind: str, what: str, reason: str) -> None:
        """Count a problem; warn on its first occurrence and then every LOG_PERIOD_S."""
        now = time.monotonic()
        with self._state_lock:
            counter[kind] += 1
            count = counter[kind]
            due = now - self._last_logged.get(kind, -np.inf) >= LOG_PERIOD_S
            if due:
                self._last_logged[kind] = now
        if due:
            self.get_logger().warning(f"{what} ({kind}, {count} so far): {reason}")

    def _reject(self, kind: str, reason: str, frame: bool = True) -> None:
        """Count rejected input; ``frame`` False for a CameraInfo (not an image frame)."""
        if frame:
            with self._state_lock:
                self._frames_rejected += 1
        self._count(self.rejected, kind, "input rejected", reason)

    def _output_error(self, kind: str, reason: str) -> None:
        self._count(self.output_errors, kind, "output skipped", reason)

    def _emit(self, output: Output) -> None:
        """Build and publish one output unless its publish_* switch is off. A value no message
        can carry (e.g. a non-finite predicted K) skips only this message; DDS refusing a
        sample under load is counted too."""
        switch = _SWITCHES.get(output.topic)
        if switch is not None and not self.values[switch]:
            return
        publisher = self._output_publishers[output.topic]
        try:
            msg = to_rclpy(publisher.msg_type, output.build())
        except ValueError as err:
            self._output_error("bad_output", f"{publisher.topic_name}: {err}")
            return
        try:
            publisher.publish(msg)
        except Exception as err:  # noqa: BLE001 - never let a refused publish stop the node
            self._output_error("publish_failed", f"{publisher.topic_name}: {err}")
            return
        if output.topic == "/tf":
            latency_s = (self.get_clock().now().nanoseconds - output.stamp_ns) / 1e9
            with self._state_lock:
                self._tf_latencies.append(latency_s)

    # --- input callbacks (never block on the model) ---------------------------------------

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            info = conv.camera_info_to_intrinsics(msg)
        except conv.CameraInfoError as err:
            self._reject("bad_camera_info", f"{err}; keeping the last valid CameraInfo",
                         frame=False)
            return
        if len(msg.d) and np.any(np.asarray(msg.d) != 0):
            self.get_logger().warning(
                "CameraInfo has distortion coefficients but VGGT assumes a pinhole camera: "
                "feed rectified images (image_rect)", once=True)
        with self._state_lock:
            self._camera_info = info

    def _on_depth(self, msg: Image) -> None:
        try:
            depth = conv.image_to_depth(msg)
        except ImageDecodeError as err:
            self._reject(f"depth_{err.kind}", str(err), frame=False)
            return
        with self._state_lock:
            info = self._depth_info
        self._sensors.depth.add(conv.time_to_ns(msg.header.stamp),
                                DepthImage(depth, msg.header.frame_id, info))

    def _on_depth_info(self, msg: CameraInfo) -> None:
        """The depth camera's calibration: needed only to reproject unregistered depth."""
        try:
            info = conv.camera_info_to_intrinsics(msg)
        except conv.CameraInfoError as err:
            self._reject("depth_bad_camera_info", f"{err}; keeping the last valid depth "
                         f"CameraInfo", frame=False)
            return
        with self._state_lock:
            self._depth_info = info

    def _on_tf(self, msg: TFMessage) -> None:
        """The robot's odometry as ``odom_tf_parent -> odom_tf_child`` transforms on /tf."""
        edge = (self.values["odom_tf_parent"].lstrip("/"),
                self.values["odom_tf_child"].lstrip("/"))
        for t in msg.transforms:
            if (t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/")) == edge:
                self._sensors.odometry.add(conv.time_to_ns(t.header.stamp),
                                           conv.transform_to_pose(t.transform), edge[1])

    def _on_odometry(self, msg: Odometry) -> None:
        self._sensors.odometry.add(conv.time_to_ns(msg.header.stamp),
                                   conv.transform_to_pose(msg.pose.pose), msg.child_frame_id)

    def _on_tf_static(self, msg: TFMessage) -> None:
        with self._state_lock:
            self._static_tf.add(msg.transforms)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Cheap work first: count the frame, and skip it before decoding when it comes sooner
        than keyframe_min_interval after the last candidate."""
        stamp = conv.time_to_ns(msg.header.stamp)
        with self._state_lock:
            self._frames_in += 1
            pauses = self._gaps.pauses
            self._gaps.add(stamp)
            paused = self._gaps.pauses > pauses
            info = self._camera_info
            candidate = interval_elapsed(stamp, self._last_candidate_stamp,
                                         self.values["keyframe_min_interval"])
            if candidate:
                self._last_candidate_stamp = stamp
            else:
                self._skipped_by_interval += 1
        if paused:
            self.get_logger().warning(
                f"no image for over {self._gaps.pause_ns / 1e9:g} s before stamp {stamp} ns "
                f"({self._gaps.pauses} such pauses, {self._gaps.in_pauses} frames due in them, "
                f"frames.in_pauses): the camera paused, or no frame reached the node (CPU "
                f"starved? network?)", throttle_duration_sec=LOG_PERIOD_S)
        if not candidate:
            return
        try:
            rgb = conv.image_to_rgb(msg)
        except ImageDecodeError as err:
            self._reject(err.kind, str(err))
            return
        frame_id = self.values["camera_frame"] or msg.header.frame_id
        if not frame_id:
            self._reject("missing_frame_id", "image header has no frame_id and the "
                         "camera_frame parameter is empty")
            return
        with self._state_lock:
            self._camera_frame = frame_id
        self._queue.put(Frame(stamp_ns=stamp, image=rgb, frame_id=frame_id, camera_info=info))

    # --- worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            frame = self._queue.get(timeout=0.1)
            try:
                if frame is None:
                    self._flush_if_idle()
                else:
                    self._idle.frame_arrived(time.monotonic())
                    self._process(self._with_sensors(frame))
                    if self.pipeline.config.pipelined and not len(self._queue):
                        # no frame waits: take the window placed beside now
                        self._process_placed()
            except Exception:  # noqa: BLE001 - a bug must not stop the camera processing
                self._output_error("internal_error", traceback.format_exc())

    def _with_sensors(self, frame: Frame) -> Frame:
        """The frame with the depth image / odometry matching its stamp; what is missing is
        counted by kind (``rejected.depth_*``, ``rejected.odometry_*``), and the scale filter
        keeps the previous scale for the window and says so in diagnostics."""
        if self._sensors is None:
            return frame
        for stream in filter(None, (self._sensors.depth, self._sensors.odometry)):
            newest = stream.newest_stamp()
            if newest is not None and frame.stamp_ns - newest < SENSOR_ALIVE_NS:
                stream.wait_until(frame.stamp_ns, SENSOR_WAIT_S)
        frame, problems = self._sensors.attach(frame)
        for kind, reason in problems:
            self._reject(kind, reason, frame=False)
        return frame

    def _flush_if_idle(self) -> None:
        """The camera went quiet: publish the keyframes still waiting for a window."""
        self._idle.timeout_s = self.values["idle_flush_timeout"]
        if self._idle.due(time.monotonic()):
            self._process(None)

    def _process(self, frame: Optional[Frame]) -> None:
        """Offer ``frame`` to the pipeline (None: flush the waiting keyframes); publish what
        it completed."""
        self._publish_from(lambda: self.pipeline.add_frame(frame) if frame
                           else self.pipeline.flush())

    def _process_placed(self) -> None:
        """Publish the windows the pipeline placed beside the worker (``pipelined``)."""
        self._publish_from(self.pipeline.collect)

    def _publish_from(self, call: Callable[[], list[WindowResult]]) -> None:
        """Run one pipeline call and publish the windows it returns; a rejected frame or a
        failed window is counted (a failed window's finished neighbours are still published)."""
        started = time.monotonic()
        try:
            results = call()
        except FrameRejected as err:
            self._reject(err.kind, err.reason)
            return
        except WindowFailed as err:  # e.g. out of GPU memory: counted, trajectory restarts
            self._output_error("failed_window", err.reason)
            results = err.results  # windows that finished before it (pipelined)
        finally:
            self._note_resets()
        if results:
            self._window_latency_s = time.monotonic() - started
        for result in results:
            self._publish_window(result)

    def _note_resets(self) -> None:
        """The pipeline starts a new trajectory on stamps going backwards (bag loop) or a
        confirmed image size change; the path restarts with it."""
        stats = self.pipeline.stats
        if stats["resets"] == self._resets_seen:
            return
        self._resets_seen = stats["resets"]
        self._outputs.restart_trajectory()
        self.get_logger().warning(f"trajectory reset: {stats['last_reset_reason']}")

    # --- outputs --------------------------------------------------------------------------

    def _mount(self, optical_frame: str) -> Optional[Mount]:
        """The body whose pose goes on TF (see ``topics.odom_frame``): base_frame through the
        mount on /tf_static (None while unknown), else the camera-body frame. In camera-body
        mode the node publishes ``body -> optical`` only if nobody else parents the optical
        frame on /tf_static."""
        base = self.values["base_frame"]
        if not base:
            mount = camera_body_mount(optical_frame)
            with self._state_lock:
                parent = self._static_tf.parent(optical_frame)
            if parent is None or parent == mount.body_frame:
                return mount
            if not self._optical_parent_logged:
                self._optical_parent_logged = True
                self.get_logger().warning(
                    f"{optical_frame} already has the parent {parent} on /tf_static (a URDF?): "
                    f"publishing odom -> {mount.body_frame} without linking it to "
                    f"{optical_frame}; set base_frame (e.g. base_link) to place the robot")
            return Mount(mount.body_frame, mount.body_from_cam, owns_edge=False)
        with self._state_lock:
            base_from_cam = self._static_tf.lookup(base, optical_frame)
        if base_from_cam is None:
            if not self._base_tf_missing_logged:
                self._base_tf_missing_logged = True
                self.get_logger().warning(
                    f"no static transform {base} -> {optical_frame} on /tf_static yet: not "
                    f"publishing odom -> {base} until it arrives (publish the camera mount, "
                    f"e.g. robot_state_publisher, or leave base_frame empty)")
            return None
        return Mount(base, base_from_cam, owns_edge=False)

    def _publish_window(self, result: WindowResult) -> None:
        outputs = self._outputs.window(result)
        with self._state_lock:
            self._windows += 1
            self._keyframes_out += len(result.new_keyframes)
            self._last_window = result
            self._map_dirty = True
        for output in outputs:
            self._emit(output)

    def _publish_map(self) -> None:
        if not self.values["publish_map"]:
            return
        with self._state_lock:
            if not self._map_dirty or self._last_window is None:
                return
            self._map_dirty = False
            stamp = self._last_window.stamps_ns[-1]
        points, colors = self.pipeline.map_cloud()
        output = self._outputs.map(points, colors, stamp)
        if output is not None:
            self._emit(output)

    # --- diagnostics ----------------------------------------------------------------------

    def _diagnostics(self) -> messages.Message:
        """The node's health as one plain-data DiagnosticStatus, in every lifecycle state."""
        state = self.lifecycle_state()
        pipeline, predictor = self.pipeline, self.predictor
        if pipeline is None or predictor is None:  # unconfigured (or a transition under way)
            level, message = idle_status(state, self._startup)
            return messages.diagnostic_status(
                level, status_name(self.get_fully_qualified_name()), message,
                hardware_id(self._camera_frame, self.values["device"]),
                lifecycle_values(state, self._startup))
        now = time.monotonic()
        describe = self._model_description
        stats = pipeline.stats
        with self._state_lock:
            t0, frames0, kfs0, drops0, candidates0 = self._rate_mark
            dt = max(now - t0, 1e-9)
            drops = self._queue.dropped
            candidates = self._frames_in - self._skipped_by_interval
            period = self._gaps.period_ns
            values: dict[str, Any] = {
                "input_rate_hz": (self._frames_in - frames0) / dt,
                "camera_rate_hz": 1e9 / period if period else float("nan"),
                "keyframe_rate_hz": (self._keyframes_out - kfs0) / dt,
                # Every frame the camera sent: received + transport_gaps + in_pauses; every
                # frame received: skipped_by_policy + queue_drops + rejected + keyframes +
                # waiting.
                "frames.received": self._frames_in,
                "frames.transport_gaps": self._gaps.missing,
                "frames.in_pauses": self._gaps.in_pauses,
                "frames.pauses": self._gaps.pauses,
                "frames.longest_pause_s": self._gaps.longest_pause_ns / 1e9,
                "frames.skipped_by_policy": (self._skipped_by_interval
                                             + stats["dropped_non_keyframes"]),
                "frames.queue_drops": drops,
                "frames.rejected": self._frames_rejected,
                "frames.keyframes": stats["keyframes"],
                "frames.waiting": len(self._queue),
                "keyframes_published": self._keyframes_out,
                "windows": self._windows,
                "window_latency_s": self._window_latency_s,
                "queue_size": self.values["queue_size"],
            }
            self._rate_mark = (now, self._frames_in, self._keyframes_out, drops, candidates)
            values.update(latency_values(list(self._tf_latencies)))
            values.update({f"rejected.{k}": v for k, v in sorted(self.rejected.items())})
            values.update({f"errors.{k}": v for k, v in sorted(self.output_errors.items())})
            chaining = self._last_window.chaining if self._last_window else None
        values.update({f"model.{k}": v for k, v in describe.items()})
        values["device"] = describe.get("device", "unknown")
        if values["device"].startswith("cuda"):
            import torch  # already loaded by the predictor when on CUDA

            values["gpu_memory_allocated_mb"] = torch.cuda.memory_allocated() / 2**20
            values["gpu_memory_reserved_mb"] = torch.cuda.memory_reserved() / 2**20
        level, message, pipeline_values = pipeline_status(chaining, stats)
        values.update(pipeline_values)
        behind = falling_behind(drops - drops0, dt, values["keyframe_rate_hz"],
                                (candidates - candidates0) / dt, self.values, values["device"])
        if behind is not None:
            message = behind[0] if level == messages.DIAGNOSTIC_OK else f"{behind[0]}; {message}"
            level = max(level, messages.DIAGNOSTIC_WARN)
            self._count(self.output_errors, "falling_behind", "cannot keep up", behind[1])
        values.update(lifecycle_values(state, self._startup))
        if hasattr(predictor, "compile_stats"):
            values.update({f"compile.{k}": v for k, v in predictor.compile_stats().items()})
        if not self._active.is_set():
            level, message = idle_status(state, self._startup)
        elif self._worker is None or not self._worker.is_alive():
            level, message = messages.DIAGNOSTIC_ERROR, "worker thread stopped"
        with self._state_lock:
            camera = self._camera_frame
        return messages.diagnostic_status(level, status_name(self.get_fully_qualified_name()),
                                          message, hardware_id(camera, str(values["device"])),
                                          values)

    def diagnostics_status(self) -> DiagnosticStatus:
        """The node's health in one DiagnosticStatus (also used by tests)."""
        return to_rclpy(DiagnosticStatus, self._diagnostics())

    def _publish_diagnostics(self) -> None:
        stamp = self.get_clock().now().nanoseconds
        status = self._diagnostics()
        self._emit(Output("/diagnostics", stamp,
                          lambda: messages.diagnostic_array([status], stamp)))

    # --- track_points service -------------------------------------------------------------

    def _on_track_points(self, request: TrackPoints.Request,
                         response: TrackPoints.Response) -> TrackPoints.Response:
        response.frame_id = self.values["odom_frame"]
        if not self._active.is_set():
            response.success = False
            response.message = (f"the node is {self.lifecycle_state()}: track_points answers "
                                 f"only while it is active")
            return response
        try:
            self._answer_track(request, response)
        except TrackRequestError as err:
            response.success, response.message = False, err.reason
        except Exception as err:  # noqa: BLE001 - a service must answer, never raise
            self.get_logger().error(f"track_points failed: {traceback.format_exc()}")
            response.success, response.message = False, f"internal error: {err}"
        return response

    def _answer_track(self, request: TrackPoints.Request, response: TrackPoints.Response) -> None:
        """Only the u/v pairing is checked here; the pipeline validates the queries (count,
        NaN, inside the image, known stamp, a window exists) and raises TrackRequestError."""
        u = np.asarray(request.u, dtype=np.float64)
        v = np.asarray(request.v, dtype=np.float64)
        if len(u) != len(v):
            raise TrackRequestError(f"u and v must have the same length, got {len(u)} and "
                                    f"{len(v)}")
        answer = self.pipeline.track(conv.time_to_ns(request.stamp), np.stack([u, v], 1))
        response.frame_stamps = [conv.stamp_to_time(s) for s in answer.stamps_ns]
        response.query_index = int(answer.query_index)
        points = self._outputs.to_odom(np.asarray(answer.points_odom, dtype=np.float64))
        valid = (np.asarray(answer.points_valid, bool) if points is not None
                 else np.zeros(len(u), bool))
        response.tracks = [
            PointTrack(u=answer.tracks_uv[:, i, 0].astype(np.float32),
                       v=answer.tracks_uv[:, i, 1].astype(np.float32),
                       visibility=np.asarray(answer.visibility[:, i], np.float32),
                       confidence=np.asarray(answer.confidence[:, i], np.float32),
                       point=Point(x=float(points[i, 0]), y=float(points[i, 1]),
                                   z=float(points[i, 2])) if valid[i] else Point(),
                       point_valid=bool(valid[i]))
            for i in range(len(u))]
        response.success = True
        response.message = (f"tracked {len(u)} points through {len(answer.stamps_ns)} frames "
                            f"(query frame {answer.query_index})")


def main(argv: Optional[list[str]] = None, predictor: Optional[Predictor] = None) -> int:
    """Entry point ``vggt_node``: exits non-zero with the reason when it cannot start.
    ``predictor`` replaces the model (tests run the node process with a ground-truth double)."""
    rclpy.init(args=sys.argv if argv is None else argv)
    logger = get_logger(NODE_NAME)
    try:
        try:
            node = VGGTNode(predictor, command_line=sys.argv if argv is None else argv)
        except (params.ParameterError, ModelUnavailableError, CheckpointError,
                WarmupError) as err:
            logger.fatal(f"cannot start: {err}")
            return 2
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            executor.shutdown()
            node.destroy_node()
        return 0
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
