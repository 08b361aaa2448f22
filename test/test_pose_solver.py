"""The pose solver (tracks + depth -> window poses) against the ground-truth double."""
import functools
from types import SimpleNamespace
from dataclasses import replace

import numpy as np
import pytest

from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.synth.gt_double import GroundTruthPredictor
from vggt_ros.pipeline.intrinsics import apply_intrinsics
from vggt_ros.pipeline.pose_solver import (PoseSolver, PoseSolverConfig, anchor_indices,
                                           _cell_maxima, _frame_depths, gather_tracks,
                                           select_queries)
from vggt_ros.pipeline.tracking import track_window
from vggt_ros.pipeline.types import (CameraIntrinsics, Frame, PreprocessMapping,
                                     WindowPrediction)
from vggt_ros.synth import make_sequence


@pytest.fixture(scope="module")
def sequence():
    seq = make_sequence(12, 128, 96, seed=5, trajectory="loop")
    seq.render = functools.lru_cache(maxsize=None)(seq.render)  # every test re-reads 8 frames
    return seq


@pytest.fixture(scope="module")
def frames(sequence):
    return [sequence.frame(i) for i in range(8)]


def _solve(predictor, frames, **config):
    cfg = PoseSolverConfig(**config)
    prediction = predictor.predict(frames)
    prediction, _ = apply_intrinsics(prediction, frames, "camera_info")
    tracks = gather_tracks(prediction, frames,
                           lambda f, a, uv: track_window(predictor, f, a, uv), cfg)
    return prediction, PoseSolver(cfg).solve(prediction, tracks)


def _window_truth(predictor, sequence, count):
    """The double's last window in its own frame and scale (frame 0 at the origin)."""
    gt = sequence.cam_from_world[:count]
    truth = gt @ se3_inverse(gt[0])
    truth[:, :3, 3] *= predictor.window_scales[-1]
    return truth


def _errors(poses, truth, prediction):
    """Rotation errors (rad) and translation errors relative to the window's scene depth (the
    window's scale: what "relative" means when VGGT's units are arbitrary)."""
    rel = np.swapaxes(poses[:, :3, :3], 1, 2) @ truth[:, :3, :3]
    angle = np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1))
    trans = np.linalg.norm(poses[:, :3, 3] - truth[:, :3, 3], axis=1)
    return angle, trans / np.median(prediction.depth)


@pytest.mark.parametrize("pose_source", ["tracks", "refined"])
def test_exact_tracks_and_depth_give_the_true_poses_whatever_the_camera_head_says(
        sequence, frames, pose_source):
    predictor = GroundTruthPredictor(sequence, rot_noise_deg=8.0, trans_noise=0.1, seed=2)
    prediction, solution = _solve(predictor, frames, pose_source=pose_source)
    angle, trans = _errors(solution.cam_from_world, _window_truth(predictor, sequence, 8),
                           prediction)
    assert angle.max() < 1e-6 and trans.max() < 1e-6
    assert solution.health.fallback_frames == 0 and not solution.health.degenerate
    assert solution.health.disagreement_deg > 1.0  # the noisy head is seen as wrong


def test_noisy_tracks_with_outliers_and_noisy_depth_stay_within_half_a_degree(sequence, frames):
    predictor = GroundTruthPredictor(sequence, depth_noise=0.02, rot_noise_deg=8.0,
                                     track_noise_px=1.0, track_outliers=0.2, seed=3)
    prediction, solution = _solve(predictor, frames, pose_source="refined")
    angle, trans = _errors(solution.cam_from_world, _window_truth(predictor, sequence, 8),
                           prediction)
    assert np.degrees(angle[1:]).mean() < 0.5 and np.degrees(angle).max() < 1.0
    assert trans[1:].mean() < 0.01 and trans.max() < 0.02
    assert 0.6 < solution.health.inlier_ratio < 0.9  # the 20 % outliers are found


