"""Trajectory health in the pure parts: metrics beside their baselines, the degenerate warning,
and the same words printed and drawn."""
import matplotlib.text
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.evaluation.health import trajectory_health
from vggt_ros.evaluation.metrics import absolute_trajectory_error, relative_pose_error
from vggt_ros.export.health_text import health_lines, warning_line
from vggt_ros.export.report import MapView, report_figure, top_down_basis

from pose_health_samples import window_health


FRAMES = 60


def _loop(yaw_share: float = 1.0) -> np.ndarray:
    """World-from-camera poses along 3/4 of a circle of radius 2, the camera turning with the
    path (a yaw of 270 deg, with a little pitch), times ``yaw_share`` of that rotation."""
    angle = np.linspace(0.0, 1.5 * np.pi, FRAMES)
    poses = np.tile(np.eye(4), (FRAMES, 1, 1))
    poses[:, :3, 3] = np.stack([2 * np.cos(angle), 2 * np.sin(angle), 0.1 * np.sin(3 * angle)], 1)
    yaw_pitch = np.stack([yaw_share * angle, 0.05 * np.sin(angle)], 1)
    poses[:, :3, :3] = Rotation.from_euler("zy", yaw_pitch).as_matrix()
    return poses


def _similar(poses: np.ndarray, scale: float = 2.5) -> np.ndarray:
    """The same trajectory in another frame and scale (what VGGT's units give)."""
    moved = Rotation.from_euler("xyz", [20, -35, 70], degrees=True).as_matrix()
    out = poses.copy()
    out[:, :3, :3] = moved @ poses[:, :3, :3]
    out[:, :3, 3] = scale * poses[:, :3, 3] @ moved.T + [1.0, -2.0, 0.5]
    return out


def _health(est: np.ndarray, gt: np.ndarray, **kwargs) -> dict:
    return trajectory_health(est, gt, absolute_trajectory_error(est, gt), **kwargs)


# ------------------------------------------------------------------ trajectory_health

def test_an_exact_estimate_scores_zero_against_nonzero_baselines_without_warning():
    gt = _loop()
    health = _health(_similar(gt), gt)
    assert absolute_trajectory_error(_similar(gt), gt)["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert health["orientation_error_deg"]["max"] == pytest.approx(0.0, abs=1e-5)
    assert health["rotation_ratio"] == pytest.approx(1.0)
    assert health["estimate"]["total_rotation_deg"] == pytest.approx(
        health["ground_truth"]["total_rotation_deg"]) and health["rotation_ratio"] > 0.99
    no_motion = health["baselines"]["no_motion"]
    assert no_motion["ate_rmse"] > 1.0 and no_motion["rpe_rot_rmse_deg"] > 4.0
    assert health["baselines"]["identity_rotation"]["orientation_error_mean_deg"] > 45.0
    assert health["warnings"] == [] and health["degenerate"] is False


def test_a_camera_that_never_moves_scores_the_no_motion_baseline_and_is_degenerate():
    gt = _loop()
    static = np.tile(np.eye(4), (FRAMES, 1, 1))
    health = trajectory_health(static, gt)
    assert health["warnings"][0] == "the estimate does not move at all"
    baseline = health["baselines"]["no_motion"]
    rpe = relative_pose_error(static, gt)
    assert rpe["trans_rmse"] == pytest.approx(baseline["rpe_trans_rmse"])
    assert rpe["rot_rmse_deg"] == pytest.approx(baseline["rpe_rot_rmse_deg"])
    # An exactly static estimate cannot be aligned; one that jitters by a micrometre can, and
    # its best placement (the alignment scales the jitter to nothing) scores the baseline.
    jitter = static.copy()
    jitter[:, :3, 3] = gt[:, :3, 3].mean(0) + 1e-6 * np.random.default_rng(0).normal(
        size=(FRAMES, 3))
    ate = absolute_trajectory_error(jitter, gt)
    assert ate["rmse"] == pytest.approx(baseline["ate_rmse"], rel=0.1)
    assert ate["rmse"] <= baseline["ate_rmse"] * (1 + 1e-9)
    health = _health(jitter, gt)
    assert health["degenerate"] is True
    assert any("no better than a camera that never moves" in w for w in health["warnings"])
    assert any(w.startswith("the estimate turns 0 deg") for w in health["warnings"])


def test_a_camera_that_never_turns_scores_the_identity_rotation_baseline():
    gt = _loop()
    est = gt.copy()
    est[:, :3, :3] = Rotation.from_matrix(gt[:, :3, :3]).mean().as_matrix()
    health = _health(est, gt)
    assert health["orientation_error_deg"]["mean"] == pytest.approx(
        health["baselines"]["identity_rotation"]["orientation_error_mean_deg"], abs=1e-6)
    assert health["estimate"]["total_rotation_deg"] == pytest.approx(0.0, abs=1e-6)
    assert health["degenerate"] is True


@pytest.mark.parametrize("yaw_share, degenerate", [(0.45, True), (0.9, False), (1.6, False),
                                                   (2.2, True)])
def test_a_trajectory_turning_less_than_half_or_more_than_twice_the_ground_truth_warns(
        yaw_share, degenerate):
    gt = _loop()
    est = _similar(_loop(yaw_share))
    health = _health(est, gt)
    assert health["rotation_ratio"] == pytest.approx(yaw_share, rel=0.05)
    turns = [w for w in health["warnings"] if w.startswith("the estimate turns")]
    assert bool(turns) is degenerate and health["degenerate"] is degenerate
    if degenerate:
        assert turns == [f"the estimate turns {health['estimate']['total_rotation_deg']:.0f} deg "
                         f"while the ground truth turns "
                         f"{health['ground_truth']['total_rotation_deg']:.0f} deg"]


def test_without_ground_truth_the_windows_pose_health_decides():
    est = _loop()
    bad = trajectory_health(est, windows=[window_health(True)] * 3 + [window_health(False)])
    assert bad["windows"]["count"] == 4 and bad["windows"]["degenerate"] == 3
    assert bad["degenerate"] is True and "baselines" not in bad
    assert "in 3 of 4 windows the poses do not explain the image motion" in bad["warnings"][0]
    assert bad["warnings"][1].endswith("try pose_source refined")
    good = trajectory_health(est, windows=[window_health(False)] * 4)
    assert good["warnings"] == [] and good["degenerate"] is False


# ------------------------------------------------------------------ printed and drawn text

def test_every_printed_metric_stands_beside_its_baseline():
    gt = _loop()
    est = _similar(gt)
    est[:, :3, 3] += 0.01 * np.random.default_rng(1).normal(size=(FRAMES, 3))
    ate = absolute_trajectory_error(est, gt)
    trajectory = {"ate": ate, "rpe": relative_pose_error(est, gt, scale=ate["scale"])}
    health = trajectory_health(est, gt, ate, [window_health(False, "refined")] * 2)
    rows = {line.split("  ")[0]: line for line in
            health_lines(health, trajectory, "refined", "camera_info")}
    no_motion = health["baselines"]["no_motion"]
    assert f"{ate['rmse']:.3g} (" in rows["ATE"]
    assert rows["ATE"].endswith(f"| never moves: {no_motion['ate_rmse']:.3g} "
                                f"({no_motion['ate_percent_of_path']:.3g} %)")
    assert f"| never moves: {no_motion['rpe_trans_rmse']:.3g}" in rows["RPE per frame"]
    never_turns = health["baselines"]["identity_rotation"]["orientation_error_mean_deg"]
    assert rows["orientation"].endswith(f"| never turns: {never_turns:.3g} deg")
    assert rows["total rotation"].endswith(
        f"| ground truth: {health['ground_truth']['total_rotation_deg']:.4g} deg")
    assert "poses refined, intrinsics camera_info" in rows["pose solver"]
    assert warning_line(health) == ""


def test_the_warning_line_gives_every_reason():
    health = trajectory_health(_loop(), windows=[window_health(True)] * 2)
    line = warning_line(health)
    assert line == "WARNING: degenerate trajectory: " + "; ".join(health["warnings"])
    assert len(health["warnings"]) == 2


def _red_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)
            if t.get_text() and t.get_color() == "red"]


