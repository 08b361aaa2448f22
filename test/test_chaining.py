"""Window chaining against exact ground truth (GroundTruthPredictor over a synthetic room).

Each window comes back in its own frame with its own random scale, as VGGT's do; the chained
trajectory must match the ground truth up to ONE global Sim(3).
"""
from dataclasses import replace

import numpy as np
import pytest

from vggt_ros.evaluation.metrics import align_sim3, ate_rmse, path_length
from vggt_ros.geometry.camera import se3_inverse, unproject_depth
from vggt_ros.pipeline.chaining import Chainer
from vggt_ros.pipeline.window import WindowManager
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor

W, H = 64, 48


@pytest.fixture(scope="module")
def loop():
    seq = make_sequence(200, W, H, seed=3, trajectory="loop")
    return seq, [seq.frame(i) for i in range(len(seq))]


@pytest.fixture(scope="module")
def static():
    """A camera that never moves (the first pose of a short loop, repeated)."""
    base = make_sequence(24, W, H, seed=5, trajectory="loop")
    seq = replace(base, cam_from_world=np.repeat(base.cam_from_world[:1], 24, axis=0))
    return seq, [seq.frame(i) for i in range(len(seq))]


class Degraded:
    """Wraps a predictor and edits each prediction (simulates a failing network)."""

    def __init__(self, inner, conf=None, translation_gain=1.0):
        self.inner, self.conf, self.translation_gain = inner, conf, translation_gain
        self.calls = 0

    def predict(self, frames):
        pred = self.inner.predict(frames)
        if self.conf is not None:
            pred.depth_conf = np.full_like(pred.depth_conf, self.conf)
        if self.calls % 2 == 1:  # every other window's poses disagree in scale with its depth
            pred.cam_from_world[:, :3, 3] *= self.translation_gain
        self.calls += 1
        return pred


def chain(frames, predictor, window=8, overlap=2, **chainer_kwargs):
    manager = WindowManager(window_size=window, overlap=overlap)
    chainer = Chainer(**chainer_kwargs)
    results = []
    windows = [w for w in (manager.add(f) for f in frames) if w is not None]
    tail = manager.flush()
    for w in windows + ([tail] if tail else []):
        results.append(chainer.place(predictor.predict(w), w, index=len(results)))
    return results, chainer


def keyframes(results):
    return [kf for r in results for kf in r.new_keyframes]


def positions(results):
    return np.array([kf.odom_from_cam[:3, 3] for kf in keyframes(results)])


def gt_positions(seq, results):
    index = {int(s): i for i, s in enumerate(seq.stamps_ns)}
    rows = [index[kf.stamp_ns] for kf in keyframes(results)]
    return seq.world_from_cam[rows, :3, 3], rows


@pytest.mark.slow
def test_noise_free_chain_matches_ground_truth(loop):
    seq, frames = loop
    predictor = GroundTruthPredictor(seq, seed=1)
    results, _ = chain(frames, predictor)
    assert len(results) == 33 and results[0].chaining.method == "first"
    assert all(r.chaining.method == "points" and not r.chaining.warning for r in results[1:])
    # Per-window scales really differ (up to 10x): chaining must undo them.
    assert max(predictor.window_scales) / min(predictor.window_scales) > 3
    gt, rows = gt_positions(seq, results)
    assert rows == list(range(200))  # every frame placed exactly once, in order
    assert ate_rmse(positions(results), gt) <= 0.005 * path_length(gt)


@pytest.mark.slow
def test_depth_and_orientation_share_one_global_similarity(loop):
    seq, frames = loop
    results, _ = chain(frames[:60], GroundTruthPredictor(seq, seed=2))
    gt, rows = gt_positions(seq, results)
    gt_from_odom = align_sim3(positions(results), gt)
    scale = np.cbrt(np.linalg.det(gt_from_odom[:3, :3]))
    rot = gt_from_odom[:3, :3] / scale
    for kf, row in zip(keyframes(results), rows):
        gt_depth = seq.render(row)[1]
        ok = np.isfinite(kf.depth)
        assert ok.mean() > 0.75  # conf_percentile 20 drops at most ~20 %
        np.testing.assert_allclose(kf.depth[ok] * scale, gt_depth[ok], rtol=1e-3)
        np.testing.assert_allclose(rot @ kf.odom_from_cam[:3, :3],
                                   seq.world_from_cam[row, :3, :3], atol=1e-4)


