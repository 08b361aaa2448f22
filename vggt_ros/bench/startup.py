"""Start-up benchmark: what a robot waits for between launching the node and its first pose.

    python -m vggt_ros.bench.startup --device cuda --model 1b --camera 640x480
    python -m vggt_ros.bench.startup --device cpu --model demo --camera 128x96 --image-size 112 \\
        --window 3 --overlap 1 --pose-source camera_head --pose-queries 32

Each start runs in a fresh process (``bench/startup_run.py``), so the second start finds only
what a restarted node finds: the on-disk compile cache. Start 1 uses an empty cache directory
(a temporary one unless ``--cache-dir`` is given), so it is the cold start. For every start it
reports model load, warm-up (configure = both), the first window after activate, the median
and the worst window of the run, and whether anything compiled or ran eagerly after the
warm-up. The last lines check the issue's GPU criteria: first window within 1.5x of the steady
state, a warm configure in at most 40 % of the cold one, no window over 2x the median.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from vggt_ros.bench.startup_run import RESULT_PREFIX, measure_start, print_result

__all__ = ["main", "table", "verdicts"]


def _camera(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--camera takes WIDTHxHEIGHT, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"--camera must be positive, got {text!r}")
    return width, height


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vggt_ros.bench.startup",
                                description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--model", default="1b", help="1b or tiny (random weights), demo (the "
                   "embedded model) or a checkpoint path")
    p.add_argument("--camera", type=_camera, default=(640, 480), help="camera WIDTHxHEIGHT")
    p.add_argument("--stream-camera", type=_camera, default=None, help="WIDTHxHEIGHT of the "
                   "streamed frames if not --camera: shapes nobody warmed up, to see them run "
                   "eagerly while they compile in the background")
    p.add_argument("--image-size", type=int, default=0, help="model input width (0: the "
                   "model's own)")
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--overlap", type=int, default=2)
    p.add_argument("--pose-source", default="refined")
    p.add_argument("--pose-queries", type=int, default=256)
    p.add_argument("--windows", type=int, default=20, help="at least this many windows")
    p.add_argument("--run-seconds", type=float, default=0.0, help="and at least this long")
    p.add_argument("--flush-every", type=int, default=10, help="a flushed, shorter window "
                   "after every N full windows (0: never)")
    p.add_argument("--track-every", type=int, default=5, help="a track request after every N "
                   "full windows (0: never)")
    p.add_argument("--starts", type=int, default=2, help="process starts (1: cold only)")
    p.add_argument("--cache-dir", default="", help="compile cache base (default: a new "
                   "temporary directory, so the first start is cold)")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up (to see the "
                   "stall it removes)")
    p.add_argument("--fast", action="store_true", help="force the fast path (CPU)")
    p.add_argument("--compile", action="store_true", help="force torch.compile (e.g. inductor "
                   "on CPU)")
    p.add_argument("--no-compile", action="store_true", help="fast path without torch.compile")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="write every start's numbers here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.width, args.height = args.camera
    args.stream_width, args.stream_height = args.stream_camera or args.camera
    if not 1 <= args.overlap < args.window:
        p.error(f"--overlap must be in [1, --window - 1], got {args.overlap}")
    return args


def _run_child(argv: list[str], cache_dir: str) -> dict[str, Any]:
    """One start in a fresh process; its output passes through, its result is parsed."""
    command = [sys.executable, "-m", "vggt_ros.bench.startup", *argv, "--child",
               "--cache-dir", cache_dir]
    package_root = str(Path(__file__).resolve().parents[2])  # this vggt_ros, not another
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p))
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise SystemExit(f"a start printed no result:\n{out.stdout}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def _s(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(starts: list[dict[str, Any]]) -> list[str]:
    """One row per start: the start-up costs and the run's window latencies (seconds)."""
    lines = ["start | cache | model load | warm-up | configure | first window | median "
             "window | max window | windows | compiled after warm-up | eager calls",
             "---|---|---|---|---|---|---|---|---|---|---"]
    for index, r in enumerate(starts, 1):
        cache = "-" if not r["compile_cache"] else ("cold" if index == 1 else "warm")
        lines.append(
            f"{index} | {cache} | {_s(r['model_load_s'])} | {_s(r['warmup_s'])} | "
            f"{_s(r['configure_s'])} | {_s(r['first_window_s'])} | "
            f"{_s(r['median_window_s'])} | {_s(r['max_window_s'])} | {r['windows']} | "
            f"{r['compiled_after_warmup']} | {r['eager_calls_after_warmup']}")
    return lines


def verdicts(starts: list[dict[str, Any]]) -> list[str]:
    """The issue's criteria, each with its numbers (they are GPU criteria: on a CPU without
    compilation the cache one has nothing to measure)."""
    out = []
    for index, r in enumerate(starts, 1):
        ratio = r["first_window_s"] / r["steady_median_s"]
        out.append(f"start {index}: first window {ratio:.2f}x the steady median "
                   f"({'ok' if ratio <= 1.5 else 'OVER'} 1.5x)")
        spike = r["max_window_s"] / r["median_window_s"]
        out.append(f"start {index}: worst window {spike:.2f}x the median "
                   f"({'ok' if spike <= 2.0 else 'OVER'} 2x)")
    if len(starts) > 1 and starts[0]["compile_cache"]:
        share = starts[1]["configure_s"] / starts[0]["configure_s"]
        out.append(f"warm configure {100 * share:.0f} % of cold "
                   f"({'ok' if share <= 0.4 else 'OVER'} 40 %)")
    return out


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        print_result(measure_start(args))
        return 0
    with tempfile.TemporaryDirectory(prefix="vggt_startup_") as scratch:
        cache_dir = args.cache_dir or scratch
        starts = [_run_child(argv, cache_dir) for _ in range(args.starts)]
    first = starts[0]
    print(f"\nstart-up of {first['model']} on {first['gpu'] or first['device']} "
          f"({first['describe'].get('path')} path, compiled: "
          f"{first['describe'].get('compiled')}), camera {args.width}x{args.height}, windows "
          f"of {args.window} (overlap {args.overlap}); seconds")
    print("\n".join(table(starts)))
    for index, start in enumerate(starts, 1):
        for message in start["compile_messages"]:
            print(f"start {index}: {message}")
    print("\n".join(verdicts(starts)))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "starts": starts},
                                              indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
