"""A closed, textured box room with axis-aligned objects: the geometry the renderer casts
rays against.

The room is closed so every pixel of every view hits geometry (finite, positive depth);
objects are axis-aligned boxes so intersections are analytic and exact, which lets tests
check depth and reprojection to float precision. Objects keep a clearance from every camera
position so no view starts inside or right against an object.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vggt_ros.synth.texture import Materials, random_materials
from vggt_ros.synth.trajectory import forward_path_length, orbit_radius, WALL_MARGIN_M

CAMERA_CLEARANCE_M = 0.6  # minimum distance from any camera centre to any object
ROOM_SURFACES = 6  # x-min, x-max, y-min, y-max walls, floor (z-min), ceiling (z-max)


@dataclass
class Scene:
    """Room [0, room_size] (metres, z up) plus boxes; surfaces are numbered for texturing.

    Surface ids: room face ``2*axis + (ray direction along axis > 0)`` (0..5, faces the
    inside), then box ``b`` face ``6 + 6*b + 2*axis + side`` with side 0 the min face.
    """

    room_size: np.ndarray  # [3]
    boxes: np.ndarray  # [B,2,3] (min corner, max corner)
    lights: np.ndarray  # [L,3] point light positions
    materials: Materials
    surface_material: np.ndarray  # [6+6B] material id of each surface
    surface_seed: np.ndarray  # [6+6B] noise seed of each surface

    def surface_planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every face as (axis, coordinate, rectangle min, rectangle max), for checks."""
        axes, coords, lo, hi = [], [], [], []
        for lo_c, hi_c in [(np.zeros(3), self.room_size)] + [tuple(b) for b in self.boxes]:
            for axis in range(3):
                for c in (lo_c[axis], hi_c[axis]):
                    axes.append(axis)
                    coords.append(c)
                    lo.append(lo_c)
                    hi.append(hi_c)
        return np.array(axes), np.array(coords), np.array(lo), np.array(hi)


def sample_room_size(rng: np.random.Generator, trajectory: str, num_frames: int) -> np.ndarray:
    """Room of 6-10 m per side, 2.8-3.4 m high; ``forward`` rooms are long enough to drive."""
    size = np.array([rng.uniform(7.0, 10.0), rng.uniform(6.0, 9.0), rng.uniform(2.8, 3.4)])
    if trajectory == "forward":
        size[0] = max(size[0], forward_path_length(num_frames) + 2 * WALL_MARGIN_M + 1.5)
    return size


def build_scene(rng: np.random.Generator, room_size: np.ndarray, trajectory: str,
                cam_positions: np.ndarray, num_objects: int = 10) -> Scene:
    """Place objects away from the camera path, add lights and materials."""
    boxes = []
    if trajectory == "orbit":  # a central exhibit to orbit around
        half = min(0.5, orbit_radius(room_size) - CAMERA_CLEARANCE_M - 0.3)
        centre = room_size[:2] / 2.0
        height = rng.uniform(0.8, 1.3)
        boxes.append(np.array([[centre[0] - half, centre[1] - half, 0.0],
                               [centre[0] + half, centre[1] + half, height]]))
    for _ in range(num_objects * 40):
        if len(boxes) >= num_objects:
            break
        candidate = _random_box(rng, room_size)
        if _clear_of(candidate, cam_positions) and not any(
                _overlap(candidate, b) for b in boxes):
            boxes.append(candidate)
    boxes_arr = np.array(boxes, dtype=np.float64).reshape(-1, 2, 3)
    kinds = ["wall", "wall", "wall", "wall", "floor", "ceiling"] + ["object"] * len(boxes_arr)
    materials = random_materials(rng, kinds)
    surface_material = np.concatenate(
        [np.arange(ROOM_SURFACES), np.repeat(np.arange(len(boxes_arr)) + ROOM_SURFACES, 6)])
    surface_seed = rng.integers(0, 2**20, len(surface_material))
    return Scene(room_size=np.asarray(room_size, dtype=np.float64), boxes=boxes_arr,
                 lights=_lights(room_size), materials=materials,
                 surface_material=surface_material, surface_seed=surface_seed)


def _random_box(rng: np.random.Generator, room: np.ndarray) -> np.ndarray:
    """A floor-standing box (cabinet, crate, pillar) or a wall shelf, inside the room."""
    size = np.array([rng.uniform(0.3, 1.4), rng.uniform(0.3, 1.4), rng.uniform(0.3, 2.0)])
    if rng.uniform() < 0.15:  # pillar up to the ceiling
        size[:2] = rng.uniform(0.25, 0.5, 2)
        size[2] = room[2]
    lo = np.array([rng.uniform(0.0, room[0] - size[0]), rng.uniform(0.0, room[1] - size[1]),
                   0.0])
    if rng.uniform() < 0.2 and size[2] < room[2]:  # shelf hanging on a wall
        size[2] = rng.uniform(0.15, 0.4)
        lo[2] = rng.uniform(0.8, room[2] - size[2] - 0.3)
    return np.array([lo, lo + size])


def _clear_of(box: np.ndarray, points: np.ndarray) -> bool:
    """True when every point is at least CAMERA_CLEARANCE_M from the box."""
    nearest = np.clip(points, box[0], box[1])
    return bool(np.all(np.linalg.norm(points - nearest, axis=1) >= CAMERA_CLEARANCE_M))


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a[0] < b[1]) and np.all(b[0] < a[1]))


def _lights(room: np.ndarray) -> np.ndarray:
    """Ceiling lights every ~4 m along the room's length, on its centre line."""
    count = max(1, int(round(room[0] / 4.0)))
    x = (np.arange(count) + 0.5) * room[0] / count
    return np.column_stack([x, np.full(count, room[1] / 2.0), np.full(count, room[2] - 0.4)])
