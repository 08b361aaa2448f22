"""Acceptance: ``vggt_node`` as a managed node in its own process, driven through its lifecycle
services (lifecycle_msgs/srv/ChangeState, GetState) as a lifecycle manager would, with the
embedded demo model on CPU.

configure with a bad checkpoint fails with the reason and leaves the node unconfigured; with
the checkpoint fixed (startup parameters are writable while unconfigured) configure loads and
warms up; outputs come only while active; deactivate -> activate continues the same trajectory;
cleanup releases the outputs; shutdown finalizes; the process then exits cleanly.
"""
import numpy as np
import pytest
import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import Image

from live_harness import CameraPlayer, NodeProcess, context, sliding_frames, vggt_node
from vggt_ros.nodes import conversions as conv

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.timeout(300)]

NS = "/managed"
W, H, WINDOW, OVERLAP = 128, 96, 3, 1
STEP_NS = 200_000_000  # 5 Hz stamps: every frame is a keyframe
FIRST_RUN, PAUSED, SECOND_RUN = range(0, 5), range(5, 7), range(5, 9)


class LifecycleClient:
    """ChangeState / GetState of the node, called from the player's executor."""

    def __init__(self, player: CameraPlayer, process: NodeProcess) -> None:
        self.player, self.process = player, process
        node = player.node
        self.change = node.create_client(ChangeState, f"{NS}/vggt/change_state")
        self.get = node.create_client(GetState, f"{NS}/vggt/get_state")
        self.params = AsyncParameterClient(node, f"{NS}/vggt")

    def _call(self, client, request, timeout=120.0):
        self.player.wait(client.service_is_ready, 60, f"{client.srv_name}", self.process)
        future = client.call_async(request)
        self.player.wait(future.done, timeout, f"{client.srv_name} answer", self.process)
        return future.result()

    def transition(self, transition_id: int) -> bool:
        return self._call(self.change, ChangeState.Request(
            transition=Transition(id=transition_id))).success

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def set(self, name: str, value) -> None:
        self.player.wait(lambda: self.params.wait_for_services(0.01), 30, "parameter services",
                         self.process)
        future = self.params.set_parameters([Parameter(name, value=value)])
        self.player.wait(future.done, 30, "set_parameters answer", self.process)
        result = future.result().results[0]
        assert result.successful, result.reason


def _tf_stamps(player) -> list[int]:
    return [conv.time_to_ns(t.header.stamp) for m in player.got["/tf"] for t in m.transforms]


def _wait_diagnostics(player, process, key, predicate, what):
    player.wait(lambda: key in player.diagnostics() and predicate(player.diagnostics()[key]),
                60, what, process)


def _connect(player, process):
    """Wait until camera images reach the node again (best effort: probe until counted)."""
    player.wait(lambda: player.pub_image.get_subscription_count() > 0, 30,
                "the camera subscription", process)
    before = int(player.diagnostics().get("rejected.unsupported_encoding", 0))
    probe = Image(header=conv.make_header(1, player.frame_id), height=1, width=1,
                  encoding="yuv422", step=2, data=b"\0\0")

    def counted():
        player.pub_image.publish(probe)
        player.spin_for(0.05)
        return int(player.diagnostics().get("rejected.unsupported_encoding", 0)) > before

    player.wait(counted, 30, "the node to count a probe image", process)


def _play(player, images, k, indices):
    info = conv.camera_info_from_k(k, W, H, 0, player.frame_id)
    for i in indices:
        stamp = (i + 1) * STEP_NS
        info.header = conv.make_header(stamp, player.frame_id)
        player.pub_info.publish(info)
        player.pub_image.publish(conv.rgb_to_image(images[i], stamp, player.frame_id))
        player.spin_for(0.1)


def test_managed_node_through_its_lifecycle_services(tmp_path):
    images, k = sliding_frames(W, H, max(SECOND_RUN) + 1)
    process = NodeProcess(tmp_path, vggt_node(), NS, {
        "autostart": False, "checkpoint": str(tmp_path / "missing.safetensors"),
        "device": "cpu", "image_size": 112, "window_size": WINDOW, "overlap": OVERLAP,
        "pose_source": "camera_head", "pose_queries": 32, "idle_flush_timeout": 0.0,
        "warmup_image_width": W, "warmup_image_height": H, "diagnostics_period": 0.3},
        name="vggt_node")
    ctx = context()
    player = CameraPlayer(ctx, NS)
    lifecycle = LifecycleClient(player, process)
    try:
        assert lifecycle.state() == "unconfigured"

        # A bad checkpoint: configure fails, the reason is reported, the node stays put.
        assert not lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == "unconfigured"
        _wait_diagnostics(player, process, "lifecycle.last_error", lambda v: "missing" in v,
                          "the configure error in /diagnostics")
        status = player.status(f"{NS}/vggt")
        assert status.level == status.ERROR and "configure failed" in status.message
        assert "missing.safetensors" in process.log()

        # Fixed while unconfigured: the embedded demo model; configure warms it up.
        lifecycle.set("checkpoint", "")
        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == "inactive"
        _wait_diagnostics(player, process, "lifecycle_state", lambda v: v == "inactive",
                          "inactive in /diagnostics")
        values = player.diagnostics()
        assert float(values["startup.warmup_s"]) > 0 and values["lifecycle.last_error"] == ""
        assert "every window shape" in values["startup.warmup"] and f"{W}x{H}" in values[
            "startup.warmup"]
        assert player.pub_image.get_subscription_count() == 0  # inactive: no camera input

        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        _connect(player, process)
        _play(player, images, k, FIRST_RUN)
        first = [(i + 1) * STEP_NS for i in FIRST_RUN]
        player.wait(lambda: _tf_stamps(player) == first, 120, "the first run's keyframes on /tf",
                    process)

        assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.state() == "inactive"
        player.wait(lambda: player.pub_image.get_subscription_count() == 0, 30,
                    "the camera unsubscribed", process)
        _play(player, images, k, PAUSED)  # nobody listens: no output, nothing queued
        player.spin_for(1.0)
        assert _tf_stamps(player) == first

        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        _connect(player, process)
        _play(player, images, k, SECOND_RUN)
        both = [(i + 1) * STEP_NS for i in range(max(SECOND_RUN) + 1)]
        player.wait(lambda: _tf_stamps(player) == both, 120, "every keyframe once, in order",
                    process)
        player.wait(lambda: player.got["path"] and len(player.got["path"][-1].poses) == len(
            both), 30, "the path over both activations", process)
        path = [conv.time_to_ns(p.header.stamp) for p in player.got["path"][-1].poses]
        assert path == both  # one trajectory: the windows after activate chained onto it
        _wait_diagnostics(player, process, "windows", lambda v: int(v) >= 4, "4 windows")
        values = player.diagnostics()
        assert values["resets"] == "0" and values["lifecycle_state"] == "active"
        positions = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z]
                              for p in player.got["path"][-1].poses])
        assert np.isfinite(positions).all()

        assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.transition(Transition.TRANSITION_CLEANUP)
        assert lifecycle.state() == "unconfigured"
        player.wait(lambda: player.node.count_publishers(f"{NS}/depth") == 0, 30,
                    "the outputs released", process)
        _wait_diagnostics(player, process, "lifecycle_state", lambda v: v == "unconfigured",
                          "unconfigured in /diagnostics")

        assert lifecycle.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert lifecycle.state() == "finalized"
        assert process.alive()
    finally:
        player.close()
        rclpy.shutdown(context=ctx)
        code = process.stop()
    log = process.log_path.read_text()
    assert code == 0, log
    assert "configure failed" in log and "configured in" in log and "inactive: camera" in log