@pytest.mark.slow
def test_noisy_chain_stays_within_two_percent_of_path(loop):
    seq, frames = loop
    predictor = GroundTruthPredictor(seq, depth_noise=0.01, rot_noise_deg=0.5, seed=4)
    results, _ = chain(frames, predictor)
    gt, _ = gt_positions(seq, results)
    ate = ate_rmse(positions(results), gt)
    assert ate <= 0.02 * path_length(gt)
    assert all(r.chaining.method == "points" for r in results[1:])
    for r in results[1:]:  # 1 % depth noise in both windows + 0.5 deg rotation noise
        depth = np.nanmedian([kf.depth for kf in r.new_keyframes])
        assert 0 < r.chaining.residual < 0.05 * depth and r.chaining.inlier_ratio > 0.9


def test_overlap_keyframes_keep_their_first_pose(loop):
    seq, frames = loop
    manager, chainer = WindowManager(window_size=8, overlap=2), Chainer()
    predictor = GroundTruthPredictor(seq, depth_noise=0.01, rot_noise_deg=0.5, seed=6)
    windows = [w for w in (manager.add(f) for f in frames[:30]) if w is not None]
    first = chainer.place(predictor.predict(windows[0]), windows[0])
    shared = [kf for kf in first.new_keyframes if kf.stamp_ns in
              {f.stamp_ns for f in windows[1]}]
    assert len(shared) == 2
    second = chainer.place(predictor.predict(windows[1]), windows[1])
    assert {kf.stamp_ns for kf in second.new_keyframes}.isdisjoint(
        kf.stamp_ns for kf in shared)
    for kf in shared:  # the very same placement, not a re-estimate
        assert chainer.keyframes()[kf.stamp_ns] is kf


def test_low_confidence_falls_back_to_camera_centres(loop):
    seq, frames = loop
    predictor = Degraded(GroundTruthPredictor(seq, seed=7), conf=0.5)
    results, _ = chain(frames[:80], predictor)
    for r in results[1:]:
        assert r.chaining.method == "centres"
        assert "points: only 0 confident overlap pixels" in r.chaining.warning
    gt, _ = gt_positions(seq, results)
    assert ate_rmse(positions(results), gt) <= 0.005 * path_length(gt)
    assert all(len(r.points) == 0 for r in results)  # nothing confident enters the map


def test_static_camera_uses_points_while_confident(static):
    seq, frames = static
    results, _ = chain(frames, GroundTruthPredictor(seq, seed=8))
    assert [r.chaining.method for r in results[1:]] == ["points"] * (len(results) - 1)
    np.testing.assert_allclose(positions(results), 0.0, atol=1e-5)


def test_static_camera_without_confidence_carries_the_previous_scale(static):
    seq, frames = static
    predictor = Degraded(GroundTruthPredictor(seq, seed=9), conf=0.5)
    results, _ = chain(frames, predictor)
    for r in results[1:]:
        assert r.chaining.method == "previous_scale"
        assert "points: only 0 confident" in r.chaining.warning
        assert "centres: overlap cameras barely moved" in r.chaining.warning
    np.testing.assert_allclose(positions(results), 0.0, atol=1e-5)
    # Carried through the shared depth, odom units per world unit stay the same although
    # every window was predicted at a different random scale.
    odom_per_world = [r.chaining.scale * s
                      for r, s in zip(results, predictor.inner.window_scales)]
    assert max(predictor.inner.window_scales) / min(predictor.inner.window_scales) > 2
    np.testing.assert_allclose(odom_per_world, odom_per_world[0], rtol=1e-5)


def test_scale_jump_guard_rejects_inconsistent_fits(loop):
    seq, frames = loop
    predictor = Degraded(GroundTruthPredictor(seq, seed=10), conf=0.5, translation_gain=10.0)
    results, _ = chain(frames[:30], predictor)
    assert len(results) >= 4
    for r in results[1:]:
        assert r.chaining.method == "previous_scale"
        assert "centres: scale" in r.chaining.warning and "jumps" in r.chaining.warning


