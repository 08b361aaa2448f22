"""The vggt node as a managed node, in one process: real rclpy and DDS, the ground-truth double.

Transitions are triggered directly (test_node_lifecycle_process.py drives them through the
lifecycle services of a node process). What is checked: nothing goes in or out unless the node
is active, a deactivate/activate keeps the trajectory, cleanup releases the outputs, a bad
checkpoint fails configure with the reason and leaves the node unconfigured, and startup-only
parameters can change exactly while nothing uses them.
"""
import threading
import time
from collections import defaultdict

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from nav_msgs.msg import Path
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

from vggt_ros.nodes import conversions as conv
from vggt_ros.nodes.vggt_node import VGGTNode
from vggt_ros.srv import TrackPoints
from vggt_ros.synth import FRAME_ID, make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor

from live_harness import poll_until

pytestmark = [pytest.mark.ros, pytest.mark.timeout(120)]

W, H, FRAMES, WINDOW, OVERLAP = 64, 48, 10, 4, 1
NS = "lifecycle"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def wait(condition, what, timeout=20.0):
    poll_until(condition, timeout, what)


class Rig:
    """A managed vggt node (autostart false) and a tester node, spun by one executor."""

    def __init__(self, context, predictor=None, **overrides):
        overrides = dict(autostart=False, window_size=WINDOW, overlap=OVERLAP,
                         keyframe_min_interval=0.0, idle_flush_timeout=0.0,
                         diagnostics_period=0.2, conf_percentile=0.0) | overrides
        self.node = VGGTNode(predictor, namespace=NS, context=context, parameter_overrides=[
            Parameter(k, value=v) for k, v in overrides.items()])
        self.tester = Node("lifecycle_tester", namespace=NS, context=context)
        self.got = defaultdict(list)
        for msg_type, topic, qos in [(TFMessage, "/tf", 100), (Path, "path", LATCHED),
                                     (DiagnosticArray, "/diagnostics", 50)]:
            self.tester.create_subscription(msg_type, topic,
                                            lambda m, t=topic: self.got[t].append(m), qos)
        self.pub_image = self.tester.create_publisher(Image, "image", 50)
        self.client = self.tester.create_client(TrackPoints, "track_points")
        self.executor = MultiThreadedExecutor(num_threads=4, context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.tester)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self):
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(timeout=5.0)
        self.tester.destroy_node()
        self.node.destroy_node()

    def track(self):
        """Ask track_points for one pixel on the newest keyframe."""
        assert self.client.wait_for_service(timeout_sec=5.0)
        future = self.client.call_async(TrackPoints.Request(u=[5.0], v=[5.0]))
        wait(future.done, "track_points answer")
        return future.result()

    def tf_stamps(self):
        return [conv.time_to_ns(t.header.stamp) for m in self.got["/tf"] for t in m.transforms]

    def diagnostics(self):
        status = self.node.diagnostics_status()
        return status, {kv.key: kv.value for kv in status.values}

    def play(self, seq, indices):
        """Publish frames once the node's camera subscription is matched; wait until taken."""
        wait(lambda: self.pub_image.get_subscription_count() > 0, "camera subscription")
        wait(lambda: self.node.image_sub.get_publisher_count() > 0, "camera publisher")
        for i in indices:
            before = self.node._frames_in
            self.pub_image.publish(conv.rgb_to_image(seq.render(i)[0], int(seq.stamps_ns[i]),
                                                     FRAME_ID))
            wait(lambda: self.node._frames_in > before, "image received")
            wait(lambda: len(self.node._queue) == 0, "queue drained")


