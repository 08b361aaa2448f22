"""The vggt node in one process: real rclpy and DDS, the ground-truth predictor double.

A tester node plays a short synthetic sequence into the node and records every output. Poses,
depth, clouds and tracks are compared with the sequence's ground truth up to the one Sim(3)
that a non-metric visual odometry leaves free; then bad input is fed and the node must keep
running, count each kind, and recover.
"""
import threading
from collections import defaultdict

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from tf2_msgs.msg import TFMessage

from vggt_ros.geometry.camera import project_points
from vggt_ros.geometry.sim3 import umeyama_sim3
from vggt_ros.nodes import conversions as conv
from vggt_ros.nodes.vggt_node import VGGTNode
from vggt_ros.srv import TrackPoints
from vggt_ros.synth import FRAME_ID, make_sequence
from vggt_ros.synth.gt_double import GroundTruthPredictor

from live_harness import poll_until

pytestmark = [pytest.mark.ros, pytest.mark.timeout(120)]

W, H, N_FRAMES, WINDOW, OVERLAP = 64, 48, 24, 6, 2
NS = "inproc"
BASE = "base_link"
# Camera mount: base_link -> optical frame (REP-103: optical z forward = base x forward).
BASE_FROM_CAM = np.eye(4)
BASE_FROM_CAM[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)
BASE_FROM_CAM[:3, 3] = [0.2, 0.0, 0.5]
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
MAX_TRACK = 16


class Harness:
    """Tester node: publishes camera input, records outputs, calls the service."""

    def __init__(self, context, node: VGGTNode, seq) -> None:
        self.node, self.seq = node, seq
        self.tester = Node("vggt_tester", namespace=NS, context=context)
        self.got = defaultdict(list)
        record = lambda key: (lambda msg: self.got[key].append(msg))  # noqa: E731
        t = self.tester
        for msg_type, topic, qos in [
            (TFMessage, "/tf", 100), (Image, "depth", 50), (CameraInfo, "depth/camera_info", 50),
            (Image, "depth/confidence", 50), (PointCloud2, "points", 50),
            (Odometry, "odometry", 50), (Path, "path", LATCHED),
            (PointCloud2, "map_points", LATCHED),
            (DiagnosticArray, "/diagnostics", 50),
        ]:
            t.create_subscription(msg_type, topic, record(topic), qos)
        self.pub_image = t.create_publisher(Image, "image", 50)
        self.pub_info = t.create_publisher(CameraInfo, "camera_info", 50)
        self.pub_static = t.create_publisher(TFMessage, "/tf_static", LATCHED)
        self.client = t.create_client(TrackPoints, "track_points")
        self.executor = MultiThreadedExecutor(num_threads=4, context=context)
        self.executor.add_node(node)
        self.executor.add_node(self.tester)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(timeout=5.0)
        self.tester.destroy_node()
        self.node.destroy_node()

    @staticmethod
    def wait(condition, timeout=10.0, what="condition"):
        poll_until(condition, timeout, what)

    def set_camera_info(self, msg: CameraInfo, expect_applied: bool = True) -> None:
        """Publish a CameraInfo and wait until the node holds it (topics are not ordered)."""
        before = self.node.rejected["bad_camera_info"]
        self.pub_info.publish(msg)
        if expect_applied:
            self.wait(lambda: self.node._camera_info is not None
                      and self.node._camera_info.width == msg.width
                      and np.array_equal(self.node._camera_info.k, np.reshape(msg.k, (3, 3))),
                      what="CameraInfo applied")
        else:
            self.wait(lambda: self.node.rejected["bad_camera_info"] > before,
                      what="CameraInfo rejected")

    def send_image(self, msg: Image) -> None:
        """Publish one image and wait until the worker has taken it (no drops, fixed order)."""
        before = self.node._frames_in
        self.pub_image.publish(msg)
        self.wait(lambda: self.node._frames_in > before, what="image received")
        self.wait(lambda: len(self.node._queue) == 0, what="queue drained")

    def send_frame(self, i: int, frame_id: str = FRAME_ID) -> None:
        rgb, _ = self.seq.render(i)
        self.send_image(conv.rgb_to_image(rgb, int(self.seq.stamps_ns[i]), frame_id))

    def call(self, stamp_ns: int, u, v) -> TrackPoints.Response:
        assert self.client.wait_for_service(timeout_sec=5.0)
        future = self.client.call_async(TrackPoints.Request(
            stamp=conv.stamp_to_time(stamp_ns), u=list(map(float, u)), v=list(map(float, v))))
        self.wait(future.done, what="track_points answer")
        return future.result()

    def wait_idle(self, windows: int) -> None:
        self.wait(lambda: self.node._windows >= windows and len(self.node._queue) == 0,
                  timeout=30.0, what=f"{windows} windows")


