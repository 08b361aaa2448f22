"""Synthetic sequences: determinism, exact geometry, photometric consistency, sane motion."""
import numpy as np
import pytest

from vggt_ros.pipeline.types import Frame
from vggt_ros.synth import make_sequence
from vggt_ros.synth.trajectory import TURN_RATE_DEG, WALL_MARGIN_M

W, H = 64, 48


@pytest.fixture(scope="module")
def loop_seq():
    return make_sequence(num_frames=40, width=W, height=H, seed=1, trajectory="loop")


def _unproject(seq, i, depth):
    """World points [H*W,3] of frame i's pixels (pixel centres at integer coordinates)."""
    u, v = np.meshgrid(np.arange(seq.width), np.arange(seq.height))
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    cam = (pix @ np.linalg.inv(seq.K).T) * depth.reshape(-1, 1).astype(np.float64)
    return cam @ seq.world_from_cam[i][:3, :3].T + seq.world_from_cam[i][:3, 3]


def _project(seq, j, points):
    cam = points @ seq.cam_from_world[j][:3, :3].T + seq.cam_from_world[j][:3, 3]
    uv = (cam @ seq.K.T)[:, :2] / cam[:, 2:3]
    return uv, cam[:, 2]


def _bilinear(img, uv):
    """Bilinear sample of an HxWxC image at float pixel positions (inside the image)."""
    x0 = np.clip(np.floor(uv[:, 0]).astype(int), 0, img.shape[1] - 2)
    y0 = np.clip(np.floor(uv[:, 1]).astype(int), 0, img.shape[0] - 2)
    fx, fy = (uv[:, 0] - x0)[:, None], (uv[:, 1] - y0)[:, None]
    img = img.astype(np.float64).reshape(img.shape[0], img.shape[1], -1)
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def test_same_seed_same_sequence_other_seed_differs():
    a = make_sequence(8, W, H, seed=5, trajectory="forward")
    b = make_sequence(8, W, H, seed=5, trajectory="forward")
    c = make_sequence(8, W, H, seed=6, trajectory="forward")
    np.testing.assert_array_equal(a.cam_from_world, b.cam_from_world)
    for i in (0, 7):
        rgb_a, depth_a = a.render(i)
        rgb_b, depth_b = b.render(i)
        np.testing.assert_array_equal(rgb_a, rgb_b)
        np.testing.assert_array_equal(depth_a, depth_b)
    assert np.abs(a.render(3)[0].astype(int) - c.render(3)[0]).mean() > 10