def test_outputs_only_while_active_and_the_trajectory_survives_deactivate(context):
    seq = make_sequence(FRAMES, W, H, seed=1, trajectory="forward")
    rig = Rig(context, GroundTruthPredictor(seq, seed=2))
    node = rig.node
    try:
        assert node.lifecycle_state() == "unconfigured" and node.pipeline is None
        status, values = rig.diagnostics()
        assert status.message == "unconfigured: waiting for configure"
        assert values["lifecycle_state"] == "unconfigured"

        assert node.trigger_configure() == SUCCESS
        assert node.lifecycle_state() == "inactive" and node.image_sub is None
        assert rig.pub_image.get_subscription_count() == 0  # nobody takes camera images
        status, values = rig.diagnostics()
        assert status.message.startswith("inactive") and values["startup.warmup"].startswith(
            "none (injected")

        assert node.trigger_activate() == SUCCESS
        rig.play(seq, range(4))  # one window
        wait(lambda: len(rig.tf_stamps()) == 4, "the first window on /tf")
        pipeline = node.pipeline

        assert node.trigger_deactivate() == SUCCESS
        assert node.lifecycle_state() == "inactive" and node.image_sub is None
        wait(lambda: rig.pub_image.get_subscription_count() == 0, "camera unsubscribed")
        time.sleep(0.5)
        assert len(rig.tf_stamps()) == 4  # nothing more while inactive
        reply = rig.track()
        assert not reply.success and "inactive" in reply.message

        assert node.trigger_activate() == SUCCESS
        assert node.pipeline is pipeline  # same trajectory object
        rig.play(seq, range(4, FRAMES))  # windows continue from the kept overlap
        expected = [int(s) for s in seq.stamps_ns[:FRAMES]]
        wait(lambda: rig.tf_stamps() == expected, "every keyframe once, in order")
        wait(lambda: rig.got["path"] and len(rig.got["path"][-1].poses) == FRAMES,
             "the path spanning both activations")
        path = rig.got["path"][-1]
        assert [conv.time_to_ns(p.header.stamp) for p in path.poses] == expected
        assert pipeline.stats["resets"] == 0

        assert node.trigger_deactivate() == SUCCESS
        assert node.trigger_cleanup() == SUCCESS
        assert node.lifecycle_state() == "unconfigured" and node.pipeline is None
        wait(lambda: rig.tester.count_publishers(f"/{NS}/depth") == 0, "outputs destroyed")
        assert node.trigger_shutdown() == SUCCESS
        assert node.lifecycle_state() == "finalized"
    finally:
        rig.close()


def test_a_bad_checkpoint_fails_configure_with_the_reason_and_stays_unconfigured(context,
                                                                                tmp_path):
    missing = tmp_path / "no_such_model.pt"
    rig = Rig(context, checkpoint=str(missing), device="cpu")
    node = rig.node
    try:
        assert node.trigger_configure() == FAILURE
        assert node.lifecycle_state() == "unconfigured" and node.predictor is None
        status, values = rig.diagnostics()
        assert status.level == DiagnosticStatus.ERROR and "configure failed" in status.message
        assert str(missing) in values["lifecycle.last_error"]
        # Unconfigured: the startup-only parameters can be fixed before the next configure.
        fixed = node.set_parameters([Parameter("window_size", value=5)])[0]
        assert fixed.successful, fixed.reason
    finally:
        rig.close()


def test_startup_parameters_are_writable_only_while_unconfigured(context):
    seq = make_sequence(FRAMES, W, H, seed=1, trajectory="forward")
    rig = Rig(context, GroundTruthPredictor(seq, seed=2))
    node = rig.node
    try:
        assert node.set_parameters([Parameter("window_size", value=6)])[0].successful
        assert node.describe_parameter("window_size").read_only is False
        assert node.trigger_configure() == SUCCESS
        assert node.pipeline.config.window_size == 6  # configure read the new value
        refused = node.set_parameters([Parameter("window_size", value=5)])[0]
        assert not refused.successful and "clean it up (lifecycle)" in refused.reason
        assert node.describe_parameter("window_size").read_only is True
        assert node.trigger_cleanup() == SUCCESS
        assert node.set_parameters([Parameter("window_size", value=5)])[0].successful
        bad = node.set_parameters([Parameter("overlap", value=5)])[0]  # still checked
        assert not bad.successful and "overlap" in bad.reason
    finally:
        rig.close()


def test_plain_mode_is_active_at_once(context):
    seq = make_sequence(FRAMES, W, H, seed=1, trajectory="forward")
    rig = Rig(context, GroundTruthPredictor(seq, seed=2), autostart=True)
    try:
        assert rig.node.lifecycle_state() == "active" and rig.node.image_sub is not None
        status, values = rig.diagnostics()
        assert values["lifecycle_state"] == "active" and status.level == DiagnosticStatus.OK
        assert np.isfinite(float(values["startup.configure_s"]))
    finally:
        rig.close()


def test_a_camera_pause_is_counted_apart_from_frames_lost_on_the_way(context):
    seq = make_sequence(40, W, H, seed=1, trajectory="forward")  # 10 Hz
    rig = Rig(context, GroundTruthPredictor(seq, seed=2), autostart=True)
    try:
        # 12 frames teach the camera period; then nothing for 1.6 s (15 frames due in the
        # pause); then one frame lost on the way (29).
        rig.play(seq, [*range(12), 27, 28, 30, 31])
        _, values = rig.diagnostics()
        assert int(values["frames.received"]) == 16
        assert int(values["frames.transport_gaps"]) == 1
        assert (int(values["frames.pauses"]), int(values["frames.in_pauses"])) == (1, 15)
        assert float(values["frames.longest_pause_s"]) == pytest.approx(1.6)
    finally:
        rig.close()
