"""The window bundle adjustment of the pose solver: a small Levenberg-Marquardt with the Schur
complement and an analytic Jacobian.

Why hand-written: the problem has a special shape that a general sparse solver cannot exploit
as well. Each 3D point is a query pixel of an anchor keyframe, lifted by its depth, so it has ONE
parameter (its log-depth), while the window has at most a few dozen pose parameters. Eliminating
the depths (their block of the normal equations is diagonal) leaves a 6F x 6F camera system
(F <= S - 1 free frames), solved densely; the whole iteration is a handful of vectorised NumPy
operations on [S, M] arrays (every frame x every query, unobserved pairs weigh zero). scipy's
``least_squares`` with a finite-difference Jacobian added 146 ms of CPU per window to the PnP
poses on the 2-core CPU dev machine (the bench's window, 256 queries); this adds 11 ms, with
the same poses (docs/MODEL.md, "Which bundle adjustment").

Cost (all residuals whitened):
* reprojection of each observation, weighted by sqrt(track confidence) / sigma_px, Huber on the
  observation's 2D error (IRLS weights) with scale ``huber``;
* each query's log-depth against the network's depth (sigma ``depth_sigma``), which also fixes
  the window's scale;
* optionally, each observation's log-depth in the observing camera against that frame's network
  depth at the tracked pixel (``frame_log_depth``, whitened by ``frame_depth_weight``; Huber
  with the same scale, its own IRLS weight): a third residual row per observation, so it shares
  every Jacobian block of the reprojection rows (d log z / d point = e_z / z);
* each free pose against the camera head (a weak prior: it only steers frames the tracks leave
  unconstrained);
* the constant-velocity prior: over every three consecutive solved frames, the change of the
  angular velocity and of the camera centre's velocity per second (rates from the frames'
  stamps, so uneven keyframe spacing means the same), against sigmas of angular and linear
  acceleration (the linear one optionally a whitening matrix per frame, ``centre_whitening``,
  stiffer along the motion than across it). The demo model's track errors are correlated within
  a frame, so each pose on its own jitters by about a degree; a camera's motion does not
  (docs/MODEL.md).

Poses are updated on the left (R <- exp(w) R, t <- t + dt); the first frame stays fixed (it
defines the window's frame), and each depth may move at most ``max_depth_change`` in log from
where the solve starts (the network's depth is good to a few percent; a larger move is a
diverging solve).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class AdjustmentProblem:
    """What stays fixed during one solve. S frames, M query points."""

    k: np.ndarray  # [S,3,3] model-pixel intrinsics
    rays: np.ndarray  # [M,3] K_anchor^-1 [u, v, 1] of each query
    anchor: np.ndarray  # [M] frame index of each query's anchor
    net_depth: np.ndarray  # [M] the network's depth at each query (the prior's centre)
    target: np.ndarray  # [S,M,2] tracked model pixels
    weight: np.ndarray  # [S,M] whitening weight of each observation, 0 where not used
    head: np.ndarray  # [S,4,4] camera-head poses (the weak prior)
    free: np.ndarray  # [F] indices of the frames whose pose is solved
    prior_rot: float  # 1 / sigma of the rotation prior (1/rad)
    prior_trans: float  # 1 / sigma of the translation prior (1/scene units)
    depth_sigma: float  # sigma of the log-depth prior
    huber: float  # Huber scale of the whitened 2D reprojection error
    max_depth_change: float  # bound on each log-depth's move within one solve
    # The constant-velocity prior over every three consecutive frames in ``smooth_frames``
    # ([S] bool), at the frames' ``times`` ([S] seconds): 1 / sigma of the angular
    # acceleration (s^2/rad) and of the camera centre's acceleration (s^2 / scene unit);
    # 0 switches a part off.
    smooth_rot: float = 0.0
    smooth_centre: float = 0.0
    smooth_frames: Optional[np.ndarray] = None
    times: Optional[np.ndarray] = None
    # The network's depth of each OBSERVING frame at the tracked pixel ([S,M] log-depth) and
    # the whitening weight of its residual against the point's depth in that camera ([S,M],
    # 1 / sigma in log, 0 where not used); None leaves the term out.
    frame_log_depth: Optional[np.ndarray] = None
    frame_depth_weight: Optional[np.ndarray] = None
    # [S,3,3] per frame, the whitening matrix of the centre's acceleration at that frame, in
    # place of ``smooth_centre`` times the identity (which still switches the part on): a
    # change of speed can then cost more than a turn.
    centre_whitening: Optional[np.ndarray] = None

    def centre_matrices(self, middles: np.ndarray) -> np.ndarray:
        """[T,3,3] whitening of the centre's acceleration at each middle frame."""
        if self.centre_whitening is None:
            return np.broadcast_to(self.smooth_centre * np.eye(3), (len(middles), 3, 3))
        return self.centre_whitening[middles]

    def middles(self) -> np.ndarray:
        """Frames m whose triple (m-1, m, m+1) lies in ``smooth_frames``."""
        if self.smooth_frames is None or not (self.smooth_rot or self.smooth_centre):
            return np.zeros(0, dtype=int)
        on = np.asarray(self.smooth_frames, dtype=bool)
        return np.flatnonzero(on[:-2] & on[1:-1] & on[2:]) + 1

    def intervals(self) -> np.ndarray:
        """[S-1] seconds between consecutive frames (at least a millisecond)."""
        return np.maximum(np.diff(np.asarray(self.times, dtype=np.float64)), 1e-3)


