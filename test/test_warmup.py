"""Warm-up (inference/warmup.py): which shapes, run through the real predictor on CPU.

The plan must cover every (window length, new frames) pair the pipeline's windowing can hand
the predictor, and after a warm-up with a compiled network no window of the pipeline may
compile again: that is the start-up stall the warm-up exists to remove.
"""
import copy
import itertools

import numpy as np
import pytest
import torch

from vggt_ros.inference.predictor import VGGTPredictor
from vggt_ros.inference.warmup import (WarmupError, WarmupPlan, plan_for_settings, run_warmup,
                                       warmup_calls, window_lengths)
from vggt_ros.model.fast import FastOptions
from vggt_ros.pipeline.pipeline import Pipeline, PipelineConfig, WindowFailed
from vggt_ros.pipeline.types import Frame, TrackPrediction
from vggt_ros.pipeline.window import WindowManager
from vggt_ros.settings import defaults


def _plan(window_size=6, overlap=2, width=64, height=48) -> WarmupPlan:
    return WarmupPlan(width=width, height=height, window_size=window_size, overlap=overlap,
                      track_queries=8)


def _new_frame_pairs(windows) -> set[tuple[int, int]]:
    """(length, frames never seen in an earlier window) of each window, in order."""
    seen, pairs = set(), set()
    for window in windows:
        pairs.add((len(window), len(set(window) - seen)))
        seen.update(window)
    return pairs


def test_window_lengths_are_every_length_a_flush_can_produce():
    assert window_lengths(8, 2) == (8, 7, 6, 5, 4, 3)
    assert window_lengths(4, 3) == (4,)
    with pytest.raises(ValueError):
        window_lengths(4, 4)


@pytest.mark.parametrize("window_size, overlap", [(6, 2), (4, 3), (8, 2), (5, 1), (3, 2)])
def test_plan_covers_every_window_the_windowing_can_produce(window_size, overlap):
    """Feed the real WindowManager streams that flush and reset at every point and collect the
    (length, new frames) of each window: each pair must be one the warm-up predicts."""
    produced = set()
    for run_length, flush_every, reset_after in itertools.product(
            range(1, 3 * window_size), range(1, 2 * window_size), (None, 3, window_size + 1)):
        manager = WindowManager(window_size=window_size, overlap=overlap)
        windows, stamp = [], 0
        for i in range(run_length):
            stamp += 1
            window = manager.add(Frame(stamp_ns=stamp * 10**9, frame_id="c",
                                       image=np.zeros((2, 2, 3), np.uint8)))
            if window:
                windows.append([f.stamp_ns for f in window])
            if (i + 1) % flush_every == 0 and (window := manager.flush()):
                windows.append([f.stamp_ns for f in window])
            if reset_after is not None and i + 1 == reset_after:
                manager.reset()
        produced |= _new_frame_pairs(windows)
    calls = warmup_calls(_plan(window_size, overlap))
    warmed = _new_frame_pairs([c.frames for c in calls if c.kind == "predict"])
    assert produced <= warmed, produced - warmed


def test_every_length_also_gets_both_track_requests():
    calls = warmup_calls(_plan(6, 2))
    for length in window_lengths(6, 2):
        tracks = {c.query_frame for c in calls if c.kind == "track" and c.length == length}
        assert tracks == {0, length - 1}  # the pose solver's first anchor, the newest frame


def test_plan_from_the_node_settings():
    values = defaults() | {"window_size": 5, "overlap": 1, "pose_queries": 32}
    plan = plan_for_settings(values)
    assert (plan.width, plan.height, plan.window_size, plan.overlap, plan.track_queries) == (
        640, 480, 5, 1, 32)
    assert plan_for_settings(values | {"warmup_image_width": 0}) is None


class RecordingPredictor:
    """Records what it was asked (stamps per call); tracks come back in the right shapes."""

    def __init__(self, fail_at_length=None):
        self.calls, self.fail_at_length = [], fail_at_length

    def predict(self, frames):
        self.calls.append(("predict", [f.stamp_ns for f in frames], frames[0].image.shape))
        if len(frames) == self.fail_at_length:
            raise RuntimeError("CUDA out of memory")
        return None  # the warm-up does not look at the answer

    def track(self, frames, query_uv):
        self.calls.append(("track", [f.stamp_ns for f in frames], frames[0].image.shape))
        s, n = len(frames), len(query_uv)
        return TrackPrediction(stamps_ns=[f.stamp_ns for f in frames],
                               tracks_uv=np.zeros((s, n, 2)), visibility=np.ones((s, n)),
                               confidence=np.ones((s, n)))

    def describe(self):
        return {"name": "recording"}


