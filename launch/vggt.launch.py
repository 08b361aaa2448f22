"""Launch the vggt node with config/vggt.yaml.

ros2 launch vggt_ros vggt.launch.py image_topic:=/camera/color/image_raw \
    camera_info_topic:=/camera/color/camera_info checkpoint:=/path/to/model.pt
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description() -> LaunchDescription:
    params_file = os.path.join(get_package_share_directory("vggt_ros"), "config", "vggt.yaml")
    args = [
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="Camera image topic (sensor_msgs/Image)"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera_info",
                              description="Matching sensor_msgs/CameraInfo topic"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node and its relative topics"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="VGGT weights (.pt/.safetensors); empty = demo model"),
        DeclareLaunchArgument("device", default_value="auto",
                              description="auto | cpu | cuda | cuda:N"),
    ]
    node = Node(
        package="vggt_ros",
        executable="vggt_node",
        name="vggt",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        # Later entries override earlier ones: the yaml first, then the launch arguments
        # (typed as strings, so an empty checkpoint stays "" instead of YAML null).
        parameters=[params_file, {
            "checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
            "device": ParameterValue(LaunchConfiguration("device"), value_type=str)}],
        remappings=[("image", LaunchConfiguration("image_topic")),
                    ("camera_info", LaunchConfiguration("camera_info_topic"))],
    )
    return LaunchDescription([*args, node])
