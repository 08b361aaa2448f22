"""Metric scale in the live node, in its own process (real rclpy and DDS, the ground-truth double
as the model): a depth camera or wheel odometry (from /odom or from /tf) makes the odometry
metric, with a covariance, next to a robot that owns ``odom -> base_link``; bad sensor input is
counted by kind and the node falls back to non-metric visibly. Slow: each test starts a node
process."""
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

from gt_node import PLANAR, sequence
from live_harness import BASE_FROM_CAM, CameraPlayer, NodeProcess, gt_node
from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.io.images import encode_16uc1
from vggt_ros.nodes import conversions as conv
from vggt_ros.synth import FRAME_ID

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.timeout(300)]

W, H, SEED, FRAMES = 64, 48, 4, 18
PARAMS = dict(window_size=6, overlap=2, conf_percentile=0.0, conf_threshold=1.0,
              diagnostics_period=0.2, queue_size=100, base_frame="base_link",
              depth_min_range=0.1, depth_max_range=20.0,
              idle_flush_timeout=0.0)  # windows of exactly 6 keyframes, however slow the host


@pytest.fixture(scope="module")
def seq():
    return sequence(FRAMES, W, H, SEED, PLANAR)


class Robot:
    """The tester as a robot: camera mount on /tf_static, wheel odometry on /tf and /odom, a
    registered depth camera."""

    def __init__(self, player, seq):
        self.player, self.seq = player, seq
        node = player.node
        self.pub_depth = node.create_publisher(Image, "/camera/depth/image_raw", 50)
        self.pub_odom = node.create_publisher(Odometry, "/odom", 50)
        self.pub_tf = node.create_publisher(TFMessage, "/tf", 50)
        world_from_base = seq.world_from_cam @ se3_inverse(BASE_FROM_CAM)
        self.odom_from_base = se3_inverse(world_from_base[0]) @ world_from_base
        player.pub_static.publish(TFMessage(transforms=[
            conv.transform_stamped(BASE_FROM_CAM, 0, "base_link", FRAME_ID)]))

    def depth(self, i, stamp_ns=None, size=None, encoding="16UC1"):
        depth = self.seq.render(i)[1]
        if size is not None:
            depth = np.resize(depth, size)
        height, width = depth.shape
        stamp = int(self.seq.stamps_ns[i]) if stamp_ns is None else stamp_ns
        self.pub_depth.publish(Image(header=conv.make_header(stamp, FRAME_ID), height=height,
                                     width=width, encoding=encoding, step=2 * width,
                                     data=encode_16uc1(depth)))

    def odometry(self, i):
        stamp = int(self.seq.stamps_ns[i])
        self.pub_tf.publish(TFMessage(transforms=[conv.transform_stamped(
            self.odom_from_base[i], stamp, "odom", "base_link")]))
        msg = conv.odometry(self.odom_from_base[i], stamp, "odom", "base_link")
        self.pub_odom.publish(msg)

    def travel(self, odometry):
        """(distance the node's Odometry says base_link moved from the start, the robot's
        true distance at the same stamp)."""
        moved = conv.transform_to_pose(odometry.pose.pose)[:3, 3]
        stamps = [int(s) for s in self.seq.stamps_ns]
        i = stamps.index(conv.time_to_ns(odometry.header.stamp))
        return float(np.linalg.norm(moved)), float(np.linalg.norm(self.odom_from_base[i, :3, 3]))

    def connect(self, process, sensor_publisher):
        """Images reach the node, and so will the sensor (best effort: a message sent before
        both sides matched is lost)."""
        self.player.connect(process)
        self.player.wait(lambda: sensor_publisher.get_subscription_count() > 0, 30,
                         "the node's sensor subscription", process)
        self.player.spin_for(0.5)

    def drive(self, process, frames, sensors):
        for i in frames:
            sensors(i)
            self.player.send(self.seq, i)
            self.player.spin_for(0.1)
            assert process.alive(), process.log()


def test_a_depth_topic_makes_the_odometry_metric_beside_the_robots_own_tree(context, tmp_path,
                                                                           seq):
    player = CameraPlayer(context)
    robot = Robot(player, seq)
    process = NodeProcess(tmp_path, gt_node(FRAMES, W, H, SEED, PLANAR), params=PARAMS | {
        "scale_source": "depth", "tf_mode": "separate_odom", "odom_frame": "vggt_odom"})
    try:
        robot.connect(process, robot.pub_depth)
        robot.drive(process, range(FRAMES), lambda i: (robot.odometry(i), robot.depth(i)))
        player.wait(lambda: len(player.got["odometry"]) >= 3
                    and player.diagnostics().get("scale.windows_scaled") == "4", 60,
                    "three odometry messages and four scaled windows", process)
        values = player.diagnostics()
        assert values["scale"] == "metric" and values["scale.source"] == "depth"
        assert float(values["scale.uncertainty"]) < 0.02
        odometry = player.got["odometry"][-1]
        assert (odometry.header.frame_id, odometry.child_frame_id) == ("vggt_odom", "base_link")
        covariance = np.asarray(odometry.pose.covariance).reshape(6, 6)
        assert np.linalg.eigvalsh(covariance).min() > 0
        assert odometry.twist.twist.linear.x > 0  # driving forward
        assert np.linalg.eigvalsh(np.asarray(odometry.twist.covariance).reshape(6, 6)).min() > 0
        parents = {t.header.frame_id for m in player.got["/tf"] for t in m.transforms
                   if t.child_frame_id == "base_link"}
        assert parents == {"odom"}  # the robot's; the node hangs vggt_odom below base_link
        node_edges = {(t.header.frame_id, t.child_frame_id) for m in player.got["/tf"]
                      for t in m.transforms if "vggt_odom" in (t.header.frame_id,
                                                                t.child_frame_id)}
        assert node_edges == {("base_link", "vggt_odom")}
        # Metric: the node's travel matches the robot's (exact odometry here) within 3 %.
        moved, truth = robot.travel(odometry)
        assert moved == pytest.approx(truth, rel=0.03)
    finally:
        player.close()
        assert process.stop() == 0, process.log()


