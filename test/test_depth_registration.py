"""A depth camera beside the colour camera: its depth reprojected into the colour camera is the
colour camera's metric depth (a box before a wall, seen by both), the nearest surface wins, and
missing readings stay missing; the matcher reprojects only when it has both CameraInfos and the
extrinsic, and otherwise says which is missing."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.geometry.frames import StaticFrames
from vggt_ros.pipeline.depth_registration import reproject_depth
from vggt_ros.pipeline.sensors import DepthImage, SensorMatcher, StampedBuffer
from vggt_ros.pipeline.types import CameraIntrinsics, Frame

WALL_Z = 3.0  # colour frame: a wall at z = 3 m and a box face at z = 1.5 m before it
BOX_Z, BOX_X, BOX_Y = 1.5, (-0.3, 0.3), (-0.2, 0.2)
COLOUR_SIZE = (60, 80)  # height, width
K_COLOUR = np.array([[70.0, 0, 40], [0, 70.0, 30], [0, 0, 1]])
DEPTH_SIZE = (90, 120)  # its own, finer grid and focal length
K_DEPTH = np.array([[95.0, 0, 61], [0, 95.0, 44], [0, 0, 1]])


def colour_from_depth_mount() -> np.ndarray:
    """The depth imager 15 cm to the colour camera's left (a wide stereo pair), turned 2 deg."""
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("y", 2.0, degrees=True).as_matrix()
    pose[:3, 3] = [-0.15, 0.01, 0.0]
    return pose


def render_depth(k: np.ndarray, size: tuple[int, int], colour_from_cam: np.ndarray) -> np.ndarray:
    """Exact depth (the camera's own z) of the wall and box, by ray casting in the colour frame."""
    height, width = size
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays_cam = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1)
    rays = rays_cam @ colour_from_cam[:3, :3].T  # unit z in the camera, in the colour frame
    origin = colour_from_cam[:3, 3]
    t_wall = (WALL_Z - origin[2]) / rays[..., 2]
    t_box = (BOX_Z - origin[2]) / rays[..., 2]
    hit = origin + t_box[..., None] * rays
    on_box = ((hit[..., 0] >= BOX_X[0]) & (hit[..., 0] <= BOX_X[1])
              & (hit[..., 1] >= BOX_Y[0]) & (hit[..., 1] <= BOX_Y[1]))
    return np.where(on_box, t_box, t_wall)  # t is the depth along the camera's own z


@pytest.fixture(scope="module")
def scene():
    mount = colour_from_depth_mount()
    return mount, render_depth(K_DEPTH, DEPTH_SIZE, mount), render_depth(K_COLOUR, COLOUR_SIZE,
                                                                         np.eye(4))


def test_a_box_before_a_wall_gets_the_colour_cameras_metric_depth(scene):
    mount, sensor, truth = scene
    got = reproject_depth(sensor, K_DEPTH, mount, K_COLOUR, COLOUR_SIZE)
    assert got.shape == COLOUR_SIZE and got.dtype == np.float32
    seen = np.isfinite(got)
    assert seen.mean() > 0.95  # a finer depth grid covers almost every colour pixel
    relative = np.abs(got[seen] - truth[seen]) / truth[seen]
    assert np.mean(relative < 1e-3) > 0.97  # all but the few pixels on the box's outline
    np.testing.assert_allclose(np.median(got[seen] / truth[seen]), 1.0, atol=1e-6)


def test_the_nearest_surface_hides_the_one_behind_it(scene):
    mount, sensor, truth = scene
    got = reproject_depth(sensor, K_DEPTH, mount, K_COLOUR, COLOUR_SIZE)
    box = truth < 2.0
    inner = box & np.roll(box, 1, 0) & np.roll(box, -1, 0) & np.roll(box, 1, 1) \
        & np.roll(box, -1, 1)
    # wall points of the depth camera land on the box's pixels too; none of them shows through
    np.testing.assert_allclose(got[inner], BOX_Z, rtol=1e-3)


