"""End to end: vggt_synth bag -> offline mapper -> output files and metrics.

The ground-truth predictor double makes the expected result exact (the trajectory must
reproduce ground truth up to one similarity); the tiny fixture checkpoint checks the real model
path through the ``vggt_map`` command line; the error cases check that bad input ends with one
clear line and exit code 2.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from vggt_ros.evaluation.depth import synthetic_depth_source
from vggt_ros.io.bag_writer import BagWriter
from vggt_ros.io.tum import read_tum
from vggt_ros.offline.mapper import MappingError, run_offline_mapping
from vggt_ros.pipeline.pipeline import PipelineConfig
from vggt_ros.synth import make_sequence
from vggt_ros.synth.cli import IMAGE_TOPIC, compressed_image_message, image_message
from vggt_ros.synth.gt_double import GroundTruthPredictor

from synth_runs import (MAPPING_FRAMES, MAPPING_HEIGHT, MAPPING_SEED, MAPPING_WIDTH,
                        render)

CAMERA_INFO_TOPIC = "/camera/camera_info"
FRAMES, WIDTH, HEIGHT, SEED = MAPPING_FRAMES, MAPPING_WIDTH, MAPPING_HEIGHT, MAPPING_SEED
OUTPUT_FILES = ["colmap", "map.ply", "outputs.mcap", "report.png", "summary.json",
                "trajectory_tum.txt"]


@pytest.fixture(scope="module")
def synth_dir(mapping_dir) -> Path:
    return mapping_dir


def _config(**overrides) -> PipelineConfig:
    values = dict(window_size=8, overlap=2, conf_threshold=1.5)
    values.update(overrides)
    return PipelineConfig(**values)


def _gt_predictor(frames: int = FRAMES, width: int = WIDTH, height: int = HEIGHT,
                  seed: int = SEED) -> GroundTruthPredictor:
    return GroundTruthPredictor(make_sequence(frames, width, height, seed), seed=7)


@pytest.mark.slow
def test_ground_truth_double_reproduces_ground_truth(synth_dir, tmp_path):
    out = tmp_path / "map"
    summary = run_offline_mapping(
        synth_dir / "bag", IMAGE_TOPIC, out, _gt_predictor(), _config(),
        camera_info_topic=CAMERA_INFO_TOPIC, gt_tum=synth_dir / "groundtruth_tum.txt",
        progress=False, gt_depth=synthetic_depth_source(FRAMES, WIDTH, HEIGHT, SEED))
    assert sorted(p.name for p in out.iterdir()) == OUTPUT_FILES
    assert summary["frames_read"] == FRAMES and summary["keyframes"] == FRAMES
    assert summary["windows"] >= 6 and summary["skipped_messages"] == {}
    assert summary["chaining"]["methods"].get("first") == 1
    ate = summary["metrics"]["trajectory"]["ate"]
    assert summary["metrics"]["trajectory"]["associated"] == FRAMES
    assert ate["rmse_percent_of_path"] <= 0.5
    # Windows come back at random scales (0.3..3) yet the chained map has ONE scale.
    assert summary["metrics"]["trajectory"]["rpe"]["trans_rmse"] <= 0.005 * ate["path_length"]
    assert summary["metrics"]["depth"]["abs_rel"] < 1e-3
    assert summary["metrics"]["depth"]["frames"] == FRAMES
    for stage in ("read", "decode", "predict", "chain", "fuse", "write"):
        assert summary["stage_timings_s"][stage] >= 0.0
    assert summary["predictor"]["model"] == "ground-truth double"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["metrics"]["trajectory"]["ate"]["rmse"] == pytest.approx(ate["rmse"])
    stamps, poses = read_tum(out / "trajectory_tum.txt")
    gt_stamps, _ = read_tum(synth_dir / "groundtruth_tum.txt")
    np.testing.assert_array_equal(stamps, gt_stamps)
    assert PlyData.read(str(out / "map.ply"))["vertex"].count == summary["map_points"] > 0


@pytest.mark.slow
def test_a_pipelined_run_writes_the_same_trajectory_and_map(synth_dir, tmp_path):
    summaries = {}
    for pipelined in (False, True):
        out = tmp_path / f"pipelined_{pipelined}"
        summaries[pipelined] = run_offline_mapping(
            synth_dir / "bag", IMAGE_TOPIC, out, _gt_predictor(), _config(pipelined=pipelined),
            camera_info_topic=CAMERA_INFO_TOPIC, progress=False)
    plain, piped = tmp_path / "pipelined_False", tmp_path / "pipelined_True"
    assert (piped / "trajectory_tum.txt").read_text() == (plain / "trajectory_tum.txt").read_text()
    assert summaries[True]["windows"] == summaries[False]["windows"] >= 6
    assert summaries[True]["map_points"] == summaries[False]["map_points"] > 0
    assert summaries[True]["keyframes"] == FRAMES


def test_undecodable_images_are_skipped_and_counted(tmp_path):
    seq = make_sequence(12, 32, 24, 3)
    bag = tmp_path / "bag"
    with BagWriter(bag) as writer:
        for i, stamp in enumerate(int(s) for s in seq.stamps_ns):
            msg = image_message(seq.render(i)[0], stamp)
            if i in (4, 5):
                msg["encoding"] = "yuv422_yuy2"  # not supported by the decoder
            writer.write(IMAGE_TOPIC, "sensor_msgs/msg/Image", msg, stamp)
    summary = run_offline_mapping(bag, IMAGE_TOPIC, tmp_path / "out",
                                  GroundTruthPredictor(seq), _config(window_size=4, overlap=1),
                                  progress=False)
    assert summary["frames_read"] == 12 and summary["keyframes"] == 10
    assert summary["skipped_messages"] == {"unsupported_encoding": 2}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["skipped_messages"] == {
        "unsupported_encoding": 2}


def test_compressed_images_are_mapped_and_bad_ones_skipped_and_counted(tmp_path):
    seq = make_sequence(12, 32, 24, 3)
    bag, topic = tmp_path / "bag", IMAGE_TOPIC + "/compressed"
    with BagWriter(bag) as writer:
        for i, stamp in enumerate(int(s) for s in seq.stamps_ns):
            msg = compressed_image_message(seq.render(i)[0], stamp, "png")
            if i == 4:
                msg["data"] = msg["data"][: len(msg["data"]) // 4]  # cut short
            if i == 5:
                msg["format"] = "16UC1; compressedDepth png"
            writer.write(topic, "sensor_msgs/msg/CompressedImage", msg, stamp)
    summary = run_offline_mapping(bag, topic, tmp_path / "out", GroundTruthPredictor(seq),
                                  _config(window_size=4, overlap=1), progress=False)
    assert summary["frames_read"] == 12 and summary["keyframes"] == 10
    assert summary["skipped_messages"] == {"undecodable": 1, "unsupported_format": 1}
    stamps, _ = read_tum(tmp_path / "out" / "trajectory_tum.txt")
    assert len(stamps) == 10


@pytest.mark.slow
def test_corrupt_message_midway_is_skipped_and_counted(synth_dir, tmp_path):
    """A message that does not deserialise, in a bag written without CRCs (by another tool):
    nothing catches it before the CDR decoder, which rejects it; it alone is skipped."""
    bag = tmp_path / "bag"
    with Reader(synth_dir / "bag") as source, \
            Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as copy:
        conns = {c.id: copy.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data,
                                           rihs01=c.digest) for c in source.connections}
        images = 0
        for conn, log_time, raw in source.messages():
            data = bytearray(raw)
            if conn.topic == IMAGE_TOPIC:
                if images == 20:  # the encoding string's length becomes absurd
                    at = data.index(b"rgb8\x00")
                    data[at - 4:at] = b"\xff\xff\xff\x7f"
                images += 1
            copy.write(conns[conn.id], log_time, bytes(data))
    out = tmp_path / "out"
    summary = run_offline_mapping(bag, IMAGE_TOPIC, out, _gt_predictor(), _config(),
                                  progress=False)
    assert summary["skipped_messages"] == {"corrupt_message": 1}
    assert summary["partial"] is False and summary["bag_read"]["chunks_without_crc"] == 1
    assert summary["frames_read"] == summary["keyframes"] == FRAMES - 1
    assert sorted(p.name for p in out.iterdir()) == OUTPUT_FILES  # no temporaries left
    stamps, _ = read_tum(out / "trajectory_tum.txt")
    assert len(stamps) == FRAMES - 1
    with Reader(out / "outputs.mcap") as reader:
        assert reader.message_count > 0


def _empty_image_bag(path):
    """A valid bag whose image topic exists but holds no message."""
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    writer.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image",
                          typestore=get_typestore(Stores.ROS2_KILTED))
    writer.close()
    return path


def test_empty_image_topic_raises(tmp_path):
    bag = _empty_image_bag(tmp_path / "empty")
    with pytest.raises(MappingError, match="no decodable image"):
        run_offline_mapping(bag, IMAGE_TOPIC, tmp_path / "out", _gt_predictor(), _config(),
                            progress=False)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ the vggt_map command line

def _vggt_map(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the CLI in a child that inherits conftest's environment."""
    return subprocess.run([sys.executable, "-m", "vggt_ros.offline.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory) -> Path:
    """Eight frames for the tiny fixture model (seed 2 keeps its random-weight focal lengths
    finite at 70 px; other scenes make it predict infinite focal lengths)."""
    return render(tmp_path_factory.mktemp("small"), 8, 64, 48, 2)


@pytest.mark.slow
def test_cli_with_fixture_checkpoint_writes_parseable_outputs(small_bag, fixtures_dir, tmp_path):
    out = tmp_path / "map"
    proc = _vggt_map(str(small_bag / "bag"), "--image-topic", IMAGE_TOPIC,
                     "--camera-info-topic", CAMERA_INFO_TOPIC, "--out", str(out),
                     "--gt", str(small_bag / "groundtruth_tum.txt"), "--no-progress",
                     "--checkpoint", str(fixtures_dir / "small_model.safetensors"),
                     "--device", "cpu", "--image-size", "70", "--window-size", "4",
                     "--overlap", "1", "--voxel_size", "0.05",
                     "--gt-synth", "frames=8,width=64,height=48,seed=2")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == OUTPUT_FILES
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_read"] == 8 and summary["keyframes"] == 8
    assert summary["pipeline_config"]["window_size"] == 4
    assert summary["pipeline_config"]["voxel_size"] == 0.05
    assert "ate" in summary["metrics"]["trajectory"]
    assert summary["metrics"]["depth"]["frames"] == 8  # model grid 70x56 vs camera 64x48
    assert 0 <= summary["metrics"]["depth"]["delta_1_25"] <= 1
    assert "small_model.safetensors" in json.dumps(summary["predictor"])
    rows = [r.split() for r in (out / "trajectory_tum.txt").read_text().splitlines()
            if not r.startswith("#")]
    assert len(rows) == 8 and all(len(r) == 8 for r in rows)
    assert PlyData.read(str(out / "map.ply"))["vertex"].count == summary["map_points"]
    images = [r for r in (out / "colmap" / "images.txt").read_text().split("\n")[:-1]
              if not r.startswith("#")]
    assert len(images) == 16
    with Reader(out / "outputs.mcap") as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts["/vggt/depth"] == counts["/tf"] == 8
    assert counts["/vggt/points"] == summary["windows"]


def _assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vggt_map: error: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def _truncated_bag(small_bag: Path, tmp_path: Path) -> str:
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "metadata.yaml").write_bytes((small_bag / "bag" / "metadata.yaml").read_bytes())
    data = (small_bag / "bag" / "bag.mcap").read_bytes()
    (truncated / "bag.mcap").write_bytes(data[: len(data) // 2])
    return str(truncated)


# case -> (vggt_map arguments from (the small bag's directory, tmp_path), error fragments)
CLI_ERRORS = {
    "unknown image topic": (lambda bag, tmp: [str(bag / "bag"), "--image-topic", "/nope"],
                            ("'/nope'", "available")),
    "camera info topic of another type": (
        lambda bag, tmp: [str(bag / "bag"), "--image-topic", IMAGE_TOPIC,
                          "--camera-info-topic", "/tf"],
        ("'/tf'", "expected sensor_msgs/msg/CameraInfo")),
    "image topic of another type": (
        lambda bag, tmp: [str(bag / "bag"), "--image-topic", CAMERA_INFO_TOPIC],
        ("CameraInfo", "expected sensor_msgs/msg/Image")),
    "window too small": (
        lambda bag, tmp: [str(bag / "bag"), "--image-topic", IMAGE_TOPIC, "--window_size", "1"],
        ("window_size must be >= 2",)),
    "overlap not a number": (
        lambda bag, tmp: [str(bag / "bag"), "--image-topic", IMAGE_TOPIC, "--overlap", "abc"],
        ("invalid int value",)),
    "unknown precision": (
        lambda bag, tmp: [str(bag / "bag"), "--image-topic", IMAGE_TOPIC, "--precision", "fp64"],
        ("precision must be one of",)),
    "missing bag": (lambda bag, tmp: [str(tmp / "missing"), "--image-topic", IMAGE_TOPIC],
                    ("bag not found",)),
    # Eight small frames fit one chunk: cut in half, no frame can be recovered.
    "truncated bag": (lambda bag, tmp: [_truncated_bag(bag, tmp), "--image-topic", IMAGE_TOPIC],
                      ("has no messages that can be read", "cut short")),
    "empty image topic": (
        lambda bag, tmp: [str(_empty_image_bag(tmp / "empty")), "--image-topic", IMAGE_TOPIC],
        ("has no messages",)),
    "missing checkpoint": (
        lambda bag, tmp: [str(bag / "bag"), "--image-topic", IMAGE_TOPIC, "--checkpoint",
                          str(tmp / "no_weights.safetensors")],
        ("cannot load the model",)),
}


@pytest.mark.parametrize("case", list(CLI_ERRORS))
def test_cli_error_cases_exit_2_with_one_line(small_bag, tmp_path, case):
    make_args, fragments = CLI_ERRORS[case]
    _assert_one_line_error(_vggt_map(*make_args(small_bag, tmp_path)), *fragments)


def test_cli_has_an_option_for_every_pipeline_and_predictor_setting():
    from vggt_ros import settings
    from vggt_ros.offline.cli import build_parser

    parser = build_parser()
    by_dest = {a.dest: a for a in parser._actions}
    offline = [s for s in settings.SETTINGS if s.group in ("pipeline", "predictor")]
    assert offline
    for setting in offline:
        action = by_dest[setting.name]
        assert f"--{setting.name}" in action.option_strings
        assert action.default == setting.default and action.help.startswith(setting.description)
    for setting in settings.SETTINGS:
        if setting.group == "ros":
            assert setting.name not in by_dest
    # Values arrive with the setting's type (what settings.validate checks).
    args = parser.parse_args(["bag", "--image-topic", "/i", "--conf-threshold", "2",
                              "--window_size", "5"])
    assert args.conf_threshold == 2.0 and isinstance(args.conf_threshold, float)
    assert args.window_size == 5
