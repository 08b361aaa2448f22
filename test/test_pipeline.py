"""Pipeline: frame validation, resets, windows end to end, tracking, stats, configuration."""
import threading
from dataclasses import replace

import numpy as np
import pytest

from vggt_ros.geometry.camera import project_points, se3_inverse
from vggt_ros.pipeline.map_fusion import VoxelMap
from vggt_ros.pipeline.pipeline import (FrameRejected, Pipeline, PipelineConfig,
                                        TrackRequestError, WindowFailed)
from vggt_ros.pipeline.types import CameraIntrinsics
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor

W, H = 64, 48


@pytest.fixture(scope="module")
def seq():
    return make_sequence(40, W, H, seed=2, trajectory="forward")


@pytest.fixture(scope="module")
def frames(seq):
    return [seq.frame(i) for i in range(len(seq))]


def make(seq, **cfg):
    return Pipeline(GroundTruthPredictor(seq, seed=0), PipelineConfig(window_size=4, overlap=1,
                                                                      **cfg))


def feed(pipeline, frames):
    return [r for f in frames for r in pipeline.add_frame(f)]


def rejected(pipeline, frame, kind):
    with pytest.raises(FrameRejected) as info:
        pipeline.add_frame(frame)
    assert info.value.kind == kind
    return info.value


def test_end_to_end_windows_map_and_stats(seq, frames):
    pipeline = make(seq, keyframe_stride=2)
    results = feed(pipeline, frames[:20]) + pipeline.flush()
    # Keyframes 0,2,...,18 -> windows [0,2,4,6] [6,8,10,12] [12,14,16,18].
    assert [r.stamps_ns for r in results] == [
        [int(seq.stamps_ns[i]) for i in range(s, s + 7, 2)] for s in (0, 6, 12)]
    assert [r.index for r in results] == [0, 1, 2]
    assert len(pipeline.map) > 0
    pts, cols = pipeline.map_cloud()
    assert pts.shape == cols.shape == (len(pipeline.map), 3)
    stats = pipeline.stats
    assert stats["frames_in"] == 20 and stats["keyframes"] == 10
    assert stats["dropped_non_keyframes"] == 10 and stats["windows"] == 3
    assert stats["last_chaining"].method == "points" and stats["scale_status"] == "non-metric"
    assert set(stats["timings"]) >= {"predict", "chain", "fuse"}
    assert all(stats[f"rejected_{k}"] == 0 for k in
               ("size_change", "frame_id", "duplicate_stamp", "out_of_order", "bad_image",
                "bad_camera_info"))
    assert stats["resets"] == 0 and stats["map_points"] == len(pipeline.map)
    fixed = make(seq, scale_source="fixed", metric_scale=2.0).stats
    assert fixed["scale_status"] == "metric" and fixed["scale"]["value"] == 2.0



def test_the_map_holds_every_returned_window_fused_in_order(seq, frames):
    """Fusion runs beside the worker, but ``map`` waits for it: the map equals the one built by
    inserting each returned window's points in order."""
    pipeline = make(seq)
    results = feed(pipeline, frames[:16]) + pipeline.flush()
    expected = VoxelMap(pipeline.config.voxel_size, pipeline.config.max_map_points)
    for result in results:
        expected.insert(result.points, result.colors)
    assert len(results) >= 4
    np.testing.assert_array_equal(pipeline.map.points(), expected.points())
    np.testing.assert_array_equal(pipeline.map.colors(), expected.colors())
    points, colors = pipeline.map_cloud()
    np.testing.assert_array_equal(points, expected.points())
    assert all({"chain.pixels", "fuse.background"} <= set(r.timings) for r in results)