def test_metric_scale_sets_the_first_window_units(loop):
    seq, frames = loop
    predictor = GroundTruthPredictor(seq, seed=11)
    results, _ = chain(frames[:20], predictor, metric_scale=2.5)
    assert results[0].chaining.scale == 2.5
    gt, _ = gt_positions(seq, results)
    odom_from_world = 2.5 * predictor.window_scales[0]
    rel = (gt - gt[0]) @ seq.cam_from_world[0, :3, :3].T  # GT in the first camera's axes
    np.testing.assert_allclose(positions(results), odom_from_world * rel, atol=1e-4)


def test_window_points_are_the_published_depth_unprojected(loop):
    seq, frames = loop
    results, _ = chain(frames[:14], GroundTruthPredictor(seq, seed=12))
    r = results[1]
    expected = []
    for kf in r.new_keyframes:
        world = unproject_depth(kf.depth[None], se3_inverse(kf.odom_from_cam)[None],
                                kf.intrinsics[None])[0]
        expected.append(world[np.isfinite(kf.depth)])
    np.testing.assert_allclose(r.points, np.concatenate(expected), atol=1e-4)
    assert r.colors.shape == r.points.shape and r.colors.dtype == np.uint8
    capped, _ = chain(frames[:14], GroundTruthPredictor(seq, seed=12), max_window_points=100)
    assert all(len(c.points) == 100 for c in capped)


def test_pixels_computed_before_the_poses_are_final_place_the_window_as_inline(loop):
    """The pipeline computes ``Chainer.pixels`` from the camera head's poses, beside the pose
    solver, then places the window with the solved poses: the same keyframes and points as
    placing the solved window in one call."""
    seq, frames = loop
    windows = [frames[0:8], frames[6:14]]
    predictor = GroundTruthPredictor(seq, seed=15)
    solved = [predictor.predict(w) for w in windows]
    inline, beforehand = Chainer(), Chainer()
    all_pixels = []
    for window, prediction in zip(windows, solved):
        camera_head = replace(prediction, cam_from_world=np.repeat(np.eye(4)[None], 8, axis=0))
        all_pixels.append(beforehand.pixels(camera_head, window))
        a = inline.place(prediction, window)
        b = beforehand.place(prediction, window, pixels=all_pixels[-1])
        assert [k.stamp_ns for k in a.new_keyframes] == [k.stamp_ns for k in b.new_keyframes]
        np.testing.assert_allclose(b.points, a.points, atol=1e-5)
        np.testing.assert_array_equal(b.colors, a.colors)
    with pytest.raises(ValueError, match="another window"):
        beforehand.place(solved[1], windows[1], pixels=all_pixels[0])


def test_window_without_shared_keyframe_is_an_error(loop):
    seq, frames = loop
    predictor, chainer = GroundTruthPredictor(seq), Chainer()
    chainer.place(predictor.predict(frames[:4]), frames[:4])
    with pytest.raises(ValueError, match="shares no keyframe"):
        chainer.place(predictor.predict(frames[4:8]), frames[4:8])
    with pytest.raises(ValueError, match="stamps_ns"):
        chainer.place(predictor.predict(frames[4:8]), frames[5:9])


def test_ground_truth_double_speaks_vggt_conventions(loop):
    seq, frames = loop
    predictor = GroundTruthPredictor(seq, seed=13)
    pred = predictor.predict(frames[10:14])
    scale = predictor.window_scales[-1]
    np.testing.assert_allclose(pred.cam_from_world[0], np.eye(4), atol=1e-12)  # frame 0 = origin
    np.testing.assert_allclose(pred.depth[2], seq.render(12)[1] * scale, rtol=1e-6)
    rel = seq.cam_from_world[13] @ se3_inverse(seq.cam_from_world[10])
    np.testing.assert_allclose(pred.cam_from_world[3][:3, :3], rel[:3, :3], atol=1e-12)
    np.testing.assert_allclose(pred.cam_from_world[3][:3, 3], rel[:3, 3] * scale, atol=1e-9)
    assert (pred.depth_conf >= 1).all() and pred.images.shape == (4, H, W, 3)
    assert pred.mappings[0].model_size == (W, H) and pred.mappings[0].scale == 1.0
    with pytest.raises(ValueError, match="not in the synthetic sequence"):
        predictor.predict([replace(frames[0], stamp_ns=1)])
    noisy = GroundTruthPredictor(seq, depth_noise=0.05, seed=14).predict(frames[10:12])
    ratio = noisy.depth / pred.depth[:2]  # the two windows' scales differ: divide it out
    err = np.abs(ratio / np.median(ratio) - 1.0)
    assert np.corrcoef(err.ravel(), noisy.depth_conf.ravel())[0, 1] < -0.5  # noisy = less sure


