"""Vectorised analytic ray casting of a :class:`Scene` (NumPy, one pinhole view at a time).

Rays are built as ``R_wc @ K^-1 [u, v, 1]`` (unnormalised, unit z in the camera), so the
ray parameter ``t`` at the hit is directly the depth along the optical axis: no separate
conversion and no precision loss. Pixel (u, v) is the centre of column u, row v (OpenCV).
Shading is Lambertian from point lights plus ambient, so it is view independent and a
surface point has the same colour in every frame (up to the texture pre-filter).
"""
from __future__ import annotations

import numpy as np

from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.synth.scene import ROOM_SURFACES, Scene
from vggt_ros.synth.texture import albedo

_CHUNK_RAYS = 1 << 15  # bounds the [rays, boxes, 3] temporaries for large images
_TANGENT_AXES = np.array([[1, 2], [0, 2], [0, 1]])  # surface (u, v) axes per normal axis
AMBIENT = 0.35


def cast_rays(scene: Scene, origin: np.ndarray, dirs: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit of rays ``origin + t * dirs`` ([P,3]) from a point inside the room.

    Returns t [P], surface id [P], hit axis [P] (the face normal's axis) and the face's
    min/max side [P] (0 = min face). The room is closed, so every ray hits.
    """
    # A zero component becomes a tiny one: its slab times are then huge but finite, so no
    # inf/NaN special cases are needed (the hit point moves by < 1e-20 m).
    dirs = np.where(np.abs(dirs) < 1e-30, 1e-30, dirs)
    inv = 1.0 / dirs
    rows = np.arange(len(dirs))
    t_axes = (np.where(dirs > 0, scene.room_size, 0.0) - origin) * inv
    axis = np.argmin(t_axes, axis=1)
    t = t_axes[rows, axis]
    side = (dirs[rows, axis] > 0).astype(np.int64)  # room faces: named by where rays exit
    surface = 2 * axis + side
    if len(scene.boxes):
        # Slab test per axis on contiguous [P,B] arrays (reductions over a length-3 last
        # axis are several times slower in NumPy).
        slabs = [((scene.boxes[None, :, 0, k] - origin[k]) * inv[:, k, None],
                  (scene.boxes[None, :, 1, k] - origin[k]) * inv[:, k, None]) for k in range(3)]
        enter = [np.minimum(a, b) for a, b in slabs]
        t_near = np.maximum(np.maximum(enter[0], enter[1]), enter[2])
        t_far = np.minimum(np.minimum(*[np.maximum(a, b) for a, b in slabs[:2]]),
                           np.maximum(*slabs[2]))
        t_box = np.where((t_near <= t_far) & (t_near > 0), t_near, np.inf)
        best = np.argmin(t_box, axis=1)
        t_best = t_box[rows, best]
        closer = t_best < t
        box_axis = np.argmax(np.stack([e[rows, best] for e in enter], axis=1), axis=1)
        box_side = (dirs[rows, box_axis] < 0).astype(np.int64)  # entering the max face
        t = np.where(closer, t_best, t)
        axis = np.where(closer, box_axis, axis)
        side = np.where(closer, box_side, side)
        surface = np.where(closer, ROOM_SURFACES + 6 * best + 2 * box_axis + box_side, surface)
    return t, surface, axis, side


def pixel_rays(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """[H*W,3] camera-frame rays with z = 1, row-major over pixel centres."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    return pix @ np.linalg.inv(K).T


def render_view(scene: Scene, K: np.ndarray, width: int, height: int,
                cam_from_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB (HxWx3 uint8) and depth (HxW float32, metres along the optical axis) of a view."""
    world_from_cam = se3_inverse(cam_from_world)
    rot, origin = world_from_cam[:3, :3], world_from_cam[:3, 3]
    if np.any(origin <= 0) or np.any(origin >= scene.room_size):
        raise ValueError(f"camera centre {origin} is outside the room [0, {scene.room_size}]")
    rays = pixel_rays(K, width, height) @ rot.T
    rgb = np.empty((len(rays), 3), dtype=np.uint8)
    depth = np.empty(len(rays), dtype=np.float32)
    for start in range(0, len(rays), _CHUNK_RAYS):
        sl = slice(start, start + _CHUNK_RAYS)
        rgb[sl], depth[sl] = _shade_chunk(scene, origin, rays[sl], float(K[0, 0]))
    return rgb.reshape(height, width, 3), depth.reshape(height, width)


def _shade_chunk(scene: Scene, origin: np.ndarray, dirs: np.ndarray,
                 focal: float) -> tuple[np.ndarray, np.ndarray]:
    t, surface, axis, side = cast_rays(scene, origin, dirs)
    points = origin + t[:, None] * dirs
    rows = np.arange(len(dirs))
    normal = np.zeros_like(points)
    is_box = surface >= ROOM_SURFACES
    # Room faces point into the room, box faces out of the box: both face the camera.
    normal[rows, axis] = np.where(is_box, np.where(side == 1, 1.0, -1.0),
                                  np.where(side == 1, -1.0, 1.0))
    ray_len = np.linalg.norm(dirs, axis=1)
    cos_incidence = np.abs(np.sum(normal * dirs, axis=1)) / ray_len
    # Metres covered by one pixel on the surface: distance / focal, stretched at grazing angles.
    footprint = t * ray_len / focal / np.maximum(cos_incidence, 0.2)
    u = points[rows, _TANGENT_AXES[axis, 0]]
    v = points[rows, _TANGENT_AXES[axis, 1]]
    color = albedo(scene.surface_material[surface], u, v, scene.surface_seed[surface],
                   footprint, scene.materials)
    rgb = np.clip(color * _irradiance(scene, points, normal)[:, None], 0.0, 1.0)
    return np.round(rgb * 255.0).astype(np.uint8), t.astype(np.float32)


def _irradiance(scene: Scene, points: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Ambient plus Lambertian point lights with soft distance falloff (no shadows)."""
    light = np.full(len(points), AMBIENT)
    for pos in scene.lights:
        to_light = pos - points
        dist2 = np.sum(to_light * to_light, axis=1)
        lambert = np.maximum(np.sum(normal * to_light, axis=1), 0.0) / np.sqrt(dist2)
        light += 1.1 * lambert / (1.0 + dist2 / 12.0)
    return light