def test_a_failed_fusion_loses_only_that_windows_points_and_is_counted(seq, frames):
    pipeline = make(seq)
    insert, calls = pipeline.map.insert, []

    def fails_the_second_time(points, colors):
        calls.append(len(points))
        if len(calls) == 2:
            raise ValueError("points contain NaN or inf")
        insert(points, colors)

    pipeline.map.insert = fails_the_second_time
    results = feed(pipeline, frames[:16]) + pipeline.flush()
    assert len(pipeline.map) > 0 and len(calls) == len(results) >= 3
    stats = pipeline.stats
    assert stats["failed_fusions"] == 1 and stats["windows"] == len(results)
    assert "map fusion" in stats["last_error"]

def test_bad_frames_are_rejected_and_counted(seq, frames):
    pipeline = make(seq)
    pipeline.add_frame(frames[0])
    f = frames[1]
    rejected(pipeline, replace(f, image=f.image.astype(np.float32)), "bad_image")
    rejected(pipeline, replace(f, image=f.image[..., :2]), "bad_image")
    rejected(pipeline, replace(f, image=np.zeros((0, 0, 3), np.uint8)), "bad_image")
    rejected(pipeline, replace(f, frame_id="other"), "frame_id")
    bad_k = f.camera_info.k.copy()
    bad_k[0, 0] = np.nan
    rejected(pipeline, replace(f, camera_info=CameraIntrinsics(bad_k, W, H)), "bad_camera_info")
    neg_k = f.camera_info.k.copy()
    neg_k[1, 1] = -1.0
    err = rejected(pipeline, replace(f, camera_info=CameraIntrinsics(neg_k, W, H)),
                   "bad_camera_info")
    assert "focal" in err.reason
    rejected(pipeline, replace(f, camera_info=CameraIntrinsics(f.camera_info.k, W + 1, H)),
             "bad_camera_info")
    rejected(pipeline, replace(f, stamp_ns=frames[0].stamp_ns), "duplicate_stamp")
    pipeline.add_frame(f)  # the good frame still goes through
    stats = pipeline.stats
    assert stats["rejected_bad_image"] == 3 and stats["rejected_frame_id"] == 1
    assert stats["rejected_bad_camera_info"] == 3 and stats["rejected_duplicate_stamp"] == 1
    assert stats["frames_in"] == 10 and stats["keyframes"] == 2


def test_size_change_resets_after_n_consecutive_frames(seq, frames):
    pipeline = make(seq, size_change_reset_frames=3)
    feed(pipeline, frames[:5])  # one window done
    big = [replace(f, image=np.zeros((H * 2, W * 2, 3), np.uint8), camera_info=None)
           for f in frames[5:10]]
    rejected(pipeline, big[0], "size_change")
    pipeline.add_frame(frames[5])  # old size again: the count starts over
    rejected(pipeline, big[1], "size_change")
    err = rejected(pipeline, big[2], "size_change")
    assert "2/3" in err.reason
    assert pipeline.add_frame(big[3]) == []  # third in a row: reset, accepted as a new stream
    stats = pipeline.stats
    assert stats["resets"] == 1 and "size changed" in stats["last_reset_reason"]
    assert stats["rejected_size_change"] == 3 and len(pipeline.map) == 0
    with pytest.raises(TrackRequestError, match="no window"):
        pipeline.track(0, np.array([[1.0, 1.0]]))


def test_stamps_restarting_start_a_new_trajectory(seq, frames):
    pipeline = make(seq, stamp_restart_frames=1)  # the first older stamp confirms a restart
    first = feed(pipeline, frames[:7])
    assert len(first) == 2
    again = feed(pipeline, frames[:4])  # the bag loops
    assert pipeline.stats["resets"] == 1
    assert "stamps restarted" in pipeline.stats["last_reset_reason"]
    assert len(again) == 1 and again[0].chaining.method == "reset"
    assert "stamps restarted" in again[0].chaining.warning
    # The new trajectory starts at the origin again and retraces the first pass (up to the
    # scale, which is each first window's own).
    for new, old in zip(again[0].new_keyframes, first[0].new_keyframes):
        np.testing.assert_allclose(new.odom_from_cam[:3, :3], old.odom_from_cam[:3, :3],
                                   atol=1e-9)
    t_new = np.array([kf.odom_from_cam[:3, 3] for kf in again[0].new_keyframes])
    t_old = np.array([kf.odom_from_cam[:3, 3] for kf in first[0].new_keyframes])
    assert np.linalg.norm(t_new[0]) < 1e-9
    np.testing.assert_allclose(t_new / np.linalg.norm(t_new[-1]),
                               t_old / np.linalg.norm(t_old[-1]), atol=1e-6)


