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
import contextlib
import copy
import datetime
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from vggt_ros.bench.flops import stage_flops
from vggt_ros.bench.profile import format_profile, profile_call
from vggt_ros.model import VGGT, VGGTConfig, load_vggt
from vggt_ros.model.fast import FastOptions, FastVGGT

TINY_CONFIG = dict(img_size=70, embed_dim=64, depth=4, num_heads=4, dino_depth=2, dino_heads=4,
                   cam_trunk_depth=2, cam_heads=4, dpt_features=32,
                   dpt_out_channels=[16, 32, 64, 64], dpt_layers=[0, 1, 2, 3], trk_features=32,
                   trk_iters=2, trk_corr_levels=3, trk_corr_radius=2, trk_hidden=64, trk_depth=2)
FOV_BIAS = 0.5  # raises random-init FoV outputs so ReLU'd FoVs (infinite focal) are rare
# Targets of the "GPU speed" issue (392x518, H200): name -> (result key, limit, unit).
TARGETS = {
    "S=8 camera+depth": ("fast_full_8", 50.0, "ms"),
    "sliding window 8/4 with DINO cache": ("window_ms", 40.0, "ms"),
    "S=32 camera+depth": ("fast_full_32", 250.0, "ms"),
    "track 64 queries over 8 frames": ("track_cached_ms", 40.0, "ms"),
    "peak memory S=8": ("fast_mem_8", 6.0, "GB"),
}


class Clock:
    """Median latency of a callable: CUDA events on GPU (after a sync), perf_counter on CPU."""

    def __init__(self, device: torch.device, warmup: int, reps: int) -> None:
        self.device, self.warmup, self.reps = device, warmup, reps

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def once(self, fn: Callable[[], Any]) -> float:
        self._sync()
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    def median(self, fn: Callable[[], Any], reps: Optional[int] = None) -> float:
        for _ in range(self.warmup):
            fn()
        return statistics.median(self.once(fn) for _ in range(reps or self.reps))

    def peak_gb(self, fn: Callable[[], Any], resident_bytes: int) -> Optional[float]:
        """Weights of the path + the activation peak of one call (other resident tensors, such
        as the second path's weights, are subtracted)."""
        if self.device.type != "cuda":
            return None
        self._sync()
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        fn()
        self._sync()
        return (resident_bytes + torch.cuda.max_memory_allocated(self.device) - base) / 1e9


def tensor_bytes(module: torch.nn.Module) -> int:
    seen = {}
    for t in list(module.parameters()) + list(module.buffers()):
        seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def build_config(name: str) -> VGGTConfig:
    if name == "1b":
        return VGGTConfig()
    if name == "tiny":
        return VGGTConfig(**TINY_CONFIG)
    path = Path(name)
    if not path.is_file():
        raise SystemExit(f"--config must be 1b, tiny or a JSON file, got {name!r}")
    return VGGTConfig.from_json(path.read_text())


