"""Every output file of the mapper, read back with readers that share no code with the
writers: plyfile for PLY, plain text parsing for TUM / COLMAP, rosbags for the bag."""
import json
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from vggt_ros.export.outputs import FILES, MapOutputs
from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.export.ply import write_ply
from vggt_ros.io.atomic import atomic_output
from vggt_ros.io.strict_json import write_json
from vggt_ros.pipeline.types import (ChainingStatus, KeyframeResult, PreprocessMapping,
                                     WindowResult)
from vggt_ros.topics.odom_frame import BODY_FROM_OPTICAL

H, W = 6, 8  # depth (model) pixels
ORIG = (16, 12)  # original camera image (width, height): model = original / 2
# Pipeline.stats as the mapper hands them over after each window (feeds /diagnostics).
STATS = {"scale_status": "non-metric", "resets": 0, "last_reset_reason": "", "map_points": 40,
         "frames_in": 5, "keyframes": 5, "dropped_non_keyframes": 0, "windows": 2,
         "failed_fusions": 0,
         "timings": {"predict": 0.5}}


def _keyframe(i: int, rng: np.random.Generator, focal: float) -> KeyframeResult:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("yxz", [10 * i, 3, -2 * i], degrees=True).as_matrix()
    pose[:3, 3] = [0.3 * i, -0.05 * i, 0.1 * i * i]
    depth = rng.uniform(1, 4, (H, W)).astype(np.float32)
    depth[0, :3] = np.nan  # filtered pixels
    k_model = np.array([[focal, 0, W / 2], [0, focal, H / 2], [0, 0, 1.0]])
    mapping = PreprocessMapping(original_size=ORIG, model_size=(W, H), scale=0.5, offset_x=0,
                                offset_y=0, valid=(0, 0, W, H))
    return KeyframeResult(
        stamp_ns=1_000_000_000 + 100_000_000 * i, frame_id="cam_optical", odom_from_cam=pose,
        depth=depth, confidence=rng.uniform(1, 5, (H, W)).astype(np.float32),
        intrinsics=k_model, image=rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
        mapping=mapping, intrinsics_original=mapping.intrinsics_to_original(k_model))


def _windows(rng: np.random.Generator) -> tuple[list[WindowResult], list[KeyframeResult]]:
    # Keyframes 0 and 1 share intrinsics -> one COLMAP camera for both.
    kfs = [_keyframe(i, rng, f) for i, f in enumerate([5.0, 5.0, 6.0, 6.5, 7.0])]
    windows = []
    for index, (new, stamps_from) in enumerate([(kfs[:3], 0), (kfs[3:], 1)]):
        points = rng.normal(size=(50 + 10 * index, 3)).astype(np.float32)
        colors = rng.integers(0, 255, points.shape, dtype=np.uint8)
        windows.append(WindowResult(
            index=index, stamps_ns=[k.stamp_ns for k in kfs[stamps_from:stamps_from + 4]],
            new_keyframes=new, points=points, colors=colors,
            chaining=ChainingStatus(method="first" if index == 0 else "points", scale=1.0)))
    return windows, kfs


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    rng = np.random.default_rng(3)
    windows, kfs = _windows(rng)
    out = tmp_path_factory.mktemp("out")
    outputs = MapOutputs(out, odom_frame="odom")
    for window in windows:
        outputs.add(window, STATS)
    points = rng.normal(size=(40, 3)).astype(np.float32)
    colors = rng.integers(0, 255, (40, 3), dtype=np.uint8)
    gt = np.stack([k.odom_from_cam for k in kfs])
    gt[:, :3, 3] *= 2.0  # a ground truth differing by scale: the report aligns it
    outputs.finish(points, colors, gt_pairs=(np.arange(len(kfs)), gt), title="test")
    outputs.write_summary({"frames": 5, "nan": float("nan"), "arr": np.arange(3)})
    return out, windows, kfs, points, colors


def _in_odom(odom_from_pipeline: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points.astype(np.float64) @ odom_from_pipeline[:3, :3].T + odom_from_pipeline[:3, 3]


def _data_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().split("\n")[:-1] if not line.startswith("#")]


def test_all_files_present_and_no_temporaries(written):
    out = written[0]
    for name in FILES.values():
        assert (out / name).exists(), name
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES.values())
    assert sorted(p.name for p in (out / "colmap").iterdir()) == [
        "cameras.txt", "images.txt", "points3D.txt"]


def test_ply_reads_back_with_plyfile(written):
    out, _, _, points, colors = written
    ply = PlyData.read(str(out / "map.ply"))
    assert not ply.text and ply.byte_order == "<"
    vertex = ply["vertex"]
    assert [p.name for p in vertex.properties] == ["x", "y", "z", "red", "green", "blue"]
    assert vertex.data.dtype["x"] == np.dtype("<f4") and vertex.data.dtype["red"] == np.uint8
    np.testing.assert_array_equal(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1), points)
    np.testing.assert_array_equal(np.stack([vertex["red"], vertex["green"], vertex["blue"]], 1),
                                  colors)


