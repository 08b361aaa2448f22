"""Ground-truth depth for evaluating predicted depth maps.

Predicted depth lives on the model grid (the preprocessed image the network saw); ground truth
lives on the camera grid. :func:`depth_in_model_pixels` samples the ground truth at each model
pixel through the frame's ``PreprocessMapping`` (nearest neighbour: interpolating across a depth
edge would invent depths that exist nowhere). For synthetic sequences the ground truth is not
stored but re-rendered: :func:`synthetic_depth_source` rebuilds the sequence from the same
``make_sequence`` arguments, which reproduce it bit for bit.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from vggt_ros.pipeline.types import PreprocessMapping
from vggt_ros.synth import make_sequence

DepthSource = Callable[[int], Optional[np.ndarray]]  # stamp_ns -> HxW depth (camera pixels)


def depth_in_model_pixels(depth: np.ndarray, mapping: PreprocessMapping) -> np.ndarray:
    """Camera-grid depth [H,W] -> model-grid depth [h,w] float32; NaN where the model pixel
    falls outside the camera image (padding) or outside ``mapping.valid``."""
    try:
        return mapping.sample_original(depth)
    except ValueError as exc:
        raise ValueError(f"ground-truth depth: {exc}") from None


def synthetic_depth_source(num_frames: int, width: int, height: int, seed: int,
                           trajectory: str = "loop") -> DepthSource:
    """Depth lookup by stamp for the sequence ``vggt_synth`` wrote with these arguments;
    stamps that are not frames of the sequence give None."""
    sequence = make_sequence(num_frames, width, height, seed, trajectory)
    index = {int(s): i for i, s in enumerate(sequence.stamps_ns)}

    def lookup(stamp_ns: int) -> Optional[np.ndarray]:
        i = index.get(int(stamp_ns))
        return None if i is None else sequence.render(i)[1]

    return lookup
