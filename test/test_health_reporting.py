"""A degenerate trajectory is reported as one wherever a user looks; a good one nowhere.

The ground-truth double with a camera head that never moves is mapped twice through the
``vggt_map`` command line: with ``pose_source=camera_head`` (the frozen head's poses are used:
the degenerate trajectory a poorly trained camera head gives) and with ``pose_source=refined``
(poses from the double's exact tracks and depth: a good trajectory). Each run is checked in the
printed summary, summary.json, report.png and the output bag's /diagnostics (built by the same
code as the live node's).
"""
import contextlib
import functools
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from vggt_ros.io.tum import write_tum
from vggt_ros.offline import cli
from vggt_ros.synth import make_sequence
from vggt_ros.synth.cli import CAMERA_INFO_TOPIC, IMAGE_TOPIC, write_sequence_bag
from vggt_ros.synth.gt_double import GroundTruthPredictor
from vggt_ros.topics.messages import DIAGNOSTIC_OK, DIAGNOSTIC_WARN

FRAMES, WIDTH, HEIGHT, SEED = 16, 64, 48, 1
WARNING = "WARNING: degenerate trajectory: "


class FrozenCameraHead(GroundTruthPredictor):
    """Exact depth and tracks, but a camera head whose poses never move."""

    def predict(self, frames):
        prediction = super().predict(frames)
        return replace(prediction, cam_from_world=np.tile(np.eye(4), (len(frames), 1, 1)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[str, Path]]:
    """pose_source -> (what vggt_map printed, output folder); each frame rendered once."""
    root = tmp_path_factory.mktemp("health")
    sequence = make_sequence(FRAMES, WIDTH, HEIGHT, SEED, trajectory="loop")
    sequence.render = functools.lru_cache(maxsize=None)(sequence.render)
    write_sequence_bag(sequence, root / "bag")
    write_tum(root / "gt.txt", sequence.stamps_ns, sequence.world_from_cam)
    out = {}
    for source in ("camera_head", "refined"):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = cli.main([str(root / "bag"), "--image-topic", IMAGE_TOPIC,
                             "--camera-info-topic", CAMERA_INFO_TOPIC, "--gt",
                             str(root / "gt.txt"), "--out", str(root / source),
                             "--pose-source", source, "--window-size", "8", "--overlap", "2",
                             "--no-progress"],
                            predictor_factory=lambda _: FrozenCameraHead(sequence, seed=7))
        assert code == 0
        out[source] = (printed.getvalue(), root / source)
    return out


def _summary(runs, source: str) -> dict:
    return json.loads((runs[source][1] / "summary.json").read_text())


def _last_diagnostics(runs, source: str):
    typestore = get_typestore(Stores.ROS2_KILTED)
    with Reader(runs[source][1] / "outputs.mcap") as reader:
        statuses = [typestore.deserialize_cdr(raw, conn.msgtype).status[0]
                    for conn, _, raw in reader.messages() if conn.topic == "/diagnostics"]
    return statuses[-1], {kv.key: kv.value for kv in statuses[-1].values}


def test_a_frozen_camera_head_is_a_degenerate_trajectory_in_the_printed_summary(runs):
    printed = runs["camera_head"][0].splitlines()
    warnings = [line for line in printed if WARNING in line]
    assert len(warnings) == 1 and warnings[0] == printed[-1]
    assert "the estimate turns 0 deg while the ground truth turns" in warnings[0]
    assert "try pose_source refined" in warnings[0]
    ate_row = next(line for line in printed if line.strip().startswith("ATE"))
    assert "| never moves: " in ate_row


def test_a_frozen_camera_head_is_a_degenerate_trajectory_in_summary_json(runs):
    summary = _summary(runs, "camera_head")
    health = summary["trajectory_health"]
    assert health["degenerate"] is True
    assert health["estimate"]["total_rotation_deg"] < 1.0
    assert health["ground_truth"]["total_rotation_deg"] > 20.0
    assert health["windows"]["degenerate"] == health["windows"]["count"] == summary["windows"]
    assert summary["pose_source"] == "camera_head"
    assert summary["intrinsics_source"] == "camera_info"
    trajectory = summary["metrics"]["trajectory"]
    no_motion = trajectory["baselines"]["no_motion"]
    assert trajectory["ate"]["rmse"] > 0.2 * no_motion["ate_rmse"]  # nowhere near exact
    assert trajectory["total_rotation_deg"]["estimate"] < 1.0
    windows = summary["chaining"]["windows"]
    assert all(w["pose"]["degenerate"] and w["pose"]["pose_source"] == "camera_head"
               for w in windows)


def test_a_frozen_camera_head_is_a_degenerate_trajectory_on_report_png(runs):
    report = Image.open(runs["camera_head"][1] / "report.png")
    assert report.text["Warning"].startswith(WARNING)
    assert report.text["Warning"] == WARNING + "; ".join(
        _summary(runs, "camera_head")["trajectory_health"]["warnings"])
    assert "never moves" in report.text["Description"]


def test_a_frozen_camera_head_warns_in_the_diagnostics_with_what_to_change(runs):
    status, values = _last_diagnostics(runs, "camera_head")
    assert status.level == DIAGNOSTIC_WARN
    assert "poses do not explain the tracked image motion" in status.message
    assert "check the model/checkpoint, try pose_source refined" in status.message
    assert values["pose.source"] == "camera_head" and values["pose.degenerate"] == "True"
    assert int(values["pose.degenerate_windows"]) == _summary(runs, "camera_head")["windows"]


def test_the_same_camera_head_with_refined_poses_is_reported_healthy_everywhere(runs):
    printed, out = runs["refined"]
    assert WARNING not in printed and "WARNING" not in printed
    summary = _summary(runs, "refined")
    health = summary["trajectory_health"]
    assert health["degenerate"] is False and health["warnings"] == []
    assert health["rotation_ratio"] == pytest.approx(1.0, abs=1e-3)
    trajectory = summary["metrics"]["trajectory"]
    assert trajectory["ate"]["rmse"] < 1e-3 * trajectory["baselines"]["no_motion"]["ate_rmse"]
    assert trajectory["rpe"]["rot_rmse_deg"] < 1e-3 * (
        trajectory["baselines"]["no_motion"]["rpe_rot_rmse_deg"])
    assert not any(w["pose"]["degenerate"] for w in summary["chaining"]["windows"])
    report = Image.open(out / "report.png")
    assert "Warning" not in report.text and "never moves" in report.text["Description"]
    status, values = _last_diagnostics(runs, "refined")
    assert status.level == DIAGNOSTIC_OK and status.message == "running"
    assert values["pose.source"] == "refined" and values["pose.degenerate"] == "False"
    assert float(values["pose.reprojection_px"]) < 1e-3
