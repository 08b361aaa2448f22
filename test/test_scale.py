"""Metric scale from a depth sensor or wheel odometry, against the ground-truth double.

The double answers every window at its own random scale (0.3..3 window units per metre), as
VGGT does, so the truth of window k is ``1 / predictor.window_scales[k]`` metres per window
unit, and each window's recovered scale must match it.
"""
from dataclasses import replace

import numpy as np
import pytest

from vggt_ros.pipeline.chaining import Chainer
from vggt_ros.pipeline.pipeline import Pipeline, PipelineConfig
from vggt_ros.pipeline.scale_filter import ScaleFilter, ScaleFilterConfig
from vggt_ros.pipeline.scale_measure import depth_scale, odometry_scale
from vggt_ros.pipeline.types import PreprocessMapping, ScaleMeasurement
from vggt_ros.pipeline.window import WindowManager
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor
from vggt_ros.topics.odom_frame import BODY_FROM_OPTICAL

W, H = 48, 36
WINDOW, OVERLAP = 8, 2
CONF = dict(conf_threshold=1.0, conf_percentile=0.0)


def cached(seq):
    """The sequence with each frame rendered once (the double and the sensors share them)."""
    renders = {}
    render = seq.render

    def once(i):
        if i not in renders:
            renders[i] = render(i)
        return renders[i]

    seq.render = once
    return seq


@pytest.fixture(scope="module")
def forward():
    return cached(make_sequence(38, W, H, seed=4, trajectory="forward"))


@pytest.fixture(scope="module")
def pausing():
    """A forward drive that stops for frames 12..25 (two whole windows without motion)."""
    base = make_sequence(38, W, H, seed=4, trajectory="forward")
    hold = np.arange(38)
    hold[12:26] = 12
    return cached(replace(base, cam_from_world=base.cam_from_world[hold]))


def sensor_depth(seq, i, rng, noise=0.01, max_range=None):
    depth = seq.render(i)[1].astype(np.float64)
    depth = depth * (1.0 + noise * rng.standard_normal(depth.shape))
    if max_range is not None:
        depth[depth > max_range] = 0.0
    return depth.astype(np.float32)