def test_track_answers_match_the_geometry(seq, frames):
    pipeline = make(seq)
    with pytest.raises(TrackRequestError, match="no window"):
        pipeline.track(0, np.array([[1.0, 1.0]]))
    results = feed(pipeline, frames[:7])
    window = results[-1]
    query_stamp = window.stamps_ns[1]
    q_row = int(np.flatnonzero(seq.stamps_ns == query_stamp)[0])
    query = np.array([[10.0, 12.0], [40.0, 30.0], [32.0, 5.0]])
    answer = pipeline.track(query_stamp, query)
    assert answer.stamps_ns == window.stamps_ns and answer.query_index == 1
    assert answer.tracks_uv.shape == (4, 3, 2)
    np.testing.assert_allclose(answer.tracks_uv[1], query, atol=1e-6)  # its own frame
    # Ground truth: the query pixels' surface points projected into every window frame.
    depth = seq.render(q_row)[1][query[:, 1].astype(int), query[:, 0].astype(int)]
    rays = np.column_stack([query, np.ones(3)]) @ np.linalg.inv(seq.K).T
    world = (rays * depth[:, None]) @ seq.world_from_cam[q_row, :3, :3].T \
        + seq.world_from_cam[q_row, :3, 3]
    for s, stamp in enumerate(window.stamps_ns):
        row = int(np.flatnonzero(seq.stamps_ns == stamp)[0])
        uv, _ = project_points(world, seq.cam_from_world[row], seq.K)
        np.testing.assert_allclose(answer.tracks_uv[s], uv, atol=1e-6)
    # 3D points: back into the query keyframe they reproject onto the queries, at the GT depth
    # expressed in map units.
    kf = window.new_keyframes[0]  # the query keyframe was first placed by this window
    assert kf.stamp_ns == query_stamp
    assert answer.points_valid.all()
    uv, z = project_points(answer.points_odom, se3_inverse(kf.odom_from_cam), seq.K)
    np.testing.assert_allclose(uv, query, atol=1e-4)
    ratio = z / depth
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)
    newest = pipeline.track(0, query)
    assert newest.query_index == 3


@pytest.mark.parametrize("query,match", [
    (np.zeros((0, 2)), "non-empty"),
    (np.zeros((3, 3)), r"\[N,2\]"),
    (np.full((300, 2), 5.0), "at most 256"),
    (np.array([[np.nan, 1.0]]), "NaN"),
    (np.array([[1.0, 1.0], [W + 0.5, 1.0]]), "outside"),
    (np.array([[-1.0, 1.0]]), "outside"),
    ("abc", "numeric"),
])
def test_track_rejects_bad_queries(seq, frames, query, match):
    pipeline = make(seq)
    feed(pipeline, frames[:4])
    with pytest.raises(TrackRequestError, match=match):
        pipeline.track(0, query)


def test_track_unknown_stamp(seq, frames):
    pipeline = make(seq)
    feed(pipeline, frames[:4])
    with pytest.raises(TrackRequestError, match="not a keyframe"):
        pipeline.track(frames[10].stamp_ns, np.array([[1.0, 1.0]]))


