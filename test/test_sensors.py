"""Depth images and wheel odometry matched to colour frames by stamp; depth encodings."""
import threading

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.geometry.frames import StaticFrames
from vggt_ros.io.images import ImageDecodeError, decode_depth, encode_16uc1, encode_32fc1
from vggt_ros.pipeline.sensors import DepthImage, OdometryTrack, SensorMatcher, StampedBuffer
from vggt_ros.pipeline.types import Frame

MS = 1_000_000


def frame(stamp_ns, size=(4, 6), frame_id="cam"):
    return Frame(stamp_ns=stamp_ns, image=np.zeros(size + (3,), np.uint8), frame_id=frame_id)


def pose(x, yaw_deg=0.0):
    out = np.eye(4)
    out[:3, :3] = Rotation.from_euler("z", yaw_deg, degrees=True).as_matrix()
    out[0, 3] = x
    return out


def test_16uc1_millimetres_and_32fc1_metres_decode_to_metres_with_nan_for_no_reading():
    depth = np.array([[0.5, 0.0], [np.nan, 4.25]])
    mm = decode_depth("16UC1", 2, 2, 4, encode_16uc1(depth))
    np.testing.assert_array_equal(mm, np.array([[0.5, np.nan], [np.nan, 4.25]], np.float32))
    metres = decode_depth("32FC1", 2, 2, 8, encode_32fc1(np.array([[1.5, 0.0], [np.inf, 2]],
                                                                    np.float32)))
    np.testing.assert_array_equal(metres, np.array([[1.5, np.nan], [np.nan, 2.0]], np.float32))
    big_endian = np.array([[0x01, 0xF4]], np.uint8).tobytes()  # 500 mm
    assert decode_depth("16UC1", 1, 1, 2, big_endian, is_bigendian=True)[0, 0] == 0.5


@pytest.mark.parametrize("encoding, kind", [("rgb8", "unsupported_encoding"),
                                            ("16UC1", "short_data")])
def test_unknown_depth_encodings_and_short_buffers_are_refused_by_kind(encoding, kind):
    with pytest.raises(ImageDecodeError) as info:
        decode_depth(encoding, 2, 2, 4, b"\x00" * 6)
    assert info.value.kind == kind


def test_depth_within_the_tolerance_is_attached_and_unregistered_depth_needs_its_camera():
    depth = StampedBuffer(8)
    depth.add(100 * MS, DepthImage(np.full((4, 6), 2.0, np.float32), "cam"))
    depth.add(200 * MS, DepthImage(np.full((3, 6), 2.0, np.float32), "cam"))
    depth.add(300 * MS, DepthImage(np.full((4, 6), 2.0, np.float32), "depth_optical"))
    matcher = SensorMatcher(tolerance_ns=20 * MS, depth=depth)
    got, problems = matcher.attach(frame(110 * MS))
    assert got.depth_m is not None and problems == []
    # another size or frame without the CameraInfos / extrinsic to reproject it
    for stamp, kind in ((150 * MS, "depth_unmatched"), (205 * MS, "depth_no_camera_info"),
                        (300 * MS, "depth_no_camera_info")):
        got, problems = matcher.attach(frame(stamp))
        assert got.depth_m is None and [k for k, _ in problems] == [kind]


def test_the_buffer_keeps_only_the_newest_items():
    buffer = StampedBuffer(2)
    for stamp in (1, 2, 3):
        buffer.add(stamp, stamp)
    assert buffer.nearest(1, 0) is None and buffer.nearest(3, 0) == 3


def test_waiting_for_a_late_depth_image_returns_once_it_arrived():
    buffer = StampedBuffer(4)
    threading.Timer(0.05, buffer.add, (10, "late")).start()
    assert buffer.wait_until(10, timeout_s=5.0)
    assert not buffer.wait_until(11, timeout_s=0.01)


def test_odometry_is_interpolated_between_samples_and_carried_to_the_camera():
    track = OdometryTrack(max_gap_ns=100 * MS)
    track.add(0, pose(0.0, 0.0), "base_link")
    track.add(100 * MS, pose(1.0, 90.0), "base_link")
    mid = track.at(50 * MS)
    np.testing.assert_allclose(mid[:3, 3], [0.5, 0, 0])
    assert Rotation.from_matrix(mid[:3, :3]).as_euler("zyx", degrees=True)[0] == \
        pytest.approx(45.0)
    mounts = StaticFrames()
    mounts.add_edge("base_link", "cam", pose(0.2))  # the camera 0.2 m ahead of the base
    matcher = SensorMatcher(tolerance_ns=0, odometry=track, mount=mounts.lookup)
    got, problems = matcher.attach(frame(100 * MS))
    assert problems == []
    np.testing.assert_allclose(got.odom_from_camera[:3, 3], [1.0, 0.2, 0.0], atol=1e-12)


def test_odometry_that_stopped_or_a_missing_mount_is_reported_by_kind():
    track = OdometryTrack(max_gap_ns=100 * MS)
    matcher = SensorMatcher(tolerance_ns=0, odometry=track, mount=lambda base, cam: None)
    _, problems = matcher.attach(frame(0))
    assert problems[0][0] == "odometry_unmatched" and "no odometry received" in problems[0][1]
    track.add(0, pose(0.0), "base_link")
    track.add(500 * MS, pose(1.0), "base_link")  # a gap: the odometry stalled
    assert track.at(250 * MS) is None
    _, problems = matcher.attach(frame(900 * MS))
    assert problems[0][0] == "odometry_unmatched" and "+0.40 s" in problems[0][1]
    _, problems = matcher.attach(frame(0))
    assert problems[0][0] == "odometry_no_mount"
