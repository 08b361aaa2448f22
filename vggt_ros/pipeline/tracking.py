"""Point tracks through a window: the one code path of the ``track_points`` service and of the
pose solver.

VGGT's track head follows pixels given on the FIRST frame of its input. To track from any
keyframe of a window, the frames are reordered so that keyframe comes first, and the answer is
put back into window order. Doing this in one function keeps the service and the pose solver
from disagreeing about what a track is.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vggt_ros.pipeline.types import Frame, Predictor, TrackPrediction


def track_window(predictor: Predictor, frames: Sequence[Frame], anchor: int,
                 query_uv: np.ndarray) -> TrackPrediction:
    """Track ``query_uv`` ([N,2] original pixels of ``frames[anchor]``) through ``frames``;
    the result is in window order. Raises RuntimeError if the predictor answers in the wrong
    shape (a broken predictor must not be mistaken for lost tracks)."""
    order = [anchor] + [i for i in range(len(frames)) if i != anchor]
    pred = predictor.track([frames[i] for i in order], query_uv)
    shape = (len(frames), len(query_uv))
    if (np.shape(pred.tracks_uv) != shape + (2,) or np.shape(pred.visibility) != shape
            or np.shape(pred.confidence) != shape):
        raise RuntimeError(f"predictor.track returned shapes {np.shape(pred.tracks_uv)}, "
                           f"{np.shape(pred.visibility)}, {np.shape(pred.confidence)}; "
                           f"expected {shape + (2,)}, {shape}, {shape}")
    tracks = np.empty(shape + (2,))
    visibility = np.empty(shape)
    confidence = np.empty(shape)
    tracks[order], visibility[order], confidence[order] = (
        pred.tracks_uv, pred.visibility, pred.confidence)
    return TrackPrediction(stamps_ns=[f.stamp_ns for f in frames], tracks_uv=tracks,
                           visibility=visibility, confidence=confidence,
                           timings=dict(getattr(pred, "timings", {})))
