"""The vggt node on a compressed camera stream (image_transport compressed): real rclpy in one
process, the ground-truth predictor double.

Most robots publish (and record) their cameras as sensor_msgs/CompressedImage on
``<image>/compressed``; with ``image_transport`` compressed the node must follow a remapping of
``image`` to that sub-topic, map the frames, and count the ones it cannot decode.
"""
import threading

import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage
from tf2_msgs.msg import TFMessage

from vggt_ros.io.images import encode_compressed
from vggt_ros.nodes import conversions as conv
from vggt_ros.nodes.vggt_node import VGGTNode
from vggt_ros.synth import FRAME_ID, make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor

from live_harness import poll_until

pytestmark = [pytest.mark.ros, pytest.mark.timeout(120)]

W, H, FRAMES, WINDOW, OVERLAP = 48, 36, 10, 4, 1
CAMERA_TOPIC = "/robot/camera/image_raw"


def _compressed(rgb: np.ndarray, stamp_ns: int, codec: str) -> CompressedImage:
    image_format, data = encode_compressed(rgb, codec)
    return CompressedImage(header=conv.make_header(stamp_ns, FRAME_ID), format=image_format,
                           data=data)


@pytest.fixture(scope="module")
def run():
    context = rclpy.Context()
    rclpy.init(context=context)
    seq = make_sequence(FRAMES, W, H, seed=5, trajectory="forward")
    overrides = dict(image_transport="compressed", window_size=WINDOW, overlap=OVERLAP,
                     queue_size=64, idle_flush_timeout=0.0, diagnostics_period=0.2,
                     keyframe_min_interval=0.0)  # every frame is decoded
    node = VGGTNode(predictor=GroundTruthPredictor(seq, seed=2), namespace="compressed",
                    context=context, cli_args=["--ros-args", "-r", f"image:={CAMERA_TOPIC}"],
                    parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    camera = Node("camera", context=context)
    poses = []
    camera.create_subscription(TFMessage, "/tf", lambda m: poses.extend(
        conv.time_to_ns(t.header.stamp) for t in m.transforms), 100)
    publisher = camera.create_publisher(CompressedImage, CAMERA_TOPIC + "/compressed", 50)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(node)
    executor.add_node(camera)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()

    def send(msg: CompressedImage) -> None:
        before = node._frames_in
        publisher.publish(msg)
        poll_until(lambda: node._frames_in > before, 10.0, "image received")
        poll_until(lambda: len(node._queue) == 0, 10.0, "queue drained")

    try:
        poll_until(lambda: node.image_sub.get_publisher_count() > 0, 10.0, "camera matched")
        for i in range(FRAMES):
            codec = "jpeg" if i % 2 else "png"
            send(_compressed(seq.render(i)[0], int(seq.stamps_ns[i]), codec))
            if i == 4:  # a frame cut short in transit, between two good ones
                broken = _compressed(seq.render(i)[0], int(seq.stamps_ns[i]) + 1, "png")
                broken.data = broken.data[:40]
                send(broken)
        windows = 1 + (FRAMES - WINDOW) // (WINDOW - OVERLAP)
        poll_until(lambda: node._windows >= windows, 30.0, f"{windows} windows")
        poll_until(lambda: len(set(poses)) >= FRAMES, 10.0, "every pose on /tf")
        yield node, seq, poses
    finally:
        executor.shutdown(timeout_sec=5.0)
        thread.join(timeout=5.0)
        camera.destroy_node()
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_the_subscription_follows_the_remapped_image_topic(run):
    node, _, _ = run
    assert node.image_sub.topic_name == CAMERA_TOPIC + "/compressed"
    assert node.image_sub.msg_type is CompressedImage


def test_jpeg_and_png_frames_are_mapped_into_poses(run):
    node, seq, poses = run
    assert set(poses) == {int(s) for s in seq.stamps_ns}
    assert node.rejected["undecodable"] == 1 and sum(node.rejected.values()) == 1


def test_image_transport_is_read_at_startup_only(run):
    node, _, _ = run
    result = node.set_parameters([Parameter("image_transport", value="raw")])[0]
    assert not result.successful and "read at startup only" in result.reason
    assert node.get_parameter("image_transport").value == "compressed"