def test_a_windows_pnps_started_side_by_side_give_the_poses_of_one_after_another(
        sequence, frames, monkeypatch):
    def solve():
        predictor = GroundTruthPredictor(sequence, depth_noise=0.02, rot_noise_deg=8.0,
                                         track_noise_px=1.0, track_outliers=0.2, seed=3)
        return _solve(predictor, frames, pose_source="refined")[1].cam_from_world

    side_by_side = solve()
    started = []
    ahead = PoseSolver._pnp_ahead
    monkeypatch.setattr(PoseSolver, "_pnp_ahead",
                        staticmethod(lambda *args: started.append(1) or ahead(*args)))
    assert np.array_equal(solve(), side_by_side) and started  # the threads really ran
    monkeypatch.setattr(PoseSolver, "_pnp_ahead", staticmethod(lambda *args: {}))
    assert np.array_equal(solve(), side_by_side)  # one after another: the same poses


def test_refinement_beats_pnp_alone_on_noisy_tracks(sequence, frames):
    errors = {}
    for source in ("tracks", "refined"):
        predictor = GroundTruthPredictor(sequence, depth_noise=0.02, track_noise_px=1.5,
                                         seed=4)
        prediction, solution = _solve(predictor, frames, pose_source=source)
        angle, trans = _errors(solution.cam_from_world, _window_truth(predictor, sequence, 8),
                               prediction)
        errors[source] = trans.mean()
    assert errors["refined"] < errors["tracks"]


def test_a_frame_without_enough_tracks_keeps_its_camera_head_pose_and_says_so(sequence, frames):
    class LoseFrame3(GroundTruthPredictor):
        def track(self, frames, query_uv):
            answer = super().track(frames, query_uv)
            stamps = [f.stamp_ns for f in frames]
            answer.visibility[stamps.index(int(sequence.stamps_ns[3]))] = 0.0
            return answer

    predictor = LoseFrame3(sequence, rot_noise_deg=3.0, seed=5)
    prediction, solution = _solve(predictor, frames, pose_source="refined")
    assert solution.health.fallback_frames == 1
    assert "kept the camera-head pose" in solution.health.warning
    np.testing.assert_allclose(solution.cam_from_world[3], prediction.cam_from_world[3])


def test_camera_head_poses_that_do_not_move_are_reported_as_degenerate(sequence, frames):
    class FrozenHead(GroundTruthPredictor):
        def predict(self, frames):
            prediction = super().predict(frames)
            return replace(prediction, cam_from_world=np.tile(np.eye(4), (len(frames), 1, 1)))

    predictor = FrozenHead(sequence, seed=6)
    _, head = _solve(predictor, frames, pose_source="camera_head")
    assert head.health.degenerate and "unexplained" in head.health.warning
    np.testing.assert_allclose(head.cam_from_world, np.tile(np.eye(4), (8, 1, 1)))
    _, solved = _solve(FrozenHead(sequence, seed=6), frames, pose_source="refined")
    assert not solved.health.degenerate and solved.health.reprojection_px < 1e-3


def test_a_calibrated_focal_length_replaces_a_wrong_predicted_one(sequence, frames):
    predictor = GroundTruthPredictor(sequence, focal_error=0.3, seed=7)
    prediction = predictor.predict(frames)
    calibrated, status = apply_intrinsics(prediction, frames, "camera_info")
    np.testing.assert_allclose(calibrated.intrinsics, np.repeat(sequence.K[None], 8, 0))
    assert status.source == "camera_info" and status.focal_disagreement == pytest.approx(0.3)
    assert "CameraInfo" in status.warning
    kept, status = apply_intrinsics(prediction, frames, "predicted")
    assert status.source == "predicted" and kept.intrinsics is prediction.intrinsics
    no_info = [replace(f, camera_info=None) for f in frames]
    assert apply_intrinsics(prediction, no_info, "camera_info")[1].source == "predicted"