def test_track_answers_for_keyframes_of_recent_windows_not_only_the_last(seq, frames):
    pipeline = make(seq, track_history_windows=2)
    feed(pipeline, frames[:10])  # windows 0-3, 3-6, 6-9 (window 4, overlap 1)
    query = np.array([[5.0, 6.0]])
    answer = pipeline.track(frames[4].stamp_ns, query)  # only in the second window
    assert answer.stamps_ns == [f.stamp_ns for f in frames[3:7]]
    assert answer.query_index == 1
    np.testing.assert_allclose(answer.tracks_uv[1], query)
    newest = pipeline.track(frames[6].stamp_ns, query)  # in both: the newest window answers
    assert newest.stamps_ns == [f.stamp_ns for f in frames[6:10]]
    with pytest.raises(TrackRequestError, match="track_history_windows=2"):
        pipeline.track(frames[1].stamp_ns, query)  # its window left the history


def test_track_does_not_wait_for_a_window_in_progress(seq, frames):
    """A window being predicted must not block track() on the previous window's snapshot."""
    release = threading.Event()
    entered = threading.Event()

    class Slow(GroundTruthPredictor):
        def predict(self, window):
            if len(self.window_scales) == 1:
                entered.set()
                assert release.wait(10)
            return super().predict(window)

    pipeline = Pipeline(Slow(seq), PipelineConfig(window_size=4, overlap=1))
    feed(pipeline, frames[:4])
    worker = threading.Thread(target=feed, args=(pipeline, frames[4:7]))
    worker.start()
    try:
        assert entered.wait(10)
        answer = pipeline.track(0, np.array([[5.0, 5.0]]))
        assert answer.stamps_ns == [f.stamp_ns for f in frames[:4]]
    finally:
        release.set()
        worker.join(10)
    assert pipeline.stats["windows"] == 2


@pytest.mark.parametrize("field,value", [
    ("window_size", 1), ("overlap", 0), ("overlap", 8), ("keyframe_stride", 0),
    ("keyframe_min_motion", -0.1), ("min_window_frames", 2), ("conf_percentile", 100.0),
    ("voxel_size", 0.0), ("max_map_points", 0), ("metric_scale", -1.0), ("huber_delta", 0.0),
    ("irls_iters", 0), ("max_scale_jump", 1.0), ("size_change_reset_frames", 0),
    ("max_track_points", 0), ("conf_threshold", float("nan")), ("voxel_size", "big"),
])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"PipelineConfig.{field}"):
        replace(PipelineConfig(), **{field: value}).validate()
    PipelineConfig().validate()


class FailingOnce:
    """Wraps a predictor and makes its ``fail_call``-th predict() call fail like a CUDA OOM
    would."""

    def __init__(self, inner, fail_call=2):
        self.inner = inner
        self.fail_call = fail_call
        self.calls = 0

    def predict(self, frames):
        self.calls += 1
        if self.calls == self.fail_call:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner.predict(frames)

    def track(self, frames, query_uv):
        return self.inner.track(frames, query_uv)

    def describe(self):
        return self.inner.describe()


def test_failed_window_is_counted_and_the_pipeline_keeps_running():
    seq = make_sequence(num_frames=20, width=48, height=36, seed=3)
    pipeline = Pipeline(FailingOnce(GroundTruthPredictor(seq)),
                        PipelineConfig(window_size=4, overlap=1))
    results, failures = [], []
    for i in range(len(seq)):
        try:
            results += pipeline.add_frame(seq.frame(i))
        except WindowFailed as err:
            failures.append(err.reason)
    assert len(failures) == 1 and "out of memory" in failures[0]
    stats = pipeline.stats
    assert stats["failed_windows"] == 1 and "out of memory" in stats["last_error"]
    assert stats["resets"] == 1
    # After the failure the trajectory restarts and later windows are placed again.
    assert results[-1].index > results[0].index
    assert any(r.chaining.method == "reset" for r in results)
    assert all(np.isfinite(k.odom_from_cam).all() for r in results for k in r.new_keyframes)
