"""``vggt_map`` on recordings as robots leave them: cut short without footer or metadata.yaml,
or with damaged bytes. Every intact frame is mapped, the run exits 0 with a warning, and
summary.json says partial and how many frames.

The command line runs in this process with the ground-truth double (exact, fast); the expected
frame counts come from the ``mcap`` package's stream reader, which shares no code with ours.
"""
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.records import Channel, Message
from mcap.stream_reader import StreamReader, breakup_chunk

from vggt_ros.evaluation.metrics import aligned_positions, associate
from vggt_ros.io.tum import read_tum
from vggt_ros.offline import cli
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor

from output_checks import assert_one_complete_set
from synth_runs import render_for_damage

FRAMES, WIDTH, HEIGHT, SEED = 24, 32, 24, 1
IMAGE, INFO = "/camera/image_raw", "/camera/camera_info"
CHUNK_KIB = 12  # about four frames per chunk


def _synth(out: Path, storage: str) -> Path:
    return render_for_damage(out, FRAMES, WIDTH, HEIGHT, SEED, storage, CHUNK_KIB)


@pytest.fixture(scope="module")
def mcap_seq(tmp_path_factory) -> Path:
    return _synth(tmp_path_factory.mktemp("mcap"), "mcap")


@pytest.fixture(scope="module")
def sqlite_seq(tmp_path_factory) -> Path:
    return _synth(tmp_path_factory.mktemp("sqlite"), "sqlite3")


@pytest.fixture(scope="module")
def sequence():
    return make_sequence(FRAMES, WIDTH, HEIGHT, SEED)


def _vggt_map(bag: Path, out: Path, seq_dir: Path, sequence) -> int:
    return cli.main([str(bag), "--image-topic", IMAGE, "--camera-info-topic", INFO, "--out",
                     str(out), "--gt", str(seq_dir / "groundtruth_tum.txt"), "--no-progress",
                     "--window-size", "4", "--overlap", "1"],
                    lambda _: GroundTruthPredictor(sequence, seed=7))


def _unfinished(bag: Path, folder: Path, edit) -> Path:
    """``folder`` holding only the storage file, edited: no metadata.yaml, as a recording that
    lost power leaves it."""
    folder.mkdir()
    source = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    (folder / source.name).write_bytes(edit(source.read_bytes()))
    return folder


def _stream_reader_images(path: Path) -> int:
    count, images = 0, set()
    try:
        with path.open("rb") as handle:
            for record in StreamReader(handle, validate_crcs=True).records:
                if isinstance(record, Channel) and record.topic == IMAGE:
                    images.add(record.id)
                elif isinstance(record, Message) and record.channel_id in images:
                    count += 1
    except Exception:  # where it cannot read on
        pass
    return count


def _images_per_chunk(path: Path) -> list[tuple[int, int]]:
    """(chunk offset, image messages in it) from the intact file's summary."""
    data = path.read_bytes()
    summary = make_reader(io.BytesIO(data)).get_summary()
    images = {c.id for c in summary.channels.values() if c.topic == IMAGE}
    found = []
    for index in summary.chunk_indexes:
        chunk = next(iter(StreamReader(io.BytesIO(data[index.chunk_start_offset:]),
                                       skip_magic=True, emit_chunks=True).records))
        found.append((index.chunk_start_offset,
                      sum(isinstance(r, Message) and r.channel_id in images
                          for r in breakup_chunk(chunk))))
    return found


def _warnings(caplog) -> str:
    return " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_a_cut_mcap_without_metadata_maps_every_recoverable_frame(
        mcap_seq, sequence, tmp_path, caplog, fraction):
    bag = _unfinished(mcap_seq / "bag", tmp_path / "bag",
                      lambda data: data[:int(len(data) * fraction)])
    out = tmp_path / "map"
    assert _vggt_map(bag, out, mcap_seq, sequence) == 0
    summary = assert_one_complete_set(out)
    independent = _stream_reader_images(bag / "bag.mcap")
    per_chunk = max(n for _, n in _images_per_chunk(mcap_seq / "bag" / "bag.mcap"))
    assert abs(summary["frames_read"] - independent) <= per_chunk
    assert summary["keyframes"] == summary["frames_read"] < FRAMES
    assert summary["partial"] is True and "damaged or unfinished bag" in \
        summary["partial_reasons"][0]
    assert summary["bag_read"]["metadata_yaml"] is False
    assert summary["bag_read"]["recovered_messages"][IMAGE] == summary["frames_read"]
    warning = _warnings(caplog)
    assert f"({summary['frames_read']} on {IMAGE}); the damage starts in bag.mcap at byte" \
        in warning
    assert summary["metrics"]["trajectory"]["ate"]["rmse_percent_of_path"] < 0.5