def test_calibration_is_mapped_into_model_pixels_through_the_crop():
    mapping = PreprocessMapping(original_size=(640, 480), model_size=(518, 378), scale=518 / 640,
                                offset_x=0.5, offset_y=10.0, valid=(0, 0, 518, 378))
    k = np.array([[500.0, 0, 320], [0, 505.0, 240], [0, 0, 1]])
    frame = Frame(1, np.zeros((480, 640, 3), np.uint8), "cam", CameraIntrinsics(k, 640, 480))
    prediction = WindowPrediction(stamps_ns=[1], cam_from_world=np.eye(4)[None],
                                  intrinsics=np.eye(3)[None], depth=np.ones((1, 378, 518)),
                                  depth_conf=np.ones((1, 378, 518)),
                                  images=np.zeros((1, 378, 518, 3), np.uint8),
                                  mappings=[mapping])
    calibrated, _ = apply_intrinsics(prediction, [frame], "camera_info")
    model_k = calibrated.intrinsics[0]
    assert model_k[0, 0] == pytest.approx(500 * 518 / 640)
    assert model_k[0, 2] == pytest.approx(320 * 518 / 640 - 0.5)
    assert model_k[1, 2] == pytest.approx(240 * 518 / 640 - 10.0)
    np.testing.assert_allclose(mapping.intrinsics_to_original(model_k), k)


def test_queries_spread_over_the_image_on_confident_pixels_only():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    depth = np.ones((96, 128))
    conf = np.full((96, 128), 5.0)
    conf[:, :64] = 1.0  # left half not confident
    picks = select_queries(image, depth, conf, (0, 0, 128, 96), 64, conf_threshold=2.0)
    assert len(picks) > 16
    assert (picks[:, 0] >= 64).all()
    assert picks[:, 1].min() < 20 and picks[:, 1].max() > 76  # top to bottom
    assert anchor_indices(8, 1) == [0] and anchor_indices(8, 3) == [0, 4, 7]
    assert anchor_indices(2, 5) == [0, 1]


def test_cell_maxima_pick_what_argmax_picks_per_cell_ties_and_empty_cells_included():
    rng = np.random.default_rng(1)
    for trial in range(50):
        height, width = rng.integers(3, 40, size=2)
        score = rng.integers(-2, 3, (height, width)).astype(np.float32)  # many ties
        ys = np.linspace(0, height, rng.integers(2, 60)).astype(int)  # more rows than pixels
        xs = np.linspace(0, width, rng.integers(2, 60)).astype(int)  # gives empty cells
        expected = []
        for r in range(len(ys) - 1):
            for c in range(len(xs) - 1):
                cell = score[ys[r]:ys[r + 1], xs[c]:xs[c + 1]]
                if cell.size and cell.max() >= 0:
                    cy, cx = divmod(int(np.argmax(cell)), cell.shape[1])
                    expected.append((xs[c] + cx, ys[r] + cy))
        np.testing.assert_array_equal(_cell_maxima(score, ys, xs),
                                      np.asarray(expected, dtype=float).reshape(-1, 2))


