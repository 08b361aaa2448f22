"""With a depth sensor, the pose solver lifts its tracks with the sensor's depth, so a window's
translations have the sensor's geometry even when the network's depth is not the true scene up
to one scale (the demo model's is not: docs/SCALE.md)."""
import functools
from dataclasses import replace

import numpy as np
import pytest

from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.pipeline.intrinsics import apply_intrinsics
from vggt_ros.pipeline.pipeline import Pipeline, PipelineConfig
from vggt_ros.pipeline.pose_depth import with_sensor_depth
from vggt_ros.pipeline.pose_solver import PoseSolver, PoseSolverConfig, WindowTracks, gather_tracks
from vggt_ros.pipeline.scale_measure import depth_scale
from vggt_ros.pipeline.tracking import track_window
from vggt_ros.pipeline.types import Frame, PreprocessMapping, WindowPrediction
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor

from depth_sensor_runs import map_with_depth_camera, sensor_frame

RANGE = dict(min_range=0.1, max_range=20.0)


class PowerLawDepth(GroundTruthPredictor):
    """The double with a non-affine depth bias: window depth = scale * true_depth ** power, so
    no single scale maps the network's depth onto the scene."""

    def __init__(self, sequence, power: float, **kwargs) -> None:
        super().__init__(sequence, **kwargs)
        self.power = power

    def predict(self, frames):
        prediction = super().predict(frames)
        scale = self.window_scales[-1]
        true_depth = np.asarray(prediction.depth, dtype=np.float64) / scale
        return replace(prediction, depth=(scale * true_depth ** self.power).astype(np.float32))


@pytest.fixture(scope="module")
def loop():
    seq = make_sequence(40, 64, 48, seed=1, trajectory="loop")
    seq.render = functools.lru_cache(maxsize=None)(seq.render)
    return seq


def _travel_ratio(seq, start, tracks_of, power):
    """Metric travel of the window's last frame over the true one, the window's translations
    put into metres by its depth scale as the chaining does."""
    rng = np.random.default_rng(start)
    frames = [sensor_frame(seq, i, rng) for i in range(start, start + 8)]
    predictor = PowerLawDepth(seq, power, seed=start)
    prediction, _ = apply_intrinsics(predictor.predict(frames), frames, "camera_info")
    config = PoseSolverConfig()
    tracks = gather_tracks(prediction, frames,
                           lambda f, a, uv: track_window(predictor, f, a, uv), config)
    measurement = depth_scale(prediction, frames, 1.0, 0.0, **RANGE)
    tracks = tracks_of(tracks, prediction, frames, measurement.scale)
    solved = PoseSolver(config).solve(prediction, tracks).cam_from_world
    travel = np.linalg.norm(se3_inverse(solved)[-1, :3, 3]) * measurement.scale
    truth = seq.cam_from_world[start:start + 8]
    return travel / np.linalg.norm(se3_inverse(truth[-1] @ se3_inverse(truth[0]))[:3, 3])


@pytest.mark.parametrize("power", [0.8, 1.2])
def test_a_network_depth_with_a_non_affine_bias_still_gives_metric_window_translations(
        loop, power):
    with_sensor = lambda t, p, f, s: with_sensor_depth(t, p, f, s, **RANGE)[0]  # noqa: E731
    with_network = lambda t, p, f, s: t  # noqa: E731 - the network's own depth
    sensor = [_travel_ratio(loop, start, with_sensor, power) for start in (12, 24)]
    network = [_travel_ratio(loop, start, with_network, power) for start in (12, 24)]
    assert np.abs(np.array(sensor) - 1.0).max() < 0.01
    # The control: the network's own depth leaves an error several times the bound above.
    assert np.abs(np.array(network) - 1.0).max() > 0.025


def _map_biased(seq, pose_depth):
    return map_with_depth_camera(seq, PowerLawDepth(seq, 0.8, seed=1), pose_depth)


def test_the_depth_source_gives_a_metric_trajectory_from_a_biased_network_depth(loop):
    """End to end, the depth images' alignment (test_depth_alignment.py) included: with the
    double's exact tracks it keeps almost every solved pose."""
    metrics, results = _map_biased(loop, "sensor")
    assert abs(metrics["ate"]["scale"] - 1.0) < 0.005  # measured 1.000
    assert metrics["ate_se3"]["rmse_percent_of_path"] < 0.3  # measured 0.07 %
    assert all(r.pose.sensor_depth_queries > 200 for r in results)
    # The control: the network's own biased depth, everything else the same, is clearly worse.
    network, _ = _map_biased(loop, "network")
    assert abs(network["ate"]["scale"] - 1.0) > max(0.01, 4 * abs(metrics["ate"]["scale"] - 1.0))
    assert (network["ate_se3"]["rmse_percent_of_path"]  # measured 0.35 % against 0.07 %
            > 3 * metrics["ate_se3"]["rmse_percent_of_path"])


def test_the_odometry_source_lifts_the_tracks_with_the_network_depth(loop):
    rng = np.random.default_rng(0)
    pipeline = Pipeline(GroundTruthPredictor(loop, seed=1), PipelineConfig(
        window_size=8, overlap=2, scale_source="odometry", keyframe_min_interval=0.0))
    results = []
    for i in range(8):
        results += pipeline.add_frame(sensor_frame(loop, i, rng))
    assert len(results) == 1 and results[0].pose.sensor_depth_queries == 0


def _one_anchor(depth_m, metres_per_unit=2.0, anchor_depth=None):
    """with_sensor_depth on four queries of a 4x4 frame whose network depth is 1 unit."""
    mapping = PreprocessMapping((4, 4), (4, 4), 1.0, 0.0, 0.0, (0, 0, 4, 4))
    query = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    tracks = WindowTracks(anchor=np.zeros(4, int), query_uv=query, depth=np.ones(4),
                          uv=query[None], visible=np.ones((1, 4), bool), weight=np.ones((1, 4)),
                          anchors=[0])
    prediction = WindowPrediction(stamps_ns=[1], cam_from_world=np.eye(4)[None],
                                  intrinsics=np.eye(3)[None], depth=np.ones((1, 4, 4)),
                                  depth_conf=np.ones((1, 4, 4)),
                                  images=np.zeros((1, 4, 4, 3), np.uint8), mappings=[mapping])
    frame = Frame(1, np.zeros((4, 4, 3), np.uint8), "cam", depth_m=depth_m)
    return with_sensor_depth(tracks, prediction, [frame], metres_per_unit, 0.5, 10.0)


def test_queries_keep_the_network_depth_where_the_sensor_has_none():
    depth_m = np.full((4, 4), 3.0, np.float32)
    depth_m[1, 1] = 0.0  # a hole
    depth_m[2, 2] = np.nan  # no return
    depth_m[3, 3] = 50.0  # beyond the sensor's range
    tracks, count = _one_anchor(depth_m)
    assert count == 1
    np.testing.assert_allclose(tracks.depth, [1.5, 1.0, 1.0, 1.0])  # 3 m at 2 m per unit
    tracks, count = _one_anchor(None)  # no depth image matched the anchor keyframe
    assert count == 0
    np.testing.assert_allclose(tracks.depth, np.ones(4))
