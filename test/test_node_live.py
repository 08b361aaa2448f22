"""The node under real conditions, in its own process (``test/gt_node.py``: real rclpy and DDS,
the ground-truth double as the model): frames of a robot, stamp glitches, idle cameras,
several cameras. Slow: each test starts a node process."""
import numpy as np
import pytest
from tf2_msgs.msg import TFMessage

from gt_node import PLANAR, sequence
from live_harness import BASE_FROM_CAM, CameraPlayer, NodeProcess, gt_node
from vggt_ros.nodes import conversions as conv
from vggt_ros.synth import FRAME_ID

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.timeout(240)]

W, H, SEED = 64, 48, 4
PARAMS = dict(window_size=6, overlap=2, conf_percentile=0.0, conf_threshold=1.0,
              diagnostics_period=0.2, queue_size=100)


def _play(tester, process, seq, indices, period_s=0.1):
    for i in indices:
        tester.send(seq, i)
        tester.spin_for(period_s)
        assert process.alive(), process.log()


def test_odom_to_base_link_starts_at_identity_and_planar_motion_stays_level(context, tmp_path):
    frames = 30
    seq = sequence(frames, W, H, SEED, PLANAR)
    tester = CameraPlayer(context)
    tester.pub_static.publish(TFMessage(transforms=[
        conv.transform_stamped(BASE_FROM_CAM, 0, "base_link", FRAME_ID)]))
    process = NodeProcess(tmp_path, gt_node(frames, W, H, SEED, PLANAR),
                          params=PARAMS | {"base_frame": "base_link"})
    try:
        tester.connect(process)
        _play(tester, process, seq, range(frames))
        expected = 6 + (frames - 6) // 4 * 4
        tester.wait(lambda: len(tester.poses("base_link")) >= expected, 60,
                    f"{expected} odom -> base_link transforms", process)
        poses = tester.poses("base_link")
        assert [s for s, _ in poses] == [int(s) for s in seq.stamps_ns[:expected]]
        np.testing.assert_allclose(poses[0][1], np.eye(4), atol=1e-9)
        xyz = np.array([p[:3, 3] for _, p in poses])
        path_length = np.linalg.norm(np.diff(xyz[:, :2], axis=0), axis=1).sum()
        assert path_length > 0
        assert np.ptp(xyz[:, 2]) <= 0.01 * path_length
        assert xyz[1, 0] > 0  # the robot drives forward: odom x
        for _, pose in poses:  # only yaw: base z stays odom z
            np.testing.assert_allclose(pose[:3, 2], [0.0, 0.0, 1.0], atol=1e-6)
        assert not [m for m in tester.got["/tf_static"]
                    if any(t.header.frame_id.endswith("_body") for t in m.transforms)]
    finally:
        tester.close()
        assert process.stop() == 0, process.log()


def test_stamp_glitches_are_dropped_and_a_looping_bag_resets_once_per_loop(context, tmp_path):
    frames = 14
    seq = sequence(frames, W, H, SEED, "forward")
    tester = CameraPlayer(context)
    process = NodeProcess(tmp_path, gt_node(frames, W, H, SEED, "forward"), params=PARAMS)
    body = f"{FRAME_ID}_body"
    try:
        tester.connect(process)
        for i in range(frames):
            tester.send(seq, i)
            tester.spin_for(0.05)
            if i in (3, 7, 11):  # a stale copy of the previous frame, 1 ns older
                tester.send(seq, i - 1, stamp_ns=int(seq.stamps_ns[i]) - 1)
                tester.spin_for(0.05)
        tester.wait(lambda: tester.diagnostics().get("rejected.out_of_order") == "3", 30,
                    "3 out-of-order frames counted", process)
        assert tester.diagnostics()["resets"] == "0"
        for _ in range(2):  # the bag loops twice
            _play(tester, process, seq, range(frames), period_s=0.05)
        tester.wait(lambda: tester.diagnostics().get("resets") == "2", 30, "two resets",
                    process)
        stamps = [s for s, _ in tester.poses(body)]
        backwards = sum(b < a for a, b in zip(stamps, stamps[1:]))
        assert backwards == 2  # TF goes back in time only where the bag looped
        assert "stamps restarted" in tester.diagnostics()["last_reset_reason"]
        assert process.log().count("trajectory reset") == 2
    finally:
        tester.close()
        assert process.stop() == 0, process.log()


