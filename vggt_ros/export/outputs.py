"""Collects the WindowResults of a mapping run and writes every output file.

Kept apart from the run loop (``vggt_ros.offline.mapper``) so the same writer serves any source
of WindowResults and can be tested without a predictor. Large per-keyframe data (depth,
confidence) is streamed into the output bag as it arrives; only poses, calibration and a few
samples for the report are held until the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from vggt_ros.evaluation.metrics import align_sim3
from vggt_ros.export.colmap import write_colmap
from vggt_ros.export.ply import write_ply
from vggt_ros.export.report import MapView, write_report
from vggt_ros.export.rosbag_out import OutputBagWriter
from vggt_ros.io.strict_json import write_json
from vggt_ros.io.tum import write_tum
from vggt_ros.pipeline.types import KeyframeResult, WindowResult

FILES = {
    "trajectory": "trajectory_tum.txt",
    "map": "map.ply",
    "colmap": "colmap",
    "bag": "outputs.mcap",
    "report": "report.png",
    "summary": "summary.json",
}
REPORT_SAMPLES = 4
CONF_SAMPLES_PER_KEYFRAME = 512
CONF_SAMPLES_MAX = 200_000


@dataclass
class KeyframeRecord:
    """What the end-of-run writers need of one keyframe (no images or depth)."""

    stamp_ns: int
    frame_id: str
    odom_from_cam: np.ndarray
    intrinsics_original: np.ndarray
    original_size: tuple[int, int]  # (width, height)


@dataclass
class _Samples:
    """Evenly spread keyframes for the report: keep every ``stride``-th; when the list
    overflows, drop every other one and double the stride (memory stays bounded)."""

    stride: int = 1
    seen: int = 0
    items: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)

    def offer(self, kf: KeyframeResult) -> None:
        if self.seen % self.stride == 0:
            self.items.append((kf.stamp_ns, kf.image.copy(), kf.depth.copy()))
            if len(self.items) > 2 * REPORT_SAMPLES:
                self.items = self.items[::2]
                self.stride *= 2
        self.seen += 1

    def pick(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        if len(self.items) <= REPORT_SAMPLES:
            return self.items
        idx = np.linspace(0, len(self.items) - 1, REPORT_SAMPLES).round().astype(int)
        return [self.items[i] for i in idx]


class MapOutputs:
    """``add`` each WindowResult as it comes, then ``finish`` once with the fused map."""

    def __init__(self, out_dir: Path, odom_frame: str = "odom", seed: int = 0) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.keyframes: list[KeyframeRecord] = []
        self._samples = _Samples()
        self._conf: list[np.ndarray] = []
        self._conf_count = 0
        self._rng = np.random.default_rng(seed)
        self._bag = OutputBagWriter(self.out_dir / FILES["bag"], odom_frame)
        self._last_stamp: Optional[int] = None

    def add(self, result: WindowResult,
            pipeline_stats: Optional[Mapping[str, Any]] = None) -> None:
        """One window; ``pipeline_stats`` (the pipeline's stats after it) adds its
        ``/diagnostics`` to the output bag."""
        self._bag.write_window(result, pipeline_stats)
        self._last_stamp = result.stamps_ns[-1]
        for kf in result.new_keyframes:
            self.keyframes.append(KeyframeRecord(
                kf.stamp_ns, kf.frame_id, np.array(kf.odom_from_cam, dtype=np.float64),
                np.array(kf.intrinsics_original, dtype=np.float64),
                tuple(int(v) for v in kf.mapping.original_size)))
            self._samples.offer(kf)
            self._sample_confidence(kf.confidence)

    def restart_path(self) -> None:
        """The pipeline started a new trajectory: the bag's path restarts, as the node's."""
        self._bag.restart_path()

    def _sample_confidence(self, conf: np.ndarray) -> None:
        if self._conf_count >= CONF_SAMPLES_MAX:
            return
        flat = np.asarray(conf, dtype=np.float32).ravel()
        flat = flat[np.isfinite(flat)]
        if flat.size > CONF_SAMPLES_PER_KEYFRAME:
            flat = self._rng.choice(flat, CONF_SAMPLES_PER_KEYFRAME, replace=False)
        self._conf.append(flat)
        self._conf_count += flat.size

    @property
    def stamps_ns(self) -> np.ndarray:
        return np.array([k.stamp_ns for k in self.keyframes], dtype=np.int64)

    @property
    def poses(self) -> np.ndarray:
        """[N,4,4] odom_from_cam of every keyframe in the order placed."""
        return (np.stack([k.odom_from_cam for k in self.keyframes]) if self.keyframes
                else np.zeros((0, 4, 4)))

    def finish(self, points: np.ndarray, colors: np.ndarray,
               gt_pairs: Optional[tuple[np.ndarray, np.ndarray]] = None,
               title: str = "", health_text: Sequence[str] = (),
               warning: str = "") -> dict[str, Path]:
        """Write trajectory, map, COLMAP model, bag and report. ``gt_pairs`` = (keyframe
        indices, their associated ground-truth poses [K,4,4]) overlays the ground truth on the
        report's trajectory and map, the estimate and the map Sim(3)-aligned to it.
        ``health_text`` and ``warning`` (empty for a believable trajectory) are drawn on the
        report as they are printed."""
        written: dict[str, Path] = {}
        if self._last_stamp is not None:
            self._bag.write_map(points, colors, self._last_stamp)
        written["bag"] = self._bag.close()
        path = self.out_dir / FILES["trajectory"]
        write_tum(path, self.stamps_ns, self.poses)
        written["trajectory"] = path
        written["map"] = write_ply(self.out_dir / FILES["map"], points, colors)
        written["colmap"] = write_colmap(
            self.out_dir / FILES["colmap"], self.stamps_ns.tolist(), self.poses,
            np.stack([k.intrinsics_original for k in self.keyframes]) if self.keyframes
            else np.zeros((0, 3, 3)),
            np.array([k.original_size for k in self.keyframes], dtype=np.int64).reshape(-1, 2),
            points, colors)
        positions, gt_positions = self.poses[:, :3, 3], None
        map_view = MapView(points, colors, positions,
                           up=-self.poses[:, :3, 1].sum(axis=0))  # optical y points down
        if gt_pairs is not None:
            index, gt_poses = gt_pairs
            gt_positions = np.asarray(gt_poses)[:, :3, 3]
            try:
                gt_from_est = align_sim3(self.poses[index][:, :3, 3], gt_positions)
            except ValueError:  # too few / degenerate poses: plot the estimate alone
                gt_positions = None
            else:
                positions = _transform(gt_from_est, positions)
                map_view.ground_truth = _transform(np.linalg.inv(gt_from_est), gt_positions)
        confidences = np.concatenate(self._conf) if self._conf else np.zeros(0)
        written["report"] = write_report(
            self.out_dir / FILES["report"], positions, self._samples.pick(), confidences,
            gt_positions, title, map_view, health_text, warning)
        return written

    def abort(self) -> None:
        """Drop the partial output bag (nothing else is written before ``finish``)."""
        self._bag.abort()

    def write_summary(self, summary: dict[str, Any]) -> Path:
        return write_json(self.out_dir / FILES["summary"], summary)


def _transform(sim3: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[N,3] points through a 4x4 similarity (or rigid) transform."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return points @ sim3[:3, :3].T + sim3[:3, 3]
