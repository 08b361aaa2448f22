"""Ctrl-C keeps the work done, and an output folder never mixes two runs.

``vggt_map`` runs in a child process (``map_with_double.py``: the real command line with the
ground-truth double) that pauses at a chosen point; the test signals it there and then reads the
folder with independent readers (``output_checks``).
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vggt_ros.export import outputs as export_outputs
from vggt_ros.export.output_set import OutputError, OutputSet, check_output_folder
from vggt_ros.offline import cli
from vggt_ros.offline.interrupts import TwoStepInterrupt
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor

from output_checks import OUTPUT_FILES, assert_one_complete_set
from synth_runs import render

FRAMES, WIDTH, HEIGHT, SEED = 24, 32, 24, 1
HELPER = Path(__file__).with_name("map_with_double.py")
IMAGE, INFO = "/camera/image_raw", "/camera/camera_info"
WINDOW = ["--window-size", "4", "--overlap", "1"]  # 4 new keyframes, then 3 per window


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("synth"), FRAMES, WIDTH, HEIGHT, SEED) / "bag"


def _map_args(bag: Path, out: Path, *extra: str) -> list[str]:
    return [str(bag), "--image-topic", IMAGE, "--camera-info-topic", INFO, "--out", str(out),
            "--no-progress", *WINDOW, *extra]


def _earlier_run(bag: Path, out: Path) -> dict:
    """A complete run in ``out`` (in this process) to be replaced, or kept."""
    sequence = make_sequence(FRAMES, WIDTH, HEIGHT, SEED)
    assert cli.main(_map_args(bag, out), lambda _: GroundTruthPredictor(sequence, seed=3)) == 0
    return assert_one_complete_set(out)


def _interrupt(bag: Path, out: Path, tmp_path: Path, pause: str,
               signals: tuple[int, ...] = (signal.SIGINT,), extra: tuple[str, ...] = ()
               ) -> subprocess.CompletedProcess:
    """Run the helper until it pauses at ``pause``, send ``signals`` there, wait for it."""
    marker = tmp_path / "paused"
    env = dict(os.environ, VGGT_TEST_PAUSE=pause, VGGT_TEST_MARKER=str(marker),
               VGGT_TEST_PAUSE_S="4")
    child = subprocess.Popen([sys.executable, str(HELPER), str(FRAMES), str(WIDTH),
                              str(HEIGHT), str(SEED), *_map_args(bag, out, *extra)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the child never reached the pause"
        time.sleep(0.05)
    for signum in signals:
        child.send_signal(signum)
        time.sleep(0.3)
    stdout, stderr = child.communicate(timeout=120)
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--pipelined", "true")], ids=["plain", "pipelined"])
def test_sigint_while_reading_writes_a_complete_partial_set_of_the_windows_mapped(
        bag, tmp_path, extra):
    out = tmp_path / "map"
    proc = _interrupt(bag, out, tmp_path, "read:12", extra=extra)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "SIGINT: stopping" in proc.stderr
    summary = assert_one_complete_set(out)
    assert summary["partial"] is True
    assert "interrupted by SIGINT" in summary["partial_reasons"][0]
    # Reading stopped right after frame 12: the windows completed by then are mapped (4 + 3 +
    # 3 keyframes; pipelined, the last of them was still being placed), the keyframes of the
    # unfinished window are not, and no window is forced.
    assert summary["frames_read"] == 12 and summary["keyframes"] == 10
    assert "PARTIAL" in proc.stdout


@pytest.mark.slow
def test_sigint_while_predicting_finishes_that_window_and_stops(bag, tmp_path):
    out = tmp_path / "map"
    proc = _interrupt(bag, out, tmp_path, "predict:3")
    assert proc.returncode == 130, proc.stderr
    summary = assert_one_complete_set(out)
    assert summary["partial"] is True and summary["windows"] == 3
    assert summary["keyframes"] == 4 + 3 + 3  # the window being predicted was finished


@pytest.mark.slow
def test_sigint_during_the_final_write_still_replaces_the_earlier_run_whole(bag, tmp_path):
    out = tmp_path / "map"
    earlier = _earlier_run(bag, out)
    proc = _interrupt(bag, out, tmp_path, "write:1")
    assert proc.returncode == 0, proc.stderr  # every frame was read: nothing is cut short
    summary = assert_one_complete_set(out)
    assert summary["run"]["id"] != earlier["run"]["id"]
    assert summary["partial"] is False and summary["keyframes"] == FRAMES


@pytest.mark.slow
def test_second_sigint_aborts_at_once_and_keeps_the_earlier_run(bag, tmp_path):
    out = tmp_path / "map"
    earlier = _earlier_run(bag, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    start = time.monotonic()
    proc = _interrupt(bag, out, tmp_path, "write:1", (signal.SIGINT, signal.SIGINT))
    assert proc.returncode == 130, proc.stderr
    assert time.monotonic() - start < 4 + 30  # did not sit out the 4 s pause and more
    assert "aborted" in proc.stderr and "Traceback" not in proc.stderr
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert assert_one_complete_set(out)["run"]["id"] == earlier["run"]["id"]


# ------------------------------------------------------------------ the output set itself

def test_output_set_replaces_the_folder_only_on_commit(tmp_path):
    out = tmp_path / "map"
    out.mkdir()
    (out / "summary.json").write_text('{"run": "old"}')
    staged = OutputSet(out, OUTPUT_FILES)
    (staged.dir / "summary.json").write_text('{"run": "new"}')
    assert json.loads((out / "summary.json").read_text()) == {"run": "old"}
    staged.commit()
    assert json.loads((out / "summary.json").read_text()) == {"run": "new"}
    dropped = OutputSet(out, OUTPUT_FILES)
    (dropped.dir / "map.ply").write_text("x")
    dropped.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map"]
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


def test_a_folder_with_other_files_is_refused_not_replaced(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt.*choose a new or empty --out"):
        check_output_folder(out, OUTPUT_FILES)
    assert (out / "notes.txt").read_text() == "mine"


def test_an_unwritable_output_folder_is_named_in_the_error(bag, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "map"
    with pytest.raises(OutputError, match=f"cannot write the output folder {out}"):
        check_output_folder(out, OUTPUT_FILES)
    assert cli.main(_map_args(bag, out), lambda _: pytest.fail("no model before the check")) == 2
    error = capsys.readouterr().err
    assert f"output folder {out}" in error and ".partial" not in error


def test_a_failed_write_names_the_output_folder_not_the_staged_file(bag, tmp_path, capsys,
                                                                      monkeypatch):
    def disk_full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(export_outputs, "write_ply", disk_full)
    out = tmp_path / "map"
    sequence = make_sequence(FRAMES, WIDTH, HEIGHT, SEED)
    assert cli.main(_map_args(bag, out), lambda _: GroundTruthPredictor(sequence)) == 2
    error = capsys.readouterr().err
    assert f"cannot write the output folder {out}: No space left on device" in error
    assert ".partial" not in error and sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_first_signal_asks_for_a_stop_and_the_second_aborts(capsys):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    reasons = []
    with TwoStepInterrupt(reasons.append, "vggt_map") as interrupt:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs in this thread, between two bytecodes
        assert reasons == ["interrupted by SIGTERM"] and interrupt.received == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert "SIGTERM: stopping" in capsys.readouterr().err
