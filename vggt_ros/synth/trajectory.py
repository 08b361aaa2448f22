"""Camera trajectories inside a box-shaped room (world frame: x, y horizontal, z up).

Paths are resampled by arc length so the camera moves at a constant, realistic speed
(a few centimetres per frame): VGGT and the chaining code need parallax between frames but
also overlap, and a constant step makes tests independent of the curve's parameterisation.
Orientation follows the path (or a target for ``orbit``) with slow, small pitch/roll/height
wobble so the motion is not perfectly planar, as with a hand-held or robot-mounted camera.
``turn`` is a robot rotating in place (nearly pure rotation): the common case where
translation-based methods lose scale and parallax, and the easiest relative pose to learn.
"""
from __future__ import annotations

import numpy as np

TRAJECTORIES = ("loop", "forward", "orbit", "turn")
STEP_M = 0.075  # nominal camera displacement per frame
LOOP_STEP_M = 0.09
MIN_STEP_M = 0.05
MAX_STEP_M = 0.10
WALL_MARGIN_M = 1.2  # closest the path gets to a wall (leaves room for the camera's view)
EYE_HEIGHT_M = 1.4
TURN_RATE_DEG = (1.5, 3.5)  # yaw per frame of ``turn``; either direction
TURN_PITCH_RAD = 0.15  # ``turn`` nods up and down this much on top of the common wobble
_DENSE = 8192  # samples of a curve before arc-length resampling

# Optical axes of a camera with zero yaw/pitch/roll, as columns in world coordinates:
# x right = -y_world, y down = -z_world, z forward = +x_world.
_OPTICAL_IN_WORLD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def forward_path_length(num_frames: int) -> float:
    """Length of the ``forward`` path; the room is made long enough to contain it."""
    return max(num_frames - 1, 1) * STEP_M


def world_from_cam_matrix(position: np.ndarray, yaw: np.ndarray, pitch: np.ndarray,
                          roll: np.ndarray) -> np.ndarray:
    """[N,4,4] optical-frame poses from a position and yaw (about +z), pitch (>0 looks down)
    and roll (about the optical axis)."""
    n = len(position)
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    rz = np.zeros((n, 3, 3))
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = cy, -sy, sy, cy, 1.0
    ry = np.zeros((n, 3, 3))
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 2, 0], ry[:, 2, 2], ry[:, 1, 1] = cp, sp, -sp, cp, 1.0
    r_roll = np.zeros((n, 3, 3))
    r_roll[:, 0, 0], r_roll[:, 0, 1], r_roll[:, 1, 0], r_roll[:, 1, 1] = cr, -sr, sr, cr
    r_roll[:, 2, 2] = 1.0
    pose = np.tile(np.eye(4), (n, 1, 1))
    pose[:, :3, :3] = rz @ ry @ _OPTICAL_IN_WORLD @ r_roll
    pose[:, :3, 3] = position
    return pose