def test_run_warmup_makes_each_planned_call_on_frames_of_the_camera_size():
    predictor = RecordingPredictor()
    plan = _plan(4, 2, width=40, height=30)
    report = run_warmup(predictor, plan)
    calls = warmup_calls(plan)
    assert [(kind, len(stamps)) for kind, stamps, _ in predictor.calls] == [
        (c.kind, c.length) for c in calls]
    assert {shape for *_, shape in predictor.calls} == {(30, 40, 3)}
    newest_first = [stamps for kind, stamps, _ in predictor.calls if kind == "track"][1]
    assert newest_first[0] == max(newest_first)  # the query frame goes first
    assert report.calls == len(calls) and report.window_lengths == (4, 3)
    assert report.seconds >= 0 and len(report.call_seconds) == len(calls)
    assert "every window shape" in report.summary() and "40x30" in report.summary()


def test_a_failing_warmup_call_names_the_shape():
    with pytest.raises(WarmupError, match="predict of a window of 3 frames at 64x48 failed: "
                                          "RuntimeError: CUDA out of memory"):
        run_warmup(RecordingPredictor(fail_at_length=3), _plan(4, 2))


class CountingBackend:
    """torch.compile backend: dynamo traces for real, the graph runs as traced; counts."""

    def __init__(self):
        self.compiles = 0

    def __call__(self, graph_module, example_inputs):
        self.compiles += 1
        return graph_module.forward


def _stream(width, height, count, seed):
    rng = np.random.default_rng(seed)
    return [Frame(stamp_ns=(i + 1) * 10**9, frame_id="cam",
                  image=rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            for i in range(count)]


@pytest.mark.slow
def test_after_warmup_no_pipeline_window_compiles(random_small_vggt):
    """The compiled fast path on CPU (dynamo tracing, counting backend) through the real
    pipeline: full windows, a flush, a reset, track requests: zero compiles, zero eager calls.
    Then a camera of another size: eager at once, compiled in the background, logged."""
    backend, lines = CountingBackend(), []
    torch._dynamo.reset()
    predictor = VGGTPredictor(
        copy.deepcopy(random_small_vggt), device="cpu", image_size=70, fast=True,
        fast_options=FastOptions(compile_blocks=True, compile_heads=True,
                                 compile_backend=backend), log=lines.append)
    assert predictor.compiles
    window_size, overlap = 4, 2
    report = predictor.warm_up(WarmupPlan(width=96, height=72, window_size=window_size,
                                          overlap=overlap, track_queries=8))
    warmed = backend.compiles
    assert warmed > 0 and predictor.compile_stats()["compiled_shapes"] == warmed
    assert report.window_lengths == (4, 3)

    config = PipelineConfig(window_size=window_size, overlap=overlap, keyframe_min_interval=0.0,
                            conf_threshold=0.0, conf_percentile=0.0, pose_queries=8)
    pipeline = Pipeline(predictor, config)

    def run(frames):
        for frame in frames:
            try:
                pipeline.add_frame(frame)
            except WindowFailed:  # random weights: chaining may refuse, the shapes still ran
                pass

    frames = _stream(96, 72, 11, seed=1)
    run(frames[:7])  # windows of 4 (all new, then sliding)
    pipeline.flush()  # a shorter window (3)
    pipeline.reset("test")
    run(frames[7:])  # after the reset: all new again
    pipeline.flush()
    try:
        pipeline.track(0, np.array([[40.0, 30.0], [50.0, 40.0]]))
    except Exception:  # noqa: BLE001 - no snapshot if the last window failed; shapes ran
        pass
    assert backend.compiles == warmed, "a window after warm-up compiled"
    assert predictor.compile_stats()["eager_calls"] == 0

    other = _stream(128, 72, window_size, seed=2)  # a 16:9 camera: another model input size
    predictor.predict(other)
    assert predictor.compile_stats()["eager_calls"] > 0
    assert any("was not warmed up" in line for line in lines), lines
    assert predictor.model.wait_for_background_compiles(timeout=120)
    assert backend.compiles > warmed
    eager = predictor.compile_stats()["eager_calls"]
    predictor.predict(_stream(128, 72, window_size, seed=3))
    assert predictor.compile_stats()["eager_calls"] == eager  # compiled by now
    predictor.close()
    torch._dynamo.reset()