def test_bad_depth_is_counted_by_kind_and_the_scale_falls_back_visibly(context, tmp_path, seq):
    player = CameraPlayer(context)
    robot = Robot(player, seq)
    process = NodeProcess(tmp_path, gt_node(FRAMES, W, H, SEED, PLANAR), params=PARAMS | {
        "scale_source": "depth", "scale_max_uncertainty": 0.015})

    def bad(i):  # from keyframe 8 on, no depth is usable: wrong size, encoding or stamp
        kind = (i - 8) % 3
        if i < 8:
            robot.depth(i)
        elif kind == 0:
            robot.depth(i, size=(H // 2, W))
        elif kind == 1:
            robot.depth(i, encoding="rgb8")
        else:
            robot.depth(i, stamp_ns=int(seq.stamps_ns[i]) + 50_000_000)

    try:
        robot.connect(process, robot.pub_depth)
        robot.drive(process, range(FRAMES), bad)
        player.wait(lambda: int(player.diagnostics().get("scale.windows_skipped", 0)) >= 2, 60,
                    "two windows without depth", process)
        values = player.diagnostics()
        assert int(values["scale.windows_scaled"]) >= 1
        # another size, and no depth CameraInfo to reproject it with
        assert int(values["rejected.depth_no_camera_info"]) >= 3
        assert int(values["rejected.depth_unsupported_encoding"]) >= 2
        assert int(values["rejected.depth_unmatched"]) >= 5  # the off stamps, the rgb8 frames
        assert values["scale"] == "non-metric"
        status = player.status()
        assert status.level == DiagnosticStatus.WARN and "scale not metric" in status.message
        assert "no usable depth image matched" in values["scale.reason"]
        assert process.alive()
    finally:
        player.close()
        assert process.stop() == 0, process.log()


def test_odometry_read_from_the_robots_tf_makes_the_odometry_metric(context, tmp_path, seq):
    player = CameraPlayer(context)
    robot = Robot(player, seq)
    process = NodeProcess(tmp_path, gt_node(FRAMES, W, H, SEED, PLANAR), params=PARAMS | {
        "scale_source": "odometry", "odom_topic": "''",  # '' = empty on the command line
        "odom_tf_parent": "odom", "odom_tf_child": "base_link", "tf_mode": "separate_odom",
        "odom_frame": "vggt_odom"})
    try:
        robot.connect(process, robot.pub_tf)
        robot.drive(process, range(FRAMES), robot.odometry)
        player.wait(lambda: player.diagnostics().get("scale") == "metric"
                    and len(player.got["odometry"]) >= 3, 60,
                    "metric scale from the robot's /tf", process)
        values = player.diagnostics()
        assert values["scale.source"] == "odometry"
        assert int(values.get("rejected.odometry_unmatched", 0)) <= 1  # the last frame, maybe
        odometry = player.got["odometry"][-1]
        moved, truth = robot.travel(odometry)
        assert moved == pytest.approx(truth, rel=0.05)
    finally:
        player.close()
        assert process.stop() == 0, process.log()


def test_odometry_that_stops_is_counted_and_the_scale_falls_back_visibly(context, tmp_path, seq):
    player = CameraPlayer(context)
    robot = Robot(player, seq)
    process = NodeProcess(tmp_path, gt_node(FRAMES, W, H, SEED, PLANAR), params=PARAMS | {
        "scale_source": "odometry", "scale_max_uncertainty": 0.015})
    try:
        robot.connect(process, robot.pub_odom)
        robot.drive(process, range(10), robot.odometry)
        player.wait(lambda: player.diagnostics().get("scale") == "metric", 60,
                    "metric scale from the odometry", process)
        robot.drive(process, range(10, FRAMES), lambda i: None)  # the odometry stopped
        # The first window after the stop still holds odometry at its first keyframes (its
        # reason is the short travel); the next one has none at all.
        player.wait(lambda: int(player.diagnostics().get("scale.windows_skipped", 0)) >= 2
                    and "robot odometry at 0 of" in player.diagnostics().get("scale.reason", ""),
                    60, "a whole window without odometry", process)
        values = player.diagnostics()
        assert values["scale"] == "non-metric"
        assert int(values["rejected.odometry_unmatched"]) >= FRAMES - 11
        assert "robot odometry at 0 of 6 keyframes" in values["scale.reason"]
        assert player.status().level == DiagnosticStatus.WARN
    finally:
        player.close()
        assert process.stop() == 0, process.log()
