"""Trajectory and depth metrics on cases whose answers are worked out by hand."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.evaluation.metrics import (
    MetricsError,
    absolute_trajectory_error,
    associate,
    depth_metrics,
    evaluate_trajectory,
    relative_pose_error,
)


def _pose(position, yaw_deg=0.0) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("z", yaw_deg, degrees=True).as_matrix()
    pose[:3, 3] = position
    return pose


def _curve(n: int = 12) -> np.ndarray:
    """A non-planar, turning camera path (so the Sim(3) alignment is fully determined)."""
    t = np.linspace(0.0, 3.0, n)
    return np.stack([_pose([np.cos(a), np.sin(a), 0.3 * a], np.degrees(a) + 90) for a in t])


def test_identical_trajectories_have_zero_error():
    gt = _curve()
    ate = absolute_trajectory_error(gt, gt)
    assert ate["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert ate["scale"] == pytest.approx(1.0)
    rpe = relative_pose_error(gt, gt, delta=2)
    assert rpe["trans_rmse"] == pytest.approx(0.0, abs=1e-9)
    assert rpe["rot_rmse_deg"] == pytest.approx(0.0, abs=1e-6)
    assert rpe["num_pairs"] == len(gt) - 2


def test_known_similarity_is_removed():
    gt = _curve()
    sim = np.eye(4)  # est_from_gt: scale 0.5, rotation, translation
    sim[:3, :3] = 0.5 * Rotation.from_rotvec([0.3, -0.2, 1.0]).as_matrix()
    sim[:3, 3] = [4.0, -2.0, 1.0]
    est = sim @ gt
    est[:, :3, :3] /= 0.5  # keep rotations orthonormal: est pose = (R gt_R, s R gt_t + t)
    ate = absolute_trajectory_error(est, gt)
    assert ate["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert ate["scale"] == pytest.approx(2.0)  # gt_from_est undoes the 0.5
    # RPE with the alignment's scale sees no error; without it, every step is half as long.
    assert relative_pose_error(est, gt, 1, ate["scale"])["trans_rmse"] == pytest.approx(0, abs=1e-9)
    steps = np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1)
    unscaled = relative_pose_error(est, gt, 1, 1.0)
    assert unscaled["trans_rmse"] == pytest.approx(np.sqrt(np.mean((0.5 * steps) ** 2)))
    assert unscaled["rot_rmse_deg"] == pytest.approx(0.0, abs=1e-6)


def test_ate_of_symmetric_perturbation_matches_hand_derivation():
    # Square (+-1, +-1, 0); the estimate lifts corners alternately by +-e. The cross-covariance
    # is diag(1, 1, 0) (no rotation, no translation), var(est) = 2 + e^2, so Umeyama's scale is
    # s = trace / var = 2 / (2 + e^2) and every corner's error is the same:
    # ||s*est - gt|| = sqrt(2 (1 - s)^2 + s^2 e^2).
    e = 0.2
    corners = np.array([[1, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]], dtype=float)
    lift = np.array([e, -e, e, -e])
    gt = np.stack([_pose(c) for c in corners])
    est = np.stack([_pose(c + [0, 0, z]) for c, z in zip(corners, lift)])
    s = 2.0 / (2.0 + e ** 2)
    expected = np.sqrt(2 * (1 - s) ** 2 + s ** 2 * e ** 2)
    ate = absolute_trajectory_error(est, gt)
    assert ate["scale"] == pytest.approx(s)
    assert ate["rmse"] == pytest.approx(expected)
    assert ate["max"] == pytest.approx(expected)
    assert ate["path_length"] == pytest.approx(6.0)  # three sides of 2 m
    assert ate["rmse_percent_of_path"] == pytest.approx(100 * expected / 6.0)


def test_rpe_counts_one_bad_step():
    # Straight line of 1 m steps; step 2 -> 3 of the estimate is 1.1 m and turns 10 degrees.
    gt = np.stack([_pose([i, 0, 0]) for i in range(6)])
    steps = [_pose([1, 0, 0])] * 5
    steps[2] = _pose([1.1, 0, 0], 10.0)  # relative motion in the camera's own frame
    est = [np.eye(4)]
    for step in steps:
        est.append(est[-1] @ step)
    est = np.stack(est)
    rpe = relative_pose_error(est, gt, delta=1)
    # Pairs (0,1) .. (4,5): only (2,3) is wrong, by 0.1 m and 10 degrees.
    assert rpe["num_pairs"] == 5
    assert rpe["trans_rmse"] == pytest.approx(0.1 / np.sqrt(5))
    assert rpe["rot_rmse_deg"] == pytest.approx(10.0 / np.sqrt(5))
    assert rpe["rot_mean_deg"] == pytest.approx(2.0)


def test_association_is_one_to_one_and_respects_tolerance():
    a = np.array([0, 10, 20, 30, 31])
    b = np.array([1, 12, 25, 30, 100])
    ia, ib = associate(a, b, max_diff_ns=3)
    # 20 <-> 25 is too far; 31 loses 30 to the exact match.
    assert ia.tolist() == [0, 1, 3]
    assert ib.tolist() == [0, 1, 3]
    ia, ib = associate(np.array([5, 0]), np.array([0, 4]), max_diff_ns=10)  # unsorted input
    assert sorted(zip(ia.tolist(), ib.tolist())) == [(0, 1), (1, 0)]


def test_evaluate_trajectory_associates_then_aligns():
    gt = _curve(20)
    gt_stamps = np.arange(20) * 100_000_000
    est = gt[::2].copy()
    est[:, :3, 3] *= 3.0  # non-metric estimate
    est_stamps = gt_stamps[::2] + 5_000_000  # 5 ms late
    out = evaluate_trajectory(est_stamps, est, gt_stamps, gt, max_diff_ns=10_000_000)
    assert out["associated"] == 10
    assert out["ate"]["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert out["ate"]["scale"] == pytest.approx(1 / 3)
    assert out["rpe"]["trans_rmse"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(MetricsError, match="within 1 ms"):
        evaluate_trajectory(est_stamps, est, gt_stamps, gt, max_diff_ns=1_000_000)


def test_the_rigid_ate_fits_no_scale_so_only_a_metric_trajectory_scores_well():
    gt = _curve(20)
    stamps = np.arange(20) * 100_000_000
    moved = gt.copy()
    moved[:, :3, 3] += [1.0, -2.0, 0.5]  # metric, in another frame
    metric = evaluate_trajectory(stamps, moved, stamps, gt)
    assert metric["ate_se3"]["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert metric["ate_se3"]["scale"] == pytest.approx(1.0, abs=1e-12)
    wrong = moved.copy()
    wrong[:, :3, 3] *= 1.1  # 10 % too large: Sim(3) forgives it, SE(3) does not
    out = evaluate_trajectory(stamps, wrong, stamps, gt)
    assert out["ate"]["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert out["ate_se3"]["rmse"] > 0.02 * out["ate_se3"]["path_length"]


def test_depth_metrics_median_scaling_and_validity():
    gt = np.ones((2, 2, 2))
    pred = np.array([[[1.0, 1.0], [1.0, 2.0]],  # frame 0: medians 1 -> errors 0,0,0,1
                     [[3.0, 3.0], [3.0, 3.0]]]) * 7.0  # frame 1: pure scale -> perfect
    out = depth_metrics(pred, gt)
    assert out["abs_rel"] == pytest.approx((0.25 + 0.0) / 2)
    assert out["delta_1_25"] == pytest.approx((0.75 + 1.0) / 2)
    assert out["frames"] == 2 and out["valid_pixels"] == 8
    # Invalid pixels (NaN prediction, zero ground truth) are ignored, not counted as errors.
    pred[0, 1, 1] = np.nan
    gt[1, 0, 0] = 0.0
    out = depth_metrics(pred, gt)
    assert out["abs_rel"] == pytest.approx(0.0)
    assert out["delta_1_25"] == pytest.approx(1.0)
    assert out["valid_pixels"] == 6


def test_depth_metrics_reject_unusable_input():
    with pytest.raises(ValueError, match="one shape"):
        depth_metrics(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(MetricsError, match="no pixel"):
        depth_metrics(np.full((2, 2), np.nan), np.ones((2, 2)))
    with pytest.raises(MetricsError, match="at least 3"):
        absolute_trajectory_error(_curve(2), _curve(2))


def test_vggt_eval_cli_prints_and_writes_json(tmp_path, capsys):
    import json

    from vggt_ros.io.tum import write_tum
    from vggt_ros.evaluation.cli import main

    gt = _curve(10)
    stamps = 1_000_000_000 + np.arange(10) * 100_000_000
    est = gt.copy()
    est[:, :3, 3] = est[:, :3, 3] * 0.5 + [1.0, 2.0, 3.0]  # non-metric, shifted: ATE 0
    est[4, :3, 3] += [0.05, 0.0, 0.0]
    write_tum(tmp_path / "est.txt", stamps, est)
    write_tum(tmp_path / "gt.txt", stamps, gt)
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gtd"
    pred_dir.mkdir()
    gt_dir.mkdir()
    np.save(pred_dir / "1.npy", np.array([[1.0, 1.0], [1.0, 2.0]]))
    np.save(gt_dir / "1.npy", np.ones((2, 2)))
    out = tmp_path / "eval.json"
    assert main([str(tmp_path / "est.txt"), str(tmp_path / "gt.txt"), "--json", str(out),
                 "--depth-dir", str(pred_dir), "--gt-depth-dir", str(gt_dir)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    expected = evaluate_trajectory(stamps, est, stamps, gt)
    assert result["trajectory"]["ate"]["rmse"] == pytest.approx(expected["ate"]["rmse"], rel=1e-6)
    assert result["trajectory"]["ate"]["rmse"] > 0
    assert f"{expected['ate']['rmse']:.6g}" in printed
    assert result["depth"]["abs_rel"] == pytest.approx(0.25)
    # Unusable input: exit 2 with one line on stderr.
    assert main([str(tmp_path / "est.txt"), str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vggt_eval: error:") and "missing.txt" in err[0]
    assert main([str(tmp_path / "est.txt"), str(tmp_path / "gt.txt"), "--depth-dir",
                 str(pred_dir)]) == 2
    assert "together" in capsys.readouterr().err


def test_ground_truth_depth_resampled_onto_model_grid():
    from vggt_ros.evaluation.depth import depth_in_model_pixels
    from vggt_ros.pipeline.types import PreprocessMapping

    rows, cols = np.mgrid[0:4, 0:8]
    depth = (cols + 10 * rows).astype(np.float32)  # value encodes its own pixel
    # Crop: model pixel (u, v) shows original (2u + 2, 2v).
    crop = PreprocessMapping(original_size=(8, 4), model_size=(3, 2), scale=0.5, offset_x=1,
                             offset_y=0, valid=(0, 0, 3, 2))
    np.testing.assert_array_equal(depth_in_model_pixels(depth, crop),
                                  [[2, 4, 6], [22, 24, 26]])
    # Pad: model column 0 is padding (original x = -2) -> NaN, as is anything outside valid.
    pad = PreprocessMapping(original_size=(8, 4), model_size=(4, 2), scale=0.5, offset_x=-1,
                            offset_y=0, valid=(1, 0, 4, 1))
    np.testing.assert_array_equal(depth_in_model_pixels(depth, pad),
                                  [[np.nan, 0, 2, 4], [np.nan] * 4])
    with pytest.raises(ValueError, match="8x4"):
        depth_in_model_pixels(depth.T, crop)
