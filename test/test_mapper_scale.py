"""End to end on a vggt_synth bag (registered depth and wheel odometry by default): vggt_map
with each scale source, the ground-truth double as the predictor (each window at its own
random scale, as VGGT's). The trajectory must come out in metres: the Sim(3) alignment to the
ground truth needs no scale, and the rigid SE(3) ATE is small in metres."""
import json
from pathlib import Path

import pytest

from vggt_ros.io.bag_reader import Bag, decoded_messages, list_topics
from vggt_ros.io.bag_writer import BagWriter
from vggt_ros.offline import cli
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor

from synth_runs import (MAPPING_FRAMES, MAPPING_HEIGHT, MAPPING_SEED, MAPPING_WIDTH,
                        render)

FRAMES, WIDTH, HEIGHT, SEED = MAPPING_FRAMES, MAPPING_WIDTH, MAPPING_HEIGHT, MAPPING_SEED

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth_dir(mapping_dir) -> Path:
    return mapping_dir  # vggt_synth writes depth and odometry by default


@pytest.fixture(scope="module")
def sequence():
    return make_sequence(FRAMES, WIDTH, HEIGHT, SEED)


def copy_bag_without(source: Path, target: Path, topic: str) -> None:
    """``source`` as a new bag at ``target`` without ``topic``."""
    types = {name: kind for name, kind in list_topics(source).items() if name != topic}
    target.parent.mkdir(parents=True)
    with BagWriter(target) as out:
        for raw, msg in decoded_messages(Bag(source).messages(types), source):
            out.write(raw.topic, types[raw.topic], msg, raw.log_time_ns)


def vggt_map(synth_dir, sequence, out, *options) -> dict:
    code = cli.main([str(synth_dir / "bag"), "--image-topic", "/camera/image_raw",
                     "--camera-info-topic", "/camera/camera_info", "--out", str(out),
                     "--gt", str(synth_dir / "groundtruth_tum.txt"), "--no-progress",
                     *options], predictor_factory=lambda _: GroundTruthPredictor(sequence,
                                                                                 seed=7))
    assert code == 0
    return json.loads((out / "summary.json").read_text())


def test_depth_source_gives_a_metric_trajectory_within_three_percent(synth_dir, sequence,
                                                                     tmp_path, capsys):
    summary = vggt_map(synth_dir, sequence, tmp_path / "map", "--scale-source", "depth",
                       "--depth-topic", "/camera/depth/image_raw")
    scale, trajectory = summary["scale"], summary["metrics"]["trajectory"]
    assert scale["status"] == "metric" and scale["source"] == "depth"
    assert scale["windows_scaled"] == summary["windows"] and scale["sensor_problems"] == {}
    assert trajectory["ate"]["scale"] == pytest.approx(1.0, abs=0.03)
    rigid = trajectory["ate_se3"]
    assert rigid["scale"] == pytest.approx(1.0) and rigid["rmse"] < 0.03 * rigid["path_length"]
    line = capsys.readouterr().out
    assert "scale metric (depth" in line and "SE(3) ATE" in line


def test_odometry_source_gives_a_metric_trajectory_within_five_percent(synth_dir, sequence,
                                                                       tmp_path):
    summary = vggt_map(synth_dir, sequence, tmp_path / "map", "--scale-source", "odometry",
                       "--odom-topic", "/odom")
    assert summary["scale"]["status"] == "metric"
    assert summary["scale"]["windows_scaled"] >= summary["windows"] - 1
    assert summary["metrics"]["trajectory"]["ate"]["scale"] == pytest.approx(1.0, abs=0.05)


def test_odometry_from_the_robots_tf_gives_a_metric_trajectory_within_five_percent(
        synth_dir, sequence, tmp_path):
    summary = vggt_map(synth_dir, sequence, tmp_path / "map", "--scale-source", "odometry",
                       "--odom-topic", "", "--odom-tf-parent", "odom", "--odom-tf-child",
                       "base_link")
    assert summary["scale"]["status"] == "metric"
    assert summary["scale"]["windows_scaled"] >= summary["windows"] - 1
    assert summary["metrics"]["trajectory"]["ate"]["scale"] == pytest.approx(1.0, abs=0.05)


def test_unregistered_depth_is_reprojected_and_gives_a_metric_trajectory(tmp_path_factory,
                                                                         sequence, tmp_path):
    out = render(tmp_path_factory.mktemp("synth_unregistered"), FRAMES, WIDTH, HEIGHT, SEED,
                 "--depth-unregistered", "--no-odom")
    summary = vggt_map(out, sequence, tmp_path / "map", "--scale-source", "depth")
    scale = summary["scale"]
    assert scale["status"] == "metric" and scale["sensor_problems"] == {}
    assert scale["windows_scaled"] == summary["windows"]
    assert summary["metrics"]["trajectory"]["ate"]["scale"] == pytest.approx(1.0, abs=0.03)


def test_unregistered_depth_without_its_extrinsic_is_counted_and_non_metric(
        tmp_path_factory, sequence, tmp_path, capsys, caplog):
    out = render(tmp_path_factory.mktemp("synth_unregistered"), 12, WIDTH, HEIGHT, SEED,
                 "--depth-unregistered", "--no-odom")
    stripped = out / "stripped"
    copy_bag_without(out / "bag", stripped / "bag", "/tf_static")
    (stripped / "groundtruth_tum.txt").write_text((out / "groundtruth_tum.txt").read_text())
    summary = vggt_map(stripped, sequence, tmp_path / "map", "--scale-source", "depth")
    scale = summary["scale"]
    assert scale["status"] == "non-metric" and scale["windows_scaled"] == 0
    assert scale["sensor_problems"]["depth_no_extrinsic"] == 12
    assert "no static transform between them" in caplog.text  # warned once, then counted
    assert "scale non-metric (depth, 0 windows scaled" in capsys.readouterr().out


def test_without_a_source_the_summary_says_non_metric(synth_dir, sequence, tmp_path):
    summary = vggt_map(synth_dir, sequence, tmp_path / "map")
    assert summary["scale"]["status"] == "non-metric" and summary["scale"]["source"] == "none"
    assert "ate_se3" in summary["metrics"]["trajectory"]


def test_a_missing_sensor_topic_is_a_usage_error(synth_dir, tmp_path, capsys):
    code = cli.main([str(synth_dir / "bag"), "--image-topic", "/camera/image_raw", "--out",
                     str(tmp_path / "map"), "--scale-source", "depth", "--depth-topic",
                     "/camera/aligned_depth_to_color/image_raw"])
    assert code == 2
    assert "/camera/aligned_depth_to_color/image_raw" in capsys.readouterr().err
