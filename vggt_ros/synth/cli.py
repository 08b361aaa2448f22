"""``vggt_synth``: write a synthetic sequence as a ROS 2 bag plus a TUM ground-truth file.

The bag looks like a real robot's recording (image, calibration, TF ground truth, all with
the same header stamps), so the offline mapper, the node and the evaluation tools can be
exercised end to end on data whose true poses and scale are known exactly. By default it also
holds the scale sensors of ``synth/sensors.py``: a depth image registered to the colour camera
(``/camera/depth/image_raw``, 16UC1 millimetres, with ``/camera/depth/camera_info``) and wheel
odometry (``/odom``, ``/tf`` odom -> base_link, ``/tf_static`` base_link -> the camera).
``--depth-unregistered`` makes the depth a separate camera's (own CameraInfo and optical frame,
its extrinsic on ``/tf_static``), to be reprojected into the colour camera. The
ground truth is ``/tf`` world -> ``camera_optical_frame_ground_truth`` (its own frame, so the
camera frame keeps one parent) and the TUM file.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from vggt_ros.io.bag_messages import (CAMERA_INFO_TYPE, COMPRESSED_IMAGE_TYPE, IMAGE_TYPE,
                                      BagError)
from vggt_ros.io.images import encode_16uc1, encode_compressed
from vggt_ros.io.bag_writer import STORAGES, BagWriter
from vggt_ros.io.mcap_storage import DEFAULT_CHUNK_SIZE
from vggt_ros.io.tum import write_tum
from vggt_ros.synth import FRAME_ID, SyntheticSequence, make_sequence
from vggt_ros.synth.render import render_view
from vggt_ros.synth.sensors import (MOUNT, DepthCamera, depth_camera, noisy_depth,
                                    wheel_odometry)
from vggt_ros.synth.trajectory import TRAJECTORIES
from vggt_ros.topics.messages import header, tf_message as pose_tf_message

IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_IMAGE_TOPIC = f"{IMAGE_TOPIC}/compressed"  # image_transport's name for it
IMAGE_FORMATS = ("raw", "jpeg", "png")
CAMERA_INFO_TOPIC = "/camera/camera_info"
TF_TOPIC = "/tf"
TF_TYPE = "tf2_msgs/msg/TFMessage"
WORLD_FRAME = "world"
GROUND_TRUTH_FRAME = f"{FRAME_ID}_ground_truth"
TUM_NAME = "groundtruth_tum.txt"
DEPTH_TOPIC = "/camera/depth/image_raw"
DEPTH_INFO_TOPIC = "/camera/depth/camera_info"
ODOM_TOPIC = "/odom"
ODOM_TYPE = "nav_msgs/msg/Odometry"
TF_STATIC_TOPIC = "/tf_static"
ODOM_FRAME = "odom"
BASE_FRAME = "base_link"


def camera_info_message(seq: SyntheticSequence | DepthCamera, stamp_ns: int,
                        frame_id: str = FRAME_ID) -> dict:
    """CameraInfo of an undistorted pinhole camera (plumb_bob with zero D, R = I, P = [K|0]);
    the registered depth image has the same, an unregistered one its own."""
    projection = np.hstack([seq.K, np.zeros((3, 1))])
    return {"header": header(stamp_ns, frame_id), "height": seq.height, "width": seq.width,
            "distortion_model": "plumb_bob", "d": np.zeros(5), "k": seq.K.ravel(),
            "r": np.eye(3).ravel(), "p": projection.ravel()}


def image_message(rgb: np.ndarray, stamp_ns: int) -> dict:
    height, width, _ = rgb.shape
    return {"header": header(stamp_ns, FRAME_ID), "height": height, "width": width,
            "encoding": "rgb8", "is_bigendian": 0, "step": 3 * width, "data": rgb.ravel()}


def compressed_image_message(rgb: np.ndarray, stamp_ns: int, codec: str) -> dict:
    image_format, data = encode_compressed(rgb, codec)
    return {"header": header(stamp_ns, FRAME_ID), "format": image_format,
            "data": np.frombuffer(data, np.uint8)}


def tf_message(world_from_cam: np.ndarray, stamp_ns: int) -> dict:
    """The ground truth: the camera's exact pose in the world."""
    qx, qy, qz, qw = Rotation.from_matrix(world_from_cam[:3, :3]).as_quat()
    tx, ty, tz = world_from_cam[:3, 3]
    transform = {"translation": {"x": tx, "y": ty, "z": tz},
                 "rotation": {"x": qx, "y": qy, "z": qz, "w": qw}}
    return {"transforms": [{"header": header(stamp_ns, WORLD_FRAME),
                            "child_frame_id": GROUND_TRUTH_FRAME, "transform": transform}]}


