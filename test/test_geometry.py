"""Geometry against the upstream fixtures, plus properties of the NumPy helpers."""
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file as load_torch
from scipy.spatial.transform import Rotation

from vggt_ros.geometry import (pose_to_translation_quaternion, project_points, se3_inverse,
                               to_homogeneous, translation_quaternion_to_pose, unproject_depth,
                               unproject_to_camera)
from vggt_ros.geometry.camera import unproject_flat_to_camera
from vggt_ros.geometry.pose_encoding import (extri_intri_to_pose_encoding, matrix_to_quaternion,
                                             pose_encoding_to_extri_intri, quaternion_to_matrix)

CASES = ("a", "b", "c")


@pytest.fixture(scope="module")
def io_torch(fixtures_dir):
    return load_torch(str(fixtures_dir / "small_io.safetensors"))


@pytest.fixture(scope="module")
def io_numpy(fixtures_dir):
    return load_numpy(str(fixtures_dir / "small_io.safetensors"))


def _hw(io, case):
    return tuple(io[f"{case}.in.images"].shape[-2:])


@pytest.mark.parametrize("case", CASES)
def test_pose_encoding_matches_reference(io_torch, case):
    enc = io_torch[f"{case}.out.pose_enc"]
    extr, intr = pose_encoding_to_extri_intri(enc, _hw(io_torch, case))
    assert extr.shape == enc.shape[:-1] + (3, 4)
    assert intr.dtype == torch.float32
    # The random-weight fixture model predicts one FoV of 0 -> inf focal; assert_close accepts
    # identical infinities, so the comparison stays exact there too.
    torch.testing.assert_close(extr, io_torch[f"{case}.geo.extrinsic"], atol=1e-5, rtol=0)
    torch.testing.assert_close(intr, io_torch[f"{case}.geo.intrinsic"], atol=1e-5, rtol=0)
    back = extri_intri_to_pose_encoding(extr, intr, _hw(io_torch, case))
    torch.testing.assert_close(back, io_torch[f"{case}.geo.pose_enc_roundtrip"], atol=1e-5, rtol=0)


def test_pose_encoding_leading_dims_and_float64():
    gen = torch.Generator().manual_seed(0)
    enc = torch.randn(2, 3, 5, 9, dtype=torch.float64, generator=gen)
    enc[..., 7:] = torch.rand(2, 3, 5, 2, dtype=torch.float64, generator=gen) * 2 + 0.3  # FoV < pi
    extr, intr = pose_encoding_to_extri_intri(enc, (28, 42))
    assert extr.shape == (2, 3, 5, 3, 4) and extr.dtype == torch.float64
    assert intr.shape == (2, 3, 5, 3, 3) and intr.dtype == torch.float32
    assert torch.all(intr[..., 0, 2] == 21) and torch.all(intr[..., 1, 2] == 14)
    back = extri_intri_to_pose_encoding(extr, intr.double(), (28, 42))
    assert back.dtype == torch.float32
    torch.testing.assert_close(back[..., :3], enc[..., :3].float())
    torch.testing.assert_close(back[..., 7:], enc[..., 7:].float())


def test_quaternion_conversions_agree_with_scipy():
    rng = np.random.default_rng(0)
    quats = Rotation.random(50, random_state=1).as_quat()  # xyzw
    scaled = quats * rng.uniform(0.2, 3.0, size=(50, 1))  # network outputs are not unit length
    mats = quaternion_to_matrix(torch.from_numpy(scaled)).numpy()
    np.testing.assert_allclose(mats, Rotation.from_quat(quats).as_matrix(), atol=1e-12)
    q = matrix_to_quaternion(torch.from_numpy(mats)).numpy()
    assert np.all(q[:, 3] >= 0)
    np.testing.assert_allclose(q, quats * np.sign(quats[:, 3:4]), atol=1e-12)
    # 180-degree rotations exercise the non-w candidates.
    flips = torch.diag_embed(torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1]]))
    q = matrix_to_quaternion(flips)
    torch.testing.assert_close(quaternion_to_matrix(q), flips)


def test_pose_encoding_rejects_bad_shapes():
    with pytest.raises(ValueError, match="last dim 9"):
        pose_encoding_to_extri_intri(torch.zeros(2, 8), (14, 14))
    with pytest.raises(ValueError, match="image_size_hw"):
        pose_encoding_to_extri_intri(torch.zeros(2, 9), (0, 14))
    with pytest.raises(ValueError, match="intrinsics"):
        extri_intri_to_pose_encoding(torch.zeros(2, 3, 4), torch.zeros(3, 3, 3), (14, 14))


