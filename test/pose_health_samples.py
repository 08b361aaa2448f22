"""One window's pose health as the solver reports it, good or degenerate (shared test data)."""
from vggt_ros.pipeline.types import PoseHealth


def window_health(degenerate: bool, source: str = "camera_head") -> PoseHealth:
    return PoseHealth(pose_source=source, solved_frames=8, inlier_ratio=0.97,
                      reprojection_px=12.0 if degenerate else 0.4, track_motion_px=15.0,
                      unexplained_motion=0.8 if degenerate else 0.03,
                      disagreement_deg=20.0 if degenerate else 0.5,
                      intrinsics_source="camera_info", focal_disagreement=0.01,
                      degenerate=degenerate)
