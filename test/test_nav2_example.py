"""The README's robot_localization example is a configuration that works with this node: the
vggt parameters are valid, the EKF fuses the node's metric twist in base_link, and exactly one
node publishes odom -> base_link."""
from pathlib import Path

import yaml

from vggt_ros import settings
from vggt_ros.pipeline.pipeline import PipelineConfig
from vggt_ros.topics.table import OUTPUTS, resolve

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "nav2_robot_localization.yaml"
VELOCITIES = [6, 7, 11]  # vx, vy, vyaw in robot_localization's 15-entry config


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_the_vggt_parameters_are_valid_settings():
    values = settings.defaults() | _example()["vggt"]["ros__parameters"]
    assert settings.validate(values) == []
    PipelineConfig.from_settings(values).validate()
    assert values["scale_source"] in ("depth", "odometry")  # metric, else the EKF gets units


def test_the_ekf_fuses_the_nodes_twist_and_alone_owns_odom_to_base_link():
    example = _example()
    node, ekf = example["vggt"]["ros__parameters"], example["ekf_filter_node"]["ros__parameters"]
    assert ekf["odom1"] == resolve(OUTPUTS["odometry"].name, "/vggt")
    fused = [i for i, on in enumerate(ekf["odom1_config"]) if on]
    assert fused and set(fused) <= set(VELOCITIES)  # the pose is in vggt_odom: not fused
    assert ekf["base_link_frame"] == node["base_frame"]  # the twist's child frame
    assert ekf["publish_tf"] and node["tf_mode"] != "odom_tree"
    assert node["odom_frame"] not in (ekf["odom_frame"], ekf["map_frame"])


def test_the_readme_shows_this_configuration():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Using vggt_ros with Nav2 / robot_localization", 1)[1]
    assert "config/nav2_robot_localization.yaml" in section
    for line in EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert line in section, line
