"""``vggt_node`` in its own process with the ground-truth predictor double (tests only).

    python test/gt_node.py FRAMES WIDTH HEIGHT SEED TRAJECTORY [--ros-args ...]

The test process builds the same sequence with :func:`sequence` and plays its images; the node
answers each window from the ground truth, so what is checked is the node's ROS behaviour
(frames, timing, accounting) in a real separate process, not the network.
"""
import sys
from dataclasses import replace

import numpy as np

from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.synth import SyntheticSequence, make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor
from vggt_ros.synth.trajectory import EYE_HEIGHT_M, world_from_cam_matrix

PLANAR = "planar"


def sequence(frames: int, width: int, height: int, seed: int,
             trajectory: str) -> SyntheticSequence:
    """A synthetic sequence; ``planar`` is the ``forward`` drive with a level camera at a
    constant height (no wobble): a ground robot's motion, exactly in a horizontal plane."""
    if trajectory != PLANAR:
        return make_sequence(frames, width, height, seed=seed, trajectory=trajectory)
    seq = make_sequence(frames, width, height, seed=seed, trajectory="forward")
    world_from_cam = seq.world_from_cam
    heading = world_from_cam[:, :3, 2]  # optical z in the world
    yaw = np.arctan2(heading[:, 1], heading[:, 0])
    position = world_from_cam[:, :3, 3].copy()
    position[:, 2] = EYE_HEIGHT_M
    level = world_from_cam_matrix(position, yaw, np.zeros(frames), np.zeros(frames))
    return replace(seq, cam_from_world=se3_inverse(level))


if __name__ == "__main__":
    from vggt_ros.nodes.vggt_node import main

    frames, width, height, seed = map(int, sys.argv[1:5])
    seq = sequence(frames, width, height, seed, sys.argv[5])
    sys.exit(main(sys.argv, predictor=GroundTruthPredictor(seq, seed=seed)))