def test_sequence_contract(loop_seq):
    seq = loop_seq
    assert len(seq) == 40
    assert seq.stamps_ns.dtype == np.int64 and seq.stamps_ns[0] == 1_000_000_000
    np.testing.assert_array_equal(np.diff(seq.stamps_ns), 100_000_000)
    assert seq.cam_from_world.shape == (40, 4, 4) and seq.K.shape == (3, 3)
    rot = seq.cam_from_world[:, :3, :3]
    np.testing.assert_allclose(rot @ np.swapaxes(rot, 1, 2), np.broadcast_to(np.eye(3), rot.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    rgb, depth = seq.render(-1)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert depth.shape == (H, W) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and (depth > 0.2).all()
    frame = seq.frame(2)
    assert isinstance(frame, Frame) and frame.stamp_ns == seq.stamps_ns[2]
    np.testing.assert_array_equal(frame.camera_info.k, seq.K)
    with pytest.raises(IndexError, match="out of range"):
        seq.render(40)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="trajectory"):
        make_sequence(5, W, H, trajectory="spiral")
    with pytest.raises(ValueError, match="num_frames"):
        make_sequence(0, W, H)


def test_depth_points_lie_on_visible_scene_surfaces(loop_seq):
    seq, i = loop_seq, 7
    _, depth = seq.render(i)
    points = _unproject(seq, i, depth)
    axes, coords, lo, hi = seq.scene.surface_planes()
    # Distance of each point to each finite face (plane distance, 0 when inside the rectangle).
    plane_dist = np.abs(points[:, axes] - coords[None, :])
    inside = np.all((points[:, None, :] >= lo[None] - 1e-4) & (points[:, None, :] <= hi[None] + 1e-4),
                    axis=2)
    dist = np.where(inside, plane_dist, np.inf).min(axis=1)
    # float32 depth: relative error ~6e-8 of a few metres.
    assert dist.max() < 2e-5 * depth.max() + 1e-6, dist.max()
    # Nearest hit: the open segment camera -> point never enters a box interior.
    centre = seq.world_from_cam[i][:3, 3]
    for frac in np.linspace(0.02, 0.98, 25):
        samples = centre + frac * (points - centre)
        for box_lo, box_hi in seq.scene.boxes:
            strictly_inside = np.all((samples > box_lo + 1e-4) & (samples < box_hi - 1e-4), axis=1)
            assert not strictly_inside.any()


def test_reprojection_between_frames_is_photometrically_consistent(loop_seq):
    seq, i, j = loop_seq, 10, 13
    rgb_i, depth_i = seq.render(i)
    rgb_j, depth_j = seq.render(j)
    points = _unproject(seq, i, depth_i)
    uv, z = _project(seq, j, points)
    in_view = (z > 0.1) & (uv[:, 0] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= H - 1)
    uv_in = np.where(in_view[:, None], uv, 0.0)
    # Visible in j when j's own depth there agrees with the transported depth (no occluder).
    visible = in_view & (np.abs(_bilinear(depth_j, uv_in)[:, 0] - z) < 0.02 * z)
    assert visible.mean() > 0.5
    warped = _bilinear(rgb_j, uv_in)
    src = rgb_i.reshape(-1, 3).astype(np.float64)
    error = np.abs(warped - src)[visible].mean()
    # The same comparison with the wrong geometry (frame j's pixels at i's positions) must be
    # far worse, otherwise the check would not detect a broken renderer or pose convention.
    wrong = np.abs(rgb_j.reshape(-1, 3).astype(np.float64) - src)[visible].mean()
    assert error < 8.0, error
    assert wrong > 2.5 * error, (error, wrong)


@pytest.mark.parametrize("trajectory", ["loop", "forward", "orbit"])
def test_trajectory_smooth_inside_room_and_clear_of_objects(trajectory):
    seq = make_sequence(120, W, H, seed=2, trajectory=trajectory)
    pose = seq.world_from_cam
    centres = pose[:, :3, 3]
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.min() > 0.04 and steps.max() < 0.11, (steps.min(), steps.max())
    accel = np.linalg.norm(np.diff(centres, 2, axis=0), axis=1)
    assert accel.max() < 0.01
    forward = pose[:, :3, 2]
    heading = np.unwrap(np.arctan2(forward[:, 1], forward[:, 0]))
    assert np.degrees(np.abs(np.diff(heading))).max() < 6.0
    assert np.degrees(np.arcsin(np.abs(forward[:, 2]))).max() < 20.0  # roughly horizontal
    down = pose[:, :3, 1]
    assert (down[:, 2] < -0.9).all()  # image y points down: no rolled or flipped camera
    room = seq.scene.room_size
    assert (centres > 0.8).all() and (centres < room - 0.8).all()
    for box_lo, box_hi in seq.scene.boxes:
        gap = np.linalg.norm(centres - np.clip(centres, box_lo, box_hi), axis=1)
        assert gap.min() >= 0.5
    assert len(seq.scene.boxes) >= 5


def test_turn_rotates_in_place_at_the_sampled_rate():
    seq = make_sequence(60, W, H, seed=4, trajectory="turn")
    pose = seq.world_from_cam
    centres = pose[:, :3, 3]
    assert np.ptp(centres[:, :2], axis=0).max() < 1e-9  # no horizontal motion at all
    assert np.ptp(centres[:, 2]) < 0.11  # only the slow height wobble (+-5 cm)
    forward = pose[:, :3, 2]
    yaw_steps = np.degrees(np.diff(np.unwrap(np.arctan2(forward[:, 1], forward[:, 0]))))
    lo, hi = TURN_RATE_DEG
    assert (np.sign(yaw_steps) == np.sign(yaw_steps[0])).all()  # one direction
    assert lo - 0.5 < np.abs(yaw_steps).mean() < hi + 0.5
    pitch = np.degrees(np.arcsin(-forward[:, 2]))
    assert np.ptp(pitch) > 2.0  # it nods, so relative rotations are not yaw alone
    assert (pose[:, 2, 1] < -0.9).all()  # image y points down
    room = seq.scene.room_size
    assert (centres[:, :2] >= WALL_MARGIN_M).all() and (centres[:, :2] <= room[:2] - WALL_MARGIN_M).all()
    for box_lo, box_hi in seq.scene.boxes:
        assert np.linalg.norm(centres[0] - np.clip(centres[0], box_lo, box_hi)) >= 0.5


def test_loop_closes_after_one_lap():
    seq = make_sequence(100, W, H, seed=0, trajectory="loop")
    centres = seq.world_from_cam[:, :3, 3]
    step = np.linalg.norm(centres[1] - centres[0])
    assert np.linalg.norm(centres[-1] - centres[0]) < 1.5 * step


def test_textures_are_rich_everywhere():
    seq = make_sequence(30, W, H, seed=3, trajectory="orbit")
    for i in (0, 15, 29):
        rgb, _ = seq.render(i)
        gray = rgb.astype(np.float64).mean(axis=2)
        assert gray.std() > 20
        assert np.std(rgb.astype(np.float64), axis=(0, 1)).min() > 10  # colour, not grey
        patches = gray.reshape(H // 8, 8, W // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 64)
        assert (patches.std(axis=1) > 2.0).mean() > 0.9  # no flat regions
        assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 500
