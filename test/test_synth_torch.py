"""The torch renderer: batched and chunked renders equal render_view, the texture hash keeps
the NumPy uint64 values, fbm's batched octaves equal the octave loop, CUDA matches CPU."""
import numpy as np
import pytest
import torch

from vggt_ros.synth import make_sequence
from vggt_ros.synth import render
from vggt_ros.synth.render import render_view, render_views_torch
from vggt_ros.synth.texture import _fade, _hash01, fbm, value_noise

W, H = 64, 48


@pytest.fixture(scope="module")
def seq():
    return make_sequence(num_frames=12, width=W, height=H, seed=4, trajectory="loop")


def _hash01_numpy(ix, iy, seed):
    """The renderer's original NumPy hash (uint64 products masked to 32 bits): the reference."""
    h = (ix.astype(np.int64).astype(np.uint64) * np.uint64(0x9E3779B1)
         ^ iy.astype(np.int64).astype(np.uint64) * np.uint64(0x85EBCA77)
         ^ np.asarray(seed).astype(np.uint64) * np.uint64(0xC2B2AE3D))
    h = h & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x2C1B3C6D)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(12)
    h = (h * np.uint64(0x297A2D39)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(15)
    return h.astype(np.float64) / 4294967296.0


def _lattice_inputs(n=4000):
    """Lattice points and seeds near 0, at the 2**31 / 2**32 wrap points, and up to 2**50."""
    rng = np.random.default_rng(0)
    edges = np.array([0, 1, -1, 2**31 - 1, 2**31, -2**31, 2**32 - 1, 2**32, -2**32, 2**50])
    ix = np.concatenate([rng.integers(-2**50, 2**50, n), rng.integers(-3000, 3000, n), edges])
    iy = np.concatenate([rng.integers(-2**50, 2**50, n), rng.integers(-3000, 3000, n),
                         edges[::-1]])
    seed = np.concatenate([rng.integers(0, 2**50, n), rng.integers(0, 2**20 + 200, n), edges])
    return ix.astype(np.float64), iy.astype(np.float64), seed


def test_hash_matches_numpy_uint64_on_large_values():
    ix, iy, seed = _lattice_inputs()
    expected = _hash01_numpy(ix, iy, seed)
    got = _hash01(torch.from_numpy(ix), torch.from_numpy(iy), torch.from_numpy(seed))
    np.testing.assert_array_equal(got.numpy(), expected)
    # Integer coordinates give the same values as integral floats.
    got_int = _hash01(torch.from_numpy(ix).long(), torch.from_numpy(iy).long(),
                      torch.from_numpy(seed))
    np.testing.assert_array_equal(got_int.numpy(), expected)


def test_value_noise_corners_and_fbm_octaves_equal_the_plain_formulas():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(np.concatenate([rng.uniform(-50, 50, 500), 2.0**32 + rng.uniform(
        -2, 2, 100), -2.0**31 + rng.uniform(-2, 2, 100)]))
    y = torch.from_numpy(rng.uniform(-2.0**33, 2.0**33, len(x)))
    seed = torch.from_numpy(rng.integers(0, 2**20, len(x)))
    # value_noise derives three corners' hashes from the fourth's products; check each corner.
    ix, iy = torch.floor(x), torch.floor(y)
    sx = (x - ix) * (x - ix) * (3 - 2 * (x - ix))
    sy = (y - iy) * (y - iy) * (3 - 2 * (y - iy))
    v00, v10 = _hash01(ix, iy, seed), _hash01(ix + 1, iy, seed)
    v01, v11 = _hash01(ix, iy + 1, seed), _hash01(ix + 1, iy + 1, seed)
    top, bottom = v00 + (v10 - v00) * sx, v01 + (v11 - v01) * sx
    assert torch.equal(value_noise(x, y, seed), top + (bottom - top) * sy)
    # fbm evaluates its octaves as one batch; the loop over octaves is the reference.
    u, v = x[:500], torch.from_numpy(rng.uniform(-20, 20, 500))
    lam0 = torch.from_numpy(rng.uniform(0.3, 0.9, 500))
    footprint = torch.from_numpy(rng.uniform(0.001, 0.2, 500))
    total, norm, amplitude, lam = torch.zeros_like(u), 0.0, 1.0, lam0
    for octave in range(6):
        n = value_noise(u / lam + 17.3 * octave, v / lam - 9.1 * octave, seed[:500] + octave)
        total += amplitude * _fade(lam, footprint) * (n - 0.5)
        norm += amplitude
        amplitude *= 0.55
        lam = lam * 0.5
    assert torch.equal(fbm(u, v, seed[:500], lam0, footprint, octaves=6),
                       0.5 + total / norm * 1.6)


def test_batched_chunked_render_equals_render_view(seq, monkeypatch):
    frames = [0, 5, 11]
    # Odd chunks straddle pixel rows and views, so a view's rays are shaded in several calls.
    monkeypatch.setattr(render, "_chunk_rays", lambda device: 1000)
    rgb, depth = render_views_torch(seq.scene, seq.K, W, H, seq.cam_from_world[frames], "cpu")
    assert rgb.shape == (3, H, W, 3) and rgb.dtype == torch.uint8
    assert depth.shape == (3, H, W) and depth.dtype == torch.float32
    monkeypatch.undo()
    for j, i in enumerate(frames):
        rgb_i, depth_i = render_view(seq.scene, seq.K, W, H, seq.cam_from_world[i])
        assert rgb_i.dtype == np.uint8 and depth_i.dtype == np.float32
        np.testing.assert_array_equal(rgb[j].numpy(), rgb_i)
        np.testing.assert_array_equal(depth[j].numpy(), depth_i)


def test_render_matches_the_former_numpy_renderer():
    """Sums and samples of a frame rendered by the NumPy renderer before the move to torch:
    a change to geometry, shading or textures moves them far beyond rounding (<= 1 level)."""
    seq = make_sequence(8, W, H, seed=5, trajectory="forward")
    rgb, depth = render_view(seq.scene, seq.K, W, H, seq.cam_from_world[3])
    sums = rgb.reshape(-1, 3).astype(np.int64).sum(axis=0)
    np.testing.assert_allclose(sums, [224288, 257041, 304337], atol=30)
    np.testing.assert_allclose(depth.astype(np.float64).sum(), 13710.353929758072, rtol=1e-6)
    samples = [[61, 76, 120], [42, 65, 49], [42, 77, 41], [63, 92, 57], [77, 79, 127],
               [62, 71, 116], [58, 74, 127], [115, 58, 109]]
    np.testing.assert_allclose(rgb[::16, ::16].reshape(-1, 3)[:8], samples, atol=1)


def test_camera_outside_room_and_bad_pose_shape_raise(seq):
    pose = seq.cam_from_world[2].copy()
    pose[:3, 3] = -pose[:3, :3] @ np.array([-1.0, 1.0, 1.0])  # centre at x = -1
    with pytest.raises(ValueError, match="view 1 is outside the room"):
        render_views_torch(seq.scene, seq.K, W, H, np.stack([seq.cam_from_world[0], pose]))
    with pytest.raises(ValueError, match=r"\[N,4,4\]"):
        render_views_torch(seq.scene, seq.K, W, H, seq.cam_from_world[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_render_matches_cpu(seq):
    poses = seq.cam_from_world[[1, 6, 10]]
    rgb_gpu, depth_gpu = render_views_torch(seq.scene, seq.K, W, H, poses, "cuda")
    assert rgb_gpu.is_cuda and depth_gpu.is_cuda
    rgb_cpu, depth_cpu = render_views_torch(seq.scene, seq.K, W, H, poses, "cpu")
    # Geometry uses only correctly rounded operations: identical. Colours may differ where
    # the two devices' sin rounds differently and the value lies at a uint8 rounding edge.
    assert torch.equal(depth_gpu.cpu(), depth_cpu)
    diff = (rgb_gpu.cpu().int() - rgb_cpu.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3
