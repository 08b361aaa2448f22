"""The live node's topics and the mapper's output bag carry the same messages.

One node (real rclpy, the ground-truth predictor double, in the bag's ``/vggt`` namespace) runs
a short sequence; every window it publishes is also written to an output bag. Each bag topic
must be a topic the node publishes, with the same type and QoS, and every message must equal
the node's bit for bit after a round trip through the bag.
"""
from collections import defaultdict

import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader

from vggt_ros.export.rosbag_out import OutputBagWriter
from vggt_ros.nodes.vggt_node import VGGTNode
from vggt_ros.synth import make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor
from vggt_ros.topics.table import BAG_NAMESPACE, OUTPUTS, resolve

pytestmark = [pytest.mark.ros, pytest.mark.timeout(120)]

FRAMES, WINDOW, OVERLAP = 14, 6, 2


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(messages the node published by topic, its publishers by topic, the bag's path)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    seq = make_sequence(FRAMES, 32, 24, seed=1, trajectory="forward")
    overrides = dict(window_size=WINDOW, overlap=OVERLAP, conf_percentile=0.0,
                     conf_threshold=1.0, voxel_size=0.01)
    node = VGGTNode(predictor=GroundTruthPredictor(seq, seed=2), namespace=BAG_NAMESPACE,
                    context=context,
                    parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    sent = defaultdict(list)
    publishers = {}
    for publisher in node._output_publishers.values():
        publishers[publisher.topic_name] = publisher
        publisher.publish = lambda msg, topic=publisher.topic_name: sent[topic].append(msg)
    path = tmp_path_factory.mktemp("bag") / "outputs.mcap"
    bag = OutputBagWriter(path, odom_frame="odom")
    live_publish_window = node._publish_window

    def publish_and_record(result):
        live_publish_window(result)
        bag.write_window(result, node.pipeline.stats)

    node._publish_window = publish_and_record
    try:
        for i in range(FRAMES):
            node._process(seq.frame(i))  # what the worker thread does with each queued frame
        node._publish_map()
        node._publish_diagnostics()
        points, colors = node.pipeline.map_cloud()
        bag.write_map(points, colors, node._last_window.stamps_ns[-1])
        bag.close()
        yield sent, publishers, path
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def _bag(path):
    with Reader(path) as reader:
        connections = {c.topic: c for c in reader.connections}
        raw = defaultdict(list)
        for conn, _, data in reader.messages():
            raw[conn.topic].append(bytes(data))
    return connections, raw


def test_every_output_topic_is_in_the_bag_with_the_nodes_type_and_qos(published):
    sent, publishers, path = published
    connections, _ = _bag(path)
    assert set(connections) == set(publishers) == {resolve(n, BAG_NAMESPACE) for n in OUTPUTS}
    for topic, conn in connections.items():
        publisher = publishers[topic]
        assert conn.msgtype.replace("/msg/", "/") == (
            f"{publisher.msg_type.__module__.split('.')[0]}/{publisher.msg_type.__name__}")
        (offered,) = conn.ext.offered_qos_profiles
        live = publisher.qos_profile
        assert offered.depth == live.depth, topic
        assert offered.reliability.name == live.reliability.name, topic
        latched = live.durability == DurabilityPolicy.TRANSIENT_LOCAL
        assert (offered.durability.name == "TRANSIENT_LOCAL") == latched, topic
    assert publishers["/vggt/path"].qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert publishers["/vggt/map_points"].qos_profile.durability == (
        DurabilityPolicy.TRANSIENT_LOCAL)


def test_bag_messages_equal_the_published_ones(published):
    sent, publishers, path = published
    _, raw = _bag(path)
    windows = 1 + (FRAMES - WINDOW) // (WINDOW - OVERLAP)
    assert len(sent["/vggt/points"]) == windows and len(sent["/vggt/map_points"]) == 1
    for topic, messages in raw.items():
        if topic == "/diagnostics":
            continue  # live-only keys and wall-clock stamps: compared below
        decoded = [deserialize_message(data, publishers[topic].msg_type) for data in messages]
        assert decoded == sent[topic], topic


def test_bag_diagnostics_are_the_nodes_pipeline_status(published):
    sent, publishers, path = published
    _, raw = _bag(path)
    (live,) = sent["/diagnostics"]
    recorded = deserialize_message(raw["/diagnostics"][-1], publishers["/diagnostics"].msg_type)
    live_status, bag_status = live.status[0], recorded.status[0]
    assert (bag_status.name, bag_status.level, bag_status.message) == (
        live_status.name, live_status.level, live_status.message)
    live_values = {kv.key: kv.value for kv in live_status.values}
    bag_values = {kv.key: kv.value for kv in bag_status.values}
    assert "chaining.method" in bag_values and "scale" in bag_values
    assert {k: live_values[k] for k in bag_values} == bag_values
