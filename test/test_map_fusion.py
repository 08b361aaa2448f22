"""VoxelMap: per-voxel means, merging across insertions, memory bound, confidence helper."""
import numpy as np
import pytest

from vggt_ros.pipeline.map_fusion import VoxelMap, confidence_mask


def test_points_in_one_voxel_are_averaged():
    vmap = VoxelMap(voxel_size=1.0, max_points=10)
    vmap.insert(np.array([[0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [2.5, 0.5, 0.5]]),
                np.array([[0, 0, 0], [100, 200, 50], [9, 9, 9]], dtype=np.uint8))
    assert len(vmap) == 2
    order = np.argsort(vmap.points()[:, 0])
    np.testing.assert_allclose(vmap.points()[order[0]], [0.3, 0.4, 0.5], atol=1e-6)
    np.testing.assert_array_equal(vmap.colors()[order[0]], [50, 100, 25])
    np.testing.assert_allclose(vmap.points()[order[1]], [2.5, 0.5, 0.5], atol=1e-6)


def test_later_insertions_merge_into_existing_voxels_and_negative_coordinates_work():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1.0, 1.0, size=(5000, 3))
    cols = rng.integers(0, 256, size=(5000, 3), dtype=np.uint8)
    once = VoxelMap(0.25, 10_000)
    once.insert(pts, cols)
    twice = VoxelMap(0.25, 10_000)
    twice.insert(pts[:2000], cols[:2000])
    twice.insert(pts[2000:], cols[2000:])
    assert len(once) == len(twice) == 8 * 8 * 8
    a, b = np.lexsort(once.points().T), np.lexsort(twice.points().T)
    np.testing.assert_allclose(once.points()[a], twice.points()[b], atol=1e-6)
    np.testing.assert_array_equal(once.colors()[a], twice.colors()[b])
    # Each voxel's mean lies inside its own voxel.
    cells = np.floor(once.points() / 0.25)
    assert ((cells >= -4) & (cells <= 3)).all()


def test_memory_bound_drops_least_recently_updated_voxels():
    vmap = VoxelMap(1.0, max_points=3)
    col = np.zeros((1, 3), dtype=np.uint8)
    for x in range(3):
        vmap.insert(np.array([[x + 0.5, 0.5, 0.5]]), col)
    vmap.insert(np.array([[0.5, 0.5, 0.5]]), col)  # refresh voxel 0
    vmap.insert(np.array([[7.5, 0.5, 0.5]]), col)  # over the bound: voxel 1 is the oldest
    assert len(vmap) == 3
    np.testing.assert_allclose(np.sort(vmap.points()[:, 0]), [0.5, 2.5, 7.5])
    vmap.clear()
    assert len(vmap) == 0 and vmap.points().shape == (0, 3)


def test_bad_input_raises_and_far_points_are_counted():
    vmap = VoxelMap(1.0, 10)
    with pytest.raises(ValueError, match="NaN"):
        vmap.insert(np.array([[np.nan, 0, 0]]), np.zeros((1, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[N,3\]"):
        vmap.insert(np.zeros((2, 3)), np.zeros((3, 3), np.uint8))
    vmap.insert(np.array([[1e9, 0, 0], [0.5, 0.5, 0.5]]), np.zeros((2, 3), np.uint8))
    assert len(vmap) == 1 and vmap.dropped_out_of_range == 1
    with pytest.raises(ValueError, match="voxel_size"):
        VoxelMap(0.0, 10)


def test_confidence_mask_threshold_and_percentile():
    conf = np.arange(1.0, 11.0)  # 1..10
    np.testing.assert_array_equal(confidence_mask(conf, threshold=4.0), conf >= 4.0)
    keep = confidence_mask(conf, percentile=20.0)
    assert keep.sum() == 8 and not keep[:2].any()
    valid = conf != 10.0
    keep = confidence_mask(conf, threshold=2.0, percentile=50.0, valid=valid)
    # The percentile is taken over the survivors of the other tests (2..9): median 5.5.
    np.testing.assert_array_equal(conf[keep], [6.0, 7.0, 8.0, 9.0])
    with pytest.raises(ValueError, match="percentile"):
        confidence_mask(conf, percentile=100.0)


def test_the_percentile_of_millions_of_pixels_comes_from_a_subsample_within_half_a_point():
    rng = np.random.default_rng(4)
    conf = 1.0 + rng.gamma(2.0, 3.0, size=(8, 392, 518)).astype(np.float32)
    valid = rng.random(conf.shape) < 0.9
    keep = confidence_mask(conf, threshold=1.5, percentile=20.0, valid=valid)
    candidates = valid & (conf >= 1.5)
    exact = conf >= np.percentile(conf[candidates], 20.0)
    assert abs(keep.sum() / candidates.sum() - 0.8) < 5e-3  # ~4 standard errors
    assert (keep != (candidates & exact)).mean() < 5e-3


class _ReferenceMap:
    """The map's rules spelled out with a dict: per voxel the sums and the last insertion that
    touched it; over the bound, the least recently updated voxels go, lower keys first."""

    def __init__(self, voxel_size, max_points):
        self.voxel_size, self.max_points, self.voxels, self.insertions = voxel_size, max_points, {}, 0

    def insert(self, points, colors):
        self.insertions += 1
        for point, color in zip(points, colors):
            key = tuple(np.floor(point / self.voxel_size).astype(int))
            sums, _ = self.voxels.get(key, (np.zeros(7), 0))
            self.voxels[key] = (sums + np.r_[point, color, 1.0], self.insertions)
        excess = len(self.voxels) - self.max_points
        for key in sorted(self.voxels, key=lambda k: (self.voxels[k][1], k))[:max(excess, 0)]:
            del self.voxels[key]

    def means(self):
        return {k: sums[:6] / sums[6] for k, (sums, _) in self.voxels.items()}


def test_many_insertions_with_evictions_follow_the_reference_rules():
    rng = np.random.default_rng(7)
    vmap, reference = VoxelMap(0.5, 150), _ReferenceMap(0.5, 150)
    for window in range(25):
        points = rng.normal(size=(60, 3)) * 1.5 + [0.4 * window, 0.0, 0.0]
        colors = rng.integers(0, 256, size=(60, 3), dtype=np.uint8)
        vmap.insert(points, colors)
        reference.insert(points, colors)
        expected = reference.means()
        assert len(vmap) == len(expected) <= 150
        cells = np.floor(vmap.points() / 0.5).astype(int)
        got = {tuple(c): (p, col) for c, p, col in zip(cells, vmap.points(), vmap.colors())}
        assert set(got) == set(expected)
        for key, mean in expected.items():
            np.testing.assert_allclose(got[key][0], mean[:3], atol=1e-5)
            np.testing.assert_array_equal(got[key][1], np.clip(np.rint(mean[3:]), 0, 255))


def test_the_fusion_benchmark_times_filling_and_full_maps(capsys):
    from vggt_ros.bench import map_fusion
    filling, full = map_fusion.insertion_times(500, 1200, 6, 0.02)
    assert len(filling) + len(full) == 6 and filling and full  # 500 new voxels a window
    assert map_fusion.main(["--points", "300", "--max-map-points", "700", "--windows", "4"]) == 0
    assert "once it is full: median" in capsys.readouterr().out