def test_ply_rejects_bad_input_and_writes_empty_cloud(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_ply(tmp_path / "a.ply", np.full((2, 3), np.nan), np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_ply(tmp_path / "a.ply", np.zeros((2, 3)), np.zeros((2, 3)))
    assert not (tmp_path / "a.ply").exists()
    write_ply(tmp_path / "e.ply", np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    assert PlyData.read(str(tmp_path / "e.ply"))["vertex"].count == 0


def test_tum_is_eight_columns_of_keyframe_poses(written):
    out, _, kfs, _, _ = written
    rows = [line.split() for line in _data_lines(out / "trajectory_tum.txt")]
    assert len(rows) == len(kfs) and all(len(r) == 8 for r in rows)
    values = np.array(rows, dtype=np.float64)
    np.testing.assert_allclose(values[:, 0], [k.stamp_ns / 1e9 for k in kfs])
    np.testing.assert_allclose(values[:, 1:4], [k.odom_from_cam[:3, 3] for k in kfs], atol=1e-8)
    rot = Rotation.from_quat(values[:, 4:]).as_matrix()
    np.testing.assert_allclose(rot, [k.odom_from_cam[:3, :3] for k in kfs], atol=1e-8)


def test_colmap_text_model_follows_format(written):
    out, _, kfs, points, colors = written
    cams = {}
    for line in _data_lines(out / "colmap" / "cameras.txt"):
        cid, model, w, h, *params = line.split()
        assert model == "PINHOLE" and len(params) == 4
        cams[int(cid)] = (int(w), int(h), *map(float, params))
    assert len(cams) == 4  # five keyframes, two share intrinsics
    lines = (out / "colmap" / "images.txt").read_text().split("\n")[:-1]
    lines = [line for line in lines if not line.startswith("#")]
    assert len(lines) == 2 * len(kfs)
    for i, kf in enumerate(kfs):
        image, points2d = lines[2 * i].split(), lines[2 * i + 1]
        assert points2d == "" and len(image) == 10 and int(image[0]) == i + 1
        qw, qx, qy, qz, tx, ty, tz = map(float, image[1:8])
        assert np.linalg.norm([qw, qx, qy, qz]) == pytest.approx(1.0, abs=1e-9)
        cam = cams[int(image[8])]  # camera id exists
        assert cam[:2] == ORIG
        np.testing.assert_allclose(cam[2:], [kf.intrinsics_original[0, 0],
                                             kf.intrinsics_original[1, 1],
                                             kf.intrinsics_original[0, 2],
                                             kf.intrinsics_original[1, 2]], rtol=1e-8)
        cam_from_odom = np.eye(4)
        cam_from_odom[:3, :3] = Rotation.from_quat([qx, qy, qz, qw]).as_matrix()
        cam_from_odom[:3, 3] = [tx, ty, tz]
        np.testing.assert_allclose(cam_from_odom @ kf.odom_from_cam, np.eye(4), atol=1e-9)
        assert image[9] == f"{kf.stamp_ns}.png"
    rows = [line.split() for line in _data_lines(out / "colmap" / "points3D.txt")]
    assert len(rows) == len(points) and all(len(r) == 8 for r in rows)  # empty tracks
    table = np.array(rows, dtype=np.float64)
    assert table[:, 0].tolist() == list(range(1, len(points) + 1))
    np.testing.assert_allclose(table[:, 1:4], points, rtol=1e-6)
    np.testing.assert_array_equal(table[:, 4:7], colors)


def test_output_bag_reads_back_with_rosbags(written):
    out, windows, kfs, _, _ = written
    typestore = get_typestore(Stores.ROS2_KILTED)
    with Reader(out / "outputs.mcap") as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        msgs: dict[str, list] = {}
        for conn, _, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append(typestore.deserialize_cdr(raw, conn.msgtype))
    assert types == {
        "/tf": "tf2_msgs/msg/TFMessage", "/vggt/depth": "sensor_msgs/msg/Image",
        "/vggt/depth/camera_info": "sensor_msgs/msg/CameraInfo",
        "/vggt/depth/confidence": "sensor_msgs/msg/Image",
        "/vggt/points": "sensor_msgs/msg/PointCloud2", "/vggt/odometry": "nav_msgs/msg/Odometry",
        "/vggt/path": "nav_msgs/msg/Path", "/vggt/map_points": "sensor_msgs/msg/PointCloud2",
        "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
        "/tf_static": "tf2_msgs/msg/TFMessage"}
    for topic in ("/tf", "/vggt/depth", "/vggt/depth/camera_info", "/vggt/depth/confidence"):
        assert len(msgs[topic]) == len(kfs), topic
    assert len(msgs["/vggt/points"]) == len(msgs["/vggt/path"]) == len(windows)
    assert len(msgs["/vggt/path"][-1].poses) == len(kfs)
    # Odometry as the node publishes it: once per window, the pose of its newest keyframe.
    assert len(msgs["/vggt/odometry"]) == len(windows)
    # Poses and clouds are in the node's REP-105 odom: the first camera-body pose is identity.
    odom_from_pipeline = BODY_FROM_OPTICAL @ se3_inverse(kfs[0].odom_from_cam)
    for odom, window in zip(msgs["/vggt/odometry"], windows):
        p = odom.pose.pose.position
        expected = odom_from_pipeline @ window.new_keyframes[-1].odom_from_cam @ se3_inverse(
            BODY_FROM_OPTICAL)
        np.testing.assert_allclose([p.x, p.y, p.z], expected[:3, 3], atol=1e-9)
    for depth, info, kf in zip(msgs["/vggt/depth"], msgs["/vggt/depth/camera_info"], kfs):
        assert depth.encoding == "32FC1" and (depth.width, depth.height) == (info.width,
                                                                               info.height)
        assert depth.step == 4 * depth.width and not depth.is_bigendian
        values = np.frombuffer(depth.data.tobytes(), "<f4").reshape(depth.height, depth.width)
        np.testing.assert_array_equal(values, kf.depth)  # NaN in the same places
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), kf.intrinsics)
        assert depth.header.frame_id == info.header.frame_id == "cam_optical"
    tf = msgs["/tf"][2].transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == ("odom", "cam_optical_body")
    q = tf.transform.rotation
    np.testing.assert_allclose(Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(),
                               (odom_from_pipeline @ kfs[2].odom_from_cam)[:3, :3]
                               @ BODY_FROM_OPTICAL[:3, :3].T, atol=1e-9)
    (static,) = msgs["/tf_static"]
    assert [(t.header.frame_id, t.child_frame_id) for t in static.transforms] == [
        ("cam_optical_body", "cam_optical")]
    cloud = msgs["/vggt/points"][1]
    assert [(f.name, f.offset) for f in cloud.fields] == [("x", 0), ("y", 4), ("z", 8),
                                                          ("rgb", 12)]
    rec = np.frombuffer(cloud.data.tobytes(), dtype=np.dtype(
        {"names": ["x", "y", "z", "rgb"], "formats": ["<f4", "<f4", "<f4", "<u4"],
         "offsets": [0, 4, 8, 12], "itemsize": cloud.point_step}))
    np.testing.assert_allclose(np.stack([rec["x"], rec["y"], rec["z"]], 1),
                               _in_odom(odom_from_pipeline, windows[1].points), atol=1e-5)
    np.testing.assert_array_equal(rec["rgb"] >> 16, windows[1].colors[:, 0])


def test_output_bag_has_the_map_diagnostics_and_latched_qos(written):
    out, windows, _, points, _ = written
    typestore = get_typestore(Stores.ROS2_KILTED)
    with Reader(out / "outputs.mcap") as reader:
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
        msgs: dict[str, list] = {}
        for conn, _, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append(typestore.deserialize_cdr(raw, conn.msgtype))
    (cloud,) = msgs["/vggt/map_points"]  # the fused map, once
    assert cloud.width == len(points) and cloud.header.frame_id == "odom"
    rec = np.frombuffer(cloud.data.tobytes(), dtype=np.dtype(
        {"names": ["x", "y", "z"], "formats": ["<f4"] * 3, "offsets": [0, 4, 8],
         "itemsize": cloud.point_step}))
    odom_from_pipeline = BODY_FROM_OPTICAL @ se3_inverse(written[2][0].odom_from_cam)
    np.testing.assert_allclose(np.stack([rec["x"], rec["y"], rec["z"]], 1),
                               _in_odom(odom_from_pipeline, points), atol=1e-5)
    assert len(msgs["/diagnostics"]) == len(windows)
    status = msgs["/diagnostics"][-1].status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.name == "/vggt/vggt: pipeline"
    assert values["chaining.method"] == "points" and values["scale"] == "non-metric"
    for topic in ("/vggt/path", "/vggt/map_points"):  # replayed latched, as the node offers them
        (profile,) = qos[topic]
        assert profile.durability.name == "TRANSIENT_LOCAL" and profile.depth == 1, topic
        assert profile.reliability.name == "RELIABLE"
    (depth_qos,) = qos["/vggt/depth"]
    assert depth_qos.durability.name == "VOLATILE" and depth_qos.depth == 5


def test_report_is_a_png_and_summary_is_strict_json(written):
    out = written[0]
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "summary.json").read_text()
    assert "NaN" not in text
    assert json.loads(text) == {"frames": 5, "nan": None, "arr": [0, 1, 2]}
    with pytest.raises(TypeError):
        write_json(out / "bad.json", {"x": object()})
    assert not (out / "bad.json").exists()


def test_atomic_output_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as handle:
            handle.write("new, half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
