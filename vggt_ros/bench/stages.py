"""The two paths (reference, fast) cut into stages, timed per frame count and on a sliding
window with the DINO cache."""
from __future__ import annotations

import contextlib
import statistics
from typing import Any, Callable, Optional

import torch

from vggt_ros.bench.flops import stage_flops
from vggt_ros.bench.models import random_inputs
from vggt_ros.bench.timing import Clock
from vggt_ros.model import VGGT, VGGTConfig
from vggt_ros.model.fast import FastVGGT


class Paths:
    """The two paths as per-stage callables on one input (``fast`` None: the reference only)."""

    def __init__(self, model: VGGT, fast: Optional[FastVGGT], device: torch.device) -> None:
        self.ref, self.fast, self.device = model, fast, device
        self.fp32_case: Optional[tuple[torch.Tensor, dict]] = None  # set by check_accuracy

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            major = torch.cuda.get_device_capability(self.device)[0]
            return torch.autocast("cuda", dtype=torch.bfloat16 if major >= 8 else torch.float16)
        return contextlib.nullcontext()

    def fp32_region(self) -> contextlib.AbstractContextManager:
        return (torch.autocast("cuda", enabled=False) if self.device.type == "cuda"
                else contextlib.nullcontext())

    def reference_stages(self, images: torch.Tensor, queries: Optional[torch.Tensor]
                         ) -> dict[str, Callable[[], Any]]:
        m, agg = self.ref, self.ref.aggregator
        b, s, _, h, w = images.shape
        with self.autocast():
            tokens, start = agg(images)
        norm = agg.normalize(images).reshape(b * s, 3, h, w)

        def in_autocast(fn):
            def run():
                with self.autocast():
                    return fn()
            return run

        def in_fp32(fn):
            def run():
                with self.autocast(), self.fp32_region():
                    return fn()
            return run

        stages = {
            "dino": in_autocast(lambda: agg.patch_embed(norm)),
            "aggregator": in_autocast(lambda: agg(images)),
            "camera_head": in_fp32(lambda: m.camera_head(tokens)),
            "depth_head": in_fp32(lambda: m.depth_head(tokens, images, start)),
            "point_head": in_fp32(lambda: m.point_head(tokens, images, start)),
            "full": in_autocast(lambda: m(images, heads=("camera", "depth"))),
            "full_all": in_autocast(lambda: m(images, heads=("camera", "depth", "point"))),
        }
        if queries is not None:
            stages["track_head"] = in_autocast(lambda: m.track_head(tokens, images, start, queries))
        return stages

    def fast_stages(self, images: torch.Tensor, queries: Optional[torch.Tensor]
                    ) -> dict[str, Callable[[], Any]]:
        f = self.fast
        b, s, _, h, w = images.shape
        p = f.config.patch_size
        flat = images.reshape(b * s, 3, h, w)
        with f.attention_context():
            tokens = f.aggregate(f.encode_frames(flat).unflatten(0, (b, s)), h // p, w // p)

        def attn(fn):
            def run():
                with f.attention_context():
                    return fn()
            return run

        stages = {
            "dino": attn(lambda: f.encode_frames(flat)),
            "aggregator": attn(lambda: f.aggregate(f.encode_frames(flat).unflatten(0, (b, s)),
                                                   h // p, w // p)),
            "camera_head": lambda: f.camera(tokens),
            "depth_head": lambda: f.dpt(f.model.depth_head, tokens, images),
            "point_head": lambda: f.dpt(f.model.point_head, tokens, images),
            "full": lambda: f(images, heads=("camera", "depth")),
            "full_all": lambda: f(images, heads=("camera", "depth", "point")),
        }
        if queries is not None:
            stages["track_head"] = lambda: f.track(tokens, images, queries)
        return stages


def bench_sizes(args, paths: Paths, clock: Clock, cfg: VGGTConfig, resident: dict[str, int],
                peak_tflops: Optional[float], log) -> dict[str, dict]:
    results: dict[str, dict] = {"reference": {}, "fast": {}}
    sizes = sorted(set(args.frames) | set(args.extra_frames))
    for s in sizes:
        images, queries = random_inputs(s, args.height, args.width, args.queries, clock.device,
                                        args.seed + s)
        queries = queries if s <= args.track_max_frames else None
        flops = stage_flops(cfg, s, args.height, args.width, args.queries if queries is not None else 0)
        flops["full"] = flops["aggregator"] + flops["camera_head"] + flops["depth_head"]
        flops["full_all"] = flops["full"] + flops["point_head"]
        for name in args.paths:
            if name == "reference" and s > args.ref_max_frames:
                continue
            entry: dict[str, Any] = {}
            try:
                with torch.inference_mode():
                    stages = (paths.reference_stages if name == "reference" else
                              paths.fast_stages)(images, queries)
                    only_full = s not in args.frames
                    for stage, fn in stages.items():
                        if only_full and stage != "full":
                            continue
                        reps = args.reps if s <= 32 else max(1, args.reps // 2)
                        ms = clock.median(fn, reps)
                        rate = flops[stage] / (ms * 1e-3) / 1e12
                        entry[stage] = {"ms": ms, "gflop": flops[stage] / 1e9, "tflops": rate}
                        if peak_tflops:
                            entry[stage]["floor_ms"] = flops[stage] / (peak_tflops * 1e12) * 1e3
                        log(f"[{name} S={s}] {stage}: {ms:.2f} ms, {rate:.1f} TFLOP/s")
                    entry["peak_gb"] = clock.peak_gb(stages["full"], resident[name])
                    del stages
            except torch.cuda.OutOfMemoryError as err:
                entry["error"] = f"out of memory: {str(err).splitlines()[0]}"
                log(f"[{name} S={s}] {entry['error']}")
            results[name][s] = entry
            if clock.device.type == "cuda":
                torch.cuda.empty_cache()
    return results


def bench_window(args, paths: Paths, clock: Clock) -> dict[str, Any]:
    """Window 8 / stride 4 with the DINO cache, then a track request on the last window."""
    fast = paths.fast
    size, stride = args.window, args.stride
    count = args.warmup + args.reps + 1
    total = size + stride * (count - 1)
    frames, queries = random_inputs(total, args.height, args.width, args.queries, clock.device,
                                    args.seed + 1000)
    fast.cache.clear()
    times: list[float] = []
    track_times: dict[str, list[float]] = {"track_cached_ms": [], "track_newest_ms": []}
    newest_first = [size - 1] + list(range(size - 1))
    with torch.inference_mode():
        for i in range(count):
            keys = list(range(i * stride, i * stride + size))
            window = frames[:, keys[0]:keys[-1] + 1]
            ms = clock.once(lambda: fast(window, heads=("camera", "depth"), frame_keys=keys))
            if queries is not None and fast.model.track_head is not None:
                # Query on the window's first frame: served from the window's tokens (exact).
                # Then the newest keyframe queried, as the node does: the frames are reordered,
                # so by default the backbone re-runs (DINO tokens from the cache).
                for name, order in (("track_cached_ms", list(range(size))),
                                    ("track_newest_ms", newest_first)):
                    track_times[name].append(clock.once(lambda: fast(
                        window[:, order], queries, heads=("track",),
                        frame_keys=[keys[j] for j in order])))
                fast(window, heads=("camera", "depth"), frame_keys=keys)  # restore the window
            if i > args.warmup:  # the first window has a cold cache
                times.append(ms)
    out: dict[str, Any] = {"window": size, "stride": stride, "windows_timed": len(times),
                           "window_ms": statistics.median(times) if times else None,
                           "cache_hits": fast.cache.hits, "cache_misses": fast.cache.misses}
    for name, values in track_times.items():
        if values:
            out[name] = statistics.median(values[args.warmup + 1:] or values)
    return out
