"""Message conversions: round trips, and clouds decoded by their own field offsets."""
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from vggt_ros.io.images import ImageDecodeError
from vggt_ros.nodes import conversions as cv

pytestmark = pytest.mark.ros


def _pose(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pose = np.eye(4)
    pose[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    pose[:3, 3] = rng.normal(size=3)
    return pose


def _wire(msg):
    """Serialise and deserialise, as DDS would: catches fields that do not survive the wire."""
    return deserialize_message(serialize_message(msg), type(msg))


def test_stamp_round_trip():
    for ns in (0, 1, 999_999_999, 1_000_000_000, 1_700_000_123_456_789_012):
        t = cv.stamp_to_time(ns)
        assert 0 <= t.nanosec < 1_000_000_000
        assert cv.time_to_ns(t) == ns
    with pytest.raises(ValueError):
        cv.stamp_to_time(-1)


def test_rgb_image_round_trip_and_bgr_message():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    msg = _wire(cv.rgb_to_image(rgb, 42, "cam_optical"))
    assert (msg.encoding, msg.step, msg.header.frame_id) == ("rgb8", 21, "cam_optical")
    assert cv.time_to_ns(msg.header.stamp) == 42
    np.testing.assert_array_equal(cv.image_to_rgb(msg), rgb)
    bgr = Image(height=5, width=7, encoding="bgr8", step=21, data=rgb[:, :, ::-1].tobytes())
    np.testing.assert_array_equal(cv.image_to_rgb(_wire(bgr)), rgb)
    with pytest.raises(ImageDecodeError) as err:
        cv.image_to_rgb(Image(height=5, width=7, encoding="rgb8", step=21, data=bytes(20)))
    assert err.value.kind == "short_data"


def test_float_image_round_trip_keeps_nan():
    depth = np.linspace(0.5, 3.0, 12, dtype=np.float32).reshape(3, 4)
    depth[0, 1] = np.nan
    msg = _wire(cv.float_image(depth, 7, "cam"))
    assert (msg.encoding, msg.step, msg.height, msg.width) == ("32FC1", 16, 3, 4)
    np.testing.assert_array_equal(cv.image_to_float(msg), depth)
    with pytest.raises(ValueError):
        cv.image_to_float(cv.rgb_to_image(np.zeros((2, 2, 3), np.uint8), 0, "c"))


def test_camera_info_fields_and_round_trip():
    k = np.array([[50.0, 0, 31.5], [0, 52.0, 23.5], [0, 0, 1]])
    msg = _wire(cv.camera_info_from_k(k, 64, 48, 5, "cam"))
    assert (msg.width, msg.height, msg.distortion_model) == (64, 48, "plumb_bob")
    assert len(msg.d) == 0
    np.testing.assert_array_equal(np.asarray(msg.r).reshape(3, 3), np.eye(3))
    p = np.asarray(msg.p).reshape(3, 4)
    np.testing.assert_array_equal(p[:, :3], k)
    np.testing.assert_array_equal(p[:, 3], 0)
    intr = cv.camera_info_to_intrinsics(msg)
    np.testing.assert_array_equal(intr.k, k)
    assert (intr.width, intr.height) == (64, 48)


@pytest.mark.parametrize("mutate", ["nan", "uncalibrated", "zero_size"])
def test_bad_camera_info_rejected(mutate):
    msg = cv.camera_info_from_k(np.array([[50.0, 0, 32], [0, 50, 24], [0, 0, 1]]), 64, 48, 0, "c")
    if mutate == "nan":
        msg.k[2] = np.nan
    elif mutate == "uncalibrated":
        msg.k = np.zeros(9)
    else:
        msg.width = 0
    with pytest.raises(cv.CameraInfoError):
        cv.camera_info_to_intrinsics(msg)


def _decode_by_fields(msg: PointCloud2):
    """Independent reader: each field read at its declared offset with plain NumPy strides."""
    raw = np.frombuffer(msg.data, np.uint8).reshape(msg.width * msg.height, msg.point_step)
    out = {}
    for f in msg.fields:
        assert f.datatype == PointField.FLOAT32 and f.count == 1
        out[f.name] = np.ascontiguousarray(raw[:, f.offset:f.offset + 4]).view("<f4")[:, 0]
    return out


def test_pointcloud2_layout_and_values():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(100, 3)).astype(np.float32)
    pts[5] = np.nan
    cols = rng.integers(0, 256, (100, 3), dtype=np.uint8)
    msg = _wire(cv.pointcloud2_from_numpy(pts, cols, 11, "odom"))
    assert [(f.name, f.offset) for f in msg.fields] == [("x", 0), ("y", 4), ("z", 8), ("rgb", 12)]
    assert (msg.point_step, msg.row_step, msg.height, msg.width) == (16, 1600, 1, 100)
    assert not msg.is_dense and not msg.is_bigendian
    fields = _decode_by_fields(msg)
    np.testing.assert_array_equal(np.stack([fields["x"], fields["y"], fields["z"]], 1), pts)
    packed = fields["rgb"].view(np.uint32)
    c = cols.astype(np.uint32)
    expected = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    np.testing.assert_array_equal(packed, expected)
    # And the library reader agrees.
    xyz, rgb = cv.pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(xyz, pts)
    np.testing.assert_array_equal(rgb, cols)


def test_pointcloud2_reader_handles_the_32_byte_pcl_layout():
    """setPointCloud2FieldsByString(2, "xyz", "rgb"): rgb at 16, point_step 32, padding junk."""
    pts = np.array([[1.0, 2.0, 3.0], [-4.0, 5.5, 6.25]], np.float32)
    raw = np.full((2, 32), 0xEE, np.uint8)
    raw[:, 0:12] = pts.view(np.uint8).reshape(2, 12)
    raw[:, 16:20] = np.array([0x00FF8001, 0x00010203], "<u4").view(np.uint8).reshape(2, 4)
    msg = PointCloud2(height=1, width=2, point_step=32, row_step=64, data=raw.tobytes(),
                      fields=[PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
                              for n, o in (("x", 0), ("y", 4), ("z", 8), ("rgb", 16))])
    xyz, rgb = cv.pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(xyz, pts)
    np.testing.assert_array_equal(rgb, [[255, 128, 1], [1, 2, 3]])


def test_pointcloud2_without_colour_and_empty():
    msg = cv.pointcloud2_from_numpy(np.ones((3, 3)), None, 0, "odom")
    assert msg.point_step == 12 and [f.name for f in msg.fields] == ["x", "y", "z"]
    xyz, rgb = cv.pointcloud2_to_numpy(msg)
    assert rgb is None and xyz.shape == (3, 3)
    empty = _wire(cv.pointcloud2_from_numpy(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), 0, "o"))
    assert empty.width == 0 and cv.pointcloud2_to_numpy(empty)[0].shape == (0, 3)
    with pytest.raises(ValueError):
        cv.pointcloud2_from_numpy(np.ones((3, 3)), np.ones((2, 3), np.uint8), 0, "o")


