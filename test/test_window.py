"""WindowManager: keyframe stride and motion, window overlap, flush and counters."""
import numpy as np
import pytest

from vggt_ros.pipeline.types import Frame
from vggt_ros.pipeline.window import WindowManager, image_change, thumbnail


def _frame(i: int, image: np.ndarray | None = None) -> Frame:
    if image is None:
        image = np.full((48, 64, 3), i % 256, dtype=np.uint8)
    return Frame(stamp_ns=1_000 + i, image=image, frame_id="cam")


def _run(manager: WindowManager, n: int) -> list[list[int]]:
    windows = []
    for i in range(n):
        window = manager.add(_frame(i))
        if window is not None:
            windows.append([f.stamp_ns - 1_000 for f in window])
    return windows


def test_windows_overlap_by_the_last_keyframes():
    manager = WindowManager(window_size=4, overlap=2)
    windows = _run(manager, 9)
    assert windows == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    assert manager.windows == 3 and manager.keyframes == 9 and manager.dropped_non_keyframes == 0
    assert [f.stamp_ns - 1_000 for f in manager.flush()] == [6, 7, 8]  # 3 >= overlap + 1
    assert manager.flush() is None  # nothing new left


def test_stride_drops_and_counts_non_keyframes():
    manager = WindowManager(window_size=3, overlap=1, keyframe_stride=3)
    windows = _run(manager, 14)
    assert windows == [[0, 3, 6], [6, 9, 12]]
    assert manager.frames_in == 14 and manager.keyframes == 5
    assert manager.dropped_non_keyframes == 9
    assert manager.pending == 1  # only the carried-over overlap keyframe


def test_flush_needs_min_window_frames_and_a_new_keyframe():
    manager = WindowManager(window_size=4, overlap=2, min_window_frames=4)
    assert _run(manager, 7) == [[0, 1, 2, 3], [2, 3, 4, 5]]  # then 4, 5, 6 are buffered
    assert manager.pending == 3 and manager.flush() is None  # 3 < 4
    just_overlap = WindowManager(window_size=4, overlap=2)
    _run(just_overlap, 4)
    assert just_overlap.flush() is None  # only the overlap is buffered: nothing new
    short = WindowManager(window_size=8, overlap=2)
    _run(short, 3)
    assert [f.stamp_ns for f in short.flush()] == [1000, 1001, 1002]  # short first window


def test_min_motion_keeps_only_frames_that_changed_enough():
    manager = WindowManager(window_size=8, overlap=2, keyframe_min_motion=0.05)
    # Brightness ramps by 2/255 per frame: 0.05 of full range needs 7 frames of change.
    kept = [i for i in range(30) if manager.is_keyframe(_frame(2 * i))]
    assert kept == [0, 7, 14, 21, 28]
    assert manager.dropped_non_keyframes == 25


def test_image_change_measure():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    assert thumbnail(img).shape == (24, 32)
    assert image_change(thumbnail(img), thumbnail(img)) == 0.0
    black, white = np.zeros_like(img), np.full_like(img, 255)
    assert image_change(thumbnail(black), thumbnail(white)) == pytest.approx(1.0, abs=1e-6)
    shifted = np.roll(img, 8, axis=1)
    assert image_change(thumbnail(img), thumbnail(shifted)) > 0.05


def test_reset_forgets_buffer_but_keeps_counters():
    manager = WindowManager(window_size=4, overlap=1)
    _run(manager, 3)
    manager.reset()
    assert manager.pending == 0 and manager.flush() is None and manager.keyframes == 3


@pytest.mark.parametrize("kwargs,match", [
    (dict(window_size=1, overlap=1), "window_size"),
    (dict(window_size=4, overlap=4), "overlap"),
    (dict(window_size=4, overlap=0), "overlap"),
    (dict(window_size=4, overlap=1, keyframe_stride=0), "keyframe_stride"),
    (dict(window_size=4, overlap=1, keyframe_min_motion=-1.0), "keyframe_min_motion"),
    (dict(window_size=4, overlap=2, min_window_frames=2), "min_window_frames"),
])
def test_invalid_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WindowManager(**kwargs)


def test_idle_timer_is_due_once_per_quiet_period():
    from vggt_ros.pipeline.window import IdleTimer

    timer = IdleTimer(1.0)
    assert not timer.due(100.0)  # nothing arrived yet: nothing to flush
    timer.frame_arrived(100.0)
    assert not timer.due(100.9)
    assert timer.due(101.0)
    assert not timer.due(105.0)  # once per quiet period
    timer.frame_arrived(106.0)
    assert timer.due(107.5)
    off = IdleTimer(0.0)
    off.frame_arrived(0.0)
    assert not off.due(1e9)


def _keyframe_stamps(rate_hz: float, seconds: float, jitter_ns: int = 0) -> list[int]:
    """Stamps (ns) that become keyframes with keyframe_min_interval 0.1 s for a camera at
    ``rate_hz``, each stamp off by up to +-``jitter_ns``."""
    manager = WindowManager(window_size=8, overlap=2, keyframe_min_interval=0.1)
    rng = np.random.default_rng(0)
    period = 1e9 / rate_hz
    kept = []
    for i in range(int(seconds * rate_hz)):
        stamp = int(i * period) + int(rng.integers(-jitter_ns, jitter_ns + 1))
        if manager.is_keyframe(Frame(stamp_ns=stamp, image=np.zeros((4, 4, 3), np.uint8),
                                     frame_id="cam")):
            kept.append(stamp)
    return kept


def test_keyframe_min_interval_gives_the_same_keyframe_rate_at_10_and_30_hz():
    at_10 = _keyframe_stamps(10.0, 6.0, jitter_ns=2_000_000)
    at_30 = _keyframe_stamps(30.0, 6.0, jitter_ns=2_000_000)
    assert len(at_10) == 60  # every frame of a 10 Hz camera, despite +-2 ms jitter
    assert abs(len(at_30) - len(at_10)) <= 1  # every third frame of a 30 Hz camera
    for stamps in (at_10, at_30):
        gaps = np.diff(stamps) / 1e9
        assert gaps.min() >= 0.09 and gaps.max() <= 0.14


def test_interval_rule_leaves_older_stamps_to_the_stamp_rules():
    from vggt_ros.pipeline.window import interval_elapsed

    assert interval_elapsed(5, None, 0.1)
    assert not interval_elapsed(50_000_000, 0, 0.1)
    assert interval_elapsed(90_000_000, 0, 0.1)  # 10 % early still counts
    assert interval_elapsed(10, 1_000_000_000, 0.1)  # older: a glitch or a restart, not ours
    assert interval_elapsed(7, 7, 0.1)  # a duplicate: the stamp rules count it
    assert interval_elapsed(1, 0, 0.0)  # off