def depth_message(depth_m: np.ndarray, stamp_ns: int, frame_id: str = FRAME_ID) -> dict:
    """A 16UC1 depth image (millimetres, 0 = no reading); registered: in the colour frame."""
    height, width = depth_m.shape
    return {"header": header(stamp_ns, frame_id), "height": height, "width": width,
            "encoding": "16UC1", "is_bigendian": 0, "step": 2 * width,
            "data": np.frombuffer(encode_16uc1(depth_m), np.uint8)}


# Wheel odometry's covariance as a differential-drive driver reports it: x, y, yaw measured,
# z, roll, pitch not (large).
_ODOM_COVARIANCE = np.diag([1e-3, 1e-3, 1e6, 1e6, 1e6, 1e-2]).ravel()


def odometry_message(odom_from_base: np.ndarray, previous: np.ndarray, dt_s: float,
                     stamp_ns: int) -> dict:
    """nav_msgs/Odometry of the base, with the twist (base frame) since the previous sample."""
    step = np.linalg.inv(previous) @ odom_from_base
    pose = pose_tf_message(odom_from_base, stamp_ns, ODOM_FRAME, BASE_FRAME)["transforms"][0]
    rotvec = Rotation.from_matrix(step[:3, :3]).as_rotvec() / dt_s
    linear = step[:3, 3] / dt_s
    return {"header": header(stamp_ns, ODOM_FRAME), "child_frame_id": BASE_FRAME,
            "pose": {"pose": {"position": pose["transform"]["translation"],
                              "orientation": pose["transform"]["rotation"]},
                     "covariance": _ODOM_COVARIANCE},
            "twist": {"twist": {"linear": dict(zip("xyz", map(float, linear))),
                                "angular": dict(zip("xyz", map(float, rotvec)))},
                      "covariance": _ODOM_COVARIANCE}}


