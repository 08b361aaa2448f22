"""Keyframe poses and the fused map -> COLMAP text model (cameras.txt, images.txt,
points3D.txt), so the map can be refined or inspected with COLMAP-compatible tools.

Format rules (COLMAP "Output format", text variant):
* cameras.txt: ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]``; PINHOLE params are ``fx fy cx cy``
  in pixels of the ORIGINAL camera image (the one NAME refers to).
* images.txt: two lines per image, ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` with the
  world-to-camera transform (here cam_from_odom), then the ``POINTS2D[] as (X, Y, POINT3D_ID)``
  line, left empty because the dense map has no 2D feature observations.
* points3D.txt: ``POINT3D_ID X Y Z R G B ERROR TRACK[] as (IMAGE_ID, POINT2D_IDX)``; the track
  is empty for the same reason and ERROR is -1 (COLMAP's "not computed").
Identical intrinsics share one camera id; VGGT estimates a focal length per frame, so usually
each keyframe gets its own camera.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.io.atomic import PathLike, atomic_output


def image_name(stamp_ns: int) -> str:
    """File name an image gets in images.txt (and that a user would save the frame under)."""
    return f"{int(stamp_ns)}.png"


def write_colmap(out_dir: PathLike, stamps_ns: Sequence[int], odom_from_cam: np.ndarray,
                 intrinsics: np.ndarray, image_sizes: np.ndarray, points: np.ndarray,
                 colors: np.ndarray) -> Path:
    """Write the three text files into ``out_dir`` (created if needed).

    ``odom_from_cam`` [N,4,4], ``intrinsics`` [N,3,3] and ``image_sizes`` [N,2] (width,
    height) describe each keyframe in original camera pixels; ``points`` [M,3] / ``colors``
    [M,3] uint8 the fused map in odom.
    """
    poses = np.asarray(odom_from_cam, dtype=np.float64)
    k = np.asarray(intrinsics, dtype=np.float64)
    sizes = np.asarray(image_sizes, dtype=np.int64)
    n = len(stamps_ns)
    if poses.shape != (n, 4, 4) or k.shape != (n, 3, 3) or sizes.shape != (n, 2):
        raise ValueError(f"need [N,4,4] poses, [N,3,3] intrinsics and [N,2] sizes for N={n}, "
                         f"got {poses.shape}, {k.shape}, {sizes.shape}")
    if not (np.isfinite(poses).all() and np.isfinite(k).all()):
        raise ValueError("poses and intrinsics must be finite")
    out = Path(out_dir)
    camera_ids = _write_cameras(out / "cameras.txt", k, sizes)
    _write_images(out / "images.txt", stamps_ns, poses, camera_ids)
    _write_points(out / "points3D.txt", points, colors)
    return out


def _write_cameras(path: Path, k: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Deduplicate intrinsics (to 1e-6 px) and write one PINHOLE camera per distinct set;
    returns the camera id of every image."""
    params = np.concatenate([sizes.astype(np.float64),
                             np.stack([k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2]], 1)], 1)
    keys = np.round(params, 6)
    unique, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    # Number cameras in order of first use so camera 1 belongs to the first keyframe.
    order = np.argsort(first)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    camera_ids = rank[inverse.reshape(-1)] + 1
    lines = ["# Camera list with one line of data per camera:",
             "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
             f"# Number of cameras: {len(unique)}"]
    for cam in order:
        w, h, fx, fy, cx, cy = params[first[cam]]
        lines.append(f"{rank[cam] + 1} PINHOLE {int(w)} {int(h)} "
                     f"{fx:.9g} {fy:.9g} {cx:.9g} {cy:.9g}")
    with atomic_output(path) as handle:
        handle.write("\n".join(lines) + "\n")
    return camera_ids


def _write_images(path: Path, stamps_ns: Sequence[int], odom_from_cam: np.ndarray,
                  camera_ids: np.ndarray) -> None:
    cam_from_odom = se3_inverse(odom_from_cam)
    quat = Rotation.from_matrix(cam_from_odom[:, :3, :3]).as_quat()  # x, y, z, w
    quat *= np.where(quat[:, 3:] < 0, -1.0, 1.0)  # COLMAP's convention: qw >= 0
    trans = cam_from_odom[:, :3, 3]
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
             "#   POINTS2D[] as (X, Y, POINT3D_ID)",
             f"# Number of images: {len(stamps_ns)}, mean observations per image: 0"]
    for i, stamp in enumerate(stamps_ns):
        qx, qy, qz, qw = quat[i]
        tx, ty, tz = trans[i]
        lines.append(f"{i + 1} {qw:.12g} {qx:.12g} {qy:.12g} {qz:.12g} "
                     f"{tx:.12g} {ty:.12g} {tz:.12g} {camera_ids[i]} {image_name(stamp)}")
        lines.append("")
    with atomic_output(path) as handle:
        handle.write("\n".join(lines) + "\n")


def _write_points(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    points = np.asarray(points, dtype=np.float64)
    colors = np.asarray(colors)
    if points.ndim != 2 or points.shape[1] != 3 or colors.shape != points.shape:
        raise ValueError(f"points and colors must both be [M,3], got {points.shape} and "
                         f"{colors.shape}")
    header = ("# 3D point list with one line of data per point:\n"
              "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
              f"# Number of points: {len(points)}, mean track length: 0\n")
    table = np.column_stack([np.arange(1, len(points) + 1), points, colors,
                             np.full(len(points), -1.0)])
    with atomic_output(path) as handle:
        handle.write(header)
        if len(points):
            np.savetxt(handle, table, fmt=["%d", "%.7g", "%.7g", "%.7g", "%d", "%d", "%d",
                                          "%.1f"], delimiter=" ")