def test_missing_readings_stay_holes_and_nothing_is_made_up(scene):
    mount, sensor, truth = scene
    holed = sensor.copy()
    holed[30:60, 40:80] = 0.0  # no reading on the middle of the box
    got = reproject_depth(holed, K_DEPTH, mount, K_COLOUR, COLOUR_SIZE)
    # colour pixels of the box that only those depth pixels see: NaN, not the wall behind
    v, u = np.mgrid[40:50, 55:65]
    z = sensor[v, u]
    points = np.stack([(u - K_DEPTH[0, 2]) / K_DEPTH[0, 0] * z,
                       (v - K_DEPTH[1, 2]) / K_DEPTH[1, 1] * z, z], -1) @ mount[:3, :3].T
    points += mount[:3, 3]
    cu = np.rint(K_COLOUR[0, 0] * points[..., 0] / points[..., 2] + K_COLOUR[0, 2]).astype(int)
    cv = np.rint(K_COLOUR[1, 1] * points[..., 1] / points[..., 2] + K_COLOUR[1, 2]).astype(int)
    assert np.isnan(got[cv, cu]).all()
    assert np.isfinite(got).sum() < np.isfinite(
        reproject_depth(sensor, K_DEPTH, mount, K_COLOUR, COLOUR_SIZE)).sum()
    np.testing.assert_array_equal(reproject_depth(np.full(DEPTH_SIZE, np.nan), K_DEPTH, mount,
                                                  K_COLOUR, COLOUR_SIZE),
                                  np.full(COLOUR_SIZE, np.nan, np.float32))


def test_sibling_optical_frames_are_joined_through_their_common_parent():
    frames = StaticFrames()
    link_from_colour, link_from_depth = np.eye(4), np.eye(4)
    link_from_colour[:3, 3] = [0.0, 0.015, 0.0]
    link_from_depth[:3, 3] = [0.0, -0.035, 0.0]
    frames.add_edge("base_link", "camera_link", np.eye(4))
    frames.add_edge("camera_link", "colour_optical", link_from_colour)
    frames.add_edge("camera_link", "depth_optical", link_from_depth)
    colour_from_depth = frames.between("colour_optical", "depth_optical")
    np.testing.assert_allclose(colour_from_depth[:3, 3], [0.0, -0.05, 0.0])
    assert frames.between("colour_optical", "unknown_frame") is None


def colour_frame(stamp_ns, info=True):
    return Frame(stamp_ns=stamp_ns, image=np.zeros(COLOUR_SIZE + (3,), np.uint8),
                 frame_id="colour_optical",
                 camera_info=CameraIntrinsics(K_COLOUR, COLOUR_SIZE[1], COLOUR_SIZE[0])
                 if info else None)


def test_the_matcher_reprojects_unregistered_depth_or_says_what_is_missing(scene):
    mount, sensor, truth = scene
    depth_info = CameraIntrinsics(K_DEPTH, DEPTH_SIZE[1], DEPTH_SIZE[0])
    buffer = StampedBuffer(8)
    buffer.add(100, DepthImage(sensor.astype(np.float32), "depth_optical", depth_info))
    buffer.add(200, DepthImage(sensor.astype(np.float32), "depth_optical"))  # no CameraInfo
    known = {("colour_optical", "depth_optical"): mount}
    matcher = SensorMatcher(10, buffer, extrinsic=lambda colour, depth: known.get((colour, depth)))
    got, problems = matcher.attach(colour_frame(100))
    assert problems == []
    seen = np.isfinite(got.depth_m)
    assert np.median(got.depth_m[seen] / truth[seen]) == pytest.approx(1.0, abs=1e-6)
    for frame, kind, words in ((colour_frame(200), "depth_no_camera_info", "depth CameraInfo"),
                               (colour_frame(100, info=False), "depth_no_camera_info",
                                "colour CameraInfo")):
        got, problems = matcher.attach(frame)
        assert got.depth_m is None and problems[0][0] == kind and words in problems[0][1]
    known.clear()
    got, problems = matcher.attach(colour_frame(100))
    assert got.depth_m is None and problems[0][0] == "depth_no_extrinsic"
