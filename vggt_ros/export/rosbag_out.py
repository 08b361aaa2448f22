"""The mapper's results as a ROS 2 bag (``outputs.mcap``), to replay in RViz or feed to other
nodes exactly as if the live node had produced them.

Topics, types, QoS and messages come from ``vggt_ros.topics`` (the same definitions the node
publishes with), resolved in the ``/vggt`` namespace: ``/tf`` (odom -> camera-body frame per
keyframe) and ``/tf_static`` (camera body -> optical, once), ``/vggt/depth``, ``/vggt/depth/camera_info``, ``/vggt/depth/confidence``,
``/vggt/points`` and ``/vggt/odometry`` / ``/vggt/path`` / ``/diagnostics`` per window, and
``/vggt/map_points`` (the fused map) once at the end. Each connection carries its offered QoS,
so ``ros2 bag play`` replays ``path`` and ``map_points`` latched (transient local).

Messages are serialised with rosbags (``vggt_ros.io.bag_messages``), never rclpy, so this runs
on machines without ROS. The bag is assembled by ``BagWriter`` in a temporary directory and
only its finished single ``.mcap`` file is renamed onto the output path; rosbags and the mcap
tools read such a file directly.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)

from vggt_ros.io.atomic import PathLike
from vggt_ros.io.bag_writer import BagWriter
from vggt_ros.pipeline.types import WindowResult
from vggt_ros.topics import messages
from vggt_ros.topics.diagnostics import pipeline_status, status_name
from vggt_ros.topics.table import BAG_NAMESPACE, NODE_NAME, OUTPUTS, Topic, resolve
from vggt_ros.topics.window_outputs import Output, WindowOutputs

_LOG = logging.getLogger(__name__)
_UNSET = QosTime(0, 0)  # rmw's "default" for deadline, lifespan and lease duration


def offered_qos(topic: Topic) -> Qos:
    """The QoS the live node offers on ``topic``, as bag metadata for ``ros2 bag play``."""
    durability = QosDurability.TRANSIENT_LOCAL if topic.latched else QosDurability.VOLATILE
    return Qos(history=QosHistory.KEEP_LAST, depth=topic.depth,
               reliability=QosReliability.RELIABLE, durability=durability, deadline=_UNSET,
               lifespan=_UNSET, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=_UNSET, avoid_ros_namespace_conventions=False)


class OutputBagWriter:
    """Streams WindowResults into a bag as they arrive (so depth maps are never all held in
    memory) and publishes the finished ``.mcap`` at ``path`` only on :meth:`close`."""

    def __init__(self, path: PathLike, odom_frame: str = "odom",
                 namespace: str = BAG_NAMESPACE) -> None:
        self.path = Path(path)
        self.namespace = namespace
        self.counts: dict[str, int] = {resolve(name, namespace): 0 for name in OUTPUTS}
        self.skipped: Counter[str] = Counter()  # topic -> messages that could not be built
        self._outputs = WindowOutputs(odom_frame, on_bad_pose=self._warn)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                          dir=self.path.parent))
        self._bag: Optional[BagWriter] = BagWriter(self._tmp / "bag", storage="mcap")
        try:
            self._bag.__enter__()
        except BaseException:
            self._bag = None
            self.abort()
            raise

    def __enter__(self) -> "OutputBagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _warn(self, reason: str) -> None:
        _LOG.warning("output bag: %s", reason)

    def _write(self, output: Output) -> None:
        """Build and write one output; one that cannot be built is skipped and counted, as the
        node skips it."""
        if self._bag is None:
            raise RuntimeError("output bag already closed")
        topic = resolve(output.topic, self.namespace)
        try:
            message = output.build()
        except ValueError as err:
            if not self.skipped[topic]:
                self._warn(f"{topic} message at {output.stamp_ns} ns skipped: {err}")
            self.skipped[topic] += 1
            return
        spec = OUTPUTS[output.topic]
        self._bag.write(topic, spec.msgtype, message, int(output.stamp_ns),
                        offered_qos=[offered_qos(spec)])
        self.counts[topic] += 1

    def write_window(self, result: WindowResult,
                     pipeline_stats: Optional[Mapping[str, Any]] = None) -> None:
        """The window's messages in the node's order; with ``pipeline_stats`` (the pipeline's
        ``stats`` after this window) also its ``/diagnostics`` status."""
        for output in self._outputs.window(result):
            self._write(output)
        if pipeline_stats is not None:
            stamp = result.stamps_ns[-1]
            level, message, values = pipeline_status(result.chaining, pipeline_stats)
            status = messages.diagnostic_status(
                level, status_name(resolve(NODE_NAME, self.namespace)), message, "", values)
            self._write(Output("/diagnostics", stamp,
                               lambda: messages.diagnostic_array([status], stamp)))

    def write_map(self, points: np.ndarray, colors: np.ndarray, stamp_ns: int) -> None:
        """The fused map, once: latched on playback like the node's last ``map_points``."""
        output = self._outputs.map(points, colors, stamp_ns)
        if output is not None:
            self._write(output)

    def restart_path(self) -> None:
        """The pipeline started a new trajectory: the path restarts, as on the node."""
        self._outputs.restart_trajectory()

    def close(self) -> Path:
        """Finish the bag and move its ``.mcap`` onto ``path`` (atomic rename)."""
        if self._bag is None:
            raise RuntimeError("output bag already closed")
        bag, self._bag = self._bag, None
        try:
            bag.__exit__(None, None, None)
            (mcap,) = (self._tmp / "bag").glob("*.mcap")
            os.replace(mcap, self.path)
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        """Drop the partial bag; the output path is left untouched."""
        bag, self._bag = self._bag, None
        if bag is not None:
            try:
                bag.__exit__(RuntimeError, RuntimeError("aborted"), None)
            except Exception:  # the bag is being thrown away; its own error is secondary
                pass
        shutil.rmtree(self._tmp, ignore_errors=True)
