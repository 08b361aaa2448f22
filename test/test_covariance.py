"""The odometry a fusion stack consumes: a covariance that means something, a twist, and TF in
the chosen mode (never a second parent for base_link)."""
from dataclasses import replace

import numpy as np
import pytest

from vggt_ros.pipeline.covariance import UncertaintyTracker, pose_covariance, twist_covariance
from vggt_ros.pipeline.types import (ChainingStatus, KeyframeResult, PoseHealth,
                                     PreprocessMapping, ScaleStatus, WindowResult)
from vggt_ros.topics.odom_frame import BODY_FROM_OPTICAL, Mount
from vggt_ros.topics.window_outputs import WindowOutputs

STEP_NS = 100_000_000


def keyframe(i, x):
    """Keyframe ``i`` of a camera driving forward (optical z) to ``x``."""
    pose = np.eye(4)
    pose[2, 3] = x
    mapping = PreprocessMapping((4, 3), (4, 3), 1.0, 0.0, 0.0, (0, 0, 4, 3))
    return KeyframeResult(stamp_ns=(i + 1) * STEP_NS, frame_id="cam", odom_from_cam=pose,
                          depth=np.ones((3, 4), np.float32),
                          confidence=np.ones((3, 4), np.float32), intrinsics=np.eye(3),
                          image=np.zeros((3, 4, 3), np.uint8), mapping=mapping,
                          intrinsics_original=np.eye(3))


def window(index, first, count=4, speed=0.5, method="points", inlier_ratio=0.95,
           residual=0.01, reprojection_px=0.5, degenerate=False, scale_uncertainty=None):
    keyframes = [keyframe(i, speed * i * STEP_NS / 1e9) for i in range(first, first + count)]
    scale = (None if scale_uncertainty is None else
             ScaleStatus("depth", True, 1.0, uncertainty=scale_uncertainty))
    return WindowResult(index=index, stamps_ns=[k.stamp_ns for k in keyframes],
                        new_keyframes=keyframes, points=np.zeros((0, 3), np.float32),
                        colors=np.zeros((0, 3), np.uint8),
                        chaining=ChainingStatus(method, 1.0, residual=residual,
                                                inlier_ratio=inlier_ratio),
                        pose=PoseHealth("refined", reprojection_px=reprojection_px,
                                        degenerate=degenerate),
                        scale=scale)


def uncertainty_after(*windows):
    tracker = UncertaintyTracker()
    return [tracker.window(w) for w in windows][-1]


def test_covariances_are_positive_definite_even_for_a_still_camera():
    still = uncertainty_after(window(0, 0, speed=0.0, residual=float("nan")))
    for matrix in (pose_covariance(still), twist_covariance(still, 0.1)):
        assert matrix.shape == (6, 6) and np.allclose(matrix, matrix.T)
        assert np.linalg.eigvalsh(matrix).min() > 0


@pytest.mark.parametrize("poor", [dict(inlier_ratio=0.3), dict(residual=0.2),
                                  dict(method="previous_scale", inlier_ratio=float("nan")),
                                  dict(reprojection_px=4.0), dict(degenerate=True)])
def test_a_poor_fit_gives_a_larger_covariance(poor):
    good = uncertainty_after(window(0, 0), window(1, 3))
    bad = uncertainty_after(window(0, 0), window(1, 3, **poor))
    assert bad.position_std > good.position_std
    assert np.all(np.diag(pose_covariance(bad)) >= np.diag(pose_covariance(good)))
    # The residual places the window as a whole; the steps within it are as good as before.
    compare = np.greater_equal if "residual" in poor else np.greater
    assert compare(np.trace(twist_covariance(bad, 0.1)), np.trace(twist_covariance(good, 0.1)))


def test_the_pose_covariance_grows_with_the_path_and_the_scale_uncertainty():
    tracker = UncertaintyTracker()
    stds = [tracker.window(window(k, 3 * k)).position_std for k in range(4)]
    assert stds == sorted(stds) and stds[-1] > stds[0]
    sure = uncertainty_after(window(0, 0, scale_uncertainty=0.005))
    unsure = uncertainty_after(window(0, 0, scale_uncertainty=0.05))
    assert unsure.position_std > sure.position_std


def outputs_of(results, tf_mode="odom_tree", mount=None):
    outputs = WindowOutputs("odom", (lambda frame: mount) if mount else
                            WindowOutputs.__init__.__defaults__[0], tf_mode=tf_mode)
    found = []
    for result in results:
        tracker_result = replace(result, uncertainty=UncertaintyTracker().window(result))
        found += [(o.topic, o.build()) for o in outputs.window(tracker_result)]
    return found


def test_odometry_carries_the_covariance_and_the_twist_of_consecutive_keyframes():
    found = outputs_of([window(0, 0, speed=0.5), window(1, 3, speed=0.5)])
    odometry = [m for topic, m in found if topic == "odometry"]
    covariance = np.asarray(odometry[-1]["pose"]["covariance"]).reshape(6, 6)
    assert np.linalg.eigvalsh(covariance).min() > 0
    twist = odometry[-1]["twist"]["twist"]
    # 0.5 m/s along the optical z = the camera body's x (forward).
    assert twist["linear"]["x"] == pytest.approx(0.5) and abs(twist["linear"]["y"]) < 1e-9
    assert np.linalg.eigvalsh(np.asarray(odometry[-1]["twist"]["covariance"]).reshape(
        6, 6)).min() > 0


@pytest.mark.parametrize("tf_mode, edges", [
    ("odom_tree", {("odom", "base_link")}),
    ("separate_odom", {("base_link", "odom")}),
    ("odometry_only", set())])
def test_tf_follows_the_mode_and_never_gives_base_link_a_second_parent(tf_mode, edges):
    mount = Mount("base_link", BODY_FROM_OPTICAL, owns_edge=False)
    found = outputs_of([window(0, 0), window(1, 3)], tf_mode, mount)
    tf_edges = {(t["header"]["frame_id"], t["child_frame_id"]) for topic, m in found
                if topic == "/tf" for t in m["transforms"]}
    assert tf_edges == edges
    assert sum(topic == "odometry" for topic, _ in found) == 2  # always published


def test_the_separate_odom_edge_is_the_inverse_pose():
    mount = Mount("base_link", BODY_FROM_OPTICAL, owns_edge=False)
    tree = outputs_of([window(0, 0, speed=1.0)], "odom_tree", mount)
    separate = outputs_of([window(0, 0, speed=1.0)], "separate_odom", mount)
    last = [m for t, m in tree if t == "/tf"][-1]["transforms"][0]["transform"]
    inverse = [m for t, m in separate if t == "/tf"][-1]["transforms"][0]["transform"]
    assert last["translation"]["x"] == pytest.approx(0.3)
    assert inverse["translation"]["x"] == pytest.approx(-0.3)