@pytest.mark.parametrize("case", CASES)
def test_unproject_depth_matches_reference(io_numpy, case):
    depth = io_numpy[f"{case}.out.depth"][0]  # [S,H,W,1]
    world = unproject_depth(depth, io_numpy[f"{case}.geo.extrinsic"][0],
                            io_numpy[f"{case}.geo.intrinsic"][0])
    expected = io_numpy[f"{case}.geo.world_points_from_depth_f64"]
    assert world.dtype == np.float64 and world.shape == expected.shape
    np.testing.assert_allclose(world, expected, atol=1e-5, rtol=0)
    # [S,H,W] depth and 4x4 float64 poses agree (float64 R^T t instead of float32: ~1e-7).
    again = unproject_depth(depth[..., 0], to_homogeneous(io_numpy[f"{case}.geo.extrinsic"][0]),
                            io_numpy[f"{case}.geo.intrinsic"][0])
    np.testing.assert_allclose(again, world, atol=1e-6)


def test_masked_unprojection_equals_the_full_one(io_numpy):
    depth = io_numpy["a.out.depth"][0, ..., 0]
    extr, intr = io_numpy["a.geo.extrinsic"][0], io_numpy["a.geo.intrinsic"][0]
    mask = np.random.default_rng(4).random(depth.shape) < 0.3
    full = unproject_depth(depth, extr, intr)
    np.testing.assert_array_equal(unproject_depth(depth, extr, intr, mask=mask), full[mask])
    with pytest.raises(ValueError, match="mask"):
        unproject_depth(depth, extr, intr, mask=mask[0])


def test_camera_points_are_the_unprojection_with_an_identity_pose(io_numpy):
    depth = io_numpy["a.out.depth"][0, ..., 0]
    intr = io_numpy["a.geo.intrinsic"][0]
    mask = np.random.default_rng(5).random(depth.shape) < 0.3
    identity = np.broadcast_to(np.eye(4), (len(depth), 4, 4))
    np.testing.assert_array_equal(unproject_to_camera(depth, intr, mask),
                                  unproject_depth(depth, identity, intr, mask=mask))
    with pytest.raises(ValueError, match="mask"):
        unproject_to_camera(depth, intr, mask[0])
    np.testing.assert_array_equal(unproject_flat_to_camera(depth, intr, np.flatnonzero(mask)),
                                  unproject_to_camera(depth, intr, mask))


def _random_pose(seed):
    pose = np.eye(4)
    pose[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    pose[:3, 3] = np.random.default_rng(seed).normal(size=3)
    return pose


def test_project_inverts_unproject():
    k = np.array([[30.0, 0, 20], [0, 32, 14], [0, 0, 1]])
    pose = _random_pose(3)
    depth = np.random.default_rng(0).uniform(1, 5, size=(1, 28, 42)).astype(np.float32)
    world = unproject_depth(depth, pose[None], k[None])
    pix, z = project_points(world.reshape(-1, 3), pose, k)
    v, u = np.mgrid[0:28, 0:42]
    np.testing.assert_allclose(pix, np.stack([u, v], -1).reshape(-1, 2), atol=1e-4)
    np.testing.assert_allclose(z, depth.reshape(-1), rtol=1e-6)
    behind, _ = project_points(np.array([[0.0, 0, -1]]), np.eye(4), k)
    assert np.isnan(behind).all()


def test_se3_inverse_batched():
    poses = np.stack([_random_pose(s) for s in range(4)])
    inv = se3_inverse(poses)
    np.testing.assert_allclose(inv @ poses, np.broadcast_to(np.eye(4), (4, 4, 4)), atol=1e-12)
    np.testing.assert_allclose(se3_inverse(poses[:, :3]), inv, atol=1e-15)
    with pytest.raises(ValueError, match="3,4"):
        se3_inverse(np.eye(3))


def test_translation_quaternion_roundtrip():
    pose = _random_pose(7)
    t, q = pose_to_translation_quaternion(pose)
    assert q.shape == (4,) and t.shape == (3,)
    np.testing.assert_allclose(Rotation.from_quat(q).as_matrix(), pose[:3, :3], atol=1e-12)
    np.testing.assert_allclose(translation_quaternion_to_pose(t, 2 * q), pose, atol=1e-12)
    with pytest.raises(ValueError, match="non-zero"):
        translation_quaternion_to_pose(t, np.zeros(4))


def test_unproject_depth_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="cam_from_world"):
        unproject_depth(np.ones((2, 4, 4)), np.eye(4)[None], np.eye(3)[None].repeat(2, 0))
    with pytest.raises(ValueError, match="depth"):
        unproject_depth(np.ones((4, 4)), np.eye(4)[None], np.eye(3)[None])
