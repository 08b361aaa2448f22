"""``vggt_synth``: write a synthetic sequence as a ROS 2 bag plus a TUM ground-truth file.

The bag looks like a real camera recording (image, calibration, TF ground truth, all with
the same header stamps), so the offline mapper, the node and the evaluation tools can be
exercised end to end on data whose true poses and scale are known exactly.
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

from vggt_ros.io.bag_messages import CAMERA_INFO_TYPE, IMAGE_TYPE, BagError
from vggt_ros.io.bag_writer import STORAGES, BagWriter
from vggt_ros.io.mcap_storage import DEFAULT_CHUNK_SIZE
from vggt_ros.io.tum import write_tum
from vggt_ros.synth import FRAME_ID, SyntheticSequence, make_sequence
from vggt_ros.synth.trajectory import TRAJECTORIES
from vggt_ros.topics.messages import header

IMAGE_TOPIC = "/camera/image_raw"
CAMERA_INFO_TOPIC = "/camera/camera_info"
TF_TOPIC = "/tf"
TF_TYPE = "tf2_msgs/msg/TFMessage"
WORLD_FRAME = "world"
TUM_NAME = "groundtruth_tum.txt"


def camera_info_message(seq: SyntheticSequence, stamp_ns: int) -> dict:
    """CameraInfo of an undistorted pinhole camera (plumb_bob with zero D, R = I, P = [K|0])."""
    projection = np.hstack([seq.K, np.zeros((3, 1))])
    return {"header": header(stamp_ns, FRAME_ID), "height": seq.height, "width": seq.width,
            "distortion_model": "plumb_bob", "d": np.zeros(5), "k": seq.K.ravel(),
            "r": np.eye(3).ravel(), "p": projection.ravel()}


def image_message(rgb: np.ndarray, stamp_ns: int) -> dict:
    height, width, _ = rgb.shape
    return {"header": header(stamp_ns, FRAME_ID), "height": height, "width": width,
            "encoding": "rgb8", "is_bigendian": 0, "step": 3 * width, "data": rgb.ravel()}


def tf_message(world_from_cam: np.ndarray, stamp_ns: int) -> dict:
    qx, qy, qz, qw = Rotation.from_matrix(world_from_cam[:3, :3]).as_quat()
    tx, ty, tz = world_from_cam[:3, 3]
    transform = {"translation": {"x": tx, "y": ty, "z": tz},
                 "rotation": {"x": qx, "y": qy, "z": qz, "w": qw}}
    return {"transforms": [{"header": header(stamp_ns, WORLD_FRAME),
                            "child_frame_id": FRAME_ID, "transform": transform}]}


def _render_rgb(seq: SyntheticSequence, i: int) -> np.ndarray:
    return seq.render(i)[0]


def _single_threaded_worker() -> None:
    """One torch thread per rendering process: the processes already fill the cores, and torch's
    thread pool spinning on an oversubscribed CPU made frames up to 100x slower."""
    torch.set_num_threads(1)


def write_sequence_bag(seq: SyntheticSequence, bag_path: Path, storage: str = "mcap",
                       workers: int = 1, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
    """Render every frame of ``seq`` into a new bag (image, camera info and /tf per frame).

    ``workers`` > 1 renders in that many processes (large sequences on a many-core machine);
    frames are written in order either way, so the bag is identical. ``chunk_size`` (bytes)
    is the MCAP chunk size: small chunks make finer-grained test bags for damage recovery.
    """
    world_from_cam = seq.world_from_cam
    indices = range(len(seq))
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(
                workers, initializer=_single_threaded_worker))
            images = pool.map(_render_rgb, itertools.repeat(seq), indices, chunksize=4)
        else:
            images = map(_render_rgb, itertools.repeat(seq), indices)
        bag = stack.enter_context(BagWriter(bag_path, storage=storage, chunk_size=chunk_size))
        for i, rgb in zip(indices, images):
            stamp = int(seq.stamps_ns[i])
            bag.write(TF_TOPIC, TF_TYPE, tf_message(world_from_cam[i], stamp), stamp)
            bag.write(CAMERA_INFO_TOPIC, CAMERA_INFO_TYPE, camera_info_message(seq, stamp), stamp)
            bag.write(IMAGE_TOPIC, IMAGE_TYPE, image_message(rgb, stamp), stamp)


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
                           chunk_size=args.chunk_kib * 1024)
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
