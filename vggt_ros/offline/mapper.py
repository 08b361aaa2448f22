"""Offline mapping: a recorded bag through the SAME pipeline object the live node runs.

Reading, decoding and output writing are the only things done here; keyframe selection,
prediction, chaining and fusion all happen inside :class:`vggt_ros.pipeline.pipeline.Pipeline`,
so a map built from a bag is the map the robot would have built live from the same images
(minus the frames a live node drops when inference is slower than the camera).

Failure policy: problems with single messages (undecodable image, frame rejected by the
pipeline) are skipped, counted by reason and warned about once per reason. Damage in the bag's
files (an unfinished recording, a damaged chunk) is skipped by the reader: every intact frame
is mapped, a warning says how much was recovered and where the damage starts, and summary.json
says the run is partial. A bag that cannot be read at all (missing, not a bag, missing topic)
raises :class:`BagError` before anything is written.

Stopping: :meth:`OfflineMapper.request_stop` (the command line calls it on the first SIGINT or
SIGTERM) ends reading; the windows already predicted are written as a complete, partial output
set. Outputs are staged beside the output folder and replace it as a whole
(:class:`~vggt_ros.export.output_set.OutputSet`), so the folder holds one run, never two.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
from tqdm import tqdm

from vggt_ros.evaluation.depth import DepthSource, depth_in_model_pixels
from vggt_ros.evaluation.health import trajectory_health
from vggt_ros.evaluation.metrics import (MetricsError, associate, combine_depth_metrics,
                                         depth_metrics, evaluate_trajectory)
from vggt_ros.export.output_set import OutputSet
from vggt_ros.export.health_text import health_lines, warning_line
from vggt_ros.export.outputs import FILES, MapOutputs
from vggt_ros.io.bag_reader import Bag
from vggt_ros.io.image_stream import read_image_stream
from vggt_ros.io.images import ImageDecodeError
from vggt_ros.io.tum import read_tum
from vggt_ros.offline.sensor_feed import BagSensors, OdometrySource
from vggt_ros.pipeline.pipeline import FrameRejected, Pipeline, PipelineConfig, WindowFailed
from vggt_ros.pipeline.timings import window_stage_medians
from vggt_ros.pipeline.types import Frame, PoseHealth, Predictor, WindowResult
from vggt_ros.settings import defaults

_LOG = logging.getLogger(__name__)
GT_MAX_DIFF_NS = 20_000_000  # stamp tolerance when associating with ground truth (TUM's 20 ms)


class MappingError(RuntimeError):
    """The bag holds nothing that can be mapped (message says why)."""


class StoppedEarly(RuntimeError):
    """A stop was requested before any window was mapped: nothing was written."""


class OfflineMapper:
    """One mapping run: ``run`` reads the bag, feeds the pipeline, writes ``out_dir``.

    ``gt_tum`` adds trajectory metrics (ATE/RPE after Sim(3) alignment, each beside its
    baselines) and ``gt_depth`` (a stamp -> camera-grid depth lookup, e.g.
    ``synthetic_depth_source``) depth metrics to summary.json. The trajectory's health (totals,
    baselines, warnings) is judged from the ground truth when given and from the windows' pose
    health in any case.
    """

    def __init__(self, predictor: Predictor, pipeline_config: PipelineConfig,
                 progress: bool = True, odom_frame: str = "odom",
                 sensor_settings: Optional[dict[str, Any]] = None) -> None:
        self.predictor = predictor
        # The scale sensors' topics and stamp matching (the settings group "sensors").
        self.sensor_settings = {**defaults("sensors"), **(sensor_settings or {})}
        self.sensor_problems: Counter[str] = Counter()
        self._sensors: Optional[BagSensors] = None
        self.config = pipeline_config
        self.progress = progress
        self.odom_frame = odom_frame
        self.pipeline = Pipeline(predictor, pipeline_config)
        self.timings: dict[str, float] = defaultdict(float)
        self.window_timings: list[dict[str, float]] = []  # each window's stages, seconds
        self.skipped: Counter[str] = Counter()
        self.chaining: list[dict[str, Any]] = []
        self.pose_health: list[PoseHealth] = []
        self.frames_read = 0
        self.frames_decoded = 0
        self._depth_eval: list[dict[str, float]] = []
        self._depth_problem = ""
        self._resets_seen = 0
        self._stop_reason: Optional[str] = None
        self.stopped_by: Optional[str] = None  # the stop request that cut reading short

    def request_stop(self, reason: str) -> None:
        """End reading after the current frame; the windows already predicted are written as a
        partial output set (no new window is predicted). Safe to call from a signal handler."""
        self._stop_reason = self._stop_reason or reason

    # ------------------------------------------------------------------ reading
    def _frames(self, bag: Bag, image_topic: str,
                camera_info_topic: Optional[str]) -> Iterator[Frame]:
        """Decoded frames in bag order; bad images and corrupt messages are skipped, counted."""
        stream = read_image_stream(bag, image_topic, camera_info_topic,
                                   on_bad_message=lambda why: self._skip("corrupt_message", why))
        while True:
            start = time.perf_counter()
            record = next(stream, None)
            self.timings["read"] += time.perf_counter() - start
            if record is None:
                return
            self.frames_read += 1
            start = time.perf_counter()
            try:
                image = record.rgb()
            except ImageDecodeError as exc:
                self._skip(exc.kind, f"image at {record.stamp_ns} ns: {exc}")
                continue
            finally:
                self.timings["decode"] += time.perf_counter() - start
            yield self._with_sensors(Frame(stamp_ns=record.stamp_ns, image=image,
                                           frame_id=record.frame_id,
                                           camera_info=record.camera_info))

    def _open_sensors(self, bag: Path) -> Optional[BagSensors]:
        """The depth or odometry stream scale_source reads (None for none and fixed)."""
        source, values = self.config.scale_source, self.sensor_settings
        if source not in ("depth", "odometry"):
            return None
        odometry = (OdometrySource(values["odom_topic"], values["odom_tf_parent"],
                                   values["odom_tf_child"]) if source == "odometry" else None)
        return BagSensors(bag, values["sensor_stamp_tolerance"], values["odom_max_gap"],
                          depth_topic=values["depth_topic"] if source == "depth" else None,
                          depth_info_topic=values["depth_info_topic"], odometry=odometry)

    def _with_sensors(self, frame: Frame) -> Frame:
        """The frame with its matching depth / odometry; problems counted by kind and warned
        about once per kind (the scale filter keeps the previous scale for such frames)."""
        if self._sensors is None:
            return frame
        frame, problems = self._sensors.attach(frame)
        for kind, reason in problems:
            if self.sensor_problems[kind] == 0:
                _LOG.warning("scale sensor: %s (further '%s' are only counted)", reason, kind)
            self.sensor_problems[kind] += 1
        return frame

    def _skip(self, kind: str, message: str) -> None:
        if self.skipped[kind] == 0:  # once per reason: a bad bag must not flood the terminal
            _LOG.warning("skipping %s (further '%s' skips are only counted)", message, kind)
        self.skipped[kind] += 1

    # ------------------------------------------------------------------ running
    def _consume(self, results: list[WindowResult], outputs: MapOutputs,
                 gt_depth: Optional[DepthSource]) -> None:
        for result in results:
            for stage, seconds in result.timings.items():
                self.timings[stage] += seconds
            self.window_timings.append(dict(result.timings))
            status = result.chaining
            self.chaining.append({"window": result.index, "method": status.method,
                                  "scale": status.scale, "residual": status.residual,
                                  "inlier_ratio": status.inlier_ratio,
                                  "warning": status.warning,
                                  "pose": asdict(result.pose) if result.pose else None,
                                  "scale_verdict": result.scale.verdict if result.scale else "",
                                  "scale_uncertainty": (result.scale.uncertainty
                                                        if result.scale else float("nan")),
                                  "scale_measured": (result.scale.measured if result.scale
                                                     else float("nan"))})
            if result.pose is not None:
                self.pose_health.append(result.pose)
            if status.warning:
                _LOG.warning("window %d chained by %s: %s", result.index, status.method,
                             status.warning)
            start = time.perf_counter()
            stats = self.pipeline.stats
            if stats["resets"] != self._resets_seen:  # a new trajectory: its path restarts
                self._resets_seen = stats["resets"]
                outputs.restart_path()
            outputs.add(result, stats)
            self.timings["write"] += time.perf_counter() - start
            if gt_depth is not None:
                self._evaluate_depth(result, gt_depth)

    def _evaluate_depth(self, result: WindowResult, gt_depth: DepthSource) -> None:
        for kf in result.new_keyframes:
            gt = gt_depth(kf.stamp_ns) if not self._depth_problem else None
            if gt is None:
                continue
            try:
                self._depth_eval.append(depth_metrics(kf.depth,
                                                      depth_in_model_pixels(gt, kf.mapping)))
            except MetricsError:
                self._depth_eval.append({"frames": 0, "frames_without_valid_pixels": 1})
            except ValueError as exc:  # ground truth of another image size: not this bag's
                self._depth_problem = f"depth not evaluated: {exc}"
                _LOG.warning(self._depth_problem)

    def run(self, bag: str | Path, image_topic: str, out_dir: str | Path,
            camera_info_topic: Optional[str] = None, gt_tum: Optional[str | Path] = None,
            gt_depth: Optional[DepthSource] = None) -> dict[str, Any]:
        """Map the bag; returns the summary (also written as summary.json)."""
        source, out_dir = Bag(bag), Path(out_dir)
        gt = read_tum(gt_tum) if gt_tum is not None else None  # fail before the long run
        self._sensors = self._open_sensors(source.path)
        try:
            return self._run(source, image_topic, out_dir, camera_info_topic, gt, gt_depth)
        finally:
            if self._sensors is not None:
                self._sensors.close()

    def _run(self, source: Bag, image_topic: str, out_dir: Path,
             camera_info_topic: Optional[str], gt: Optional[tuple[np.ndarray, np.ndarray]],
             gt_depth: Optional[DepthSource]) -> dict[str, Any]:
        wall_start = time.perf_counter()
        frames = self._frames(source, image_topic, camera_info_topic)
        first = next(frames, None)  # opens the bag: topic and format errors surface here
        if first is None:
            raise MappingError(f"no decodable image on {image_topic} in {source.path} "
                               f"({self.frames_read} messages read, skipped: "
                               f"{dict(self.skipped) or 'none'}; "
                               f"{source.report.warning(image_topic)})")
        output_set = OutputSet(out_dir, FILES.values())
        try:
            with output_set.writing():
                outputs, metrics, health = self._outputs(first, frames, output_set.dir, gt,
                                                         gt_depth,
                                                         f"{source.path.name} {image_topic}")
                if not source.report.intact:
                    _LOG.warning("%s: %s", source.path, source.report.warning(image_topic))
                summary = self._summary(source, image_topic, camera_info_topic, out_dir,
                                        outputs, metrics, health,
                                        time.perf_counter() - wall_start, output_set.run_id)
                outputs.write_summary(summary)
                output_set.commit()
        except BaseException:
            output_set.abort()
            raise
        return summary

    def _outputs(self, first: Frame, frames: Iterator[Frame], out_dir: Path,
                 gt: Optional[tuple[np.ndarray, np.ndarray]],
                 gt_depth: Optional[DepthSource], title: str
                 ) -> tuple[MapOutputs, dict[str, Any], dict[str, Any]]:
        """Map the frames into ``out_dir`` (every file but the summary); the metrics and the
        trajectory's health."""
        outputs = MapOutputs(out_dir, self.odom_frame)
        try:
            self._map(first, frames, outputs, gt_depth)
            if self.stopped_by and not outputs.keyframes:
                raise StoppedEarly(f"{self.stopped_by} before any window was mapped")
            metrics, gt_pairs = self._evaluate_trajectory(outputs, gt)
            health = self._trajectory_health(outputs, metrics, gt_pairs)
            start = time.perf_counter()
            outputs.finish(self.pipeline.map.points(), self.pipeline.map.colors(), gt_pairs,
                           title=title,
                           health_text=health_lines(health, metrics.get("trajectory"),
                                                    self.config.pose_source,
                                                    self.intrinsics_source),
                           warning=warning_line(health))
            self.timings["write"] += time.perf_counter() - start
        except BaseException:
            outputs.abort()
            raise
        self._add_depth_metrics(metrics)
        return outputs, metrics, health

    def _map(self, first: Frame, frames: Iterator[Frame], outputs: MapOutputs,
             gt_depth: Optional[DepthSource]) -> None:
        """Every frame through the pipeline, then the last partial window (unless stopped)."""
        # disable=None: tqdm draws only on a terminal, so piped logs get no \r redraws
        bar = tqdm(desc="vggt_map", unit="frame", disable=None if self.progress else True,
                   leave=False)
        with bar:
            frame: Optional[Frame] = first
            while frame is not None:
                if self._stop_reason:  # frames are left: the reading is cut short
                    self.stopped_by = self._stop_reason
                    break
                self.frames_decoded += 1
                start = time.perf_counter()
                try:
                    results = self.pipeline.add_frame(frame)
                except FrameRejected as exc:
                    self._skip(exc.kind, f"frame at {frame.stamp_ns} ns: {exc.reason}")
                    results = []
                except WindowFailed as exc:
                    self._skip("failed_window", exc.reason)
                    results = exc.results  # windows that finished before it (pipelined)
                self.timings["pipeline"] += time.perf_counter() - start
                self._consume(results, outputs, gt_depth)
                bar.update(1)
                bar.set_postfix(keyframes=len(outputs.keyframes), windows=len(self.chaining))
                if not self._stop_reason:  # else stop without reading another frame
                    frame = next(frames, None)
        frames.close()
        start = time.perf_counter()
        try:  # stopped: the keyframes of an unfinished window are left out, placed ones kept
            results = self.pipeline.collect() if self.stopped_by else self.pipeline.flush()
        except WindowFailed as exc:
            self._skip("failed_window", exc.reason)
            results = exc.results
        self.timings["pipeline"] += time.perf_counter() - start
        self._consume(results, outputs, gt_depth)

    def _add_depth_metrics(self, metrics: dict[str, Any]) -> None:
        if self._depth_problem:
            metrics["depth_error"] = self._depth_problem
        elif self._depth_eval:
            try:
                metrics["depth"] = combine_depth_metrics(self._depth_eval)
            except MetricsError as exc:
                metrics["depth_error"] = str(exc)

    def _evaluate_trajectory(self, outputs: MapOutputs, gt: Optional[tuple[np.ndarray,
                             np.ndarray]]) -> tuple[dict[str, Any], Optional[tuple]]:
        if gt is None:
            return {}, None
        gt_stamps, gt_poses = gt
        try:
            trajectory = evaluate_trajectory(outputs.stamps_ns, outputs.poses, gt_stamps,
                                             gt_poses, GT_MAX_DIFF_NS)
        except (MetricsError, ValueError) as exc:
            _LOG.warning("trajectory not evaluated: %s", exc)
            return {"trajectory_error": str(exc)}, None
        ie, ig = associate(outputs.stamps_ns, gt_stamps, GT_MAX_DIFF_NS)
        return {"trajectory": trajectory}, (ie, gt_poses[ig])

    def _trajectory_health(self, outputs: MapOutputs, metrics: dict[str, Any],
                           gt_pairs: Optional[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
        """``trajectory_health`` on the ground truth associated with the keyframes when there is
        one, else on the estimate and the windows' pose health alone; with ground truth, every
        metric in ``metrics["trajectory"]`` gets its baselines beside it."""
        if gt_pairs is None:
            return trajectory_health(outputs.poses, windows=self.pose_health)
        index, gt_poses = gt_pairs
        trajectory = metrics["trajectory"]
        health = trajectory_health(outputs.poses[index], gt_poses, trajectory["ate"],
                                   self.pose_health)
        if "baselines" in health:
            trajectory["baselines"] = health["baselines"]
            trajectory["orientation_error_deg"] = health["orientation_error_deg"]
            trajectory["total_rotation_deg"] = {
                "estimate": health["estimate"]["total_rotation_deg"],
                "ground_truth": health["ground_truth"]["total_rotation_deg"]}
        return health

    @property
    def intrinsics_source(self) -> str:
        """Where the windows' intrinsics came from ("camera_info", "predicted", or both when a
        CameraInfo was missing for some windows)."""
        return ", ".join(sorted({p.intrinsics_source for p in self.pose_health})) or "none"

    def _partial_reasons(self, source: Bag, image_topic: str) -> list[str]:
        reasons = []
        if self.stopped_by:
            reasons.append(f"{self.stopped_by}: mapped the windows predicted until then")
        if not source.report.intact:
            reasons.append(f"damaged or unfinished bag: {source.report.warning(image_topic)}")
        return reasons

    def _summary(self, source: Bag, image_topic: str, camera_info_topic: Optional[str],
                 out_dir: Path, outputs: MapOutputs, metrics: dict[str, Any],
                 health: dict[str, Any], wall: float, run_id: str) -> dict[str, Any]:
        methods = Counter(c["method"] for c in self.chaining)
        partial = self._partial_reasons(source, image_topic)
        return {
            "run": {"id": run_id, "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime())},
            "partial": bool(partial),
            "partial_reasons": partial,
            "bag": str(source.path),
            "image_topic": image_topic,
            "camera_info_topic": camera_info_topic,
            "frames_read": self.frames_read,
            "frames_decoded": self.frames_decoded,
            "keyframes": len(outputs.keyframes),
            "windows": len(self.chaining),
            "map_points": int(len(self.pipeline.map.points())),
            "wall_time_s": wall,
            "frames_per_second": self.frames_read / wall if wall > 0 else None,
            "stage_timings_s": dict(self.timings),
            "window_stage_median_ms": window_stage_medians(self.window_timings),
            "skipped_messages": dict(self.skipped),
            "bag_read": source.report.as_dict(),
            "pose_source": self.config.pose_source,
            "intrinsics_source": self.intrinsics_source,
            "trajectory_health": health,
            "chaining": {"methods": dict(methods),
                         "warnings": [c for c in self.chaining if c["warning"]],
                         "windows": self.chaining},
            "pipeline_stats": self.pipeline.stats,
            "scale": {"status": self.pipeline.stats["scale_status"],
                      **self.pipeline.stats["scale"],
                      "sensor_problems": dict(self.sensor_problems)},
            "pipeline_config": asdict(self.config),
            "predictor": self.predictor.describe(),
            "metrics": metrics,
            "outputs": {key: str(out_dir / name) for key, name in FILES.items()},
        }


def check_bag(bag: str | Path, image_topic: str, camera_info_topic: Optional[str] = None) -> None:
    """Fail fast (before a model is loaded) unless the bag opens and ``image_topic`` holds at
    least one intact Image or CompressedImage message; raises BagError or MappingError naming
    the problem."""
    source = Bag(bag)
    stream = read_image_stream(source, image_topic, camera_info_topic)
    try:
        if next(stream, None) is None:
            raise MappingError(f"topic {image_topic} in {bag} has no messages that can be "
                               f"read ({source.report.warning(image_topic)})")
    finally:
        stream.close()


def run_offline_mapping(bag: str | Path, image_topic: str, out_dir: str | Path,
                        predictor: Predictor, pipeline_config: PipelineConfig,
                        camera_info_topic: Optional[str] = None,
                        gt_tum: Optional[str | Path] = None, progress: bool = True,
                        gt_depth: Optional[DepthSource] = None) -> dict[str, Any]:
    """Map ``bag`` into ``out_dir`` (trajectory_tum.txt, map.ply, colmap/, outputs.mcap,
    report.png, summary.json) and return the summary."""
    mapper = OfflineMapper(predictor, pipeline_config, progress)
    return mapper.run(bag, image_topic, out_dir, camera_info_topic, gt_tum, gt_depth)
