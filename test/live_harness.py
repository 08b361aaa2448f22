"""A node process (``test/gt_node.py``) and a tester node that plays images into it.

Shared by the cross-process tests: the node runs as a user starts it (its own process, real
DDS, ``--ros-args``), the ground-truth double answers its windows, and the tester records
every output topic and the node's log.
"""
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path as PathMsg
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from vggt_ros.nodes import conversions as conv
from vggt_ros.synth import FRAME_ID, make_sequence
from vggt_ros.topics.odom_frame import BODY_FROM_OPTICAL

HERE = Path(__file__).resolve().parent
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
# A standard optical mount: the camera looks along base x, 0.2 m ahead and 0.5 m up.
BASE_FROM_CAM = BODY_FROM_OPTICAL.copy()
BASE_FROM_CAM[:3, 3] = [0.2, 0.0, 0.5]


def poll_until(condition, timeout: float, what: str) -> None:
    """Wait until ``condition()`` holds while other threads spin the nodes; AssertionError
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def gt_node(*sequence_args) -> list[str]:
    """The command of ``gt_node.py`` for a sequence (frames, width, height, seed, trajectory)."""
    return [sys.executable, str(HERE / "gt_node.py"), *map(str, sequence_args)]


def vggt_node() -> list[str]:
    """The installed ``vggt_node`` executable, as a user runs it (the real model)."""
    return [str(HERE.parent / ".venv" / "bin" / "vggt_node")]


class NodeProcess:
    """A node process (``gt_node`` or ``vggt_node``) with parameters; ``log()`` reads what it
    printed."""

    def __init__(self, tmp_path: Path, command: list, namespace: str = "",
                 params: dict = None, name: str = "node") -> None:
        self.log_path = tmp_path / f"{name}.log"
        self._log = open(self.log_path, "w+")
        cmd = [*command, "--ros-args"]
        if namespace:
            cmd += ["-r", f"__ns:={namespace}"]
        for key, value in (params or {}).items():
            cmd += ["-p", f"{key}:={value}"]
        # The environment (loopback DDS profile, private domain) comes from conftest.py.
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ))

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode


class CameraPlayer:
    """Publishes a camera into ``namespace`` and records the node's outputs there."""

    def __init__(self, context, namespace: str = "", name: str = "vggt_live_tester",
                 frame_id: str = FRAME_ID) -> None:
        self.node = Node(name, namespace=namespace or "/", context=context)
        self.frame_id = frame_id
        self.got = defaultdict(list)
        for msg_type, topic, qos in [(TFMessage, "/tf", 100), (TFMessage, "/tf_static", LATCHED),
                                     (Odometry, "odometry", 50), (PathMsg, "path", LATCHED),
                                     (DiagnosticArray, "/diagnostics", 50)]:
            self.node.create_subscription(msg_type, topic,
                                          lambda m, t=topic: self.got[t].append(m), qos)
        self.pub_image = self.node.create_publisher(Image, "image", 50)
        self.pub_info = self.node.create_publisher(CameraInfo, "camera_info", 50)
        self.pub_static = self.node.create_publisher(TFMessage, "/tf_static", LATCHED)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def share_executor(self, other: "CameraPlayer") -> None:
        """Spin this player's node in ``other``'s executor (several cameras, one loop)."""
        self.executor.remove_node(self.node)
        self.executor = other.executor
        self.executor.add_node(self.node)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.01, max(end - time.monotonic(), 0)))

    def wait(self, condition, timeout: float, what: str, process: NodeProcess = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and not process.alive():
                raise AssertionError(f"node exited {process.proc.returncode}:\n{process.log()}")
            if condition():
                return
            self.executor.spin_once(timeout_sec=0.02)
        raise AssertionError(f"timed out waiting for {what}; recorded "
                             f"{ {k: len(v) for k, v in self.got.items()} }" +
                             (f"\nnode log:\n{process.log()}" if process else ""))

    def status(self, name_part: str = ""):
        """The last DiagnosticStatus whose name contains ``name_part`` (None: none yet)."""
        for msg in reversed(self.got["/diagnostics"]):
            for status in msg.status:
                if name_part in status.name:
                    return status
        return None

    def diagnostics(self, name_part: str = "") -> dict[str, str]:
        """The values of :meth:`status`, as key -> value."""
        status = self.status(name_part)
        return {kv.key: kv.value for kv in status.values} if status else {}

    def connect(self, process: NodeProcess, timeout: float = 60.0) -> None:
        """Wait until images reach the node. The camera topic is best effort: what is sent
        before both sides match is lost, so probe with an undecodable image until the node's
        diagnostics count it."""
        self.wait(lambda: self.pub_image.get_subscription_count() > 0, timeout,
                  "the node's image subscription", process)
        probe = Image(header=conv.make_header(1, FRAME_ID), height=1, width=1,
                      encoding="yuv422", step=2, data=b"\0\0")

        namespace = self.node.get_namespace()
        mine = f"{namespace}/" if namespace != "/" else ""  # this camera's node's status

        def counted():
            self.pub_image.publish(probe)
            self.spin_for(0.05)
            return "rejected.unsupported_encoding" in self.diagnostics(mine)

        self.wait(counted, timeout, "the node to count a probe image", process)

    def send(self, seq, i: int, stamp_ns: int = None, frame_id: str = None) -> None:
        stamp = int(seq.stamps_ns[i]) if stamp_ns is None else stamp_ns
        frame_id = frame_id or self.frame_id
        info = conv.camera_info_from_k(seq.K, seq.width, seq.height, stamp, frame_id)
        self.pub_info.publish(info)
        self.pub_image.publish(conv.rgb_to_image(seq.render(i)[0], stamp, frame_id))

    def poses(self, child: str) -> list[tuple[int, "object"]]:
        """(stamp, odom_from_child) of every recorded /tf transform to ``child``, in order."""
        return [(conv.time_to_ns(t.header.stamp), conv.transform_to_pose(t.transform))
                for m in self.got["/tf"] for t in m.transforms if t.child_frame_id == child]


def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    return ctx


def sliding_frames(width: int, height: int, count: int) -> tuple[list, "np.ndarray"]:
    """(frames, K): ``count`` images of a scene sliding sideways, from one render at a quarter
    of the size, upscaled and rolled (a full-size render takes seconds per frame)."""
    seq = make_sequence(1, width // 4, height // 4, seed=3, trajectory="forward")
    base = np.repeat(np.repeat(seq.render(0)[0], 4, axis=0), 4, axis=1)
    k = seq.K * 4
    k[2, 2] = 1.0
    return [np.ascontiguousarray(np.roll(base, 6 * i, axis=1)) for i in range(count)], k


def stream(player: "CameraPlayer", images: list, k: "np.ndarray", rate_hz: float,
           seconds: float, each_second=None) -> int:
    """Play ``images`` in a loop as a live camera at ``rate_hz`` for ``seconds``, stamped with
    the camera's own clock (wall time of each ideal capture instant), spinning the player in
    between; ``each_second(elapsed_s)`` runs once a second. Returns the frames published."""
    height, width = images[0].shape[:2]
    info = conv.camera_info_from_k(k, width, height, 0, player.frame_id)
    start_ns = time.time_ns()
    t0 = time.monotonic()
    published = 0
    while time.monotonic() - t0 < seconds:
        due = t0 + published / rate_hz
        while time.monotonic() < due:
            player.executor.spin_once(timeout_sec=max(0.0, min(0.005, due - time.monotonic())))
        stamp = start_ns + int(published * 1e9 / rate_hz)
        info.header = conv.make_header(stamp, player.frame_id)
        player.pub_info.publish(info)
        player.pub_image.publish(conv.rgb_to_image(images[published % len(images)], stamp,
                                                   player.frame_id))
        published += 1
        if each_second is not None and published % int(rate_hz) == 0:
            each_second(time.monotonic() - t0)
    return published
