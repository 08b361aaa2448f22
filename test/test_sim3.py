"""Sim(3) estimators: exact recovery, robustness, weights and degenerate input."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vggt_ros.geometry.sim3 import (Sim3Error, confidence_weights, robust_scale, robust_sim3,
                                    rotation_mean, umeyama_sim3)


def _random_sim3(rng):
    rotation = Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix()
    return float(rng.uniform(0.2, 5.0)), rotation, rng.normal(size=3) * 3


def _apply(s, r, t, p):
    return s * p @ r.T + t


def test_umeyama_recovers_exact_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(200, 3))
    s, r, t = _random_sim3(rng)
    s_hat, r_hat, t_hat = umeyama_sim3(src, _apply(s, r, t, src))
    assert s_hat == pytest.approx(s, rel=1e-10)
    np.testing.assert_allclose(r_hat, r, atol=1e-10)
    np.testing.assert_allclose(t_hat, t, atol=1e-9)


def test_umeyama_never_returns_a_reflection():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(50, 3))
    mirrored = src * np.array([1.0, 1.0, -1.0])  # no proper rotation maps src onto this
    _, r_hat, _ = umeyama_sim3(src, mirrored)
    assert np.linalg.det(r_hat) == pytest.approx(1.0)
    np.testing.assert_allclose(r_hat @ r_hat.T, np.eye(3), atol=1e-10)


def test_rigid_fit_keeps_unit_scale():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(30, 3))
    s, r, t = _random_sim3(rng)
    s_hat, r_hat, _ = umeyama_sim3(src, _apply(s, r, t, src), with_scale=False)
    assert s_hat == 1.0
    np.testing.assert_allclose(r_hat, r, atol=1e-8)


def test_huber_irls_rejects_gross_outliers_that_bias_least_squares():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(1000, 3))
    s, t = 2.0, np.array([1.0, 2.0, 3.0])
    r = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    dst = _apply(s, r, t, src) + rng.normal(scale=0.005, size=src.shape)
    bad = rng.choice(len(src), 200, replace=False)
    dst[bad] *= 1.5  # e.g. flying pixels pushed away from the camera
    plain_s, _, _ = umeyama_sim3(src, dst)
    fit = robust_sim3(src, dst, huber_delta=0.05, max_iters=20)
    assert abs(plain_s - s) > 0.05  # least squares is visibly biased ...
    assert fit.scale == pytest.approx(s, rel=5e-3)  # ... IRLS is not
    np.testing.assert_allclose(fit.rotation, r, atol=5e-3)
    assert 0.75 <= fit.inlier_ratio <= 0.85
    assert fit.residual < 0.02
    assert fit.num_points == 1000 and 1 <= fit.iterations <= 20


def test_robust_scale_alone_rejects_the_outliers_that_bias_its_least_squares():
    rng = np.random.default_rng(6)
    src = rng.normal(size=(1000, 3)) + [0.0, 0.0, 3.0]
    dst = 0.7 * src + rng.normal(scale=0.005, size=src.shape)
    plain = robust_scale(src, dst, huber_delta=1e6)  # every point an inlier: least squares
    assert plain.scale == pytest.approx(float(np.sum(dst * src) / np.sum(src * src)), rel=1e-12)
    dst[rng.choice(len(src), 200, replace=False)] *= 1.5
    biased = robust_scale(src, dst, huber_delta=1e6)
    fit = robust_scale(src, dst, huber_delta=0.05, max_iters=20)
    assert abs(biased.scale - 0.7) > 0.03 and fit.scale == pytest.approx(0.7, rel=5e-3)
    assert 0.75 <= fit.inlier_ratio <= 0.85 and fit.residual < 0.02
    assert fit.num_points == 1000 and 1 <= fit.iterations <= 20
    with pytest.raises(Sim3Error, match="no spread"):
        robust_scale(np.zeros((10, 3)), dst[:10])
    with pytest.raises(Sim3Error, match="not positive"):
        robust_scale(src, -src)


def test_zero_weights_remove_outliers_exactly():
    rng = np.random.default_rng(4)
    src = rng.normal(size=(100, 3))
    s, r, t = _random_sim3(rng)
    dst = _apply(s, r, t, src)
    dst[:10] += 100.0
    w = np.ones(100)
    w[:10] = 0.0
    s_hat, r_hat, _ = umeyama_sim3(src, dst, w)
    assert s_hat == pytest.approx(s, rel=1e-10)
    np.testing.assert_allclose(r_hat, r, atol=1e-9)


@pytest.mark.parametrize("src,match", [
    (np.zeros((10, 3)), "no spread"),
    (np.outer(np.arange(10.0), [1.0, 2.0, 3.0]), "collinear"),
    (np.eye(3)[:2], "at least 3"),
])
def test_degenerate_inputs_raise(src, match):
    dst = src * 2.0 + 1.0
    with pytest.raises(Sim3Error, match=match):
        robust_sim3(src, dst)


def test_non_finite_and_mismatched_inputs_raise():
    src = np.random.default_rng(5).normal(size=(10, 3))
    bad = src.copy()
    bad[3, 1] = np.nan
    with pytest.raises(Sim3Error, match="finite"):
        umeyama_sim3(src, bad)
    with pytest.raises(Sim3Error, match=r"\[N,3\]"):
        umeyama_sim3(src, src[:5])
    with pytest.raises(Sim3Error, match="non-negative"):
        umeyama_sim3(src, src, -np.ones(10))


def test_confidence_weights_follow_vggt_long():
    conf_a = np.array([1.0, 10.0, 10.0, 10.0, 0.5])
    conf_b = np.array([10.0, 10.0, 4.0, 0.1, 10.0])
    weights, mask = confidence_weights(conf_a, conf_b)
    tau = 0.1 * min(np.median(conf_a), np.median(conf_b))  # 1.0
    np.testing.assert_array_equal(mask, (conf_a > tau) & (conf_b > tau))
    np.testing.assert_allclose(weights[mask], np.sqrt(conf_a * conf_b)[mask])
    assert (weights[~mask] == 0).all()


def test_rotation_mean_of_identical_and_symmetric_rotations():
    r = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    np.testing.assert_allclose(rotation_mean(np.stack([r, r, r])), r, atol=1e-12)
    pair = Rotation.from_euler("z", [[20], [40]], degrees=True).as_matrix()
    np.testing.assert_allclose(rotation_mean(pair), r, atol=1e-12)
