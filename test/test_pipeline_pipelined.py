"""Pipelined windows (``PipelineConfig.pipelined``): a window's host stage runs beside the next
window's device stage. The results must be the unpipelined pipeline's, one call later, and a
failure on either side must be counted, recovered from and lose no finished window."""
import numpy as np
import pytest

from vggt_ros.pipeline.chaining import Chainer
from vggt_ros.pipeline.pipeline import Pipeline, PipelineConfig, WindowFailed
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor

from test_pipeline import FailingOnce

W, H = 64, 48


@pytest.fixture(scope="module")
def seq():
    return make_sequence(30, W, H, seed=4, trajectory="loop")


def make(seq, predictor=None, **cfg):
    predictor = predictor or GroundTruthPredictor(seq, seed=0, depth_noise=0.02,
                                                  track_noise_px=0.5)
    return Pipeline(predictor, PipelineConfig(window_size=5, overlap=2, **cfg))


def run(pipeline, seq):
    """Every frame, then flush; (results, which call returned each window, failures)."""
    results, calls, failures = [], [], []

    def take(call, step):
        try:
            got = step()
        except WindowFailed as failed:
            failures.append((call, failed.reason))
            got = failed.results
        results.extend(got)
        calls.extend([call] * len(got))

    for i in range(len(seq)):
        take(i, lambda: pipeline.add_frame(seq.frame(i)))
    take(len(seq), pipeline.flush)
    return results, calls, failures


def poses(results):
    return np.stack([k.odom_from_cam for r in results for k in r.new_keyframes])


def test_pipelined_windows_are_the_unpipelined_ones_returned_one_window_later(seq):
    plain, plain_calls, _ = run(make(seq), seq)
    piped, piped_calls, failures = run(make(seq, pipelined=True), seq)
    assert not failures and len(piped) == len(plain) >= 5
    assert [r.index for r in piped] == [r.index for r in plain]
    np.testing.assert_array_equal(poses(piped), poses(plain))
    for a, b in zip(piped, plain):
        np.testing.assert_array_equal(a.points, b.points)
        assert a.chaining.method == b.chaining.method
        assert a.pose.reprojection_px == b.pose.reprojection_px
    # window i comes back with the frames that complete window i + 1 (the last with flush)
    assert piped_calls[:-1] == plain_calls[1:]
    assert piped_calls[-1] == plain_calls[-1] == len(seq)


def test_collect_returns_the_window_being_placed_without_another_frame(seq):
    pipeline = make(seq, pipelined=True)
    returned = []
    for i in range(5):  # exactly one window: frames 0-4
        returned += pipeline.add_frame(seq.frame(i))
    assert returned == []
    collected = pipeline.collect()
    assert [r.index for r in collected] == [0]
    assert pipeline.collect() == []
    assert pipeline.stats["windows"] == 1


def test_the_map_waits_for_the_window_being_placed_and_keeps_it_for_the_caller(seq):
    pipeline = make(seq, pipelined=True)
    for i in range(5):
        pipeline.add_frame(seq.frame(i))
    assert len(pipeline.map) > 0  # the first window, placed beside, is fused
    assert [r.index for r in pipeline.collect()] == [0]  # and still returned


def test_a_failed_prediction_keeps_the_window_being_placed_and_recovers_like_unpipelined(seq):
    def failing():
        return FailingOnce(GroundTruthPredictor(seq, seed=0), fail_call=3)

    plain_pipeline, piped_pipeline = make(seq, failing()), make(seq, failing(), pipelined=True)
    plain, _, plain_failures = run(plain_pipeline, seq)
    piped, _, piped_failures = run(piped_pipeline, seq)
    assert len(piped_failures) == len(plain_failures) == 1
    assert "out of memory" in piped_failures[0][1]
    # the window placed while the third failed is not lost, and every later one matches
    assert [r.index for r in piped] == [r.index for r in plain]
    np.testing.assert_array_equal(poses(piped), poses(plain))
    for pipeline in (plain_pipeline, piped_pipeline):
        assert pipeline.stats["failed_windows"] == 1 and pipeline.stats["resets"] == 1


def test_a_failed_placement_is_raised_by_the_next_call_and_the_next_window_restarts_odom(
        seq, monkeypatch):
    place = Chainer.place

    def place_failing_third(self, prediction, frames, index=0, **kwargs):
        if index == 2 and not getattr(self, "_failed_once", False):
            self._failed_once = True
            raise ValueError("synthetic chaining failure")
        return place(self, prediction, frames, index=index, **kwargs)

    monkeypatch.setattr(Chainer, "place", place_failing_third)
    pipeline = make(seq, pipelined=True)
    results, calls, failures = run(pipeline, seq)
    assert len(failures) == 1 and "synthetic chaining failure" in failures[0][1]
    stats = pipeline.stats
    assert stats["failed_windows"] == 1 and stats["resets"] == 1
    # the window predicted meanwhile starts the new trajectory; later ones chain onto it
    methods = [r.chaining.method for r in results]
    assert methods[0] == "first" and methods.count("reset") == 1
    restart = methods.index("reset")
    assert restart >= 2 and all(m in ("points", "centres") for m in methods[restart + 1:])
    assert len(results) >= restart + 2
    assert all(np.isfinite(k.odom_from_cam).all() for r in results for k in r.new_keyframes)


def test_pipelined_must_be_true_or_false():
    with pytest.raises(ValueError, match="PipelineConfig.pipelined must be true or false"):
        PipelineConfig(pipelined=1).validate()