@pytest.fixture(scope="module")
def run():
    """Start the node, play the sequence, return the harness with everything recorded."""
    context = rclpy.Context()
    rclpy.init(context=context)
    seq = make_sequence(N_FRAMES, W, H, seed=1, trajectory="forward")
    overrides = dict(window_size=WINDOW, overlap=OVERLAP, conf_percentile=0.0,
                     conf_threshold=1.0, voxel_size=0.01, base_frame=BASE,
                     diagnostics_period=0.2, map_publish_period=0.2, queue_size=64,
                     max_track_points=MAX_TRACK, idle_flush_timeout=0.0)
    node = VGGTNode(predictor=GroundTruthPredictor(seq, seed=2), namespace=NS, context=context,
                    parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    h = Harness(context, node, seq)
    try:
        # Best-effort camera topics lose what is sent before both sides have matched.
        h.wait(lambda: node.image_sub.get_publisher_count() > 0
               and node.camera_info_sub.get_publisher_count() > 0
               and h.pub_image.get_subscription_count() > 0, what="camera topics matched")
        h.early_track = h.call(0, [10.0], [10.0])  # before any window
        h.pub_static.publish(TFMessage(transforms=[
            conv.transform_stamped(BASE_FROM_CAM, 0, BASE, FRAME_ID)]))
        h.wait(lambda: node._static_tf.lookup(BASE, FRAME_ID) is not None, what="/tf_static")
        h.set_camera_info(conv.camera_info_from_k(seq.K, W, H, 0, FRAME_ID))
        for i in range(N_FRAMES):
            h.send_frame(i)
        expected_windows = 1 + (N_FRAMES - WINDOW) // (WINDOW - OVERLAP)
        h.wait_idle(expected_windows)
        h.expected_keyframes = WINDOW + (expected_windows - 1) * (WINDOW - OVERLAP)
        h.wait(lambda: len(h.got["/tf"]) >= h.expected_keyframes
               and len(h.got["points"]) >= expected_windows, what="all outputs")
        h.windows = expected_windows
        yield h
    finally:
        h.close()
        rclpy.shutdown(context=context)


def _tf_poses(h) -> dict[int, np.ndarray]:
    """stamp -> odom_from_cam from the recorded odom -> base_link TF and the mount."""
    out = {}
    for msg in h.got["/tf"]:
        for t in msg.transforms:
            assert (t.header.frame_id, t.child_frame_id) == ("odom", BASE)
            odom_from_base = conv.transform_to_pose(t.transform)
            out[conv.time_to_ns(t.header.stamp)] = odom_from_base @ BASE_FROM_CAM
    return out


def _alignment(h):
    """Sim(3) world -> odom fitted on camera centres, and the poses it was fitted on."""
    poses = _tf_poses(h)
    index = {int(s): i for i, s in enumerate(h.seq.stamps_ns)}
    ids = [index[s] for s in sorted(poses)]
    gt = h.seq.world_from_cam[ids]
    est = np.stack([poses[s] for s in sorted(poses)])
    scale, rot, trans = umeyama_sim3(gt[:, :3, 3], est[:, :3, 3])
    return scale, rot, trans, ids, gt, est


def test_track_before_any_window_fails_cleanly(run):
    assert not run.early_track.success
    assert "no window" in run.early_track.message


def test_tf_poses_match_ground_truth_up_to_sim3(run):
    scale, rot, trans, ids, gt, est = _alignment(run)
    assert len(ids) == run.expected_keyframes
    assert ids == list(range(run.expected_keyframes))  # every keyframe once, in order
    aligned = scale * gt[:, :3, 3] @ rot.T + trans
    extent = np.ptp(est[:, :3, 3], axis=0).max()
    assert extent > 0
    assert np.abs(aligned - est[:, :3, 3]).max() < 1e-3 * extent
    rel = Rotation.from_matrix(est[:, :3, :3]).inv() * Rotation.from_matrix(rot @ gt[:, :3, :3])
    assert np.degrees(rel.magnitude()).max() < 0.1


def test_depth_and_its_camera_info(run):
    scale, *_ = _alignment(run)
    depths, infos = run.got["depth"], run.got["depth/camera_info"]
    assert len(depths) == len(infos) == run.expected_keyframes
    assert len(run.got["depth/confidence"]) == run.expected_keyframes
    index = {int(s): i for i, s in enumerate(run.seq.stamps_ns)}
    for d, info in zip(depths, infos):
        assert d.encoding == "32FC1" and d.header.frame_id == FRAME_ID
        assert info.header == d.header  # same stamp and optical frame: depth_image_proc pairs them
        assert (info.width, info.height) == (d.width, d.height)
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), run.seq.K)  # identity mapping
        depth = conv.image_to_float(d)
        gt = run.seq.render(index[conv.time_to_ns(d.header.stamp)])[1]
        valid = np.isfinite(depth)
        assert valid.mean() > 0.9
        np.testing.assert_allclose(depth[valid], scale * gt[valid], rtol=2e-3)


