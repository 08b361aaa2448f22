"""Throughput of the offline path (`vggt_map`) on a synthetic bag, as a user would run it.

Renders a `vggt_synth` bag, writes a random-weight checkpoint of the chosen config (the
initialisation of `vggt_bench` with a fixed field of view; weights are random, so only the
speed means anything), then runs
the real `vggt_map` command line on it and prints the frames per second and per-stage timings
from its summary.json.

    python -m vggt_ros.bench.offline --out /tmp/offline --config 1b --frames 300 \\
        --width 518 --height 392 --window-size 16 --overlap 4 --device cuda --workers 16
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from safetensors.torch import save_file

from vggt_ros.bench.models import build_config, random_model
from vggt_ros.offline import cli as mapper_cli
from vggt_ros.synth import cli as synth_cli


def write_random_checkpoint(config: str, seed: int, path: Path) -> None:
    """Random weights, except that the predicted field of view is fixed at 1 rad: random FoV
    outputs are often 0 after the ReLU (an infinite focal length), and the pipeline rightly
    rejects such windows, which would leave nothing to time after the network."""
    model = random_model(build_config(config), seed, torch.device("cpu"))
    if model.camera_head is not None:
        with torch.no_grad():
            fc2 = model.camera_head.pose_branch.fc2
            fc2.weight[7:].zero_()
            fc2.bias[7:] = 1.0
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": model.config.to_json()})


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggt_ros.bench.offline", description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--config", default="1b", help="1b, tiny or a VGGTConfig JSON file")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--width", type=int, default=518)
    p.add_argument("--height", type=int, default=392)
    p.add_argument("--window-size", type=int, default=16)
    p.add_argument("--overlap", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--image-size", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="rendering processes")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    sequence = args.out / "sequence"
    if not (sequence / "bag").exists():
        start = time.perf_counter()
        code = synth_cli.main([str(sequence), "--frames", str(args.frames), "--width",
                               str(args.width), "--height", str(args.height), "--seed",
                               str(args.seed), "--workers", str(args.workers)])
        if code:
            return code
        print(f"[offline] rendered {args.frames} frames in {time.perf_counter() - start:.1f} s")
    checkpoint = args.out / f"random_{Path(args.config).stem}.safetensors"
    if not checkpoint.exists():
        write_random_checkpoint(args.config, args.seed, checkpoint)
    map_dir = args.out / "map"
    start = time.perf_counter()
    code = mapper_cli.main([str(sequence / "bag"), "--image-topic", "/camera/image_raw",
                            "--camera-info-topic", "/camera/camera_info", "--out", str(map_dir),
                            "--checkpoint", str(checkpoint), "--device", args.device,
                            "--image-size", str(args.image_size), "--no-progress",
                            "--window-size", str(args.window_size),
                            "--overlap", str(args.overlap)])
    wall = time.perf_counter() - start
    if code:
        return code
    summary = json.loads((map_dir / "summary.json").read_text())
    report = {"frames": summary["frames_read"], "keyframes": summary["keyframes"],
              "windows": summary["windows"], "vggt_map_wall_s": round(wall, 2),
              "frames_per_second": summary["frames_per_second"],
              "stage_timings_s": summary["stage_timings_s"], "predictor": summary["predictor"],
              "skipped": summary["skipped_messages"], "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    (args.out / "offline_throughput.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
