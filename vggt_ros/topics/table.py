"""Every topic the node publishes (and the output bag records): name, type and QoS.

Relative names resolve in the node's namespace (the output bag uses ``/vggt``). ``latched``
topics are reliable + transient local with depth 1, so a late subscriber, or ``ros2 bag play``
reading the offered QoS from the bag's metadata, still gets the last ``path`` and map.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NODE_NAME", "Topic", "OUTPUTS", "BAG_NAMESPACE", "resolve"]

NODE_NAME = "vggt"  # the live node's default name; also names the output bag's diagnostics


@dataclass(frozen=True)
class Topic:
    name: str
    msgtype: str  # rosbags / ROS 2 interface name, e.g. "sensor_msgs/msg/Image"
    depth: int  # KEEP_LAST history depth; every output is reliable
    latched: bool = False  # transient local: the last message waits for late subscribers


OUTPUTS: dict[str, Topic] = {t.name: t for t in (
    Topic("/tf", "tf2_msgs/msg/TFMessage", depth=100),
    Topic("/tf_static", "tf2_msgs/msg/TFMessage", depth=1, latched=True),
    Topic("depth", "sensor_msgs/msg/Image", depth=5),
    Topic("depth/camera_info", "sensor_msgs/msg/CameraInfo", depth=5),
    Topic("depth/confidence", "sensor_msgs/msg/Image", depth=5),
    Topic("points", "sensor_msgs/msg/PointCloud2", depth=5),
    Topic("odometry", "nav_msgs/msg/Odometry", depth=5),
    Topic("path", "nav_msgs/msg/Path", depth=1, latched=True),
    Topic("map_points", "sensor_msgs/msg/PointCloud2", depth=1, latched=True),
    Topic("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", depth=10),
)}

BAG_NAMESPACE = "/vggt"


def resolve(name: str, namespace: str) -> str:
    """The full topic name of ``name`` in ``namespace`` (absolute names stay as they are)."""
    if name.startswith("/"):
        return name
    return f"{namespace.rstrip('/')}/{name}"
