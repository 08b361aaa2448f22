"""The window bundle adjustment (vggt_ros.pipeline.bundle_adjustment): its constant-velocity prior
and the frames' depth term."""
from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.pipeline.bundle_adjustment import AdjustmentProblem, _State
from vggt_ros.pipeline.pose_solver import _centre_whitening

FRAMES, POINTS = 5, 40
TIMES = np.array([0.0, 0.1, 0.25, 0.3, 0.42])  # uneven keyframe spacing


def _poses(angular_velocity, velocity, angular_acceleration=(0.0, 0.0, 0.0)):
    """cam_from_world at TIMES for a camera turning and moving at the given rates."""
    poses = np.tile(np.eye(4), (FRAMES, 1, 1))
    for s, t in enumerate(TIMES):
        rotvec = np.asarray(angular_velocity) * t + 0.5 * np.asarray(angular_acceleration) * t**2
        world_from_cam = Rotation.from_rotvec(rotvec).as_matrix()
        poses[s, :3, :3] = world_from_cam.T
        poses[s, :3, 3] = -world_from_cam.T @ (np.asarray(velocity) * t)
    return poses


def _problem(poses, reprojection_weight=0.01):
    rng = np.random.default_rng(0)
    k = np.tile(np.array([[160.0, 0, 112], [0, 160, 80], [0, 0, 1]]), (FRAMES, 1, 1))
    return AdjustmentProblem(
        k=k, rays=np.c_[rng.uniform(-0.5, 0.5, (POINTS, 2)), np.ones(POINTS)],
        anchor=np.zeros(POINTS, int), net_depth=rng.uniform(2, 4, POINTS),
        target=rng.uniform(50, 150, (FRAMES, POINTS, 2)),
        weight=np.full((FRAMES, POINTS), reprojection_weight), head=poses.copy(),
        free=np.arange(1, FRAMES), prior_rot=0.1, prior_trans=0.1, depth_sigma=0.05,
        huber=1e9, max_depth_change=0.3, smooth_rot=1.0 / np.radians(50.0),
        smooth_centre=1.0 / 3.0, smooth_frames=np.ones(FRAMES, bool), times=TIMES)


def _cost(problem, poses, step):
    rot, trans = poses[:, :3, :3].copy(), poses[:, :3, 3].copy()
    step = step.reshape(-1, 6)
    rot[1:] = Rotation.from_rotvec(step[:, :3]).as_matrix() @ rot[1:]
    trans[1:] += step[:, 3:]
    return _State(problem, rot, trans, np.log(problem.net_depth)).cost


def test_a_camera_at_constant_velocity_costs_nothing_in_the_prior():
    poses = _poses((0.0, 0.5, 0.1), (0.3, 0.0, 1.0))
    problem = _problem(poses)
    state = _State(problem, poses[:, :3, :3], poses[:, :3, 3], np.log(problem.net_depth))
    assert state.smooth.shape == (FRAMES - 2, 6)
    np.testing.assert_allclose(state.smooth, 0.0, atol=1e-9)
    accelerating = _poses((0.0, 0.5, 0.1), (0.3, 0.0, 1.0), angular_acceleration=(0, 2.0, 0))
    state = _State(problem, accelerating[:, :3, :3], accelerating[:, :3, 3],
                   np.log(problem.net_depth))
    assert np.abs(state.smooth[:, :3]).max() > 0.01


def test_the_normal_equations_hold_the_gradient_of_the_cost_prior_included():
    poses = _poses((0.0, 0.5, 0.1), (0.3, 0.0, 1.0), angular_acceleration=(0.5, 3.0, 0.0))
    for weight in (0.01, 0.0):  # with the reprojections, and the priors alone
        problem = _problem(poses, reprojection_weight=weight)
        state = _State(problem, poses[:, :3, :3], poses[:, :3, 3], np.log(problem.net_depth))
        _, gradient, *_ = state.normal_equations(problem)
        eps = 1e-6
        numeric = np.array([(_cost(problem, poses, e * eps) - _cost(problem, poses, -e * eps))
                            / (4 * eps) for e in np.eye(6 * (FRAMES - 1))])  # d(cost/2)
        # the rotation rows are linearised about small steps between keyframes
        np.testing.assert_allclose(gradient, numeric, atol=1e-2 * np.abs(numeric).max())


