"""One measured start of the live inference stack, as the node's configure and activate do it.

Run in a fresh process per start (``bench/startup.py`` spawns it), so a second start sees only
what persists on disk (the compile cache), exactly like a restarted node:

1. model load: weights built or read, moved to the device, wrapped as the node's predictor;
2. warm-up: ``inference/warmup.py``, every window shape at the camera size, as the node's
   ``configure`` does;
3. after "activate": a camera stream through the real ``Pipeline`` (sliding windows, a shorter
   flushed window now and then, track requests), each window timed; the first one is what the
   robot waits for after activate.
The result is one JSON object on stdout's last line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
import torch

from vggt_ros.inference.compile_cache import use_compile_cache
from vggt_ros.inference.device import resolve_device
from vggt_ros.inference.predictor import VGGTPredictor
from vggt_ros.inference.warmup import WarmupPlan
from vggt_ros.model.fast import FastOptions
from vggt_ros.pipeline.pipeline import Pipeline, PipelineConfig, WindowFailed
from vggt_ros.pipeline.types import Frame
from vggt_ros.synth import make_sequence

__all__ = ["RESULT_PREFIX", "measure_start", "camera_frames"]

RESULT_PREFIX = "STARTUP_RESULT "
_STEP_NS = 100_000_000


def camera_frames(width: int, height: int, count: int) -> list[np.ndarray]:
    """``count`` images of a synthetic scene sliding sideways (one quarter-size render,
    upscaled and rolled: a full-size render takes seconds per frame)."""
    small = make_sequence(1, max(width // 4, 8), max(height // 4, 8), seed=3,
                          trajectory="forward").render(0)[0]
    base = np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)[:height, :width]
    base = np.pad(base, ((0, height - base.shape[0]), (0, width - base.shape[1]), (0, 0)),
                  mode="edge")
    return [np.ascontiguousarray(np.roll(base, 6 * i, axis=1)) for i in range(count)]


def _model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    from vggt_ros.bench.models import build_config, random_model
    from vggt_ros.model import load_vggt
    from vggt_ros.model.embedded import load_embedded_model

    if args.model == "demo":
        return load_embedded_model(device)
    if args.model in ("1b", "tiny"):
        return random_model(build_config(args.model), args.seed, device)
    return load_vggt(args.model, device=device)


def _predictor(args: argparse.Namespace, device: torch.device, log) -> VGGTPredictor:
    fast = True if args.fast or args.compile else None
    options = None
    if args.compile:  # forced (e.g. inductor on CPU); otherwise the predictor's defaults
        options = FastOptions(compile_blocks=True, compile_heads=True)
    elif args.no_compile:
        options = FastOptions(compile_blocks=False, compile_heads=False)
    model = _model(args, device)
    predictor = VGGTPredictor(model, device=device, image_size=args.image_size or
                              model.config.img_size, name=args.model, fast=fast,
                              fast_options=options, log=log)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return predictor


def _stream(pipeline: Pipeline, images: list[np.ndarray], args: argparse.Namespace
            ) -> dict[str, Any]:
    """Feed frames until ``args.windows`` windows and ``args.run_seconds`` have passed, timing
    every window (the call that produced it). After every ``flush_every``-th full window a few
    more frames and a flush give a shorter window (an idle camera); after every
    ``track_every``-th one a track request on the newest keyframe (the service)."""
    times: list[float] = []
    kinds: list[str] = []
    tracks: list[float] = []
    failed = 0
    stamp = 0
    start = time.perf_counter()

    def next_frame() -> Frame:
        nonlocal stamp
        stamp += 1
        return Frame(stamp_ns=stamp * _STEP_NS, image=images[stamp % len(images)],
                     frame_id="camera")

    def timed(call, kind: str) -> bool:
        nonlocal failed
        t0 = time.perf_counter()
        try:
            produced = bool(call())
        except WindowFailed:  # random weights may fail chaining; the network still ran
            failed, produced = failed + 1, True
        if produced:
            times.append(time.perf_counter() - t0)
            kinds.append(kind)
        return produced

    full = 0
    spare = args.window - args.overlap - 1  # frames a flushed window can add
    while len(times) < args.windows or time.perf_counter() - start < args.run_seconds:
        frame = next_frame()
        if not timed(lambda: pipeline.add_frame(frame), "window"):
            continue
        full += 1
        if args.flush_every and spare >= 1 and full % args.flush_every == 0:
            for _ in range(1 + (full // args.flush_every) % spare):
                pipeline.add_frame(next_frame())
            timed(pipeline.flush, "flush")
        if args.track_every and full % args.track_every == 0:
            t0 = time.perf_counter()
            try:
                pipeline.track(0, np.array([[args.stream_width / 2, args.stream_height / 2]]))
            except Exception:  # noqa: BLE001 - no snapshot after a failed window
                pass
            tracks.append(time.perf_counter() - t0)
    return {"first_window_s": times[0],
            "steady_median_s": statistics.median(times[1:] or times),
            "median_window_s": statistics.median(times), "max_window_s": max(times),
            "windows": len(times),
            "flushes": kinds.count("flush"), "failed_windows": failed,
            "track_requests": len(tracks),
            "track_max_s": max(tracks) if tracks else None,
            "run_s": time.perf_counter() - start, "window_s": times}


def measure_start(args: argparse.Namespace) -> dict[str, Any]:
    """One start: load, warm-up, stream; everything the table needs."""
    messages: list[str] = []
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    predictor = _predictor(args, device, messages.append)
    load_s = time.perf_counter() - t0
    cache = str(use_compile_cache(args.cache_dir)) if predictor.compiles else ""
    warmup_s, report = 0.0, None
    if not args.no_warmup:
        report = predictor.warm_up(WarmupPlan(
            width=args.width, height=args.height, window_size=args.window, overlap=args.overlap,
            track_queries=max(8, args.pose_queries)))
        warmup_s = report.seconds
    warmed = predictor.compile_stats()
    config = PipelineConfig(window_size=args.window, overlap=args.overlap,
                            keyframe_min_interval=0.0, pose_source=args.pose_source,
                            pose_queries=args.pose_queries)
    images = camera_frames(args.stream_width, args.stream_height, 24)
    run = _stream(Pipeline(predictor, config), images, args)
    after = predictor.compile_stats()
    return {"device": str(device), "gpu": torch.cuda.get_device_name(device)
            if device.type == "cuda" else "", "model": args.model,
            "describe": predictor.describe(), "compile_cache": cache,
            "model_load_s": load_s, "warmup_s": warmup_s, "configure_s": load_s + warmup_s,
            "warmup": report.summary() if report else "off",
            "compiled_at_warmup": warmed["compiled_shapes"],
            "compiled_after_warmup": after["compiled_shapes"] - warmed["compiled_shapes"],
            "eager_calls_after_warmup": after["eager_calls"] - warmed["eager_calls"],
            "compile_messages": messages[:10], **run}


def print_result(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
