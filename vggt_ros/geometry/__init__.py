"""Pure geometry (no rclpy).

``camera`` holds the NumPy helpers the pipeline and nodes use; ``pose_encoding`` holds the torch
conversions of VGGT's camera encoding and is imported by its module path so that NumPy-only
users do not pay for importing torch.
"""
from vggt_ros.geometry.camera import (
    pose_to_translation_quaternion,
    project_points,
    se3_inverse,
    to_homogeneous,
    translation_quaternion_to_pose,
    unproject_depth,
    unproject_to_camera,
)

__all__ = [
    "pose_to_translation_quaternion",
    "project_points",
    "se3_inverse",
    "to_homogeneous",
    "translation_quaternion_to_pose",
    "unproject_depth",
    "unproject_to_camera",
]