def test_a_cut_sqlite_bag_maps_every_recoverable_frame(sqlite_seq, sequence, tmp_path, caplog):
    bag = _unfinished(sqlite_seq / "bag", tmp_path / "bag",
                      lambda data: data[:int(len(data) * 0.6)])
    out = tmp_path / "map"
    assert _vggt_map(bag, out, sqlite_seq, sequence) == 0
    summary = assert_one_complete_set(out)
    assert 0 < summary["keyframes"] == summary["frames_read"] < FRAMES
    assert summary["partial"] is True
    assert "the damage starts in bag.db3 at row" in _warnings(caplog)
    stamps, _ = read_tum(out / "trajectory_tum.txt")
    gt_stamps, _ = read_tum(sqlite_seq / "groundtruth_tum.txt")
    np.testing.assert_array_equal(stamps, gt_stamps[:len(stamps)])


def test_a_complete_mcap_without_metadata_yaml_maps_whole(mcap_seq, sequence, tmp_path):
    bag = _unfinished(mcap_seq / "bag", tmp_path / "bag", lambda data: data)
    out = tmp_path / "map"
    assert _vggt_map(bag, out, mcap_seq, sequence) == 0
    summary = assert_one_complete_set(out)
    assert summary["keyframes"] == FRAMES and summary["partial"] is False
    assert summary["bag_read"]["intact"] is True


def test_flipped_bytes_in_a_chunk_are_skipped_and_leave_the_other_frames_as_they_were(
        mcap_seq, sequence, tmp_path, caplog):
    intact_out = tmp_path / "intact"
    assert _vggt_map(mcap_seq / "bag", intact_out, mcap_seq, sequence) == 0
    offset, lost_images = _images_per_chunk(mcap_seq / "bag" / "bag.mcap")[2]

    def flip(data: bytes) -> bytes:
        damaged = bytearray(data)
        middle = offset + 2048  # inside the chunk's messages, past its header
        damaged[middle:middle + 16] = bytes(b ^ 0xFF for b in damaged[middle:middle + 16])
        return bytes(damaged)

    bag = tmp_path / "bag"
    bag.mkdir()
    shutil.copy(mcap_seq / "bag" / "metadata.yaml", bag)
    (bag / "bag.mcap").write_bytes(flip((mcap_seq / "bag" / "bag.mcap").read_bytes()))
    out = tmp_path / "map"
    assert _vggt_map(bag, out, mcap_seq, sequence) == 0
    summary = assert_one_complete_set(out)
    read = summary["bag_read"]
    assert read["damaged_chunks"] == 1 and read["lost_messages"][IMAGE] == lost_images > 0
    assert "CRC mismatch" in read["damage"][0]["reason"] and not read["damage"][0]["fatal"]
    assert summary["keyframes"] == FRAMES - lost_images and summary["partial"] is True
    assert "chunk CRC mismatch" in _warnings(caplog)
    # The frames that were not damaged sit where the intact run put them (up to the one
    # similarity any two VGGT maps differ by), and where the ground truth has them.
    stamps, poses = read_tum(out / "trajectory_tum.txt")
    intact_stamps, intact_poses = read_tum(intact_out / "trajectory_tum.txt")
    mine, theirs = associate(stamps, intact_stamps, 1)
    assert len(mine) == len(stamps)
    aligned = aligned_positions(poses[mine], intact_poses[theirs])
    path = json.loads((intact_out / "summary.json").read_text())[
        "metrics"]["trajectory"]["ate"]["path_length"]
    assert np.abs(aligned - intact_poses[theirs][:, :3, 3]).max() < 1e-6 * path
    assert summary["metrics"]["trajectory"]["ate"]["rmse_percent_of_path"] < 0.5
