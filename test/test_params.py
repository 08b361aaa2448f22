"""Node parameters: yaml <-> declarations agree; invalid values are refused with a reason."""
import os
import subprocess
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.node import Node
from rclpy.parameter import Parameter

from vggt_ros import settings
from vggt_ros.nodes import params

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
YAML = REPO / "config" / "vggt.yaml"


def _node(context, **overrides) -> Node:
    return Node("vggt_params_test", context=context,
                parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])


def test_yaml_lists_every_parameter_with_its_default():
    doc = yaml.safe_load(YAML.read_text())
    values = doc["/**"]["ros__parameters"]
    assert set(values) == {s.name for s in settings.SETTINGS}
    for s in settings.SETTINGS:
        assert values[s.name] == s.default and type(values[s.name]) is s.type, s.name
    # Every entry carries a comment (the yaml is the user's reference card).
    for line in YAML.read_text().splitlines():
        key = line.strip().split(":")[0]
        if key in values:
            assert "#" in line, f"no comment for {key}"


def test_declarations_match_settings_with_descriptions_and_ranges(context):
    node = _node(context)
    try:
        values = params.declare_and_read(node)
        assert values == settings.defaults()
        declared = set(node._parameters) - {"use_sim_time", "start_type_description_service"}
        assert declared == {s.name for s in settings.SETTINGS}
        for s in settings.SETTINGS:
            d = node.describe_parameter(s.name)
            assert d.description == s.description
            if s.min is not None and s.type is int:
                assert d.integer_range[0].from_value == s.min
            if s.max is not None and s.type is float:
                assert d.floating_point_range[0].to_value == s.max
        assert params.check(values) == []
    finally:
        node.destroy_node()


@pytest.mark.parametrize("overrides, needle", [
    ({"window_size": 1}, "window_size"),          # below the declared IntegerRange
    ({"metric_scale": 1}, "metric_scale"),        # int given for a double
    ({"queue_size": "big"}, "queue_size"),        # wrong type
])
def test_bad_startup_overrides_raise_parameter_error(context, overrides, needle):
    node = _node(context, **overrides)
    try:
        with pytest.raises(params.ParameterError, match=needle):
            params.declare_and_read(node)
    finally:
        node.destroy_node()


@pytest.mark.parametrize("change, needle", [
    ({"overlap": 8}, "overlap"),                   # cross-parameter rule (settings)
    ({"preprocess_mode": "stretch"}, "preprocess_mode"),  # choices
    ({"precision": "int8"}, "precision"),
    ({"image_size": 100}, "multiple of 14"),
    ({"conf_percentile": 100.0}, "conf_percentile"),  # only PipelineConfig.validate knows < 100
])
def test_check_reports_reasons(change, needle):
    values = settings.defaults() | change
    problems = params.check(values)
    assert problems and any(needle in p for p in problems), problems


def test_pipeline_config_carries_the_pipeline_group():
    values = settings.defaults() | {"window_size": 6, "overlap": 3, "voxel_size": 0.5}
    config = params.pipeline_config(values)
    assert (config.window_size, config.overlap, config.voxel_size) == (6, 3, 0.5)


class _ExplainingNode(params.ExplainedRefusals, Node):
    pass


def test_runtime_changes_validated_and_refusals_name_the_parameter(context):
    node = _ExplainingNode("vggt_params_test", context=context)
    try:
        values = params.declare_and_read(node)
        node.add_on_set_parameters_callback(params.on_set_callback(lambda: values))
        ok = node.set_parameters([Parameter("publish_tf", value=False),
                                  Parameter("map_publish_period", value=5.0)])
        assert all(r.successful for r in ok)
        startup_only = node.set_parameters([Parameter("window_size", value=12)])[0]
        assert not startup_only.successful
        assert startup_only.reason.startswith("window_size is read at startup only")
        assert "restart" in startup_only.reason
        wrong_type = node.set_parameters([Parameter("diagnostics_period", value=1)])[0]
        assert wrong_type.reason == "diagnostics_period must be a double (write 1.0, not 1) " \
                                    "(e.g. 1.0), got 1"
        out_of_range = node.set_parameters([Parameter("diagnostics_period", value=0.0)])[0]
        assert out_of_range.reason == "diagnostics_period must be >= 0.1, got 0.0"
        with pytest.raises(params.UnknownParameter, match="did you mean 'window_size'"):
            node.set_parameters([Parameter("windw_size", value=4)])
        assert node.get_parameter("window_size").value == 8
        assert node.get_parameter("diagnostics_period").value == 1.0
    finally:
        node.destroy_node()