# A step that changes the cost by less than this share ends the solve: the poses then move by
# far less than the tracks' noise.
RELATIVE_TOLERANCE = 1e-6


def _skew(v: np.ndarray) -> np.ndarray:
    """[...,3] -> [...,3,3] cross-product matrices."""
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def _huber_cost(error: np.ndarray, scale: float) -> np.ndarray:
    """Huber's cost of non-negative whitened errors (quadratic up to ``scale``)."""
    return np.where(error <= scale, error ** 2, 2 * scale * error - scale ** 2)


def _huber_weight(error: np.ndarray, scale: float) -> np.ndarray:
    """The IRLS weight of non-negative whitened errors under ``_huber_cost``."""
    return np.where(error <= scale, 1.0, scale / np.maximum(error, 1e-12))


def _log_rotation(rot: np.ndarray) -> np.ndarray:
    """[F,3,3] rotations -> [F,3] rotation vectors (scipy's Rotation costs ~0.5 ms a call here,
    a quarter of an iteration)."""
    vee = np.stack([rot[:, 2, 1] - rot[:, 1, 2], rot[:, 0, 2] - rot[:, 2, 0],
                    rot[:, 1, 0] - rot[:, 0, 1]], axis=1)  # 2 sin(angle) axis
    cos = np.clip((np.trace(rot, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    sin = np.sqrt(1.0 - cos ** 2)
    # angle / (2 sin angle), -> 1/2 at 0; near 180 deg the axis from vee is ill-conditioned, but
    # the prior it feeds is ~180 deg wide there
    factor = np.where(sin > 1e-6, angle / np.maximum(2.0 * sin, 1e-12), 0.5)
    return vee * factor[:, None]


class _State:
    """Poses and log-depths of one iterate, with its residuals (and, on demand, Jacobians)."""

    def __init__(self, problem: AdjustmentProblem, rot: np.ndarray, trans: np.ndarray,
                 log_depth: np.ndarray) -> None:
        self.rot, self.trans, self.log_depth = rot, trans, log_depth
        p = problem
        self.cam_anchor = p.rays * np.exp(log_depth)[:, None]  # [M,3] in the anchor's camera
        self.rot_anchor_t = np.swapaxes(rot[p.anchor], 1, 2)  # [M,3,3] world_from_anchor rot
        self.offset = self.cam_anchor - trans[p.anchor]  # [M,3]
        # batched small matmuls: several times faster than the equivalent einsums here
        self.world_dir = (self.rot_anchor_t @ self.cam_anchor[..., None])[..., 0]  # R_a^T c
        world = (self.rot_anchor_t @ self.offset[..., None])[..., 0]
        self.rotated = world[None] @ np.swapaxes(rot, 1, 2)  # [S,M,3] R_s X
        projected = (self.rotated + trans[:, None, :]) @ np.swapaxes(p.k, 1, 2)
        used = (p.weight > 0) if p.frame_depth_weight is None else (
            (p.weight > 0) | (p.frame_depth_weight > 0))
        self.depth_z = np.where(used, np.maximum(projected[..., 2], 1e-9), 1.0)
        self.pix = projected[..., :2] / self.depth_z[..., None]
        residual = np.where(used[..., None], (self.pix - p.target) * p.weight[..., None],
                            0.0)  # [S,M,2]
        # Huber on each observation's 2D error, as IRLS weights (one per residual row)
        error = np.linalg.norm(residual, axis=2)
        robust = _huber_weight(error, p.huber)
        robust_cost = _huber_cost(error, p.huber).sum()
        rows, weights = [residual], [robust[..., None], robust[..., None]]
        if p.frame_depth_weight is not None:  # log-depth in the observing camera, own Huber
            depth_error = np.where(used, (np.log(self.depth_z) - p.frame_log_depth)
                                   * p.frame_depth_weight, 0.0)
            depth_size = np.abs(depth_error)
            rows.append(depth_error[..., None])
            weights.append(_huber_weight(depth_size, p.huber)[..., None])
            robust_cost += _huber_cost(depth_size, p.huber).sum()
        self.residual = np.concatenate(rows, axis=2)  # [S,M,R], R = 2 or 3
        self.robust = np.concatenate(weights, axis=2)  # [S,M,R] IRLS weight of each row
        self.rot_prior = _log_rotation(
            rot[p.free] @ np.swapaxes(p.head[p.free, :3, :3], 1, 2)) * p.prior_rot
        self.trans_prior = (trans[p.free] - p.head[p.free, :3, 3]) * p.prior_trans
        self.depth_prior = (log_depth - np.log(p.net_depth)) / p.depth_sigma
        self.middles = p.middles()
        self.smooth = np.zeros((len(self.middles), 6))
        if len(self.middles):
            m, dt = self.middles, p.intervals()
            self.step_rot = rot[1:] @ np.swapaxes(rot[:-1], 1, 2)  # [S-1] R_{s+1} R_s^T
            rate = _log_rotation(self.step_rot) / dt[:, None]  # [S-1] angular velocities
            centres = -(np.swapaxes(rot, 1, 2) @ trans[..., None])[..., 0]  # [S,3]
            velocity = np.diff(centres, axis=0) / dt[:, None]
            span = (dt[m] + dt[m - 1])[:, None] / 2.0  # the accelerations' time base
            self.smooth[:, :3] = (rate[m] - rate[m - 1]) / span * p.smooth_rot
            self.smooth[:, 3:] = np.einsum("tij,tj->ti", p.centre_matrices(m),
                                           (velocity[m] - velocity[m - 1]) / span)
        self.cost = float(robust_cost + (self.rot_prior ** 2).sum()
                          + (self.trans_prior ** 2).sum() + (self.depth_prior ** 2).sum()
                          + (self.smooth ** 2).sum())

    def smooth_jacobian(self, p: AdjustmentProblem) -> np.ndarray:
        """[6T, 6S] Jacobian of the constant-velocity residuals (T middle frames) with respect
        to every frame's (w, t). The rotation rows to first order about the current steps D
        (log(exp(w') D exp(-w)) ~ log D + w' - D w for the small steps between keyframes); the
        centre rows exactly (c = -R^T t, so dc = -R^T dt - R^T [t]x dw)."""
        m, dt = self.middles, p.intervals()
        count, num_frames = len(m), len(self.rot)
        jac = np.zeros((count, 6, num_frames, 6))
        scale = 2.0 / (dt[m] + dt[m - 1])  # [T] per second of the acceleration's time base
        eye = np.eye(3)[None]
        centre = p.centre_matrices(m)  # [T,3,3], the same for all three frames of a triple
        # d(rate[m] - rate[m-1]) and d(velocity[m] - velocity[m-1]) for frames m-1, m, m+1
        for frames, rot_coef, centre_coef in (
                (m - 1, self.step_rot[m - 1] / dt[m - 1, None, None], 1.0 / dt[m - 1]),
                (m, -self.step_rot[m] / dt[m, None, None] - eye / dt[m - 1, None, None],
                 -1.0 / dt[m] - 1.0 / dt[m - 1]),
                (m + 1, eye / dt[m, None, None], 1.0 / dt[m])):
            block = np.zeros((count, 6, 6))
            block[:, :3, :3] = rot_coef * (scale * p.smooth_rot)[:, None, None]
            weight = (-centre_coef * scale)[:, None, None] * centre
            r_t = np.swapaxes(self.rot[frames], 1, 2)
            block[:, 3:, :3] = weight @ (r_t @ _skew(self.trans[frames]))
            block[:, 3:, 3:] = weight @ r_t
            jac[np.arange(count), :, frames, :] = block
        return jac.reshape(6 * count, 6 * num_frames)

    def normal_equations(self, p: AdjustmentProblem):
        """Robustly weighted J^T J and J^T r, split into cameras (c) and depths (d).

        Built from per-observation 2x6 Jacobians (the observing frame; 2x12 with the anchor frame
        when that is solved too) as one small GEMM per frame and anchor, summed into 6x6 blocks.
        Not one GEMM over all observations: a multi-threaded BLAS on a busy CPU made that one
        100 ms instead of 0.3 (2-core dev machine).
        """
        num_frames, num_points = p.weight.shape
        free_col = np.full(num_frames, -1)
        free_col[p.free] = 6 * np.arange(len(p.free))
        n_cam = 6 * len(p.free)
        # d pix / d point in the observing camera, whitened: [S,M,2,3]; with the frames'
        # depth a third row, d log z / d point = e_z / z, whitened: [S,M,3,3]
        d_pix = (p.k[:, None, :2, :] - self.pix[..., None] * p.k[:, None, 2:3, :]) \
            / self.depth_z[..., None, None] * p.weight[..., None, None]
        if p.frame_depth_weight is not None:
            d_log_z = np.zeros(d_pix.shape[:2] + (1, 3))
            d_log_z[..., 0, 2] = p.frame_depth_weight / self.depth_z
            d_pix = np.concatenate([d_pix, d_log_z], axis=2)
        # the depth's direction in the observing camera: R_s R_a^T (ray x depth)
        depth_dir = self.world_dir[None] @ np.swapaxes(self.rot, 1, 2)
        jac_depth = d_pix @ depth_dir[..., None]  # [S,M,R,1]
        anchors = [a for a in np.unique(p.anchor) if free_col[a] >= 0]
        blocks = [-d_pix @ _skew(self.rotated), d_pix]  # the observing frame's (w, t)
        if anchors:  # ... and the anchor frame's (w, t) when it is solved too
            through_anchor = d_pix @ (self.rot[:, None] @ self.rot_anchor_t[None])
            blocks += [through_anchor @ _skew(self.offset)[None], -through_anchor]
        jac = np.concatenate(blocks, axis=3)  # [S,M,R,C], C = 6 or 12
        weighted = jac * self.robust[..., None]
        cross = (weighted * jac_depth).sum(axis=2)  # [S,M,C]
        h_cc, g_c = np.zeros((n_cam, n_cam)), np.zeros(n_cam)
        h_cd = np.zeros((n_cam, num_points))
        for s in p.free:
            h_cd[free_col[s]:free_col[s] + 6] += cross[s, :, :6].T
        cols = jac.shape[3]
        for a in np.unique(p.anchor):
            # per frame, sums over this anchor's points: one small GEMM per frame
            of_a, ca = p.anchor == a, free_col[a]
            weighted_t = np.swapaxes(weighted[:, of_a].reshape(num_frames, -1, cols), 1, 2)
            block_outer = weighted_t @ jac[:, of_a].reshape(num_frames, -1, cols)  # [S,C,C]
            block_grad = (weighted_t @ self.residual[:, of_a].reshape(num_frames, -1, 1))[..., 0]
            for s in p.free:
                c = free_col[s]
                h_cc[c:c + 6, c:c + 6] += block_outer[s, :6, :6]
                g_c[c:c + 6] += block_grad[s, :6]
                if ca >= 0:
                    h_cc[c:c + 6, ca:ca + 6] += block_outer[s, :6, 6:]
                    h_cc[ca:ca + 6, c:c + 6] += block_outer[s, 6:, :6]
            if ca >= 0:
                h_cc[ca:ca + 6, ca:ca + 6] += block_outer[:, 6:, 6:].sum(axis=0)
                g_c[ca:ca + 6] += block_grad[:, 6:].sum(axis=0)
                h_cd[ca:ca + 6, of_a] += cross[:, of_a, 6:].sum(axis=0).T
        w = self.robust  # [S,M,R]
        jac_depth = jac_depth[..., 0]
        h_dd = (w * jac_depth ** 2).sum(axis=(0, 2)) + 1.0 / p.depth_sigma ** 2
        g_d = (w * jac_depth * self.residual).sum(axis=(0, 2)) + self.depth_prior / p.depth_sigma
        if len(self.middles):  # the constant-velocity prior, on the free frames' columns
            jac = self.smooth_jacobian(p)[:, (6 * p.free[:, None] + np.arange(6)).ravel()]
            h_cc += jac.T @ jac
            g_c += jac.T @ self.smooth.ravel()
        prior = np.tile(np.r_[np.full(3, p.prior_rot), np.full(3, p.prior_trans)], len(p.free))
        h_cc[np.diag_indices(n_cam)] += prior ** 2
        g_c += prior * np.column_stack([self.rot_prior, self.trans_prior]).ravel()
        return h_cc, g_c, h_cd, h_dd, g_d


def adjust(problem: AdjustmentProblem, poses: np.ndarray, depth: np.ndarray,
           max_iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt from ``poses`` [S,4,4] and ``depth`` [M]; returns the refined pair
    (the input unchanged if no step lowered the cost)."""
    p = problem
    start_log = np.log(depth)
    state = _State(p, poses[:, :3, :3].copy(), poses[:, :3, 3].copy(), start_log.copy())
    damping = 1e-3
    equations = state.normal_equations(p)
    for _ in range(max_iterations):
        h_cc, g_c, h_cd, h_dd, g_d = equations
        # Marquardt damping, then the depths eliminated (their block is diagonal)
        h_cc = h_cc + damping * np.diag(np.diag(h_cc) + 1e-9)
        h_dd = h_dd * (1.0 + damping)
        reduced = h_cc - (h_cd / h_dd) @ h_cd.T
        rhs = -g_c + h_cd @ (g_d / h_dd)
        try:
            step_cam = np.linalg.solve(reduced, rhs)
        except np.linalg.LinAlgError:
            damping *= 10.0
            continue
        step_depth = (-g_d - h_cd.T @ step_cam) / h_dd
        rot, trans = state.rot.copy(), state.trans.copy()
        step = step_cam.reshape(-1, 6)
        rot[p.free] = Rotation.from_rotvec(step[:, :3]).as_matrix() @ rot[p.free]
        trans[p.free] += step[:, 3:]
        log_depth = np.clip(state.log_depth + step_depth, start_log - p.max_depth_change,
                            start_log + p.max_depth_change)
        trial = _State(p, rot, trans, log_depth)
        if trial.cost < state.cost:
            converged = state.cost - trial.cost <= RELATIVE_TOLERANCE * state.cost
            state, damping = trial, max(damping / 3.0, 1e-9)
            if converged:
                break
            equations = state.normal_equations(p)
        elif trial.cost - state.cost <= RELATIVE_TOLERANCE * state.cost:
            break  # at the minimum: a step neither lowers nor raises the cost
        else:  # the same linearisation, damped harder
            damping *= 4.0
            if damping > 1e8:
                break
    out = poses.copy()
    out[:, :3, :3], out[:, :3, 3] = state.rot, state.trans
    return out, np.exp(state.log_depth)