def make_world_from_cam(kind: str, num_frames: int, room_size: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """[N,4,4] world_from_cam poses of trajectory ``kind`` in a room spanning [0, room_size]."""
    if kind not in TRAJECTORIES:
        raise ValueError(f"unknown trajectory {kind!r}; expected one of {TRAJECTORIES}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    room_size = np.asarray(room_size, dtype=np.float64)
    builder = {"loop": _loop, "forward": _forward, "orbit": _orbit, "turn": _turn}[kind]
    xy, yaw, pitch = builder(num_frames, room_size, rng)
    frames = np.arange(num_frames, dtype=np.float64)
    height = EYE_HEIGHT_M + _wobble(rng, frames, 0.05)
    pitch = pitch + _wobble(rng, frames, 0.04)
    roll = _wobble(rng, frames, 0.015)
    yaw = yaw + _wobble(rng, frames, 0.06)
    position = np.column_stack([xy, height])
    return world_from_cam_matrix(position, yaw, pitch, roll)


def _wobble(rng: np.random.Generator, frames: np.ndarray, amplitude: float) -> np.ndarray:
    """A slow sinusoid (period 40-90 frames): smooth, bounded deviation."""
    period = rng.uniform(40.0, 90.0)
    return amplitude * np.sin(2.0 * np.pi * frames / period + rng.uniform(0, 2 * np.pi))


def _closed_curve_step(perimeter: float, num_frames: int) -> float:
    """Step so that N frames cover one lap when the speed stays realistic, else nominal."""
    step = perimeter / max(num_frames, 1)
    return step if MIN_STEP_M <= step <= MAX_STEP_M else (
        MIN_STEP_M if step < MIN_STEP_M else STEP_M)


def _sample_by_arc_length(dense: np.ndarray, arc: np.ndarray, closed: bool) -> tuple[
        np.ndarray, np.ndarray]:
    """Positions and unit tangents of a dense polyline at arc lengths ``arc``."""
    seg = np.linalg.norm(np.diff(dense, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    if closed:
        arc = np.mod(arc, cum[-1])
    xy = np.column_stack([np.interp(arc, cum, dense[:, k]) for k in range(2)])
    tangent_dense = np.gradient(dense, cum, axis=0)
    tangent = np.column_stack([np.interp(arc, cum, tangent_dense[:, k]) for k in range(2)])
    return xy, tangent / np.linalg.norm(tangent, axis=1, keepdims=True)


def _perimeter(dense: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(dense, axis=0), axis=1).sum())


def _loop(n: int, room: np.ndarray, rng: np.random.Generator):
    """Lobed closed curve around the room centre; heading follows the tangent.

    One lap takes N frames when it fits in the room; the lap is made as large as the speed
    limit allows because a tight loop means fast yaw (bad for feature tracking)."""
    phi = np.linspace(0.0, 2.0 * np.pi, _DENSE + 1)
    lobe_phase = rng.uniform(0, 2 * np.pi)
    lobes = 1.0 + 0.1 * np.sin(2.0 * phi + lobe_phase)
    unit = np.column_stack([np.cos(phi) * lobes, np.sin(phi) * lobes])  # radius <= 1.1
    max_axes = (room[:2] / 2.0 - WALL_MARGIN_M) / 1.1
    max_axes = np.minimum(max_axes, 1.2 * max_axes[::-1])  # near-round: no tight ends
    full = unit * max_axes
    target = float(np.clip(n * LOOP_STEP_M, 6.0, _perimeter(full)))
    dense = room[:2] / 2.0 + full * (target / _perimeter(full))
    step = _closed_curve_step(_perimeter(dense), n)
    start = rng.uniform(0.0, _perimeter(dense))
    xy, tangent = _sample_by_arc_length(dense, start + step * np.arange(n), closed=True)
    return xy, np.arctan2(tangent[:, 1], tangent[:, 0]), np.zeros(n)


def _forward(n: int, room: np.ndarray, rng: np.random.Generator):
    """Street-like drive along +x with gentle S-turns; heading follows the tangent."""
    length = forward_path_length(n)
    amplitude = min(0.8, room[1] / 2.0 - WALL_MARGIN_M)
    wavelength = rng.uniform(5.0, 8.0)
    phase = rng.uniform(0, 2 * np.pi)
    x = np.linspace(0.0, length * 1.5 + 1.0, _DENSE)  # longer than needed: arc >= x
    y = room[1] / 2.0 + amplitude * np.sin(2 * np.pi * x / wavelength + phase)
    dense = np.column_stack([x + WALL_MARGIN_M, y])
    xy, tangent = _sample_by_arc_length(dense, STEP_M * np.arange(n), closed=False)
    return xy, np.arctan2(tangent[:, 1], tangent[:, 0]), np.zeros(n)


def orbit_radius(room: np.ndarray) -> float:
    """Radius of the ``orbit`` circle; the scene puts its central object well inside it."""
    return float(min(room[0], room[1]) / 2.0 - WALL_MARGIN_M)


def _orbit(n: int, room: np.ndarray, rng: np.random.Generator):
    """Circle around the room centre, looking at the centre slightly below eye height."""
    radius = orbit_radius(room)
    step = _closed_curve_step(2 * np.pi * radius, n)
    angle = rng.uniform(0, 2 * np.pi) + step * np.arange(n) / radius
    centre = room[:2] / 2.0
    xy = centre + radius * np.column_stack([np.cos(angle), np.sin(angle)])
    yaw = np.arctan2(centre[1] - xy[:, 1], centre[0] - xy[:, 0])
    pitch = np.full(n, np.arctan2(0.4, radius))
    return xy, yaw, pitch


def _turn(n: int, room: np.ndarray, rng: np.random.Generator):
    """Rotating in place at a random spot at least a wall margin from the walls, at a
    constant yaw rate, nodding slowly (so relative rotations have pitch as well as yaw)."""
    spot = rng.uniform(WALL_MARGIN_M, room[:2] - WALL_MARGIN_M)
    rate = np.radians(rng.uniform(*TURN_RATE_DEG)) * rng.choice((-1.0, 1.0))
    yaw = rng.uniform(0, 2 * np.pi) + rate * np.arange(n)
    pitch = _wobble(rng, np.arange(n, dtype=np.float64), TURN_PITCH_RAD)
    return np.tile(spot, (n, 1)), yaw, pitch
