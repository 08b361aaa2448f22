"""The REP-105 odom frame of the outputs: identity start, z up, one parent per frame, no TF
back in time. Pure (no rclpy): the WindowOutputs that the node and the output bag share."""
import numpy as np
import pytest

from vggt_ros.pipeline.types import ChainingStatus, KeyframeResult, WindowResult
from vggt_ros.topics.odom_frame import (BODY_FROM_OPTICAL, Mount, OdomAnchor, camera_body_frame,
                                        camera_body_mount)
from vggt_ros.topics.window_outputs import WindowOutputs

OPTICAL = "cam_optical"


def _pose(translation, rotation=np.eye(3)) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, translation
    return pose


def _keyframe(stamp: int, pipeline_from_cam: np.ndarray) -> KeyframeResult:
    return KeyframeResult(stamp_ns=stamp, frame_id=OPTICAL, odom_from_cam=pipeline_from_cam,
                          depth=np.ones((2, 2), np.float32),
                          confidence=np.ones((2, 2), np.float32), intrinsics=np.eye(3),
                          image=np.zeros((2, 2, 3), np.uint8), mapping=None,
                          intrinsics_original=np.eye(3))


def _window(keyframes, points=np.zeros((0, 3), np.float32)) -> WindowResult:
    return WindowResult(index=0, stamps_ns=[k.stamp_ns for k in keyframes],
                        new_keyframes=list(keyframes), points=np.asarray(points, np.float32),
                        colors=np.zeros((len(points), 3), np.uint8),
                        chaining=ChainingStatus(method="first", scale=1.0))


def _by_topic(outputs):
    found = {}
    for output in outputs:
        found.setdefault(output.topic, []).append(output.build())
    return found


def _tf_pose(message) -> tuple[str, str, np.ndarray]:
    from scipy.spatial.transform import Rotation

    t = message["transforms"][0]
    q = t["transform"]["rotation"]
    pose = _pose([t["transform"]["translation"][k] for k in "xyz"],
                 Rotation.from_quat([q[k] for k in "xyzw"]).as_matrix())
    return t["header"]["frame_id"], t["child_frame_id"], pose


def test_camera_body_mode_starts_at_identity_with_x_forward_and_z_up():
    # The pipeline's frame is the first camera's optical frame; the camera then moves 1 unit
    # along its optical axis (forward) and 0.5 down (optical +y).
    outputs = WindowOutputs("odom")
    frames = [_keyframe(10, np.eye(4)), _keyframe(20, _pose([0.0, 0.5, 1.0]))]
    found = _by_topic(outputs.window(_window(frames, points=[[0.0, 0.0, 2.0]])))
    parent, child, first = _tf_pose(found["/tf"][0])
    assert (parent, child) == ("odom", camera_body_frame(OPTICAL))
    np.testing.assert_allclose(first, np.eye(4), atol=1e-12)
    _, _, second = _tf_pose(found["/tf"][1])
    np.testing.assert_allclose(second[:3, 3], [1.0, 0.0, -0.5], atol=1e-12)  # forward, down
    np.testing.assert_allclose(second[:3, :3], np.eye(3), atol=1e-12)
    # A point 2 units in front of the first camera is 2 units along odom x.
    cloud = found["points"][0]
    xyz = np.frombuffer(cloud["data"].tobytes(), np.float32).reshape(-1, 4)[:, :3]
    np.testing.assert_allclose(xyz, [[2.0, 0.0, 0.0]], atol=1e-6)


def test_camera_body_mode_publishes_the_body_to_optical_edge_once():
    outputs = WindowOutputs("odom")
    first = _by_topic(outputs.window(_window([_keyframe(10, np.eye(4))])))
    later = _by_topic(outputs.window(_window([_keyframe(20, _pose([0, 0, 1.0]))])))
    (static,) = first["/tf_static"]
    parent, child, pose = _tf_pose(static)
    assert (parent, child) == (camera_body_frame(OPTICAL), OPTICAL)
    np.testing.assert_allclose(pose, BODY_FROM_OPTICAL, atol=1e-12)
    assert "/tf_static" not in later


def test_base_frame_mode_odom_is_the_initial_base_pose():
    mount_pose = _pose([0.2, 0.0, 0.5], BODY_FROM_OPTICAL[:3, :3])  # a standard optical mount
    outputs = WindowOutputs("odom", lambda optical: Mount("base_link", mount_pose, False))
    start = _pose([3.0, -1.0, 2.0])  # wherever the pipeline put the first keyframe
    found = _by_topic(outputs.window(_window([_keyframe(10, start),
                                              _keyframe(20, start @ _pose([0, 0, 1.0]))])))
    assert "/tf_static" not in found  # the URDF owns the mount
    _, child, first = _tf_pose(found["/tf"][0])
    assert child == "base_link"
    np.testing.assert_allclose(first, np.eye(4), atol=1e-12)
    _, _, second = _tf_pose(found["/tf"][1])
    np.testing.assert_allclose(second[:3, 3], [1.0, 0.0, 0.0], atol=1e-12)


def test_nothing_in_odom_is_output_before_the_mount_is_known():
    outputs = WindowOutputs("odom", lambda optical: None)
    found = _by_topic(outputs.window(_window([_keyframe(10, np.eye(4))], [[1.0, 2.0, 3.0]])))
    assert set(found) == {"depth", "depth/camera_info", "depth/confidence"}
    assert outputs.map(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8), 10) is None
    assert outputs.to_odom(np.zeros((1, 3))) is None


def test_a_restarted_trajectory_gets_its_own_identity_start():
    outputs = WindowOutputs("odom")
    outputs.window(_window([_keyframe(10, np.eye(4)), _keyframe(20, _pose([0, 0, 1.0]))]))
    outputs.restart_trajectory()
    found = _by_topic(outputs.window(_window([_keyframe(5, _pose([0, 0, 7.0]))])))
    _, _, pose = _tf_pose(found["/tf"][0])
    np.testing.assert_allclose(pose, np.eye(4), atol=1e-12)
    assert len(found["path"][0]["poses"]) == 1
    assert "/tf_static" in found  # a new trajectory announces its edge again


def test_tf_never_goes_back_in_time_within_a_trajectory():
    reasons = []
    outputs = WindowOutputs("odom", on_bad_pose=reasons.append)
    outputs.window(_window([_keyframe(20, np.eye(4))]))
    found = _by_topic(outputs.window(_window([_keyframe(15, _pose([0, 0, 1.0]))])))
    assert "/tf" not in found
    assert reasons and "back in time" in reasons[0]


def test_anchor_points_keep_their_dtype_and_need_an_anchor():
    anchor = OdomAnchor()
    with pytest.raises(RuntimeError):
        anchor.points(np.zeros((1, 3)))
    anchor.body_pose(camera_body_mount(OPTICAL), np.eye(4))
    moved = anchor.points(np.array([[1.0, 2.0, 3.0]], np.float32))
    assert moved.dtype == np.float32
    np.testing.assert_allclose(moved, [[3.0, -1.0, -2.0]])
