"""The pose-health part of /diagnostics (shared by the node and the output bag): the last
window's numbers and the counters, and a WARN that says what is wrong and what to change."""
from vggt_ros.pipeline.types import ChainingStatus, PoseHealth
from vggt_ros.topics.diagnostics import pipeline_status
from vggt_ros.topics.messages import DIAGNOSTIC_OK, DIAGNOSTIC_WARN

from pose_health_samples import window_health


STATS = {"scale_status": "non-metric", "resets": 0, "last_reset_reason": "", "map_points": 40,
         "frames_in": 16, "keyframes": 16, "dropped_non_keyframes": 0, "windows": 3,
         "failed_fusions": 0,
         "timings": {"predict": 0.5}, "pose_source": "camera_head",
         "intrinsics_source": "camera_info", "pose_degenerate_windows": 3,
         "pose_disagreement_windows": 3}
CHAINING = ChainingStatus(method="points", scale=1.0)


def _status(pose: PoseHealth, **stats):
    return pipeline_status(CHAINING, {**STATS, "last_pose": pose, **stats})


def test_diagnostics_carry_the_last_windows_pose_health_and_the_counters():
    level, message, values = _status(window_health(False, "refined"), pose_source="refined")
    assert (level, message) == (DIAGNOSTIC_OK, "running")
    assert values["pose.source"] == "refined" and values["pose.intrinsics_source"] == "camera_info"
    assert values["pose.inlier_ratio"] == 0.97 and values["pose.reprojection_px"] == 0.4
    assert values["pose.track_motion_px"] == 15.0 and values["pose.disagreement_deg"] == 0.5
    assert values["pose.fallback_frames"] == 0
    assert values["pose.degenerate_windows"] == 3 and values["pose.disagreement_windows"] == 3
    assert values["pose.fallback_frames_total"] == 0  # not counted yet: 0
    assert values["pose.extrapolated_frames"] == 0
    assert _status(window_health(False, "refined"), pose_extrapolated_frames=4)[2][
        "pose.extrapolated_frames_total"] == 4
    assert values["pose.focal_warning_windows"] == 0


def test_degenerate_camera_head_poses_warn_with_what_to_change():
    level, message, _ = _status(window_health(True))
    assert level == DIAGNOSTIC_WARN
    assert message.startswith("pose: poses do not explain the tracked image motion (80% of "
                              "15.0 px left): check the model/checkpoint, try pose_source "
                              "refined")
    assert "pose: tracks and camera head disagree by 20.0 deg: try pose_source refined" in message


def test_tracks_disagreeing_with_an_unused_camera_head_are_no_warning():
    pose = window_health(False, "refined")
    pose.disagreement_deg = 25.0
    assert _status(pose, pose_source="refined")[:2] == (DIAGNOSTIC_OK, "running")
    pose.pose_source = "camera_head"
    assert _status(pose)[0] == DIAGNOSTIC_WARN


def test_a_focal_length_far_from_the_camera_info_warns():
    pose = window_health(False, "refined")
    pose.focal_disagreement = 0.3
    level, message, _ = _status(pose, pose_source="refined")
    assert level == DIAGNOSTIC_WARN
    assert message == ("pose: predicted focal length differs from the CameraInfo by 30%: check "
                       "the CameraInfo matches this camera and resolution")


def test_before_the_first_window_there_is_no_pose_warning():
    level, message, values = pipeline_status(None, {**STATS, "last_pose": None})
    assert (level, message) == (DIAGNOSTIC_OK, "waiting for the first window")
    assert "pose.inlier_ratio" not in values and values["pose.source"] == "camera_head"
