"""Synthetic frames with a depth camera, and a whole sequence mapped with the depth source:
shared by the pose-depth and depth-alignment tests."""
from dataclasses import replace

import numpy as np

from vggt_ros.evaluation.metrics import evaluate_trajectory
from vggt_ros.pipeline.pipeline import Pipeline, PipelineConfig


def sensor_frame(seq, i, rng, noise=0.01):
    """Frame ``i`` with its true depth image, times (1 + ``noise`` x a standard normal)."""
    depth = seq.render(i)[1].astype(np.float64)
    return replace(seq.frame(i), depth_m=(depth * (1.0 + noise * rng.standard_normal(
        depth.shape))).astype(np.float32))


def map_with_depth_camera(seq, predictor, pose_depth):
    """The whole sequence through ``Pipeline`` (window 8 / overlap 2, scale_source depth) from
    0.5 % noisy depth images: (trajectory metrics against the ground truth, window results)."""
    rng = np.random.default_rng(0)
    pipeline = Pipeline(predictor, PipelineConfig(
        window_size=8, overlap=2, scale_source="depth", pose_depth=pose_depth,
        keyframe_min_interval=0.0, depth_min_range=0.1, depth_max_range=20.0))
    results = []
    for i in range(len(seq)):
        results += pipeline.add_frame(sensor_frame(seq, i, rng, noise=0.005))
    results += pipeline.flush()
    keyframes = [k for r in results for k in r.new_keyframes]
    metrics = evaluate_trajectory(np.array([k.stamp_ns for k in keyframes]),
                                  np.stack([k.odom_from_cam for k in keyframes]),
                                  seq.stamps_ns, seq.world_from_cam)
    return metrics, results