def wheel_odometry(seq, rng, noise=0.02):
    """Camera poses from integrated odometry: each step's travel off by ``noise`` (1-sigma,
    relative) and its heading by 0.2 degrees, so the error drifts as real odometry does."""
    body = seq.world_from_cam @ np.linalg.inv(BODY_FROM_OPTICAL)
    poses = [body[0]]
    for k in range(1, len(body)):
        step = np.linalg.inv(body[k - 1]) @ body[k]
        step[:3, 3] *= 1.0 + noise * rng.standard_normal()
        yaw = np.radians(0.2) * rng.standard_normal()
        turn = np.eye(4)
        turn[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
        poses.append(poses[-1] @ step @ turn)
    return [p @ BODY_FROM_OPTICAL for p in poses]


def run_chain(seq, predictor, attach, source, **filter_kwargs):
    """(window results, truth metres per window unit) of the whole sequence; ``attach(i,
    frame)`` adds the sensor data to frame i."""
    frames = [attach(i, seq.frame(i)) for i in range(len(seq))]
    manager = WindowManager(window_size=WINDOW, overlap=OVERLAP)
    chainer = Chainer(**CONF, scale_filter=ScaleFilter(ScaleFilterConfig(source,
                                                                          **filter_kwargs)))
    windows = [w for w in (manager.add(f) for f in frames) if w is not None]
    results = []
    for window in windows:
        prediction = predictor.predict(window)
        if source == "depth":
            measurement = depth_scale(prediction, window, min_range=0.1, max_range=20.0, **CONF)
        else:
            measurement = odometry_scale(prediction, window, min_travel=0.2)
        results.append(chainer.place(prediction, window, len(results), measurement))
    return results, 1.0 / np.array(predictor.window_scales)


def errors(results, truth):
    return np.array([r.scale.scale for r in results]) / truth - 1.0


# --------------------------------------------------------------------------- acceptance
def test_depth_source_with_one_percent_noise_scales_every_window_within_one_percent(forward):
    rng = np.random.default_rng(0)
    predictor = GroundTruthPredictor(forward, seed=1, depth_noise=0.01)
    results, truth = run_chain(forward, predictor, lambda i, f: replace(
        f, depth_m=sensor_depth(forward, i, rng)), "depth")
    assert len(results) == 6
    assert np.abs(errors(results, truth)).max() < 0.01
    assert all(r.scale.verdict == "scaled" and r.scale.metric for r in results)
    assert all(r.scale.uncertainty <= 0.01 for r in results)


def test_odometry_source_with_two_percent_noise_scales_moving_windows_within_three_percent(
        forward):
    odometry = wheel_odometry(forward, np.random.default_rng(2))
    predictor = GroundTruthPredictor(forward, seed=3)
    results, truth = run_chain(forward, predictor, lambda i, f: replace(
        f, odom_from_camera=odometry[i]), "odometry")
    assert all(r.scale.verdict == "scaled" for r in results)  # 0.075 m per frame: 0.5 m each
    assert np.abs(errors(results, truth)).max() < 0.03
    assert results[-1].scale.metric


def test_a_window_without_valid_depth_keeps_the_previous_scale_and_says_so(forward):
    rng = np.random.default_rng(0)
    predictor = GroundTruthPredictor(forward, seed=1)

    def attach(i, frame):  # window 2 (keyframes 12..19) sees only holes
        depth = sensor_depth(forward, i, rng)
        return replace(frame, depth_m=np.zeros_like(depth) if 12 <= i <= 19 else depth)

    results, truth = run_chain(forward, predictor, attach, "depth")
    skipped = results[2].scale
    assert skipped.verdict == "skipped" and "confident pixels with sensor depth" in skipped.reason
    assert np.isnan(skipped.measured)
    assert abs(errors(results, truth)[2]) < 0.01  # carried through the overlap
    assert skipped.uncertainty > results[1].scale.uncertainty  # and less certain
    assert skipped.metric  # one window short of depth is still within scale_max_uncertainty
    assert [r.scale.verdict for r in results[3:]] == ["scaled"] * 3


def test_a_window_without_motion_keeps_the_previous_scale_and_says_so(pausing):
    odometry = wheel_odometry(pausing, np.random.default_rng(2))
    predictor = GroundTruthPredictor(pausing, seed=3)
    results, truth = run_chain(pausing, predictor, lambda i, f: replace(
        f, odom_from_camera=odometry[i]), "odometry")
    verdicts = [r.scale.verdict for r in results]
    assert verdicts[2:4] == ["skipped", "skipped"], verdicts
    assert all("scale not observable" in r.scale.reason for r in results[2:4])
    assert np.abs(errors(results, truth)[2:4]).max() < 0.03
    assert results[3].scale.uncertainty > results[2].scale.uncertainty > \
        results[1].scale.uncertainty


def test_the_pipeline_reports_metric_only_once_the_depth_source_measured(forward):
    rng = np.random.default_rng(0)
    pipeline = Pipeline(GroundTruthPredictor(forward, seed=1), PipelineConfig(
        window_size=WINDOW, overlap=OVERLAP, scale_source="depth", keyframe_min_interval=0.0,
        depth_min_range=0.1, depth_max_range=20.0))
    assert pipeline.stats["scale_status"] == "non-metric"
    assert "waiting for the first window" in pipeline.stats["scale"]["reason"]
    results = []
    for i in range(16):
        frame = replace(forward.frame(i), depth_m=sensor_depth(forward, i, rng))
        results += pipeline.add_frame(frame)
    stats = pipeline.stats
    assert stats["scale_status"] == "metric" and stats["scale"]["source"] == "depth"
    assert stats["scale"]["windows_scaled"] == len(results) == 2
    truth = 1.0 / np.array(pipeline.predictor.window_scales)
    assert np.abs(errors(results, truth)).max() < 0.01


# --------------------------------------------------------------------------- the measurements
def _flat_prediction(depth, mapping=None, conf=None):
    """A one-frame prediction of a constant-depth wall (only the depth matters here)."""
    from vggt_ros.pipeline.types import WindowPrediction
    h, w = depth.shape
    mapping = mapping or PreprocessMapping((w, h), (w, h), 1.0, 0.0, 0.0, (0, 0, w, h))
    return WindowPrediction(stamps_ns=[1], cam_from_world=np.eye(4)[None],
                            intrinsics=np.eye(3)[None], depth=depth[None].astype(np.float32),
                            depth_conf=(np.full((1, h, w), 5.0) if conf is None else conf[None]),
                            images=np.zeros((1, h, w, 3), np.uint8), mappings=[mapping])


def _frame(depth_m=None, odom=None):
    from vggt_ros.pipeline.types import Frame
    return Frame(stamp_ns=1, image=np.zeros((1, 1, 3), np.uint8), frame_id="cam",
                 depth_m=depth_m, odom_from_camera=odom)


def test_depth_scale_ignores_outliers_out_of_range_and_unconfident_pixels():
    rng = np.random.default_rng(5)
    predicted = rng.uniform(1.0, 2.0, (60, 80))
    sensor = 2.5 * predicted
    sensor[:, :10] *= 1.5  # a reflection: an eighth of the pixels half as far again
    sensor[:5] = 50.0  # beyond the sensor's range
    conf = np.full(predicted.shape, 5.0)
    conf[-10:] = 1.0  # the network is unsure here ...
    sensor[-10:] = 1.0  # ... and wrong
    got = depth_scale(_flat_prediction(predicted, conf=conf), [_frame(sensor)],
                      conf_threshold=1.5, conf_percentile=0.0, min_range=0.1, max_range=10.0)
    assert got.scale == pytest.approx(2.5, rel=1e-6)
    assert got.rejected == 10 * 45 and got.samples == 70 * 45


def test_depth_scale_reads_sensor_pixels_through_the_preprocessing_crop():
    sensor = np.tile(np.arange(1.0, 9.0, dtype=np.float32), (4, 1))  # column index + 1
    # model pixel (u, v) shows original (2u + 2, 2v): predicted = the column it shows / 4.
    crop = PreprocessMapping((8, 4), (3, 2), 0.5, 1.0, 0.0, (0, 0, 3, 2))
    predicted = np.array([[3.0, 5.0, 7.0], [3.0, 5.0, 7.0]]) / 4.0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("vggt_ros.pipeline.scale_measure.MIN_DEPTH_PIXELS", 1)
        got = depth_scale(_flat_prediction(predicted, crop), [_frame(sensor)],
                          conf_threshold=0.0, conf_percentile=0.0, min_range=0.0,
                          max_range=100.0)
    assert got.scale == pytest.approx(4.0)


def test_odometry_scale_needs_travel_and_fits_a_straight_drive():
    cam_from_world = np.tile(np.eye(4), (5, 1, 1))
    cam_from_world[:, 2, 3] = -np.arange(5) * 0.1  # moves 0.1 window units along z per frame
    prediction = _flat_prediction(np.ones((2, 2)))
    prediction = replace(prediction, cam_from_world=cam_from_world, stamps_ns=list(range(5)),
                         depth=np.ones((5, 2, 2), np.float32),
                         depth_conf=np.ones((5, 2, 2), np.float32),
                         images=np.zeros((5, 2, 2, 3), np.uint8),
                         mappings=prediction.mappings * 5, intrinsics=np.tile(np.eye(3),
                                                                              (5, 1, 1)))

    def odom(step):  # measured along x: the frames disagree on direction, not on distance
        pose = np.eye(4)
        pose[0, 3] = step
        return pose

    frames = [_frame(odom=odom(0.3 * k)) for k in range(5)]
    got = odometry_scale(prediction, frames, min_travel=0.2)
    assert got.scale == pytest.approx(3.0) and got.samples == 5
    still = odometry_scale(prediction, [_frame(odom=odom(0.01 * k)) for k in range(5)], 0.2)
    assert not still.valid and "scale not observable" in still.reason
    missing = odometry_scale(prediction, [_frame()] * 4 + [frames[4]], 0.2)
    assert not missing.valid and "at 1 of 5 keyframes" in missing.reason


# --------------------------------------------------------------------------- the filter
def _measured(scale, uncertainty=0.01):
    return ScaleMeasurement(scale=scale, uncertainty=uncertainty, samples=1000)


def test_one_bad_window_cannot_jump_the_scale():
    scale_filter = ScaleFilter(ScaleFilterConfig("depth"))
    scale_filter.first(_measured(2.0))
    for _ in range(3):
        scale_filter.next(1.0, _measured(2.0))
    bad = scale_filter.next(1.0, _measured(3.0))
    assert bad.verdict == "rejected" and "kept the chained scale" in bad.reason
    assert bad.scale == pytest.approx(2.0, rel=0.01) and bad.metric
    assert scale_filter.next(1.0, _measured(2.0)).verdict == "scaled"


def test_a_lasting_change_is_followed_at_the_bounded_rate():
    scale_filter = ScaleFilter(ScaleFilterConfig("depth", max_rate=0.05))
    scale_filter.first(_measured(2.0))
    statuses = [scale_filter.next(1.0, _measured(3.0)) for _ in range(12)]
    assert [s.verdict for s in statuses[:2]] == ["rejected", "rejected"]
    scales = [2.0] + [s.scale for s in statuses]
    steps = np.array(scales[1:]) / np.array(scales[:-1])
    assert steps.max() <= 1.05 + 1e-9 and statuses[2].verdict == "scaled"
    assert "limited to 5% in this window" in statuses[2].reason
    assert statuses[-1].scale == pytest.approx(3.0, rel=0.02)


def test_the_chained_relative_scale_carries_the_state_between_measurements():
    scale_filter = ScaleFilter(ScaleFilterConfig("odometry"))
    scale_filter.first(_measured(1.0))
    kept = scale_filter.next(0.5, ScaleMeasurement(reason="standing still"))
    assert kept.scale == pytest.approx(0.5) and kept.verdict == "skipped"
    assert kept.reason == "standing still"


def test_without_measurements_the_uncertainty_grows_until_the_scale_is_no_longer_metric():
    scale_filter = ScaleFilter(ScaleFilterConfig("depth", drift_per_window=0.02,
                                                 max_uncertainty=0.05))
    assert not scale_filter.first(ScaleMeasurement(reason="no depth")).metric
    assert scale_filter.next(1.0, _measured(1.5)).metric
    statuses = [scale_filter.next(1.0, ScaleMeasurement(reason="no depth")) for _ in range(8)]
    uncertainty = [s.uncertainty for s in statuses]
    assert uncertainty == sorted(uncertainty)
    assert statuses[0].metric and not statuses[-1].metric
    assert "too long without a usable depth measurement" in statuses[-1].reason


def test_before_the_first_measurement_the_map_is_not_metric():
    scale_filter = ScaleFilter(ScaleFilterConfig("odometry"))
    status = scale_filter.first(ScaleMeasurement(reason="robot not moving"))
    assert not status.metric and status.scale == 1.0
    assert status.reason == "not metric until the first odometry measurement: robot not moving"
    assert scale_filter.next(2.0, ScaleMeasurement(reason="still")).scale == 2.0
    first = scale_filter.next(1.0, _measured(0.7))
    assert first.metric and first.scale == pytest.approx(0.7)
    assert (scale_filter.windows_scaled, scale_filter.windows_skipped) == (1, 2)


def test_metric_scale_requires_the_fixed_source_and_the_reverse():
    with pytest.raises(ValueError, match="metric_scale"):
        PipelineConfig(metric_scale=2.0).validate()
    with pytest.raises(ValueError, match="metric_scale"):
        PipelineConfig(scale_source="fixed").validate()
    with pytest.raises(ValueError, match="scale_source"):
        PipelineConfig(scale_source="stereo").validate()
    PipelineConfig(scale_source="fixed", metric_scale=2.0).validate()



def test_a_poor_overlap_fit_lets_the_measurement_correct_the_chain_at_once():
    clean, poor = (ScaleFilter(ScaleFilterConfig("depth")) for _ in range(2))
    for scale_filter in (clean, poor):
        scale_filter.first(_measured(2.0))
    # The chain says the scale fell by a fifth; the sensor says it did not.
    held = clean.next(0.8, _measured(2.0), chain_quality=1.0)
    corrected = poor.next(0.8, _measured(2.0), chain_quality=20.0)  # 5 % of points explained
    assert held.verdict == "rejected" and held.scale == pytest.approx(1.6)
    assert corrected.verdict == "scaled" and corrected.scale == pytest.approx(2.0, rel=0.01)