def test_ate_ignores_a_global_similarity_and_path_length_sums_steps():
    rng = np.random.default_rng(0)
    gt = np.cumsum(rng.normal(size=(50, 3)), axis=0)
    rot = se3_inverse(make_sequence(1, 16, 16).cam_from_world)[0, :3, :3]
    est = 0.3 * gt @ rot.T + np.array([5.0, -1.0, 2.0])
    assert ate_rmse(est, gt) < 1e-9
    noisy = gt + rng.normal(scale=0.1, size=gt.shape)
    assert 0.05 < ate_rmse(noisy, gt) < 0.2
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=float)
    assert path_length(square) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="NaN"):
        ate_rmse(np.full((4, 3), np.nan), square)


def test_fit_on_a_grid_subsample_of_large_overlaps_keeps_the_accuracy(loop, monkeypatch):
    import vggt_ros.pipeline.chaining as chaining

    monkeypatch.setattr(chaining, "FIT_SAMPLES", 500)  # far fewer than the overlap pixels
    seq, frames = loop
    results, _ = chain(frames[:60], GroundTruthPredictor(seq, depth_noise=0.01, seed=2))
    assert all(r.chaining.method == "points" for r in results[1:])
    # a grid of about 500 pixels, of which the confident ones are fitted
    assert all(100 <= r.chaining.num_points <= 2 * 500 for r in results[1:])
    gt, _ = gt_positions(seq, results)
    assert ate_rmse(positions(results), gt) <= 0.02 * path_length(gt)


def test_the_seam_rotation_comes_from_the_shared_keyframes_poses_not_their_depth(loop):
    """Two windows' depth of the same keyframe disagree in shape as well as scale (a network
    predicts each window afresh); a point-map fit turns such a disagreement into a rotation of
    the next window. With the pose solver's poses (``pose_seams``) the shared keyframes' own
    poses give it instead, the points only the scale, so a tilted depth map leaves the chained
    orientations exact."""
    seq, frames = loop

    class TiltedDepth(GroundTruthPredictor):
        def predict(self, frames):
            prediction = super().predict(frames)
            if len(self.window_scales) == 2:  # the second window's depth leans to one side
                columns = np.linspace(-0.5, 0.5, prediction.depth.shape[2])
                prediction.depth = (prediction.depth * (1.0 + 0.3 * columns)).astype(np.float32)
            return prediction

    results, _ = chain(frames[:14], TiltedDepth(seq, seed=15), pose_seams=True)
    assert [r.chaining.method for r in results] == ["first", "points"]
    odom_from_world = se3_inverse(seq.world_from_cam[0])  # odom is the first camera's frame
    _, rows = gt_positions(seq, results)
    for kf, row in zip(keyframes(results), rows):
        truth = (odom_from_world @ seq.world_from_cam[row])[:3, :3]
        np.testing.assert_allclose(kf.odom_from_cam[:3, :3], truth, atol=1e-6)


def test_the_validity_mask_on_a_grid_is_the_full_mask_taken_on_that_grid(loop):
    """The scale fit asks for its grid's validity alone; it must be exactly the full-frame mask
    sampled there, whatever the padding box and wherever the depth is missing."""
    from vggt_ros.pipeline.chaining import window_valid_mask

    seq, frames = loop
    prediction = GroundTruthPredictor(seq).predict(frames[:4])
    depth = np.array(prediction.depth)
    depth[0, 3:9, 5:20] = np.nan
    depth[2, 10:12, :] = 0.0
    boxes = [(0, 0, W, H), (-3, 5, W - 7, H + 4), (7, 6, 33, 29), (13, -2, 14, 47)]
    mappings = [replace(m, valid=box) for m, box in zip(prediction.mappings, boxes)]
    prediction = replace(prediction, depth=depth, mappings=mappings)
    for rows in (None, [2, 0], [3]):
        full = window_valid_mask(prediction, rows)
        for step in (1, 2, 3, 4, 7):
            np.testing.assert_array_equal(window_valid_mask(prediction, rows, step),
                                          full[:, ::step, ::step])