def random_model(cfg: VGGTConfig, seed: int, device: torch.device) -> VGGT:
    """Seeded default-initialised weights (eval mode) with the FoV outputs raised by FOV_BIAS,
    so focal lengths are finite; shared by the benchmarks and the tests' random models."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = VGGT(cfg)
    if model.camera_head is not None:
        with torch.no_grad():
            model.camera_head.pose_branch.fc2.bias[7:] += FOV_BIAS
    return model.eval()


def build_model(args: argparse.Namespace, device: torch.device) -> VGGT:
    cfg = build_config(args.config)
    if args.checkpoint:
        return load_vggt(args.checkpoint, config=cfg, device=device)
    return random_model(cfg, args.seed, device)


class Paths:
    """The two paths as per-stage callables on one input."""

    def __init__(self, model: VGGT, fast: FastVGGT, device: torch.device) -> None:
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


def random_inputs(s: int, h: int, w: int, n: int, device: torch.device, seed: int):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    images = torch.rand(1, s, 3, h, w, generator=gen).to(device)
    scale = torch.tensor([w - 1.0, h - 1.0])
    queries = (torch.rand(1, n, 2, generator=gen) * scale).to(device) if n else None
    return images, queries


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


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a.double() - b.double()).abs() / b.double().abs().clamp_min(1e-12)).flatten()


def check_accuracy(args, paths: Paths, device: torch.device) -> dict[str, Any]:
    """Fast path and official-numerics path vs an fp32 run of the same weights and inputs."""
    s = args.accuracy_frames
    images, _ = random_inputs(s, args.height, args.width, 0, device, args.seed + 7)
    heads = ("camera", "depth")
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # a true fp32 reference (matmul TF32 is off by default)
    try:
        with torch.inference_mode():
            ref32 = paths.ref(images, heads=heads)
            with paths.autocast():
                official = paths.ref(images, heads=heads)
            fast = paths.fast(images, heads=heads)
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
    paths.fp32_case = (images, ref32)  # variants are checked against the same fp32 outputs
    report: dict[str, Any] = {"frames": s}
    for name, out in (("fast", fast), ("reference_autocast", official)):
        finite = all(torch.isfinite(out[k]).all().item() for k in ("pose_enc", "depth", "depth_conf"))
        pose_err = (out["pose_enc"].double() - ref32["pose_enc"].double()).abs()[0]  # [S,9]
        report[name] = {
            "finite": finite,
            "pose_enc_max_abs": pose_err.max().item(),
            "pose_max_abs_t_quat_fov": [pose_err[:, :3].max().item(), pose_err[:, 3:7].max().item(),
                                        pose_err[:, 7:].max().item()],
            "depth_median_rel": _rel(out["depth"], ref32["depth"]).median().item(),
            "depth_p99_rel": torch.quantile(_rel(out["depth"], ref32["depth"])[::97].float(), 0.99).item(),
            "conf_median_rel": _rel(out["depth_conf"], ref32["depth_conf"]).median().item(),
        }
    report["fp32_depth_range"] = [ref32["depth"].min().item(), ref32["depth"].max().item()]
    report["fp32_pose_enc_abs_max"] = ref32["pose_enc"].abs().max().item()
    fast_r = report["fast"]
    report["pass"] = bool(fast_r["finite"] and fast_r["depth_median_rel"] <= 0.01
                          and fast_r["pose_enc_max_abs"] <= 1e-2)
    # Random weights can make the pose sensitive to any bf16 rounding: say whether the fast
    # path is at least as close to fp32 as the official bf16-autocast recipe.
    report["fast_pose_within_official"] = bool(
        fast_r["pose_enc_max_abs"] <= report["reference_autocast"]["pose_enc_max_abs"])
    return report


def probe_attention(args, clock: Clock, cfg: VGGTConfig) -> list[dict[str, Any]]:
    """Global-attention kernel of one aggregator layer under each SDPA backend."""
    from torch.nn.attention import sdpa_kernel

    from vggt_ros.model.fast import SDPA_BACKENDS

    rows = []
    tokens = 5 + (args.height // cfg.patch_size) * (args.width // cfg.patch_size)
    heads, dim = cfg.num_heads, cfg.embed_dim // cfg.num_heads
    for s in args.probe_frames:
        n = s * tokens
        q, k, v = (torch.randn(1, heads, n, dim, device=clock.device, dtype=torch.bfloat16)
                   for _ in range(3))
        for name in ("flash", "cudnn", "efficient"):
            row: dict[str, Any] = {"frames": s, "backend": name}
            try:
                with sdpa_kernel([SDPA_BACKENDS[name]]):
                    row["ms"] = clock.median(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
                row["tflops"] = 4 * n * n * heads * dim / (row["ms"] * 1e-3) / 1e12
            except RuntimeError as err:
                row["error"] = str(err).splitlines()[0][:120]
            rows.append(row)
    return rows


def probe_matmul(clock: Clock) -> float:
    a, b = (torch.randn(8192, 8192, device=clock.device, dtype=torch.bfloat16) for _ in range(2))
    return 2 * 8192 ** 3 / (clock.median(lambda: a @ b) * 1e-3) / 1e12


def bench_variants(args, fast: FastVGGT, paths: Paths, clock: Clock, log) -> list[dict[str, Any]]:
    """Alternative fast-path switches on the same (already converted) weights, end to end."""
    eager = dict(compile_blocks=False, compile_heads=False, cuda_graph_camera=False,
                 cuda_graph_tracker=False)
    cudnn = dict(sdpa_priority=("cudnn",), sdpa_exclusive=True)
    sizes = sorted({args.window, max(args.frames)})
    variants = {"eager": (FastOptions(**eager), sizes),
                "heads_eager": (FastOptions(compile_heads=False), sizes),
                "camera_bf16": (FastOptions(camera_fp32=False), sizes),
                "sdpa_cudnn": (FastOptions(**cudnn, **eager), sizes),
                "sdpa_cudnn_compiled": (FastOptions(**cudnn), sizes)}
    rows = []
    for name in args.variants:
        options, sizes = variants[name]
        # FastVGGT converts weights in place: a variant with other weight dtypes gets a copy.
        variant = FastVGGT(fast.model if options.camera_fp32 else copy.deepcopy(fast.model),
                           options)
        for s in sizes:
            images, _ = random_inputs(s, args.height, args.width, 0, clock.device, args.seed + s)
            row: dict[str, Any] = {"name": name, "frames": s}
            try:
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    variant(images)
                    clock._sync()
                    row["first_s"] = time.perf_counter() - t0
                    row["ms"] = clock.median(lambda: variant(images))
                    if s == paths.fp32_case[0].shape[1]:
                        ref_images, ref32 = paths.fp32_case
                        out = variant(ref_images)
                        row["pose_enc_max_abs"] = (out["pose_enc"] - ref32["pose_enc"]).abs().max().item()
                        row["depth_median_rel"] = _rel(out["depth"], ref32["depth"]).median().item()
            except Exception as err:  # a variant failing must not lose the other results
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
            log(f"[variant {name} S={s}] {row}")
            rows.append(row)
    return rows


def environment(device: torch.device) -> dict[str, Any]:
    env = {"torch": torch.__version__, "device": str(device), "python": sys.version.split()[0],
           "date": datetime.date.today().isoformat()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The final table: per-S latency of both paths, speed-up, rate, memory, then the rest."""
    res = report["results"]
    lines = ["", f"VGGT benchmark ({report['config']}, {report['height']}x{report['width']}, "
             f"{report['env'].get('gpu', report['env']['device'])}, torch {report['env']['torch']})",
             "S    | ref cam+depth ms | fast cam+depth ms | speed-up | fast agg ms | agg TFLOP/s "
             "| ref cam+dep+pt ms | fast peak GB | ref peak GB"]

    def get(path, s, stage, key="ms"):
        return res.get(path, {}).get(s, {}).get(stage, {}).get(key)

    def fmt(v, spec=".1f"):
        return "-" if v is None else format(v, spec)

    for s in sorted({*res.get("reference", {}), *res.get("fast", {})}):
        ref, fast = get("reference", s, "full"), get("fast", s, "full")
        speed = ref / fast if ref and fast else None
        err = res.get("fast", {}).get(s, {}).get("error")
        lines.append(f"{s:<4} | {fmt(ref):>16} | {fmt(fast) if not err else 'OOM':>17} | "
                     f"{fmt(speed, '.2f'):>8} | {fmt(get('fast', s, 'aggregator')):>11} | "
                     f"{fmt(get('fast', s, 'aggregator', 'tflops')):>11} | "
                     f"{fmt(get('reference', s, 'full_all')):>17} | "
                     f"{fmt(res.get('fast', {}).get(s, {}).get('peak_gb'), '.2f'):>12} | "
                     f"{fmt(res.get('reference', {}).get(s, {}).get('peak_gb'), '.2f'):>11}")
    s8 = 8 if 8 in report["args"]["frames"] and 8 in res.get("fast", {}) else None
    if s8:
        lines.append(f"stages at S={s8} (ms ref / fast): " + ", ".join(
            f"{st} {fmt(get('reference', s8, st))}/{fmt(get('fast', s8, st))}"
            for st in ("dino", "aggregator", "camera_head", "depth_head", "point_head", "track_head")))
    win = report.get("window")
    if win:
        lines.append(f"sliding window {win['window']}/{win['stride']} (DINO cache): "
                     f"{fmt(win.get('window_ms'))} ms per window; track from cached tokens: "
                     f"{fmt(win.get('track_cached_ms'))} ms; newest frame queried (backbone "
                     f"re-run): {fmt(win.get('track_newest_ms'))} ms")
    acc = report.get("accuracy")
    if acc:
        for name in ("fast", "reference_autocast"):
            a = acc[name]
            lines.append(f"accuracy {name} vs fp32 (S={acc['frames']}): pose max abs "
                         f"{a['pose_enc_max_abs']:.2e}, depth median rel {a['depth_median_rel']:.2e}, "
                         f"conf median rel {a['conf_median_rel']:.2e}, finite {a['finite']}")
        lines.append(f"accuracy check (depth median rel <= 1e-2, pose max abs <= 1e-2): "
                     f"{'PASS' if acc['pass'] else 'FAIL'}; fast pose error <= official "
                     f"autocast's: {acc['fast_pose_within_official']}")
    for row in report.get("probes", {}).get("attention", []):
        lines.append(f"attention probe S={row['frames']} {row['backend']}: "
                     f"{fmt(row.get('ms'), '.2f')} ms, {fmt(row.get('tflops'))} TFLOP/s"
                     + (f" ({row['error']})" if row.get("error") else ""))
    if "matmul_tflops" in report.get("probes", {}):
        lines.append(f"bf16 8192^3 matmul: {report['probes']['matmul_tflops']:.0f} TFLOP/s")
    for row in report.get("variants", []):
        lines.append(f"variant {row['name']} S={row['frames']}: {fmt(row.get('ms'))} ms"
                     + (f", pose err {row['pose_enc_max_abs']:.1e}, depth rel "
                        f"{row['depth_median_rel']:.1e}" if "depth_median_rel" in row else "")
                     + (f" (first call {row['first_s']:.1f} s)" if "first_s" in row else "")
                     + (f" ({row['error']})" if row.get("error") else ""))
    for name, (key, limit, unit) in TARGETS.items():
        if not report["targets_apply"]:
            lines.append(f"target {name}: n/a (the targets are for --config 1b on CUDA)")
            continue
        value = report["targets_input"].get(key)
        verdict = "not measured" if value is None else ("met" if value <= limit else "MISSED")
        lines.append(f"target {name} <= {limit:g} {unit}: {fmt(value, '.2f')} -> {verdict}")
    return lines