def _render(seq: SyntheticSequence, i: int, depth_cam: Optional[DepthCamera] = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """(colour image, the depth the depth sensor sees): the colour camera's own depth, or with
    ``depth_cam`` that camera's view."""
    rgb, depth = seq.render(i)
    if depth_cam is not None:
        _, depth = render_view(seq.scene, depth_cam.K, depth_cam.width, depth_cam.height,
                               depth_cam.cam_from_world(seq.cam_from_world[i]))
    return rgb, depth


def _single_threaded_worker() -> None:
    """One torch thread per rendering process: the processes already fill the cores, and torch's
    thread pool spinning on an oversubscribed CPU made frames up to 100x slower."""
    torch.set_num_threads(1)


def write_sequence_bag(seq: SyntheticSequence, bag_path: Path, storage: str = "mcap",
                       workers: int = 1, chunk_size: int = DEFAULT_CHUNK_SIZE,
                       depth: bool = True, odometry: bool = True, seed: int = 0,
                       depth_cam: Optional[DepthCamera] = None,
                       image_format: str = "raw") -> None:
    """Render every frame of ``seq`` into a new bag (image, camera info and /tf per frame;
    with ``depth`` the depth image, registered to the colour camera or, with ``depth_cam``,
    that camera's own; with ``odometry`` the wheel odometry, their errors drawn from
    ``seed``).

    ``workers`` > 1 renders in that many processes (large sequences on a many-core machine);
    frames are written in order either way, so the bag is identical. ``chunk_size`` (bytes)
    is the MCAP chunk size: small chunks make finer-grained test bags for damage recovery.
    ``image_format`` jpeg or png writes the colour images as image_transport's compressed
    plugin publishes them (CompressedImage on ``COMPRESSED_IMAGE_TOPIC``), as most robots
    record their cameras, instead of raw Images on ``IMAGE_TOPIC``.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    world_from_cam = seq.world_from_cam
    indices = range(len(seq))
    depth_rng, odometry_rng = (np.random.default_rng(s)
                               for s in np.random.SeedSequence(seed).spawn(2))
    odom_from_base = wheel_odometry(world_from_cam, odometry_rng) if odometry else None
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(
                workers, initializer=_single_threaded_worker))
            renders = pool.map(_render, itertools.repeat(seq), indices,
                               itertools.repeat(depth_cam), chunksize=4)
        else:
            renders = map(_render, itertools.repeat(seq), indices, itertools.repeat(depth_cam))
        bag = stack.enter_context(BagWriter(bag_path, storage=storage, chunk_size=chunk_size))
        depth_source = depth_cam or seq
        depth_frame = depth_cam.frame_id if depth_cam else FRAME_ID
        for i, (rgb, true_depth) in zip(indices, renders):
            stamp = int(seq.stamps_ns[i])
            if depth and depth_cam is not None and i == 0:
                bag.write(TF_STATIC_TOPIC, TF_TYPE, pose_tf_message(
                    depth_cam.colour_from_depth, stamp, FRAME_ID, depth_cam.frame_id), stamp)
            bag.write(TF_TOPIC, TF_TYPE, tf_message(world_from_cam[i], stamp), stamp)
            if odom_from_base is not None:
                if i == 0:
                    bag.write(TF_STATIC_TOPIC, TF_TYPE, pose_tf_message(
                        MOUNT, stamp, BASE_FRAME, FRAME_ID), stamp)
                bag.write(TF_TOPIC, TF_TYPE, pose_tf_message(
                    odom_from_base[i], stamp, ODOM_FRAME, BASE_FRAME), stamp)
                dt = (stamp - int(seq.stamps_ns[i - 1])) / 1e9 if i else 1.0
                bag.write(ODOM_TOPIC, ODOM_TYPE, odometry_message(
                    odom_from_base[i], odom_from_base[max(i - 1, 0)], dt, stamp), stamp)
            bag.write(CAMERA_INFO_TOPIC, CAMERA_INFO_TYPE, camera_info_message(seq, stamp), stamp)
            if image_format == "raw":
                bag.write(IMAGE_TOPIC, IMAGE_TYPE, image_message(rgb, stamp), stamp)
            else:
                bag.write(COMPRESSED_IMAGE_TOPIC, COMPRESSED_IMAGE_TYPE,
                          compressed_image_message(rgb, stamp, image_format), stamp)
            if depth:
                bag.write(DEPTH_INFO_TOPIC, CAMERA_INFO_TYPE, camera_info_message(
                    depth_source, stamp, depth_frame), stamp)
                bag.write(DEPTH_TOPIC, IMAGE_TYPE, depth_message(
                    noisy_depth(true_depth, depth_rng), stamp, depth_frame), stamp)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vggt_synth", description="Write a procedural camera sequence with exact ground "
        "truth as OUT_DIR/bag (ROS 2 bag) and OUT_DIR/groundtruth_tum.txt.")
    parser.add_argument("out_dir", type=Path, help="output directory (created if missing)")
    parser.add_argument("--frames", type=int, default=100, help="number of frames (10 Hz)")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0, help="scene and trajectory seed")
    parser.add_argument("--trajectory", choices=TRAJECTORIES, default="loop")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    parser.add_argument("--chunk-kib", type=int, default=DEFAULT_CHUNK_SIZE // 1024,
                        help="MCAP chunk size in KiB (a recording cut short loses the chunk "
                        "being filled)")
    parser.add_argument("--no-depth", action="store_true",
                        help=f"leave out the registered depth image ({DEPTH_TOPIC})")
    parser.add_argument("--depth-unregistered", action="store_true",
                        help="write the depth of a separate depth camera (own K, size and "
                        "optical frame, 5 cm beside the colour camera, its extrinsic on "
                        "/tf_static) instead of depth registered to the colour camera")
    parser.add_argument("--image-format", choices=IMAGE_FORMATS, default="raw",
                        help=f"raw: sensor_msgs/Image on {IMAGE_TOPIC}; jpeg or png: "
                        f"sensor_msgs/CompressedImage on {COMPRESSED_IMAGE_TOPIC}, as "
                        "image_transport's compressed plugin publishes them")
    parser.add_argument("--no-odom", action="store_true",
                        help=f"leave out the wheel odometry ({ODOM_TOPIC}, /tf {ODOM_FRAME} -> "
                        f"{BASE_FRAME}, /tf_static {BASE_FRAME} -> {FRAME_ID})")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    bag_path = args.out_dir / "bag"
    try:
        if bag_path.exists():
            raise BagError(f"{bag_path} already exists; choose another OUT_DIR or remove it")
        seq = make_sequence(args.frames, args.width, args.height, args.seed, args.trajectory)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        write_sequence_bag(seq, bag_path, args.storage, workers=args.workers,
                           chunk_size=args.chunk_kib * 1024, depth=not args.no_depth,
                           odometry=not args.no_odom, seed=args.seed,
                           depth_cam=depth_camera(args.width, args.height)
                           if args.depth_unregistered else None,
                           image_format=args.image_format)
        write_tum(args.out_dir / TUM_NAME, seq.stamps_ns, seq.world_from_cam)
    except (BagError, ValueError, OSError) as exc:
        print(f"vggt_synth: error: {exc}", file=sys.stderr)
        return 2
    print(f"vggt_synth: wrote {len(seq)} frames {args.width}x{args.height} "
          f"({args.trajectory}, seed {args.seed}) to {bag_path} [{args.storage}] and "
          f"{args.out_dir / TUM_NAME} in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