def test_more_anchors_reach_frames_the_first_anchor_cannot_see(sequence, frames):
    predictor = GroundTruthPredictor(sequence, seed=8)
    prediction = predictor.predict(frames)
    cfg = PoseSolverConfig(anchors=3)
    tracks = gather_tracks(prediction, frames,
                           lambda f, a, uv: track_window(predictor, f, a, uv), cfg)
    assert set(np.unique(tracks.anchor)) == {0, 4, 7}
    solution = PoseSolver(cfg).solve(prediction, tracks)
    angle, trans = _errors(solution.cam_from_world, _window_truth(predictor, sequence, 8),
                           prediction)
    assert angle.max() < 1e-6 and trans.max() < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("width, height, max_mean_orientation_deg", [
    (128, 96, 2.5),  # f = 91 px, so 1 px is 0.6 deg: measured 0.75 deg
    (518, 392, 0.5),  # the model's input width, 1 px about 0.14 deg: measured 0.47 deg
], ids=["128x96", "518x392"])
def test_a_200_frame_trajectory_from_noisy_tracks_stays_within_1pc_of_path_and_1deg_per_frame(
        width, height, max_mean_orientation_deg):
    """The issue's acceptance run: 1 px track noise, 20 % outlier tracks, 2 % depth noise and a
    camera head off by 10 deg, through the whole pipeline (windows, chaining) over 200 frames.
    Track noise is in the tracks' pixels, so its angle depends on the image size: at the
    model's input size the mean orientation error after alignment meets the issue's 0.5 deg; at
    128x96 it does not (docs/MODEL.md has the numbers and the code version they belong to)."""
    from vggt_ros.evaluation.health import orientation_errors_deg
    from vggt_ros.evaluation.metrics import evaluate_trajectory
    from vggt_ros.pipeline.pipeline import Pipeline, PipelineConfig

    seq = make_sequence(200, width, height, seed=1_000_003, trajectory="loop")
    seq.render = functools.lru_cache(maxsize=None)(seq.render)  # the double re-renders frames
    predictor = GroundTruthPredictor(seq, depth_noise=0.02, rot_noise_deg=10.0,
                                     track_noise_px=1.0, track_outliers=0.2, seed=9)
    pipeline = Pipeline(predictor, PipelineConfig(pose_source="refined"))
    results = []
    for i in range(len(seq)):
        results += pipeline.add_frame(seq.frame(i))
    results += pipeline.flush()
    keyframes = [k for r in results for k in r.new_keyframes]
    stamps = np.array([k.stamp_ns for k in keyframes])
    poses = np.stack([k.odom_from_cam for k in keyframes])
    assert len(keyframes) == 200
    metrics = evaluate_trajectory(stamps, poses, seq.stamps_ns, seq.world_from_cam)
    assert metrics["ate"]["rmse_percent_of_path"] <= 1.0
    assert metrics["rpe"]["rot_rmse_deg"] <= 1.0
    assert orientation_errors_deg(poses, seq.world_from_cam).mean() <= max_mean_orientation_deg
    assert not any(r.pose.degenerate for r in results)


def test_a_frame_whose_tracks_mostly_disagree_moves_on_at_its_neighbours_velocity(sequence,
                                                                                 frames):
    """The demo model's track head loses most tracks on a window's last frame; PnP then fits
    whichever wrong pixels happen to agree. Such a frame is flagged and placed by the constant
    velocity of the two frames before it instead."""
    class ScrambleFrame7(GroundTruthPredictor):
        def track(self, frames, query_uv):
            answer = super().track(frames, query_uv)
            last = [f.stamp_ns for f in frames].index(int(sequence.stamps_ns[7]))
            rng = np.random.default_rng(0)
            lost = rng.random(len(query_uv)) < 0.7
            answer.tracks_uv[last, lost] = rng.uniform(0, 96, (lost.sum(), 2))
            return answer

    predictor = ScrambleFrame7(sequence, seed=10)
    prediction, solution = _solve(predictor, frames, pose_source="refined",
                                  min_inlier_share=0.5)
    assert solution.health.extrapolated_frames == 1 and solution.health.fallback_frames == 0
    assert "neighbours' velocity" in solution.health.warning
    angle, trans = _errors(solution.cam_from_world, _window_truth(predictor, sequence, 8),
                           prediction)
    assert angle[:7].max() < 1e-6  # the others stay exact
    assert np.degrees(angle[7]) < 1.0 and trans[7] < 0.02  # the motion is smooth


def test_a_frame_whose_tracks_snap_back_towards_their_queries_moves_on_at_its_neighbours_velocity(
        sequence, frames):
    """The demo model's track head loses a window's last frame by returning pixels close to
    their queries: a coherent, wrong image motion that PnP fits with many inliers. The motion
    falling below half of what the frames before it extrapolate to gives it away."""
    class SnapBackFrame7(GroundTruthPredictor):
        def track(self, frames, query_uv):
            answer = super().track(frames, query_uv)
            last = [f.stamp_ns for f in frames].index(int(sequence.stamps_ns[7]))
            answer.tracks_uv[last] = query_uv + 0.2 * (answer.tracks_uv[last] - query_uv)
            return answer

    predictor = SnapBackFrame7(sequence, seed=11)
    prediction, solution = _solve(predictor, frames, pose_source="refined")
    assert solution.health.extrapolated_frames == 1 and solution.health.fallback_frames == 0
    assert "neighbours' velocity" in solution.health.warning
    angle, _ = _errors(solution.cam_from_world, _window_truth(predictor, sequence, 8), prediction)
    assert angle[:7].max() < 1e-6
    assert np.degrees(angle[7]) < 1.0