def test_the_normal_equations_hold_the_gradient_of_a_prior_stiffer_along_the_motion():
    """The centre's acceleration whitened by a matrix per frame (``centre_whitening``: the
    pose solver's change of speed weighs more than a turn) keeps the gradient exact."""
    poses = _poses((0.0, 0.5, 0.1), (0.3, 0.0, 1.0), angular_acceleration=(0.5, 3.0, 0.0))
    poses[2:, :3, 3] *= 1.1  # the speed changes as well
    problem = _problem(poses, reprojection_weight=0.0)
    problem = replace(problem, smooth_rot=0.0, centre_whitening=_centre_whitening(
        poses, problem.smooth_centre, 4.0))
    state = _State(problem, poses[:, :3, :3], poses[:, :3, 3], np.log(problem.net_depth))
    _, gradient, *_ = state.normal_equations(problem)
    eps = 1e-6
    numeric = np.array([(_cost(problem, poses, e * eps) - _cost(problem, poses, -e * eps))
                        / (4 * eps) for e in np.eye(6 * (FRAMES - 1))])
    np.testing.assert_allclose(gradient, numeric, atol=1e-6 * np.abs(numeric).max())


def test_a_change_of_speed_costs_more_than_a_turn_of_the_same_acceleration():
    """The pose solver's whitening of the centre's acceleration: ``ratio`` times stiffer along
    each frame's direction of motion than across it; a frame without motion gets the
    identity."""
    moving = _poses((0.0, 0.0, 0.0), (0.0, 0.0, 1.0))  # straight along +z at 1 unit/s
    whitening = _centre_whitening(moving, 2.0, 4.0)
    along, across = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    for s in range(1, FRAMES - 1):
        assert np.linalg.norm(whitening[s] @ along) == pytest.approx(8.0)
        assert np.linalg.norm(whitening[s] @ across) == pytest.approx(2.0)
    np.testing.assert_allclose(whitening[[0, -1]], np.tile(2.0 * np.eye(3), (2, 1, 1)))
    still = np.tile(np.eye(4), (FRAMES, 1, 1))
    np.testing.assert_allclose(_centre_whitening(still, 2.0, 4.0),
                               np.tile(2.0 * np.eye(3), (FRAMES, 1, 1)))


def test_the_normal_equations_hold_the_gradient_of_the_frames_depth_term():
    """Each observation's log-depth in the observing camera against that frame's depth: a third
    residual row sharing the reprojection rows' Jacobian blocks, for the poses and the depths."""
    poses = _poses((0.0, 0.5, 0.1), (0.3, 0.0, 1.0))
    rng = np.random.default_rng(3)
    depth_weight = np.where(rng.random((FRAMES, POINTS)) < 0.8, 20.0, 0.0)
    depth_weight[0] = 0.0  # the anchor observes its points through their own depth
    problem = replace(_problem(poses), smooth_rot=0.0, smooth_centre=0.0, huber=3.0,
                      frame_log_depth=np.log(rng.uniform(2, 4, (FRAMES, POINTS))),
                      frame_depth_weight=depth_weight)
    log_depth = np.log(problem.net_depth)
    state = _State(problem, poses[:, :3, :3], poses[:, :3, 3], log_depth)
    assert state.residual.shape == (FRAMES, POINTS, 3)
    _, gradient, _, _, depth_gradient = state.normal_equations(problem)
    eps = 1e-6
    numeric = np.array([(_cost(problem, poses, e * eps) - _cost(problem, poses, -e * eps))
                        / (4 * eps) for e in np.eye(6 * (FRAMES - 1))])
    np.testing.assert_allclose(gradient, numeric, atol=1e-6 * np.abs(numeric).max())

    def cost_at(step):
        return _State(problem, poses[:, :3, :3], poses[:, :3, 3], log_depth + step).cost

    numeric = np.array([(cost_at(e * eps) - cost_at(-e * eps)) / (4 * eps)
                        for e in np.eye(POINTS)])
    np.testing.assert_allclose(depth_gradient, numeric, atol=1e-6 * np.abs(numeric).max())