def test_points_lie_on_the_true_surfaces_with_their_colours(run):
    scale, rot, trans, *_ = _alignment(run)
    assert len(run.got["points"]) == run.windows
    msg = run.got["points"][-1]
    assert msg.header.frame_id == "odom"
    xyz, rgb = conv.pointcloud2_to_numpy(msg)
    assert len(xyz) > 1000 and np.isfinite(xyz).all()
    world = ((xyz.astype(np.float64) - trans) @ rot) / scale  # inverse Sim(3)
    last = run.expected_keyframes - 1
    matched = np.zeros(len(xyz), bool)
    colour_ok = np.zeros(len(xyz), bool)
    for i in range(last - WINDOW + 1, last + 1):  # the last window's keyframes
        image, depth = run.seq.render(i)
        uv, z = project_points(world, run.seq.cam_from_world[i], run.seq.K)
        pix = np.rint(np.nan_to_num(uv, nan=-1)).astype(int)
        inside = (pix[:, 0] >= 0) & (pix[:, 0] < W) & (pix[:, 1] >= 0) & (pix[:, 1] < H)
        hit = np.zeros(len(xyz), bool)
        hit[inside] = np.abs(depth[pix[inside, 1], pix[inside, 0]] - z[inside]) < 1e-3 * z[inside]
        hit &= np.abs(uv - pix).max(axis=1) < 1e-2  # lands on a pixel centre: its source pixel
        colour_ok[hit] |= (image[pix[hit, 1], pix[hit, 0]] == rgb[hit]).all(axis=1)
        matched |= hit
    assert matched.mean() > 0.99
    assert colour_ok.mean() > 0.99


def test_odometry_path_and_map(run):
    poses = _tf_poses(run)
    odom = run.got["odometry"]
    assert len(odom) == run.windows
    last = odom[-1]
    assert (last.header.frame_id, last.child_frame_id) == ("odom", BASE)
    stamp = conv.time_to_ns(last.header.stamp)
    assert stamp == max(poses)
    np.testing.assert_allclose(conv.transform_to_pose(last.pose.pose) @ BASE_FROM_CAM,
                               poses[stamp], atol=1e-9)
    path = run.got["path"][-1]
    assert len(path.poses) == run.expected_keyframes
    assert [conv.time_to_ns(p.header.stamp) for p in path.poses] == sorted(poses)
    run.wait(lambda: len(run.got["map_points"]) > 0, what="map_points")
    xyz, rgb = conv.pointcloud2_to_numpy(run.got["map_points"][-1])
    assert len(xyz) > 1000 and rgb is not None


def _diag(run) -> dict[str, str]:
    msg = run.got["/diagnostics"][-1]
    return {kv.key: kv.value for kv in msg.status[0].values}


def msg_level(run) -> int:
    return int.from_bytes(run.got["/diagnostics"][-1].status[0].level, "little")


def test_diagnostics_report_health(run):
    run.wait(lambda: len(run.got["/diagnostics"]) > 0, what="/diagnostics")
    count = len(run.got["/diagnostics"])
    run.wait(lambda: len(run.got["/diagnostics"]) > count, what="a fresh /diagnostics")
    values = _diag(run)
    assert values["device"] == "cpu"
    assert values["scale"] == "non-metric"
    assert int(values["windows"]) == run.windows
    assert int(values["keyframes_published"]) == run.expected_keyframes
    assert int(values["frames.queue_drops"]) == 0
    assert int(values["frames.received"]) == N_FRAMES
    assert int(values["frames.keyframes"]) == N_FRAMES  # 10 Hz: every frame passes 0.1 s
    assert values["chaining.method"] in ("points", "centres", "previous_scale")
    assert float(values["window_latency_s"]) > 0
    # The double's exact tracks and depth: the refined poses explain every tracked pixel.
    assert values["pose.source"] == "refined" and values["pose.intrinsics_source"] == "camera_info"
    assert values["pose.degenerate"] == "False" and float(values["pose.reprojection_px"]) < 1e-3
    assert int(values["pose.degenerate_windows"]) == 0
    for key in ("input_rate_hz", "camera_rate_hz", "keyframe_rate_hz", "frames.waiting",
                "frames.in_pauses", "frames.pauses", "frames.longest_pause_s", "resets"):
        assert key in values
    assert msg_level(run) == 0  # keeping up: OK
    # The test plays stamps from 1970 (synthetic), so stamp-to-TF is huge but must be there.
    p50, p90 = float(values["latency.stamp_to_tf_p50_s"]), float(
        values["latency.stamp_to_tf_p90_s"])
    assert 0 < p50 <= p90 <= float(values["latency.stamp_to_tf_max_s"])


