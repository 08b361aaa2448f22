"""``vggt_bench``: latency, memory, arithmetic rate and accuracy of the reference and fast paths.

Why this shape: one command builds VGGT-1B with random weights (no checkpoint needed), times each
stage with device events after warm-up (median), counts the FLOPs each stage must do
(``flops.py``) so every time comes with its achieved TFLOP/s and arithmetic floor, measures the
sliding-window case with the DINO cache, and checks the fast path's numbers against an fp32 run
of the same weights on the same inputs. Everything goes to JSON (``--json``); a short table is
printed last so the end of a log says it all.

Paths: ``reference`` is our VGGT module with the official numerics (fp32 weights, bf16 autocast
on CUDA, heads fp32); ``fast`` is ``vggt_ros.model.fast.FastVGGT`` over a copy of the same weights.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any, Optional

import torch

from vggt_ros.bench.accuracy import check_accuracy
from vggt_ros.bench.approx import bench_approx, parse_settings
from vggt_ros.bench.models import build_config, random_inputs, random_model
from vggt_ros.bench.pose_solver import bench_stage as bench_pose_solver_stage
from vggt_ros.bench.probes import probe_attention, probe_matmul
from vggt_ros.bench.profile import profile_fast
from vggt_ros.bench.report import environment, markdown_tables, summary_lines
from vggt_ros.bench.stages import Paths, bench_sizes, bench_window
from vggt_ros.bench.timing import Clock, tensor_bytes
from vggt_ros.bench.variants import VARIANT_NAMES, bench_variants
from vggt_ros.model import VGGT, load_vggt
from vggt_ros.model.fast import FastOptions, FastVGGT


def build_model(args: argparse.Namespace, device: torch.device) -> VGGT:
    cfg = build_config(args.config)
    if args.checkpoint:
        return load_vggt(args.checkpoint, config=cfg, device=device)
    return random_model(cfg, args.seed, device)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        values = [int(v) for v in text.split(",") if v.strip()]
        if any(v < 1 for v in values):
            raise argparse.ArgumentTypeError(f"frame counts must be >= 1, got {text!r}")
        return values

    p = argparse.ArgumentParser(prog="vggt_bench", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--config", default="1b", help="1b, tiny or a VGGTConfig JSON file")
    p.add_argument("--checkpoint", default="", help="optional weights (default: random init)")
    p.add_argument("--height", type=int, default=392)
    p.add_argument("--width", type=int, default=518)
    p.add_argument("--frames", type=ints, default=[1, 4, 8, 16, 32],
                   help="frame counts with a full per-stage breakdown")
    p.add_argument("--extra-frames", type=ints, default=[64, 128],
                   help="frame counts timed end to end only (fast path)")
    p.add_argument("--ref-max-frames", type=int, default=32, help="largest S for the reference")
    p.add_argument("--track-max-frames", type=int, default=16, help="largest S with the track head")
    p.add_argument("--queries", type=int, default=64, help="track queries (0: no tracking)")
    p.add_argument("--pose-queries", type=int, default=256,
                   help="queries of the pose-solver stage (what the solver adds to a window: "
                        "track request + refined solve on the CPU; 0 skips it)")
    p.add_argument("--reuse-permuted-tokens", action="store_true",
                   help="track requests re-use the window's tokens even with the query frame "
                        "moved first (FastOptions.reuse_permuted_tokens; an approximation)")
    p.add_argument("--paths", default="reference,fast",
                   type=lambda t: [v for v in t.split(",") if v])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--accuracy-frames", type=int, default=8)
    p.add_argument("--no-compile", action="store_true", help="fast path without torch.compile")
    p.add_argument("--sdpa", default="", help="attention backend priority, e.g. cudnn,flash")
    p.add_argument("--variants", default="", type=lambda t: [v for v in t.split(",") if v],
                   help="extra fast-path variants to time: eager, heads_eager (DPT heads not "
                        "compiled), camera_bf16, sdpa_cudnn, sdpa_cudnn_compiled, fp8 (block "
                        "GEMMs in FP8)")
    p.add_argument("--probe-frames", type=ints, default=[8, 32],
                   help="S values of the attention-kernel probe (CUDA only)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="arithmetic ceiling for the floor column (default 790 on CUDA: the bf16 "
                        "matrix rate measured on an H200 of this workplace)")
    p.add_argument("--profile", type=ints, default=[],
                   help="S values at which to profile the fast camera+depth call and a track "
                        "request kernel by kernel (CUDA only)")
    p.add_argument("--approx", default="",
                   help="time block-sparse global attention (FastOptions.sparse_global) against "
                        "exact attention, e.g. 'mass=0.9,max_ratio=0.25;mass=0.9,max_ratio=0.5' "
                        "(settings separated by ';', fields of SparseGlobalAttention)")
    p.add_argument("--approx-frames", type=ints, default=[32, 64, 128],
                   help="window sizes of the --approx comparison")
    p.add_argument("--approx-reps", type=int, default=3, help="timed calls per --approx case")
    p.add_argument("--no-approx-kept", dest="approx_kept", action="store_false",
                   help="skip the eager calls that measure the share of key blocks kept")
    p.add_argument("--end-to-end", default="",
                   help="a saved end-to-end (pipeline) benchmark JSON whose numbers are printed "
                        "next to the network's (hook for the pipeline benchmark)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="write the full report here")
    p.add_argument("--render", default="", help="print a saved --json report as Markdown, exit")
    args = p.parse_args(argv)
    try:
        args.approx = parse_settings(args.approx) if args.approx.strip() else []
    except ValueError as err:
        p.error(f"--approx: {err}")
    bad = sorted(set(args.variants) - set(VARIANT_NAMES))
    if bad:
        p.error(f"--variants takes {', '.join(VARIANT_NAMES)}; got {bad}")
    unknown = sorted(set(args.paths) - {"reference", "fast"})
    if unknown or not args.paths:
        p.error(f"--paths takes reference and/or fast, got {args.paths}")
    if args.height % 14 or args.width % 14:
        p.error(f"--height/--width must be multiples of 14, got {args.height}x{args.width}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.render:
        print(markdown_tables(json.loads(Path(args.render).read_text())))
        return 0
    from vggt_ros.inference.device import resolve_device

    device = resolve_device(args.device)
    peak = args.peak_tflops or (790.0 if device.type == "cuda" else None)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the official defaults, stated explicitly

    def log(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.perf_counter()
    model = build_model(args, device)
    options = FastOptions(compile_blocks=False if args.no_compile else None,
                          sdpa_priority=tuple(v for v in args.sdpa.split(",") if v) or None,
                          reuse_permuted_tokens=args.reuse_permuted_tokens)
    fast = FastVGGT(copy.deepcopy(model), options)
    log(f"built {args.config} model ({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M "
        f"parameters) and its fast copy in {time.perf_counter() - t0:.1f} s")
    resident = {"reference": tensor_bytes(model), "fast": tensor_bytes(fast)}
    paths = Paths(model, fast, device)
    clock = Clock(device, args.warmup, args.reps)
    cfg = model.config

    report: dict[str, Any] = {"env": environment(device), "config": args.config,
                              "height": args.height, "width": args.width,
                              "args": {k: v for k, v in vars(args).items()},
                              "weights_gb": {k: v / 1e9 for k, v in resident.items()},
                              "peak_tflops_assumed": peak}

    def save() -> None:
        if args.json:  # after every section, so a run cut short still leaves its numbers
            Path(args.json).write_text(json.dumps(report, indent=1, default=str))

    report["targets_apply"] = args.config == "1b" and device.type == "cuda"
    images, _ = random_inputs(args.window, args.height, args.width, 0, device, args.seed)
    t1 = time.perf_counter()
    with torch.inference_mode():
        fast(images)
    clock.sync()
    report["fast_first_call_s"] = time.perf_counter() - t1  # compilation / graph capture
    log(f"first fast call at S={args.window} (compile + graph capture): "
        f"{report['fast_first_call_s']:.1f} s")
    report["accuracy"] = check_accuracy(args, paths, device)
    log(f"accuracy: {json.dumps(report['accuracy'])}")
    save()
    if device.type == "cuda":
        report["probes"] = {"matmul_tflops": probe_matmul(clock),
                            "attention": probe_attention(args, clock, cfg)}
        log(f"probes: {json.dumps(report['probes'])}")
        save()
    report["results"] = bench_sizes(args, paths, clock, cfg, resident, peak, log)
    save()
    if "fast" in args.paths:
        report["window"] = bench_window(args, paths, clock)
        log(f"window: {json.dumps(report['window'])}")
        if args.pose_queries and fast.model.track_head is not None:
            report["pose_solver"] = bench_pose_solver_stage(fast, args, clock)
            log(f"pose solver: {json.dumps(report['pose_solver'])}")
    save()

    fast_res = report["results"].get("fast", {})
    report["targets_input"] = {
        "fast_full_8": fast_res.get(8, {}).get("full", {}).get("ms"),
        "fast_full_32": fast_res.get(32, {}).get("full", {}).get("ms"),
        "fast_mem_8": fast_res.get(8, {}).get("peak_gb"),
        "window_ms": (report.get("window") or {}).get("window_ms"),
        "track_cached_ms": (report.get("window") or {}).get("track_cached_ms"),
    }
    if args.variants:
        report["variants"] = bench_variants(args, fast, paths, clock, log)
    if args.approx:
        report["approx"] = {}  # filled case by case, so a run cut short keeps its cases
        bench_approx(args, fast, clock, log, save, section=report["approx"])
    if args.end_to_end:
        report["end_to_end"] = json.loads(Path(args.end_to_end).read_text())
    if args.profile and device.type == "cuda":
        report["profile"] = profile_fast(args, fast, device, log)
    report["total_s"] = time.perf_counter() - t0
    save()
    print("\n".join(summary_lines(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
