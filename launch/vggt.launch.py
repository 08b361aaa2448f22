"""Launch the vggt node, or one per camera, with config/vggt.yaml (or your params file).

One camera:
  ros2 launch vggt_ros vggt.launch.py image_topic:=/camera/color/image_raw \
      camera_info_topic:=/camera/color/camera_info checkpoint:=/path/to/model.pt \
      base_frame:=base_link
Two cameras, each node in its own namespace with its own odom frame (``<cam>/odom``):
  ros2 launch vggt_ros vggt.launch.py cameras:=front,rear \
      image_topic:=image_rect camera_info_topic:=camera_info base_frame:=base_link
  -> /front/vggt reads /front/image_rect and publishes front/odom -> base_link;
     /rear/vggt reads /rear/image_rect and publishes rear/odom -> <rear optical>_body
     (only the first camera gets base_frame: base_link must have one parent).

Arguments are resolved when the launch starts (OpaqueFunction), so each camera's node gets
plain values: the params file first, then the arguments, which override it.

Each node is a managed (lifecycle) node. With ``autostart:=true`` (the default) it configures
(loads and warms up the model) and activates itself; with ``autostart:=false`` it waits,
unconfigured, for a lifecycle manager (e.g. nav2_lifecycle_manager, or
``ros2 lifecycle set /vggt configure`` then ``activate``).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

# name -> (default, description)
ARGUMENTS = {
    "params_file": ("", "Parameters file; empty = the package's config/vggt.yaml"),
    "namespace": ("", "Namespace of the node and its relative topics (one camera)"),
    "cameras": ("", "Comma-separated camera namespaces: one node per camera (overrides "
                    "namespace); relative topics resolve in each camera's namespace"),
    "image_topic": ("image", "Camera image topic (sensor_msgs/Image)"),
    "image_transport": ("", "raw | compressed: sensor_msgs/CompressedImage on "
                            "<image_topic>/compressed; empty = the params file's (raw)"),
    "camera_info_topic": ("camera_info", "Matching sensor_msgs/CameraInfo topic"),
    "checkpoint": ("", "VGGT weights (.pt/.safetensors); empty = demo model"),
    "device": ("auto", "auto | cpu | cuda | cuda:N"),
    "odom_frame": ("", "Odom frame; empty = odom (one camera) or <camera>/odom (several)"),
    "base_frame": ("", "Robot base frame (e.g. base_link): publish odom -> base_frame; with "
                       "several cameras only the first gets it"),
    "camera_frame": ("", "Camera optical frame; empty = the image header's frame_id"),
    "use_sim_time": ("false", "Use /clock (bag playback with --clock)"),
    "log_level": ("info", "debug | info | warn | error | fatal"),
    "autostart": ("true", "true: each node configures and activates itself; false: it waits, "
                          "unconfigured, for a lifecycle manager"),
}


def _nodes(context, *args, **kwargs):
    """One LifecycleNode action per camera, from the resolved launch arguments."""
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params_file = value["params_file"] or os.path.join(
        get_package_share_directory("vggt_ros"), "config", "vggt.yaml")
    cameras = [c.strip().strip("/") for c in value["cameras"].split(",") if c.strip()]
    several = bool(cameras)
    namespaces = cameras if several else [value["namespace"]]
    nodes = []
    for index, namespace in enumerate(namespaces):
        overrides = {"checkpoint": value["checkpoint"], "device": value["device"],
                     "use_sim_time": value["use_sim_time"].lower() in ("true", "1"),
                     "autostart": value["autostart"].lower() in ("true", "1")}
        odom = value["odom_frame"] or (f"{namespace}/odom" if several else "")
        if odom:
            overrides["odom_frame"] = odom
        if value["base_frame"] and index == 0:
            overrides["base_frame"] = value["base_frame"]
        if value["image_transport"]:
            overrides["image_transport"] = value["image_transport"]
        if value["camera_frame"] and not several:
            overrides["camera_frame"] = value["camera_frame"]
        nodes.append(LifecycleNode(
            package="vggt_ros", executable="vggt_node", name="vggt", namespace=namespace,
            output="screen", parameters=[params_file, overrides],
            remappings=[("image", value["image_topic"]),
                        ("camera_info", value["camera_info_topic"])],
            ros_arguments=["--log-level", value["log_level"]]))
    return nodes


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=description)
                for name, (default, description) in ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