def test_track_points_follow_the_geometry(run):
    scale, rot, trans, *_ = _alignment(run)
    last = run.expected_keyframes - 1
    u = np.array([10.0, 32.0, 50.0, 20.0])
    v = np.array([8.0, 24.0, 30.0, 40.0])
    resp = run.call(0, u, v)
    assert resp.success, resp.message
    stamps = [conv.time_to_ns(t) for t in resp.frame_stamps]
    assert stamps == [int(s) for s in run.seq.stamps_ns[last - WINDOW + 1:last + 1]]
    assert resp.query_index == WINDOW - 1 and resp.frame_id == "odom"
    # Ground truth: the query pixels' surface points, projected into every window frame.
    depth = run.seq.render(last)[1][v.astype(int), u.astype(int)]
    cam = np.column_stack([u, v, np.ones(4)]) @ np.linalg.inv(run.seq.K).T * depth[:, None]
    world_from_cam = run.seq.world_from_cam[last]
    world = cam @ world_from_cam[:3, :3].T + world_from_cam[:3, 3]
    assert len(resp.tracks) == 4
    for s, i in enumerate(range(last - WINDOW + 1, last + 1)):
        uv, _ = project_points(world, run.seq.cam_from_world[i], run.seq.K)
        got = np.array([[t.u[s], t.v[s]] for t in resp.tracks])
        np.testing.assert_allclose(got, uv, atol=1e-3)
    np.testing.assert_allclose([[t.u[-1], t.v[-1]] for t in resp.tracks], np.column_stack([u, v]),
                               atol=1e-4)
    expected = scale * world @ rot.T + trans
    for t, e in zip(resp.tracks, expected):
        assert t.point_valid
        np.testing.assert_allclose([t.point.x, t.point.y, t.point.z], e, atol=1e-3 * scale)
    # A named stamp (the window's first keyframe) works too.
    first = run.call(stamps[0], [5.0], [5.0])
    assert first.success and first.query_index == 0


@pytest.mark.parametrize("stamp, u, v, needle", [
    (0, [1.0, 2.0], [1.0], "same length"),
    (123, [1.0], [1.0], "not a keyframe"),
    (0, [W + 5.0], [1.0], "outside"),
    (0, [float("nan")], [1.0], "NaN"),
    (0, [1.0] * (MAX_TRACK + 1), [1.0] * (MAX_TRACK + 1), "at most"),
    (0, [], [], "non-empty"),
])
def test_bad_track_requests_answer_with_a_reason(run, stamp, u, v, needle):
    resp = run.call(stamp, u, v)
    assert not resp.success
    assert needle in resp.message, resp.message


