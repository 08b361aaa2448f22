"""Stamp-to-pose latency of the live pipeline behind a real-time camera, without ROS.

    python -m vggt_ros.bench.live_latency --config 1b --device cuda --seconds 30 --json out.json
    python -m vggt_ros.bench.live_latency ... --window-size 4 --overlap 3 --queue-size 1

A camera thread captures a frame every 1/rate s into a drop-oldest queue, as the node's image
callback does (frames sooner than keyframe_min_interval after the last candidate are skipped
there); the main thread is the node's worker: ``Pipeline.add_frame`` on the oldest queued
frame. Each keyframe's latency is the time from its capture (its stamp) to the moment its pose
leaves the pipeline, which is what the node then publishes on /tf (DDS adds milliseconds;
``test/test_node_latency.py`` measures the whole node on the CPU). This runs where ROS is not
installed, e.g. on a GPU machine, with VGGT-1B random weights or a checkpoint.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from vggt_ros.bench.cli import build_config, random_model
from vggt_ros.inference.predictor import VGGTPredictor
from vggt_ros.model import load_vggt
from vggt_ros.pipeline.pipeline import Pipeline, PipelineConfig
from vggt_ros.pipeline.types import CameraIntrinsics, Frame
from vggt_ros.pipeline.window import interval_elapsed
from vggt_ros.synth import make_sequence


def sliding_images(width: int, height: int, count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(images, K): a scene sliding sideways, from one render at a quarter of the size."""
    seq = make_sequence(1, width // 4, height // 4, seed=3, trajectory="forward")
    base = np.repeat(np.repeat(seq.render(0)[0], 4, axis=0), 4, axis=1)
    k = seq.K * 4
    k[2, 2] = 1.0
    return [np.ascontiguousarray(np.roll(base, 6 * i, axis=1)) for i in range(count)], k


class Camera(threading.Thread):
    """Captures at ``rate`` Hz into a drop-oldest queue until ``seconds`` have passed."""

    def __init__(self, images, k, rate: float, seconds: float, queue_size: int,
                 min_interval_s: float) -> None:
        super().__init__(daemon=True)
        self.images, self.rate, self.seconds = images, rate, seconds
        self.min_interval_s = min_interval_s
        self.info = CameraIntrinsics(k=k, width=images[0].shape[1], height=images[0].shape[0])
        self.queue: deque = deque(maxlen=queue_size)
        self.cond = threading.Condition()
        self.captured = self.skipped = self.dropped = 0
        self.done = False

    def run(self) -> None:
        t0_ns, t0 = time.time_ns(), time.monotonic()
        last = None
        i = 0
        while i / self.rate < self.seconds:
            time.sleep(max(0.0, t0 + i / self.rate - time.monotonic()))
            stamp = t0_ns + int(i * 1e9 / self.rate)
            self.captured += 1
            if interval_elapsed(stamp, last, self.min_interval_s):
                last = stamp
                frame = Frame(stamp_ns=stamp, image=self.images[i % len(self.images)],
                              frame_id="camera_optical_frame", camera_info=self.info)
                with self.cond:
                    self.dropped += len(self.queue) == self.queue.maxlen
                    self.queue.append(frame)
                    self.cond.notify()
            else:
                self.skipped += 1
            i += 1
        with self.cond:
            self.done = True
            self.cond.notify()

    def next(self):
        with self.cond:
            while not self.queue and not self.done:
                self.cond.wait(0.1)
            return self.queue.popleft() if self.queue else None


def measure(predictor, config: PipelineConfig, camera: Camera) -> dict:
    pipeline = Pipeline(predictor, config)
    latencies = []
    camera.start()
    while (frame := camera.next()) is not None:
        for result in pipeline.add_frame(frame):
            now_ns = time.time_ns()
            latencies += [(now_ns - kf.stamp_ns) / 1e9 for kf in result.new_keyframes]
    lat = np.array(latencies)
    return {"poses": len(lat), "p50_s": float(np.median(lat)),
            "p90_s": float(np.percentile(lat, 90)), "max_s": float(lat.max()),
            "frames": camera.captured, "skipped_by_interval": camera.skipped,
            "queue_drops": camera.dropped, "windows": pipeline.stats["windows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="1b", help="1b, tiny or a JSON config")
    parser.add_argument("--checkpoint", default="", help="weights; empty = random (seeded)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rate", type=float, default=10.0, help="camera rate, Hz")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup-seconds", type=float, default=10.0,
                        help="a first run that is not reported (torch.compile, caches)")
    parser.add_argument("--window-size", type=int, default=8)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--queue-size", type=int, default=8)
    parser.add_argument("--keyframe-min-interval", type=float, default=0.1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = build_config(args.config)
    model = (load_vggt(args.checkpoint, config=cfg, device=device) if args.checkpoint
             else random_model(cfg, 0, device))
    predictor = VGGTPredictor(model, device=device, image_size=cfg.img_size,
                              name=args.checkpoint or f"{args.config} (random weights)")
    config = PipelineConfig(window_size=args.window_size, overlap=args.overlap,
                            keyframe_min_interval=args.keyframe_min_interval)
    images, k = sliding_images(args.width, args.height, 40)

    def run(seconds: float) -> dict:
        return measure(predictor, config, Camera(images, k, args.rate, seconds,
                                                 args.queue_size, args.keyframe_min_interval))

    if args.warmup_seconds > 0:
        run(args.warmup_seconds)
    report = {"settings": vars(args) | {"json": None}, "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
              **run(args.seconds)}
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