def test_startup_only_parameters_are_read_only_in_their_descriptors(context):
    node = _node(context)
    try:
        params.declare_and_read(node)
        for s in settings.SETTINGS:
            assert node.describe_parameter(s.name).read_only == (
                s.name not in params.LIVE_PARAMETERS), s.name
    finally:
        node.destroy_node()


def _node_with_args(*ros_args):
    ctx = rclpy.Context()
    args = ["vggt_node", "--ros-args", *ros_args]
    rclpy.init(context=ctx, args=args)
    return ctx, Node("vggt", context=ctx), args


@pytest.mark.parametrize("ros_args, needle", [
    # rcl keeps the file's 8 and drops the double silently: reported.
    (["--params-file", str(YAML), "-p", "window_size:=8.5"],
     "-p window_size:=8.5: window_size must be an integer (e.g. 8) (rcl kept 8 instead)"),
    (["-p", "window_size:=8.5"], "parameter window_size must be an integer (e.g. 8), got 8.5"),
    (["--params-file", str(YAML), "-p", "metric_scale:=2"],
     "metric_scale must be a double (write 1.0, not 1)"),
    (["--params-file", str(YAML), "-p", "windw_size:=4"],
     "'windw_size' is not a parameter of this node; did you mean 'window_size'?"),
])
def test_mistyped_and_misspelled_overrides_fail_with_the_name_and_expected_type(ros_args,
                                                                                 needle):
    ctx, node, args = _node_with_args(*ros_args)
    try:
        with pytest.raises(params.ParameterError) as info:
            params.declare_and_read(node, args)
        assert needle in str(info.value)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_a_misspelled_name_in_a_params_file_fails(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    keyframe_strde: 2\n")
    ctx, node, args = _node_with_args("--params-file", str(YAML), "--params-file", str(bad))
    try:
        with pytest.raises(params.ParameterError, match="did you mean 'keyframe_stride'"):
            params.declare_and_read(node, args)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_command_line_overrides_are_read_from_the_ros_args_sections():
    argv = ["vggt_node", "-p", "ignored:=1", "--ros-args", "-p", "window_size:=4",
            "--param", "vggt:overlap:=1", "-r", "image:=/cam", "--", "--ros-args", "-p", "a:=b"]
    assert params.command_line_overrides(argv) == {"window_size": "4", "overlap": "1", "a": "b"}


def test_the_ready_line_reads_as_a_sentence():
    from vggt_ros.nodes.vggt_node import ready_line

    line = ready_line("/cam1/image", settings.defaults(),
                      {"name": "model.pt", "device": "cuda:0", "precision": "bf16",
                       "image_size": "518"}, "non-metric", "odom -> base_link")
    assert line == ("ready: /cam1/image -> odom -> base_link; model model.pt on cuda:0 (bf16, "
                    "input width 518); windows of 8 keyframes, overlap 2, a keyframe at most "
                    "every 0.1 s; scale non-metric")


@pytest.mark.parametrize("override, needle", [
    ("overlap:=8", "overlap must be smaller than window_size"),
    ("keyframe_strde:=2", "did you mean 'keyframe_stride'?"),
    ("window_size:=8.5", "window_size must be an integer"),
])
def test_node_process_exits_nonzero_with_the_reason(override, needle):
    """A user starting the node with invalid parameters gets the reason and exit status 2."""
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "vggt_node"), "--ros-args", "--params-file", str(YAML),
         "-p", override, "-p", "device:=cpu"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert result.returncode == 2, result.stdout + result.stderr
    assert needle in result.stdout + result.stderr


def test_readme_parameter_table_lists_every_setting():
    """The README's parameter table is the user's reference: it must not fall behind."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [s.name for s in settings.SETTINGS if f"| `{s.name}` |" not in readme]
    assert not missing, f"README parameter table lacks {missing}"


def test_odometry_from_tf_must_not_be_the_edge_the_node_publishes_itself():
    values = settings.defaults() | {"scale_source": "odometry", "odom_topic": "",
                                    "base_frame": "base_link"}
    problems = params.check(values)  # odom -> base_link is the node's own edge in odom_tree
    assert len(problems) == 1 and "publishes itself" in problems[0]
    assert params.check(values | {"tf_mode": "separate_odom", "odom_frame": "vggt_odom"}) == []
    assert params.check(values | {"odom_topic": "/odom"}) == []
