"""Similarity transforms (Sim(3)) fitted between two point sets: the core of window chaining.

Three estimators:

* ``umeyama_sim3``: the closed-form weighted least-squares fit (Umeyama 1991) with the
  reflection fix, so a mirrored point set never yields det(R) = -1.
* ``robust_sim3``: iteratively re-weighted least squares (IRLS) with Huber weights on top of
  the closed form, as VGGT-Long aligns chunks (weights ``w0 * huber``, delta 0.1, a few
  iterations). Dense point maps of two VGGT windows always contain some outliers (sky,
  object edges, flying pixels); the plain least-squares fit lets them bias the scale.
* ``robust_scale``: the same IRLS-Huber for the scale alone, when the rotation and translation
  are known from elsewhere (the chaining's pose seams): one closed-form parameter per
  iteration, no SVD, and far fewer points for the same precision.

Degenerate input (too few weighted points, all points at one place, collinear points that leave
the rotation undetermined, non-finite values) raises ``Sim3Error`` rather than returning NaNs,
so the caller can fall back to another estimate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_POINTS = 3


class Sim3Error(ValueError):
    """The point sets cannot determine a similarity transform (reason in the message)."""


@dataclass(frozen=True)
class Sim3Fit:
    """dst ≈ scale * rotation @ src + translation, with robust fit diagnostics."""

    scale: float
    rotation: np.ndarray  # [3,3]
    translation: np.ndarray  # [3]
    residual: float  # weighted RMS of ||dst - T(src)|| over the final inliers, dst units
    inlier_ratio: float  # weighted share of points with residual <= huber_delta
    num_points: int
    iterations: int

    def matrix(self) -> np.ndarray:
        """4x4 [sR t; 0 1]."""
        return sim3_matrix(self.scale, self.rotation, self.translation)


def sim3_matrix(scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 homogeneous matrix [sR t; 0 1] of a similarity transform."""
    out = np.eye(4)
    out[:3, :3] = scale * np.asarray(rotation, dtype=np.float64)
    out[:3, 3] = translation
    return out


