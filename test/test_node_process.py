"""The node as a user starts it: its own process, the yaml, the small real VGGT checkpoint.

The test process plays camera images over DDS and checks that TF, depth (+ its CameraInfo),
points and diagnostics come back and that track_points answers. The small model has random
weights, so geometry is not checked here (test_node.py does that against ground truth); this
is about the executable, parameters, model loading and inter-process transport.
"""
import os
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from tf2_msgs.msg import TFMessage

from vggt_ros.nodes import conversions as conv
from vggt_ros.srv import TrackPoints
from vggt_ros.synth import FRAME_ID, make_sequence

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO.parent / "shared/vggt_spec/fixtures/small_model.safetensors"
NS = "/proc_cam"
# One window: the random-weight model predicts finite, positive focal lengths for this input
# (for many others it predicts inf, which the pipeline refuses; test_node.py covers chaining).
W, H, FRAMES, WINDOW, OVERLAP, SEED = 96, 72, 4, 4, 1, 3


def _spin_until(executor, condition, timeout, what, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        executor.spin_once(timeout_sec=0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f"\nnode log:\n{_log_text(log)}"
                                                            if log else ""))


@pytest.fixture()
def node_process(tmp_path):
    assert CHECKPOINT.is_file(), CHECKPOINT
    log = open(tmp_path / "vggt_node.log", "w+")
    cmd = [str(REPO / ".venv" / "bin" / "vggt_node"), "--ros-args",
           "--params-file", str(REPO / "config" / "vggt.yaml"),
           "-p", f"checkpoint:={CHECKPOINT}", "-p", "device:=cpu", "-p", "image_size:=70",
           "-p", f"window_size:={WINDOW}", "-p", f"overlap:={OVERLAP}",
           "-p", "conf_threshold:=0.0", "-p", "conf_percentile:=0.0",
           "-p", "diagnostics_period:=0.3", "-r", f"__ns:={NS}"]
    # The environment (loopback DDS profile, private domain) comes from conftest.py.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        log.close()


def _log_text(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()


def test_node_process_end_to_end(node_process):
    proc, log = node_process
    seq = make_sequence(FRAMES, W, H, seed=SEED, trajectory="forward")
    context = rclpy.Context()
    rclpy.init(context=context)
    tester = Node("vggt_process_tester", namespace=NS, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(tester)
    got = defaultdict(list)

    def wait(condition, timeout, what):
        last = got["/diagnostics"][-1].status[0].values if got["/diagnostics"] else []
        _spin_until(executor, condition, timeout, f"{what} (topics: "
                    f"{ {k: len(v) for k, v in got.items()} }, last diagnostics: "
                    f"{ {kv.key: kv.value for kv in last} })", log)

    try:
        for msg_type, topic in [(TFMessage, "/tf"), (Image, "depth"),
                                (CameraInfo, "depth/camera_info"), (PointCloud2, "points"),
                                (DiagnosticArray, "/diagnostics")]:
            tester.create_subscription(msg_type, topic,
                                       lambda m, t=topic: got[t].append(m), 50)
        pub_image = tester.create_publisher(Image, "image", 10)
        pub_info = tester.create_publisher(CameraInfo, "camera_info", 10)
        client = tester.create_client(TrackPoints, "track_points")

        def alive():
            assert proc.poll() is None, f"vggt_node exited {proc.returncode}:\n{_log_text(log)}"
            return pub_image.get_subscription_count() > 0 and client.service_is_ready()

        wait(alive, 60, "vggt_node to start")
        # The camera subscription is best effort: frames sent before the node's side of the
        # connection is matched are lost. Probe with an image of an unsupported encoding until
        # the node's diagnostics count it, which also checks bad input across processes.
        probe = Image(header=conv.make_header(1, FRAME_ID), height=1, width=1,
                      encoding="yuv422", step=2, data=b"\0\0")

        def probe_counted():
            pub_image.publish(probe)
            return any(kv.key == "rejected.unsupported_encoding"
                       for m in got["/diagnostics"] for kv in m.status[0].values)

        wait(probe_counted, 30, "the node to count the probe image")
        info = conv.camera_info_from_k(seq.K, W, H, 0, FRAME_ID)
        for i in range(FRAMES):
            stamp = int(seq.stamps_ns[i])
            info.header = conv.make_header(stamp, FRAME_ID)
            pub_info.publish(info)
            pub_image.publish(conv.rgb_to_image(seq.render(i)[0], stamp, FRAME_ID))
            end = time.monotonic() + 0.15
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.02)
        windows = 1 + (FRAMES - WINDOW) // (WINDOW - OVERLAP)
        keyframes = WINDOW + (windows - 1) * (WINDOW - OVERLAP)
        wait(lambda: len(got["/tf"]) >= keyframes
                    and len(got["points"]) >= windows, 60, f"{keyframes} TF and {windows} clouds")

        stamps = [conv.time_to_ns(t.header.stamp) for m in got["/tf"] for t in m.transforms]
        assert stamps == [int(s) for s in seq.stamps_ns[:keyframes]]
        for m in got["/tf"]:
            t = m.transforms[0]
            assert (t.header.frame_id, t.child_frame_id) == ("odom", f"{FRAME_ID}_body")
            q = t.transform.rotation
            assert abs(np.linalg.norm([q.x, q.y, q.z, q.w]) - 1) < 1e-6

        wait(lambda: len(got["depth/camera_info"]) >= keyframes, 10, "depth")
        for depth_msg, info_msg in zip(got["depth"], got["depth/camera_info"]):
            assert depth_msg.encoding == "32FC1" and depth_msg.header.frame_id == FRAME_ID
            assert info_msg.header == depth_msg.header
            assert (info_msg.width, info_msg.height) == (depth_msg.width, depth_msg.height)
            assert depth_msg.width == 70  # the model resolution (image_size)
            depth = conv.image_to_float(depth_msg)
            assert depth.shape == (depth_msg.height, depth_msg.width)

        xyz, rgb = conv.pointcloud2_to_numpy(got["points"][-1])
        assert got["points"][-1].header.frame_id == "odom"
        assert xyz.shape[1] == 3 and rgb.shape == xyz.shape and np.isfinite(xyz).all()

        wait(lambda: any(
            int({kv.key: kv.value for kv in m.status[0].values}.get("windows", 0)) >= windows
            for m in got["/diagnostics"]), 10, "diagnostics after the windows")
        values = {kv.key: kv.value for kv in got["/diagnostics"][-1].status[0].values}
        assert values["device"] == "cpu"
        assert values["model.name"] == "small_model.safetensors"
        assert values["scale"] == "non-metric"

        future = client.call_async(TrackPoints.Request(u=[10.0, 40.0], v=[12.0, 30.0]))
        wait(future.done, 30, "track_points")
        resp = future.result()
        assert resp.success, resp.message
        assert len(resp.frame_stamps) == WINDOW and resp.query_index == WINDOW - 1
        assert len(resp.tracks) == 2 and all(len(t.u) == WINDOW for t in resp.tracks)
        bad = client.call_async(TrackPoints.Request(u=[10.0], v=[]))
        wait(bad.done, 10, "bad track_points")
        assert not bad.result().success and "same length" in bad.result().message
        assert proc.poll() is None
    finally:
        executor.shutdown()
        tester.destroy_node()
        rclpy.shutdown(context=context)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0, _log_text(log)
    text = _log_text(log)
    assert "loaded model 'small_model.safetensors'" in text