def test_idle_flush_publishes_the_last_keyframes_when_the_camera_stops(context, tmp_path):
    frames = 8  # one window of 6, then 2 keyframes that no window would ever take
    seq = sequence(frames, W, H, SEED, "forward")
    tester = CameraPlayer(context)
    process = NodeProcess(tmp_path, gt_node(frames, W, H, SEED, "forward"),
                          params=PARAMS | {"idle_flush_timeout": 0.5})
    body = f"{FRAME_ID}_body"
    try:
        tester.connect(process)
        _play(tester, process, seq, range(frames), period_s=0.05)
        tester.wait(lambda: len(tester.poses(body)) == frames
                    and len(tester.got["odometry"]) == 2, 30,
                    "the last keyframes and a second odometry after the camera stopped", process)
        assert [s for s, _ in tester.poses(body)] == [int(s) for s in seq.stamps_ns]
    finally:
        tester.close()
        assert process.stop() == 0, process.log()


def test_a_pipelined_node_publishes_each_window_as_soon_as_no_frame_waits(context, tmp_path):
    frames = 10  # two windows of 6 / overlap 2; no third window would return the second
    seq = sequence(frames, W, H, SEED, "forward")
    tester = CameraPlayer(context)
    process = NodeProcess(tmp_path, gt_node(frames, W, H, SEED, "forward"),
                          params=PARAMS | {"pipelined": True, "idle_flush_timeout": 0.0})
    body = f"{FRAME_ID}_body"
    try:
        tester.connect(process)
        _play(tester, process, seq, range(frames))
        tester.wait(lambda: len(tester.poses(body)) == frames, 30,
                    "both windows' poses without a frame after them", process)
        assert [s for s, _ in tester.poses(body)] == [int(s) for s in seq.stamps_ns]
    finally:
        tester.close()
        assert process.stop() == 0, process.log()


def test_two_namespaced_cameras_have_their_own_frames_and_diagnostics(context, tmp_path):
    frames = 8
    seq = sequence(frames, W, H, SEED, "forward")
    players, processes = {}, {}
    try:
        for cam in ("cam1", "cam2"):
            players[cam] = CameraPlayer(context, namespace=f"/{cam}", name=f"{cam}_player",
                                        frame_id=f"{cam}_optical_frame")
            processes[cam] = NodeProcess(tmp_path, gt_node(frames, W, H, SEED, "forward"),
                                         namespace=f"/{cam}", name=cam,
                                         params=PARAMS | {"odom_frame": f"{cam}/odom"})
        players["cam2"].share_executor(players["cam1"])
        for cam in players:
            players[cam].connect(processes[cam])
        for i in range(frames):
            for cam in players:
                players[cam].send(seq, i)
            players["cam1"].spin_for(0.05)
        for cam, player in players.items():
            body = f"{cam}_optical_frame_body"
            player.wait(lambda: len(player.poses(body)) >= 6, 30, f"{cam} poses",
                        processes[cam])
            parents = {t.header.frame_id for m in player.got["/tf"] for t in m.transforms
                       if t.child_frame_id == body}
            assert parents == {f"{cam}/odom"}
            status = player.status(f"/{cam}/vggt")
            assert status.name == f"/{cam}/vggt: pipeline"
            assert status.hardware_id == f"{cam}_optical_frame on cpu"
    finally:
        for player in players.values():
            player.node.destroy_node()
        for process in processes.values():
            assert process.stop() == 0, process.log()