def test_bad_input_is_counted_and_the_node_recovers(run):
    """Runs last (module order): feeds every kind of bad input, then a new trajectory."""
    h, seq = run, run.seq
    rgb, _ = seq.render(0)
    stamp = int(seq.stamps_ns[-1]) + 10**9  # later than everything, never predicted
    good = conv.rgb_to_image(rgb, stamp, FRAME_ID)

    def variant(**fields):
        msg = conv.rgb_to_image(rgb, stamp, FRAME_ID)
        for k, val in fields.items():
            setattr(msg, k, val)
        return msg

    h.send_image(variant(step=W * 3 - 1))                                  # wrong step
    h.send_image(variant(data=good.data.tobytes()[:-1]))                   # short data
    h.send_image(variant(encoding="yuv422"))                               # unsupported
    h.send_image(variant(width=0, height=0, step=0, data=b""))              # zero size
    small = np.ascontiguousarray(rgb[::2, ::2])
    h.set_camera_info(conv.camera_info_from_k(seq.K / 2, W // 2, H // 2, 0, FRAME_ID))
    h.send_image(conv.rgb_to_image(small, stamp, FRAME_ID))                # size change
    h.set_camera_info(conv.camera_info_from_k(seq.K, W, H, 0, FRAME_ID))
    h.send_image(conv.rgb_to_image(rgb, int(seq.stamps_ns[N_FRAMES - 1]), FRAME_ID))  # duplicate
    bad_info = conv.camera_info_from_k(seq.K, W, H, 0, FRAME_ID)
    bad_info.k[0] = float("nan")
    h.set_camera_info(bad_info, expect_applied=False)                      # NaN CameraInfo
    h.send_image(conv.rgb_to_image(rgb, stamp, "other_camera_optical_frame"))  # other frame_id
    kinds = ("bad_step", "short_data", "unsupported_encoding", "zero_size", "size_change",
             "duplicate_stamp", "bad_camera_info", "frame_id")
    # The pipeline's own checks (size, stamp, frame id) run on the worker thread: wait for them.
    h.wait(lambda: all(kind in h.node.rejected for kind in kinds), what="every rejection counted")
    counts = dict(h.node.rejected)
    for kind in kinds:
        assert counts.get(kind) == 1, (kind, counts)
    assert h.node._worker.is_alive()

    # Stamps restarting (a bag loop): the first two older frames are dropped as glitches, the
    # third confirms the restart: a new trajectory that works like the first one.
    tf_before, windows_before = len(h.got["/tf"]), h.node._windows
    for i in range(WINDOW + 2):
        h.send_frame(i)
    h.wait_idle(windows_before + 1)
    h.wait(lambda: len(h.got["/tf"]) >= tf_before + WINDOW, what="TF of the new trajectory")
    assert h.node.pipeline.stats["resets"] == 1
    h.wait(lambda: len(h.got["path"][-1].poses) == WINDOW, what="path restarted")

    h.wait(lambda: int(_diag(h).get("resets", 0)) == 1
           and int(_diag(h).get("rejected.bad_step", 0)) == 1, what="diagnostics counts")
    values = _diag(h)
    for kind in counts:
        assert values[f"rejected.{kind}"] == str(counts[kind])
    assert "stamps restarted" in values["last_reset_reason"]
    assert values["rejected.out_of_order"] == "2"


def test_live_parameters(run):
    """Publishing switches and periods change live; startup-only parameters are refused."""
    node = run.node
    ok = node.set_parameters([Parameter("diagnostics_period", value=0.5),
                              Parameter("publish_map", value=False)])
    assert all(r.successful for r in ok)
    assert node._diag_timer.timer_period_ns == 500_000_000
    assert node.values["publish_map"] is False
    refused = node.set_parameters([Parameter("window_size", value=10)])[0]
    assert not refused.successful and "startup" in refused.reason
    assert node.values["window_size"] == WINDOW
    node.set_parameters([Parameter("diagnostics_period", value=0.2),
                         Parameter("publish_map", value=True)])


def test_drop_oldest_queue():
    from vggt_ros.nodes.vggt_node import DropOldestQueue

    q = DropOldestQueue(2)
    for item in "abc":
        q.put(item)
    assert (len(q), q.dropped) == (2, 1)
    assert [q.get(0.0), q.get(0.0), q.get(0.0)] == ["b", "c", None]


def test_base_frame_mount_waits_for_tf_static(run):
    """No pose for a camera whose base_frame mount is unknown; composed once /tf_static has it."""
    node = run.node
    assert node._mount("other_optical") is None
    mount = BASE_FROM_CAM.copy()
    mount[:3, 3] = [0.0, 0.1, 0.0]
    node._on_tf_static(TFMessage(transforms=[
        conv.transform_stamped(mount, 0, BASE, "other_optical")]))
    found = node._mount("other_optical")
    assert found.body_frame == BASE and not found.owns_edge
    np.testing.assert_allclose(found.body_from_cam, mount, atol=1e-12)


def test_first_odom_to_base_link_is_identity(run):
    """REP-105: odom is the initial base pose, not the first camera's optical frame."""
    first = run.got["/tf"][0].transforms[0]
    assert (first.header.frame_id, first.child_frame_id) == ("odom", BASE)
    np.testing.assert_allclose(conv.transform_to_pose(first.transform), np.eye(4), atol=1e-12)
    # The camera sits where the mount says, in odom as on the robot.
    poses = _tf_poses(run)
    np.testing.assert_allclose(poses[min(poses)], BASE_FROM_CAM, atol=1e-12)
