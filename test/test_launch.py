"""The launch file's description, checked without starting it.

``launch`` and ``launch_ros`` are not published as wheels with the ROS packages this project
installs from PyPI, so the dev environment cannot run ``ros2 launch``. Stand-ins for the few
classes the file uses record what it builds; the test then resolves the arguments as ``ros2
launch`` would and checks every node's namespace, parameters, remappings and ROS arguments.
"""
import importlib.util
import sys
import types
from pathlib import Path

import pytest

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "vggt.launch.py"


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LifecycleNode(_Recorded):
    """launch_ros's LifecycleNode: a Node whose lifecycle launch knows about."""


class _LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


@pytest.fixture()
def launch_file(monkeypatch):
    """The launch module, imported against stand-in launch / launch_ros / ament_index."""
    stubs = {
        "launch": {"LaunchDescription": _Recorded},
        "launch.actions": {"DeclareLaunchArgument": _Recorded, "OpaqueFunction": _Recorded},
        "launch.substitutions": {"LaunchConfiguration": _LaunchConfiguration},
        "launch_ros": {}, "launch_ros.actions": {"LifecycleNode": _LifecycleNode},
        "ament_index_python": {},
        "ament_index_python.packages": {"get_package_share_directory":
                                        lambda package: f"/opt/share/{package}"},
    }
    for name, attributes in stubs.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attributes))
    spec = importlib.util.spec_from_file_location("vggt_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launch(module, **arguments):
    """The Node actions ``ros2 launch vggt_ros vggt.launch.py name:=value ...`` would start."""
    description = module.generate_launch_description()
    *declared, opaque = description.args[0]
    defaults = {d.args[0]: d.kwargs["default_value"] for d in declared}
    unknown = set(arguments) - set(defaults)
    assert not unknown, f"undeclared launch arguments {unknown}"
    for d in declared:
        assert d.kwargs["description"], d.args[0]
    context = types.SimpleNamespace(launch_configurations=defaults | arguments)
    actions = opaque.kwargs["function"](context)
    assert all(isinstance(action, _LifecycleNode) for action in actions)
    return [action.kwargs for action in actions]


def test_one_camera_with_the_packaged_params_file_by_default(launch_file):
    (node,) = _launch(launch_file)
    assert (node["package"], node["executable"], node["name"]) == ("vggt_ros", "vggt_node",
                                                                   "vggt")
    assert node["namespace"] == ""
    params_file, overrides = node["parameters"]
    assert params_file == "/opt/share/vggt_ros/config/vggt.yaml"
    assert overrides == {"checkpoint": "", "device": "auto", "use_sim_time": False,
                         "autostart": True}
    assert node["remappings"] == [("image", "image"), ("camera_info", "camera_info")]
    assert node["ros_arguments"] == ["--log-level", "info"]


def test_arguments_reach_the_node(launch_file):
    (node,) = _launch(launch_file, params_file="/robot/vggt.yaml", namespace="cam",
                      image_topic="/camera/image_rect", camera_info_topic="/camera/info",
                      checkpoint="/w/model.pt", device="cuda", odom_frame="odom",
                      base_frame="base_link", camera_frame="cam_optical", use_sim_time="true",
                      log_level="debug", autostart="false", image_transport="compressed")
    assert node["namespace"] == "cam"
    assert node["parameters"] == ["/robot/vggt.yaml", {
        "checkpoint": "/w/model.pt", "device": "cuda", "use_sim_time": True, "autostart": False,
        "odom_frame": "odom", "base_frame": "base_link", "camera_frame": "cam_optical",
        "image_transport": "compressed"}]
    assert node["remappings"] == [("image", "/camera/image_rect"),
                                  ("camera_info", "/camera/info")]
    assert node["ros_arguments"] == ["--log-level", "debug"]


def test_several_cameras_get_a_namespace_and_odom_frame_each(launch_file):
    nodes = _launch(launch_file, cameras="front, rear", image_topic="image_rect",
                    base_frame="base_link")
    assert [n["namespace"] for n in nodes] == ["front", "rear"]
    front, rear = (n["parameters"][1] for n in nodes)
    assert front["odom_frame"] == "front/odom" and rear["odom_frame"] == "rear/odom"
    # base_link has one parent: only the first camera publishes odom -> base_link.
    assert front["base_frame"] == "base_link" and "base_frame" not in rear
    assert all(n["remappings"][0] == ("image", "image_rect") for n in nodes)  # relative