def markdown_tables(report: dict[str, Any]) -> str:
    """The report's per-S and per-stage numbers as Markdown (for docs/PERFORMANCE.md)."""
    res = report["results"]

    def cell(path, s, stage, key="ms", spec=".1f"):
        value = res.get(path, {}).get(str(s), {}).get(stage, {}).get(key)
        return "-" if value is None else format(value, spec)

    sizes = sorted({int(s) for path in res.values() for s in path})
    out = ["| S | reference cam+depth ms | reference cam+depth+point ms | fast cam+depth ms | "
           "speed-up | fast TFLOP/s | floor ms | fast peak GB | reference peak GB |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in sizes:
        ref, fast = res.get("reference", {}).get(str(s), {}), res.get("fast", {}).get(str(s), {})
        speed = (f"{ref['full']['ms'] / fast['full']['ms']:.2f}x"
                 if "full" in ref and "full" in fast else "-")
        peak = lambda e: "-" if e.get("peak_gb") is None else f"{e['peak_gb']:.2f}"  # noqa: E731
        out.append(f"| {s} | {cell('reference', s, 'full')} | {cell('reference', s, 'full_all')} | "
                   f"{cell('fast', s, 'full')} | {speed} | {cell('fast', s, 'full', 'tflops')} | "
                   f"{cell('fast', s, 'full', 'floor_ms')} | {peak(fast)} | {peak(ref)} |")
    stages = ("dino", "aggregator", "camera_head", "depth_head", "point_head", "track_head")
    out += ["", "| S | stage | GFLOP | reference ms | fast ms | fast TFLOP/s | floor ms |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in sizes:
        for stage in stages:
            if cell("fast", s, stage) == "-" and cell("reference", s, stage) == "-":
                continue
            out.append(f"| {s} | {stage} | {cell('fast', s, stage, 'gflop', '.0f')} | "
                       f"{cell('reference', s, stage)} | {cell('fast', s, stage)} | "
                       f"{cell('fast', s, stage, 'tflops')} | {cell('fast', s, stage, 'floor_ms')} |")
    return "\n".join(out)


def profile_fast(args, fast: FastVGGT, device: torch.device, log) -> dict[str, Any]:
    """Kernel-level breakdown of the fast camera+depth call (and a track request served from
    its tokens) at each S of ``--profile``."""
    out: dict[str, Any] = {}
    for s in args.profile:
        images, queries = random_inputs(s, args.height, args.width, args.queries, device,
                                        args.seed + 2000)
        keys = [("profile", s, i) for i in range(s)]
        calls = {"camera+depth": lambda: fast(images, heads=("camera", "depth"))}
        if queries is not None and fast.model.track_head is not None:
            calls["track from window tokens"] = lambda: fast(images, queries, heads=("track",),
                                                             frame_keys=keys)
        with torch.inference_mode():
            fast(images, heads=("camera", "depth"), frame_keys=keys)  # the window to re-use
            for name, call in calls.items():
                for _ in range(args.warmup + 1):
                    call()
                result = profile_call(call, args.reps)
                out[f"{name} S={s}"] = result
                log(f"profile {name} S={s}:\n{format_profile(result)}")
    return out


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
                        "compiled), camera_bf16, sdpa_cudnn, sdpa_cudnn_compiled")
    p.add_argument("--probe-frames", type=ints, default=[8, 32],
                   help="S values of the attention-kernel probe (CUDA only)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="arithmetic ceiling for the floor column (default 790 on CUDA: the bf16 "
                        "matrix rate measured on an H200 of this workplace)")
    p.add_argument("--profile", type=ints, default=[],
                   help="S values at which to profile the fast camera+depth call and a track "
                        "request kernel by kernel (CUDA only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="write the full report here")
    p.add_argument("--render", default="", help="print a saved --json report as Markdown, exit")
    args = p.parse_args(argv)
    known = {"eager", "heads_eager", "camera_bf16", "sdpa_cudnn", "sdpa_cudnn_compiled"}
    bad = sorted(set(args.variants) - known)
    if bad:
        p.error(f"--variants takes {', '.join(sorted(known))}; got {bad}")
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
    from vggt_ros.runtime import resolve_device

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
    clock._sync()
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
    if args.profile and device.type == "cuda":
        report["profile"] = profile_fast(args, fast, device, log)
    report["total_s"] = time.perf_counter() - t0
    save()
    print("\n".join(summary_lines(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
