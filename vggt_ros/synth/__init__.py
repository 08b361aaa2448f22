"""Procedural camera sequences with exact ground truth (poses, intrinsics, depth).

Used by tests (chaining, mapping, evaluation) and by ``vggt_synth`` to write rosbags: every
quantity is known exactly, so errors measured on these sequences are the pipeline's own.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.pipeline.types import CameraIntrinsics, Frame
from vggt_ros.synth.render import render_view
from vggt_ros.synth.scene import Scene, build_scene, sample_room_size
from vggt_ros.synth.trajectory import TRAJECTORIES, make_world_from_cam

FRAME_PERIOD_NS = 100_000_000  # 10 Hz
FIRST_STAMP_NS = 1_000_000_000
HORIZONTAL_FOV_DEG = 70.0
FRAME_ID = "camera_optical_frame"


@dataclass
class SyntheticSequence:
    """A camera moving through a procedural room; frames are rendered on demand."""

    stamps_ns: np.ndarray  # [N] int64
    cam_from_world: np.ndarray  # [N,4,4] float64, OpenCV optical axes
    K: np.ndarray  # [3,3] float64, original pixels
    width: int
    height: int
    scene: Scene

    def __len__(self) -> int:
        return len(self.stamps_ns)

    def render(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb HxWx3 uint8, depth HxW float32 metres along z) of frame ``i``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"frame {i} out of range for a sequence of {len(self)} frames")
        return render_view(self.scene, self.K, self.width, self.height, self.cam_from_world[i])

    @property
    def world_from_cam(self) -> np.ndarray:
        """[N,4,4] camera optical-frame poses in the world (TF / TUM convention)."""
        return se3_inverse(self.cam_from_world)

    def frame(self, i: int, frame_id: str = FRAME_ID) -> Frame:
        """Frame ``i`` as the pipeline's input type, with its camera calibration."""
        rgb, _ = self.render(i)
        return Frame(stamp_ns=int(self.stamps_ns[i]), image=rgb, frame_id=frame_id,
                     camera_info=CameraIntrinsics(k=self.K.copy(), width=self.width,
                                                  height=self.height))


def intrinsics(width: int, height: int, hfov_deg: float = HORIZONTAL_FOV_DEG) -> np.ndarray:
    """Square-pixel pinhole K with the principal point at the image centre."""
    focal = width / (2.0 * np.tan(np.radians(hfov_deg) / 2.0))
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0],
                     [0.0, 0.0, 1.0]])


def make_sequence(num_frames: int = 100, width: int = 160, height: int = 120, seed: int = 0,
                  trajectory: str = "loop") -> SyntheticSequence:
    """A deterministic sequence: same arguments, bit-identical poses and images."""
    if trajectory not in TRAJECTORIES:
        raise ValueError(f"unknown trajectory {trajectory!r}; expected one of {TRAJECTORIES}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if width < 8 or height < 8:
        raise ValueError(f"image size must be at least 8x8, got {width}x{height}")
    rng = np.random.default_rng(seed)
    room = sample_room_size(rng, trajectory, num_frames)
    world_from_cam = make_world_from_cam(trajectory, num_frames, room, rng)
    scene = build_scene(rng, room, trajectory, world_from_cam[:, :3, 3])
    stamps = FIRST_STAMP_NS + FRAME_PERIOD_NS * np.arange(num_frames, dtype=np.int64)
    return SyntheticSequence(stamps_ns=stamps, cam_from_world=se3_inverse(world_from_cam),
                             K=intrinsics(width, height), width=width, height=height,
                             scene=scene)


__all__ = ["SyntheticSequence", "make_sequence", "intrinsics", "Scene", "TRAJECTORIES",
           "FRAME_ID"]