def test_the_report_draws_the_warning_in_red_beside_the_metrics_and_the_map():
    gt = _loop()
    rows = ["ATE            0.1 (5 % of path)    | never moves: 1 (50 %)"]
    warning = "WARNING: degenerate trajectory: the estimate turns 0 deg while ..."
    points = np.random.default_rng(2).uniform(-3, 3, size=(500, 3))
    view = MapView(points, None, gt[:, :3, 3], up=np.array([0.0, 0.0, 1.0]),
                   ground_truth=gt[:, :3, 3])
    fig = report_figure(gt[:, :3, 3], [], np.ones(10), gt[:, :3, 3], "test", view, rows,
                        warning)
    texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    assert [t.replace("\n", " ").replace("   ", " ") for t in _red_texts(fig)] == [warning]
    assert rows[0] in texts
    assert fig.axes[0].get_title().startswith("map from above")
    assert _red_texts(report_figure(gt[:, :3, 3], [], np.ones(10), gt[:, :3, 3], "", view,
                                    rows, "")) == []


def test_the_map_is_seen_from_above_the_plane_of_a_tilted_loop():
    tilt = Rotation.from_euler("x", 30, degrees=True).as_matrix()
    positions = _loop()[:, :3, 3] @ tilt.T
    basis = top_down_basis(positions, up=np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-9)
    assert abs(basis[2] @ tilt[:, 2]) == pytest.approx(1.0, abs=0.02)  # the loop's normal
    assert basis[2] @ [0, 0, 1] > 0  # looking down, not up: the view is not mirrored


def test_the_map_view_is_cut_at_camera_height_so_a_ceiling_hides_nothing():
    gt = _loop()  # cameras within 0.1 of z = 0
    rng = np.random.default_rng(4)
    floor = np.c_[rng.uniform(-3, 3, (300, 2)), np.full(300, -1.5)]
    ceiling = np.c_[rng.uniform(-3, 3, (200, 2)), np.full(200, 1.5)]
    view = MapView(np.concatenate([floor, ceiling]), None, gt[:, :3, 3],
                   up=np.array([0.0, 0.0, 1.0]))
    fig = report_figure(gt[:, :3, 3], [], np.ones(10), None, "", view)
    (drawn,) = fig.axes[0].collections
    assert len(drawn.get_offsets()) == len(floor)


@pytest.mark.parametrize("path", ["straight", "on the spot"])
def test_a_path_that_spans_no_plane_is_seen_along_the_cameras_up(path):
    up = np.array([0.0, -1.0, 0.2]) / np.linalg.norm([0.0, -1.0, 0.2])
    steps = np.linspace(0, 4, 20)[:, None] if path == "straight" else np.zeros((20, 1))
    positions = steps * np.array([1.0, 0.2, 1.0]) + 1e-4 * np.random.default_rng(3).normal(
        size=(20, 3))
    basis = top_down_basis(positions, up, scene_spread=3.0)
    np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(basis[2], up, atol=1e-9)
    if path == "straight":  # along the path, as far as it is horizontal
        direction = np.array([1.0, 0.2, 1.0]) - (np.array([1.0, 0.2, 1.0]) @ up) * up
        assert abs(basis[0] @ direction / np.linalg.norm(direction)) == pytest.approx(1.0,
                                                                                     abs=1e-3)
