"""The shipped Fast DDS profile carries 4K RGB camera frames over shared memory."""
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_local.xml"
FRAME_4K = 4000 * 3000 * 3  # rgb8 bytes


def test_shared_memory_segment_holds_three_4k_rgb_frames():
    ns = {"dds": "http://www.eprosima.com"}
    sizes = [int(e.text) for e in ET.parse(PROFILE).getroot().iterfind(
        ".//dds:transport_descriptor[dds:type='SHM']/dds:segment_size", ns)]
    assert sizes and min(sizes) >= 3 * FRAME_4K * 1.1  # room for headers and bookkeeping


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_4k_rgb_frames_arrive_best_effort_across_processes():
    """12 frames of 4000x3000 rgb8 at 10 Hz, sensor-data QoS, from another process."""
    publisher = textwrap.dedent("""
        import time, numpy as np, rclpy
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        rclpy.init()
        node = Node("camera_4k")
        pub = node.create_publisher(Image, "image_4k", qos_profile_sensor_data)
        deadline = time.time() + 60
        while pub.get_subscription_count() == 0 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        data = np.random.default_rng(0).integers(0, 255, 4000 * 3000 * 3, np.uint8).tobytes()
        for i in range(12):
            msg = Image(height=3000, width=4000, encoding="rgb8", step=12000, data=data)
            msg.header.stamp.sec = i + 1
            pub.publish(msg)
            time.sleep(0.1)
        time.sleep(2)
    """)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = Node("receiver_4k", context=ctx)
    got = []
    node.create_subscription(Image, "image_4k", lambda m: got.append(
        (m.header.stamp.sec, len(m.data))), qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    proc = subprocess.Popen([sys.executable, "-c", publisher])
    try:
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            executor.spin_once(timeout_sec=0.1)
        for _ in range(20):
            executor.spin_once(timeout_sec=0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    assert all(size == FRAME_4K for _, size in got)
    # The first frame after matching was lost in every run, with any segment size. Of the 11
    # after it, too small a segment loses most (measured 2026-12-01: 0 arrived with Fast DDS's
    # default 0.5 MiB, 0-2 with 1 MiB, 7-11 with 2 MiB over four runs, all from 4 MiB up).
    # Best effort may drop one or two on a starved CPU (the CI machine lost frame 4 once, with
    # the 128 MiB profile), so nine of eleven must arrive, and none twice.
    stamps = [stamp for stamp, _ in got if stamp > 1]
    assert len(stamps) == len(set(stamps)) and set(stamps) <= set(range(2, 13)), got
    assert len(stamps) >= 9, got