def _check_inputs(src: np.ndarray, dst: np.ndarray,
                  weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 3 or src.shape != dst.shape:
        raise Sim3Error(f"src and dst must both be [N,3], got {src.shape} and {dst.shape}")
    if weights is None:
        weights = np.ones(len(src))
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(src),):
        raise Sim3Error(f"weights must be [{len(src)}], got {weights.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all() and np.isfinite(weights).all()):
        raise Sim3Error("src, dst and weights must be finite")
    if (weights < 0).any():
        raise Sim3Error("weights must be non-negative")
    return src, dst, weights


def umeyama_sim3(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
                 with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted least-squares (s, R, t) minimising sum w ||dst - (s R src + t)||^2.

    Uses Umeyama's exact scale trace(D S) / var(src), which is the least-squares optimum
    (VGGT-Long's ratio of RMS spreads is not, once the fit is imperfect).
    ``with_scale=False`` gives the rigid (SE(3)) fit with s = 1.
    """
    src, dst, weights = _check_inputs(src, dst, weights)
    used = weights > 0
    if used.sum() < MIN_POINTS:
        raise Sim3Error(f"need at least {MIN_POINTS} points with positive weight, "
                        f"got {int(used.sum())}")
    w = weights / weights.sum()
    mu_src = w @ src
    mu_dst = w @ dst
    src_c = src - mu_src
    dst_c = dst - mu_dst
    var_src = float(w @ np.einsum("ij,ij->i", src_c, src_c))
    var_dst = float(w @ np.einsum("ij,ij->i", dst_c, dst_c))
    # Relative test: a spread 1e-12 of the other set's is numerically a single point.
    if var_src <= 1e-24 or var_src <= 1e-24 * var_dst:
        raise Sim3Error("src points have no spread (all at one place)")
    cov = (dst_c * w[:, None]).T @ src_c  # [3,3]
    u, d, vt = np.linalg.svd(cov)
    if d[1] <= 1e-9 * d[0] or d[0] <= 0:
        raise Sim3Error("points are collinear or have no correlation: rotation undetermined")
    fix = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[2] = -1.0  # reflection: flip the weakest axis
    rotation = (u * fix) @ vt
    scale = float((d * fix).sum() / var_src) if with_scale else 1.0
    if not np.isfinite(scale) or scale <= 0:
        raise Sim3Error(f"fitted scale is not positive ({scale})")
    translation = mu_dst - scale * rotation @ mu_src
    return scale, rotation, translation


def robust_sim3(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
                huber_delta: float = 0.1, max_iters: int = 5, tol: float = 1e-9,
                with_scale: bool = True) -> Sim3Fit:
    """IRLS-Huber Sim(3): refit with weights ``w0 * min(1, delta / r)`` until the parameters
    stop changing (``tol``, plus < 0.1 degree rotation change) or ``max_iters`` refits.

    ``huber_delta`` is in dst units; residuals below it count as inliers.
    """
    if huber_delta <= 0 or max_iters < 1:
        raise ValueError(f"huber_delta must be > 0 and max_iters >= 1, got {huber_delta}, "
                         f"{max_iters}")
    src, dst, w0 = _check_inputs(src, dst, weights)
    scale, rotation, translation = umeyama_sim3(src, dst, w0, with_scale)
    iterations = 0
    for iterations in range(1, max_iters + 1):
        r = _residuals(src, dst, scale, rotation, translation)
        huber = np.where(r <= huber_delta, 1.0, huber_delta / np.maximum(r, 1e-300))
        new_s, new_r, new_t = umeyama_sim3(src, dst, w0 * huber, with_scale)
        d_param = abs(new_s - scale) + float(np.linalg.norm(new_t - translation))
        cos_angle = (np.trace(new_r @ rotation.T) - 1.0) / 2.0
        d_angle = float(np.degrees(np.arccos(np.clip(cos_angle, -1.0, 1.0))))
        scale, rotation, translation = new_s, new_r, new_t
        if d_param < tol and d_angle < 0.1:
            break
    r = _residuals(src, dst, scale, rotation, translation)
    inlier = r <= huber_delta
    total = w0.sum()
    inlier_ratio = float(w0[inlier].sum() / total)
    w_in = w0 * inlier
    residual = (float(np.sqrt((w_in @ r**2) / w_in.sum())) if w_in.sum() > 0
                else float(np.sqrt((w0 @ r**2) / total)))
    return Sim3Fit(scale, rotation, translation, residual, inlier_ratio, int((w0 > 0).sum()),
                   iterations)


@dataclass(frozen=True)
class ScaleFit:
    """dst ≈ scale * src, with the same robust fit diagnostics as ``Sim3Fit``."""

    scale: float
    residual: float  # weighted RMS of ||dst - scale * src|| over the final inliers, dst units
    inlier_ratio: float  # weighted share of points with residual <= huber_delta
    num_points: int
    iterations: int


def robust_scale(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
                 huber_delta: float = 0.1, max_iters: int = 5, tol: float = 1e-9) -> ScaleFit:
    """IRLS-Huber scale ``s`` minimising sum w huber(||dst - s src||): points already rotated
    and centred by a known motion, so ``s`` is the only unknown and each refit is the closed
    form ``sum w dst.src / sum w src.src``. Stops when ``s`` changes by less than ``tol``
    (relative) or after ``max_iters`` refits. Raises ``Sim3Error`` when ``src`` has no spread
    about the known centre or the fitted scale is not positive."""
    if huber_delta <= 0 or max_iters < 1:
        raise ValueError(f"huber_delta must be > 0 and max_iters >= 1, got {huber_delta}, "
                         f"{max_iters}")
    src, dst, w0 = _check_inputs(src, dst, weights)
    if (w0 > 0).sum() < 1:
        raise Sim3Error("need at least one point with positive weight")
    cross = np.einsum("ij,ij->i", dst, src)
    norm = np.einsum("ij,ij->i", src, src)
    # Relative test, as in umeyama_sim3: a spread 1e-12 of dst's is numerically no spread.
    floor = max(1e-24 * float(w0 @ np.einsum("ij,ij->i", dst, dst)), 1e-300)

    def fit(w: np.ndarray) -> float:
        denominator = float(w @ norm)
        if not denominator > floor:
            raise Sim3Error("src points have no spread about the known centre")
        scale = float(w @ cross) / denominator
        if not np.isfinite(scale) or scale <= 0:
            raise Sim3Error(f"fitted scale is not positive ({scale})")
        return scale

    scale = fit(w0)
    iterations = 0
    for iterations in range(1, max_iters + 1):
        r = np.linalg.norm(dst - scale * src, axis=1)
        new = fit(w0 * np.where(r <= huber_delta, 1.0, huber_delta / np.maximum(r, 1e-300)))
        done = abs(new - scale) < tol * scale
        scale = new
        if done:
            break
    r = np.linalg.norm(dst - scale * src, axis=1)
    inlier = r <= huber_delta
    total = w0.sum()
    w_in = w0 * inlier
    residual = (float(np.sqrt((w_in @ r**2) / w_in.sum())) if w_in.sum() > 0
                else float(np.sqrt((w0 @ r**2) / total)))
    return ScaleFit(scale, residual, float(w_in.sum() / total), int((w0 > 0).sum()), iterations)


def _residuals(src: np.ndarray, dst: np.ndarray, scale: float, rotation: np.ndarray,
               translation: np.ndarray) -> np.ndarray:
    return np.linalg.norm(dst - (scale * src @ rotation.T + translation), axis=1)


def confidence_weights(conf_a: np.ndarray, conf_b: np.ndarray,
                       relative: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """VGGT-Long's correspondence weights: (sqrt(conf_a * conf_b), mask).

    The mask keeps pixels whose confidence in BOTH windows exceeds
    ``relative * min(median(conf_a), median(conf_b))``: a threshold relative to each window's
    own confidence level, because VGGT's confidence scale varies from scene to scene.
    """
    conf_a = np.asarray(conf_a, dtype=np.float64)
    conf_b = np.asarray(conf_b, dtype=np.float64)
    if conf_a.shape != conf_b.shape:
        raise ValueError(f"confidence shapes differ: {conf_a.shape} vs {conf_b.shape}")
    finite = np.isfinite(conf_a) & np.isfinite(conf_b)
    if not finite.any():
        return np.zeros(conf_a.shape), np.zeros(conf_a.shape, dtype=bool)
    tau = relative * min(np.median(conf_a[finite]), np.median(conf_b[finite]))
    mask = finite & (conf_a > tau) & (conf_b > tau)
    weights = np.where(mask, np.sqrt(np.where(mask, conf_a * conf_b, 0.0)), 0.0)
    return weights, mask


def rotation_mean(rotations: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotations [N,3,3]: the rotation closest to their arithmetic mean."""
    u, _, vt = np.linalg.svd(np.asarray(rotations, dtype=np.float64).sum(axis=0))
    fix = np.array([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return (u * fix) @ vt
