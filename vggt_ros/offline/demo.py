"""`make demo`: map a held-out synthetic bag with the embedded model and print how good it is.

Runs entirely offline on the CPU: renders (or reuses) a synthetic sequence whose seed was never
used in training, runs `vggt_map` on it with the model shipped in the package (no checkpoint,
no download), then prints the ground-truth metrics and where the outputs are.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from vggt_ros.export.health_text import warning_line
from vggt_ros.offline import cli as mapper_cli
from vggt_ros.synth import cli as synth_cli

# A seed outside the training range (vggt_ros.training.data keeps seeds >= 1_000_000 held out).
DEMO_SEED = 1_000_007
DEMO_TRAJECTORY = "loop"
# The demo model's track head drifts beyond about four keyframes of motion (docs/MODEL.md,
# "Poses from tracks"), so its windows are kept short; VGGT-1B keeps the node's defaults.
DEMO_WINDOW = ("--window-size", "5", "--overlap", "2")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="vggt_ros.offline.demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".demo"), help="working directory")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args(argv)

    sequence_dir = args.out / f"sequence_seed{DEMO_SEED}_{args.frames}x{args.width}x{args.height}"
    if not (sequence_dir / "bag").exists():
        print(f"[demo] rendering a held-out synthetic sequence into {sequence_dir}")
        code = synth_cli.main([str(sequence_dir), "--frames", str(args.frames),
                               "--width", str(args.width), "--height", str(args.height),
                               "--seed", str(DEMO_SEED), "--trajectory", DEMO_TRAJECTORY])
        if code:
            return code
    else:
        print(f"[demo] reusing {sequence_dir}")

    map_dir = args.out / "map"
    gt_synth = (f"frames={args.frames},width={args.width},height={args.height},"
                f"seed={DEMO_SEED},trajectory={DEMO_TRAJECTORY}")
    print("[demo] mapping it with vggt_map and the embedded demo model (CPU)")
    code = mapper_cli.main([str(sequence_dir / "bag"), "--image-topic", "/camera/image_raw",
                            "--camera-info-topic", "/camera/camera_info", "--out", str(map_dir),
                            "--gt", str(sequence_dir / "groundtruth_tum.txt"),
                            "--gt-synth", gt_synth, "--device", "cpu", *DEMO_WINDOW])
    if code:
        return code
    summary = json.loads((map_dir / "summary.json").read_text())
    health = summary["trajectory_health"]
    print(json.dumps({"frames": summary.get("frames_read"), "keyframes": summary.get("keyframes"),
                      "windows": summary.get("windows"), "fps": summary.get("frames_per_second"),
                      "pose_source": summary.get("pose_source"),
                      "intrinsics_source": summary.get("intrinsics_source"),
                      "metrics": summary.get("metrics"),
                      "trajectory_health": {"degenerate": health["degenerate"],
                                            "warnings": health["warnings"]}}, indent=2))
    print(f"[demo] outputs in {map_dir.resolve()}:")
    for name in ("report.png", "map.ply", "trajectory_tum.txt", "colmap", "outputs.mcap",
                 "summary.json"):
        print(f"  {map_dir.resolve() / name}")
    if health["degenerate"]:  # last, so it is not lost above the JSON
        print(f"[demo] {warning_line(health)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
