"""Stamp glitches vs. stamp restarts: glitches are dropped and counted, a restart resets once."""
from dataclasses import replace

import numpy as np
import pytest

from vggt_ros.pipeline.pipeline import FrameRejected, Pipeline, PipelineConfig
from vggt_ros.pipeline.stream import StampGuard, StampVerdict
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor

A, D, O, R = (StampVerdict.ACCEPT, StampVerdict.DUPLICATE, StampVerdict.OUT_OF_ORDER,
              StampVerdict.RESTART)


def _verdicts(guard: StampGuard, stamps) -> list[StampVerdict]:
    out = []
    for stamp in stamps:
        verdict = guard.check(stamp)
        if verdict in (A, R):
            guard.accept(stamp)
        out.append(verdict)
    return out


def test_isolated_late_and_repeated_stamps_are_dropped():
    guard = StampGuard(restart_frames=3)
    assert _verdicts(guard, [10, 20, 5, 30, 30, 40, 35, 50, 1, 60]) == [
        A, A, O, A, D, A, O, A, O, A]
    assert guard.last == 60


def test_stamps_restarting_for_good_confirm_one_restart():
    guard = StampGuard(restart_frames=3)
    assert _verdicts(guard, [10, 20, 30, 1, 2, 3, 4, 5]) == [A, A, A, O, O, R, A, A]


def test_older_stamps_that_do_not_increase_are_no_restart():
    guard = StampGuard(restart_frames=3)
    assert _verdicts(guard, [100, 50, 40, 30, 45, 20, 10]) == [A, O, O, O, O, O, O]
    assert _verdicts(guard, [21, 22]) == [O, R]  # 20, 21, 22 increase: confirmed


def test_a_newer_frame_between_late_ones_breaks_the_run():
    guard = StampGuard(restart_frames=2)
    assert _verdicts(guard, [10, 20, 5, 30, 6]) == [A, A, O, A, O]


def test_restart_frames_must_be_positive():
    with pytest.raises(ValueError, match="restart_frames"):
        StampGuard(0)


@pytest.fixture(scope="module")
def seq():
    return make_sequence(30, 48, 36, seed=5, trajectory="forward")


def _run(seq, stamps_and_indices):
    """Feed (stamp, sequence frame) pairs; returns (pipeline, windows, rejected kinds)."""
    pipeline = Pipeline(GroundTruthPredictor(seq, seed=0),
                        PipelineConfig(window_size=4, overlap=1))
    windows, kinds = [], []
    for stamp, i in stamps_and_indices:
        try:
            windows += pipeline.add_frame(replace(seq.frame(i), stamp_ns=stamp))
        except FrameRejected as err:
            kinds.append(err.kind)
    return pipeline, windows, kinds


def test_three_isolated_backward_frames_give_no_reset(seq):
    stamps = [int(s) for s in seq.stamps_ns]
    feed = []
    for i in range(len(stamps)):
        feed.append((stamps[i], i))
        if i in (5, 12, 20):  # a stale frame right after: 1 ns older than its predecessor
            feed.append((stamps[i] - 1, i))
    pipeline, windows, kinds = _run(seq, feed)
    assert kinds == ["out_of_order"] * 3
    assert pipeline.stats["resets"] == 0 and pipeline.stats["rejected_out_of_order"] == 3
    placed = [k.stamp_ns for w in windows for k in w.new_keyframes]
    assert placed == sorted(placed) and len(placed) == len(set(placed))


def test_a_looping_bag_gives_exactly_one_reset_per_loop(seq):
    loop = [(int(s), i) for i, s in enumerate(seq.stamps_ns[:12])]
    pipeline, windows, kinds = _run(seq, loop * 3)
    assert pipeline.stats["resets"] == 2  # two loops back to the start
    assert kinds == ["out_of_order", "out_of_order"] * 2  # the frames before the confirmation
    assert "stamps restarted" in pipeline.stats["last_reset_reason"]
    assert [w.chaining.method for w in windows].count("reset") == 2


def test_gap_counter_counts_frames_missing_from_a_steady_camera():
    from vggt_ros.pipeline.stream import GapCounter

    period = 33_333_333  # 30 Hz
    rng = np.random.default_rng(1)
    sent = np.arange(900) * period + rng.integers(-3_000_000, 3_000_000, 900)  # +-3 ms jitter
    lost = rng.random(900) < 0.5  # half of the frames never arrive
    lost[:12] = False  # the period is learnt from the first steps
    counter = GapCounter()
    for stamp in sent[~lost]:
        counter.add(int(stamp))
    assert counter.missing == lost.sum()
    assert abs(counter.period_ns - period) < 0.02 * period


def test_gap_counter_ignores_steps_back_and_waits_for_a_period():
    from vggt_ros.pipeline.stream import GapCounter

    counter = GapCounter(min_steps=3)
    assert [counter.add(s) for s in (0, 100, 200, 500)] == [0, 0, 0, 0]  # no period yet
    assert counter.add(600) == 0 and counter.add(900) == 2
    assert counter.add(10) == 0 and counter.add(110) == 0  # a restart, then steady again


def test_gap_counter_takes_a_long_pause_for_a_pause_not_for_lost_frames():
    from vggt_ros.pipeline.stream import GapCounter

    counter = GapCounter(min_steps=3, pause_s=1.0)
    for stamp in range(0, 500_000_000, 100_000_000):
        counter.add(stamp)
    assert counter.add(5_400_000_000) == 0  # the camera stopped for 5 s
    assert counter.add(5_700_000_000) == 2  # then two frames were lost
    assert counter.missing == 2
    # ...and the pause is counted apart, with the 49 frames the 10 Hz period says were due in it
    assert (counter.pauses, counter.in_pauses, counter.longest_pause_ns) == (1, 49, 5e9)


def test_gap_counter_needs_a_camera_period_for_a_pause_and_takes_a_huge_step_for_a_clock_jump():
    from vggt_ros.pipeline.stream import GapCounter

    counter = GapCounter(min_steps=3, pause_s=1.0, clock_jump_s=60.0)
    counter.add(0)  # e.g. a probe frame long before the stream
    for stamp in range(10**12, 10**12 + 500_000_000, 100_000_000):
        counter.add(stamp)
    assert counter.pauses == 0  # no camera period yet at that step
    counter.add(10**12 + 3600 * 10**9)  # the stamps' clock jumped by an hour
    assert (counter.pauses, counter.in_pauses, counter.missing) == (0, 0, 0)


def test_latency_values_are_percentiles_of_the_samples():
    from vggt_ros.topics.diagnostics import latency_values

    values = latency_values([0.1 * i for i in range(1, 11)])
    assert values["latency.stamp_to_tf_p50_s"] == pytest.approx(0.55)
    assert values["latency.stamp_to_tf_p90_s"] == pytest.approx(0.91)
    assert values["latency.stamp_to_tf_max_s"] == pytest.approx(1.0)
    assert all(np.isnan(v) for v in latency_values([]).values())