def test_a_frame_without_tracks_moves_on_at_its_neighbours_velocity_when_the_head_misses_motion(
        sequence, frames):
    """The camera head is a fallback only where it reproduces the tracked motion; the demo
    model's, which never learned motion, does not: its frame-without-tracks is extrapolated."""
    class FrozenHeadLoseFrame3(GroundTruthPredictor):
        def predict(self, frames):
            prediction = super().predict(frames)
            return replace(prediction, cam_from_world=np.tile(np.eye(4), (len(frames), 1, 1)))

        def track(self, frames, query_uv):
            answer = super().track(frames, query_uv)
            stamps = [f.stamp_ns for f in frames]
            answer.visibility[stamps.index(int(sequence.stamps_ns[3]))] = 0.0
            return answer

    predictor = FrozenHeadLoseFrame3(sequence, seed=12)
    prediction, solution = _solve(predictor, frames, pose_source="refined")
    assert solution.health.extrapolated_frames == 1 and solution.health.fallback_frames == 0
    angle, _ = _errors(solution.cam_from_world, _window_truth(predictor, sequence, 8), prediction)
    assert np.degrees(angle[3]) < 1.0


def test_the_constant_velocity_prior_cuts_the_pose_jitter_of_tracks_whose_errors_move_together(
        sequence, frames):
    """The demo model's track errors are correlated within a frame (docs/MODEL.md): modelled
    here as one random shift of all of a frame's tracks. The bundle adjustment's
    constant-velocity prior takes out part of the pose jitter that causes (11-25 % of the mean
    rotation error over six shift seeds, 2026-11-30)."""
    class ShiftedFrames(GroundTruthPredictor):
        def track(self, frames, query_uv):
            answer = super().track(frames, query_uv)
            shift = np.random.default_rng(13).normal(0.0, 1.5, (len(frames), 1, 2))
            shift[0] = 0.0  # the query frame
            answer.tracks_uv += shift
            return answer

    errors = {}
    for prior in (0.0, 50.0):
        predictor = ShiftedFrames(sequence, depth_noise=0.02, track_noise_px=1.0, seed=14)
        prediction, solution = _solve(predictor, frames, pose_source="refined",
                                      smooth_rot_deg_s2=prior, smooth_centre_s2=prior / 50.0)
        angle, _ = _errors(solution.cam_from_world, _window_truth(predictor, sequence, 8),
                           prediction)
        errors[prior] = np.degrees(angle[1:]).mean()
    assert errors[50.0] < 0.85 * errors[0.0]


def test_the_constant_velocity_prior_fades_as_the_tracks_get_exact(sequence, frames):
    """The prior's weight falls with the square of the tracks' measured noise below the
    nominal sigma: near-exact tracks (0.01 px) leave a strong prior (5 deg/s^2, 0.05 depth/s^2)
    nothing to move (weighed as configured, it moved these poses by 3e-4, 2026-12-01), while
    at the nominal noise (1 px at 128 px wide) it weighs in full."""
    def prior_shift(noise_px):
        poses = []
        for rot, centre in ((5.0, 0.05), (0.0, 0.0)):
            predictor = GroundTruthPredictor(sequence, rot_noise_deg=8.0, trans_noise=0.1,
                                             seed=2, track_noise_px=noise_px)
            _, solution = _solve(predictor, frames, smooth_rot_deg_s2=rot,
                                 smooth_centre_s2=centre)
            poses.append(solution.cam_from_world)
        return np.abs(poses[0] - poses[1]).max()

    assert prior_shift(0.01) < 1e-8
    assert prior_shift(1.0) > 1e-2