def test_pose_messages_round_trip():
    pose = _pose(4)
    ts = _wire(cv.transform_stamped(pose, 9, "odom", "cam"))
    assert (ts.header.frame_id, ts.child_frame_id) == ("odom", "cam")
    np.testing.assert_allclose(cv.transform_to_pose(ts.transform), pose, atol=1e-12)
    ps = _wire(cv.pose_stamped(pose, 9, "odom"))
    np.testing.assert_allclose(cv.transform_to_pose(ps.pose), pose, atol=1e-12)
    od = _wire(cv.odometry(pose, 9, "odom", "base_link"))
    assert (od.header.frame_id, od.child_frame_id) == ("odom", "base_link")
    np.testing.assert_allclose(cv.transform_to_pose(od.pose.pose), pose, atol=1e-12)
    assert cv.time_to_ns(od.header.stamp) == 9


def test_camera_info_wrong_k_rejected_when_building():
    with pytest.raises(ValueError):
        cv.camera_info_from_k(np.eye(2), 4, 4, 0, "c")
    assert isinstance(cv.camera_info_from_k(np.eye(3), 4, 4, 0, "c"), CameraInfo)


def test_static_transforms_chain_to_the_base():
    from vggt_ros.nodes.static_tf import StaticTransforms

    base_from_link, link_from_optical = _pose(5), _pose(6)
    tf = StaticTransforms()
    assert tf.lookup("base_link", "cam_optical") is None  # nothing known yet
    tf.add([cv.transform_stamped(link_from_optical, 0, "cam_link", "cam_optical")])
    assert tf.lookup("base_link", "cam_optical") is None  # chain incomplete
    tf.add([cv.transform_stamped(base_from_link, 0, "/base_link", "cam_link")])
    np.testing.assert_allclose(tf.lookup("base_link", "cam_optical"),
                               base_from_link @ link_from_optical, atol=1e-12)
    np.testing.assert_allclose(tf.lookup("cam_optical", "cam_optical"), np.eye(4))
    assert tf.lookup("cam_optical", "base_link") is None  # only walks up the tree
    tf.add([cv.transform_stamped(np.eye(4), 0, "cam_optical", "base_link")])  # malformed loop
    assert tf.lookup("world", "cam_optical") is None