def test_the_previous_window_carries_its_motion_across_the_seam_without_biasing_exact_data(
        sequence):
    """The seam prior: the previous window's frame before this window's anchor, moved into this
    window's frame and scale (through the anchor's depth in both windows), joins the
    constant-velocity prior. With exact tracks and depth it is the true pose there, and the
    window's poses stay exact."""
    predictor = GroundTruthPredictor(sequence, rot_noise_deg=8.0, trans_noise=0.1, seed=2)
    solver = PoseSolver(PoseSolverConfig())

    def window(indices):
        frames = [sequence.frame(i) for i in indices]
        prediction, _ = apply_intrinsics(predictor.predict(frames), frames, "camera_info")
        tracks = gather_tracks(prediction, frames,
                               lambda f, a, uv: track_window(predictor, f, a, uv), solver.config)
        return prediction, tracks

    prediction, tracks = window(range(0, 8))
    solver.solve(prediction, tracks)
    prediction, tracks = window(range(6, 12))
    ghost = solver._seam_ghost(prediction, np.asarray(prediction.cam_from_world[0]))
    gt = sequence.cam_from_world
    truth = gt[5] @ se3_inverse(gt[6])
    truth[:3, 3] *= predictor.window_scales[-1]
    assert ghost is not None and np.abs(ghost[0] - truth).max() < 1e-6
    assert ghost[1] == pytest.approx((sequence.stamps_ns[5] - sequence.stamps_ns[6]) * 1e-9)
    solution = solver.solve(prediction, tracks)
    window_truth = gt[6:12] @ se3_inverse(gt[6])
    window_truth[:, :3, 3] *= predictor.window_scales[-1]
    angle, trans = _errors(solution.cam_from_world, window_truth, prediction)
    assert angle.max() < 1e-6 and trans.max() < 1e-6


def test_each_frames_depth_lends_the_bundle_adjustment_its_shape_not_its_scale(sequence, frames):
    """The frames' depth term (``frame_depth_sigma``): the demo model's depth maps of one window
    disagree in scale from frame to frame, so each frame's depth is put on the current
    estimate's scale before it ties the points' depth in that camera. Rescaling the frames'
    depth maps leaves the poses as they are, while the term itself does move them."""
    predictor = GroundTruthPredictor(sequence, depth_noise=0.02, track_noise_px=1.0, seed=21)
    config = PoseSolverConfig()
    prediction, _ = apply_intrinsics(predictor.predict(frames), frames, "camera_info")
    tracks = gather_tracks(prediction, frames,
                           lambda f, a, uv: track_window(predictor, f, a, uv), config)
    poses = PoseSolver(config).solve(prediction, tracks).cam_from_world
    scales = np.array([1.0, 1.3, 0.8, 1.1, 0.7, 1.2, 0.9, 1.25])[:, None, None]
    rescaled = replace(prediction, depth=(prediction.depth * scales).astype(np.float32))
    assert np.abs(PoseSolver(config).solve(rescaled, tracks).cam_from_world - poses).max() < 1e-6
    without = PoseSolver(replace(config, frame_depth_sigma=0.0)).solve(prediction, tracks)
    assert np.abs(without.cam_from_world - poses).max() > 1e-4


def test_a_frames_depth_at_a_tracked_pixel_is_exact_on_a_plane_and_unused_across_an_edge():
    """Interpolated in inverse depth, which is affine in the pixel on a plane; where the four
    neighbouring pixels straddle a depth edge the tracked pixel may lie on either surface."""
    height, width = 30, 40
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    inverse = 0.5 + 0.004 * u - 0.003 * v  # a tilted plane
    depth = 1.0 / inverse
    depth[:, 30:] *= 2.0  # a box edge between columns 29 and 30
    rng = np.random.default_rng(0)
    uv = np.column_stack([rng.uniform(0, 28.9, 50), rng.uniform(0, height - 1, 50)])
    edge = np.array([[29.5, 10.0], [29.1, 3.3]])
    uv = np.concatenate([uv, edge])[None]
    prediction = SimpleNamespace(depth=depth[None].astype(np.float32),
                                 depth_conf=np.full((1, height, width), 5.0, np.float32))
    tracks = SimpleNamespace(uv=uv, visible=np.ones(uv.shape[:2], bool))
    log_depth, usable = _frame_depths(prediction, tracks, conf_threshold=1.0)
    assert usable[0, :50].all() and not usable[0, 50:].any()
    exact = -np.log(0.5 + 0.004 * uv[0, :50, 0] - 0.003 * uv[0, :50, 1])
    np.testing.assert_allclose(log_depth[0, :50], exact, atol=1e-6)
