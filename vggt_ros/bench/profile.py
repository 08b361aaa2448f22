"""Where the GPU time of one fast-path call goes, kernel by kernel (``vggt_bench --profile``).

CUDA-event timings per stage say how long a stage takes, not why. This runs the call under
``torch.profiler`` and sums the device time of every kernel, grouped into the few families that
decide the speed of a ViT (attention, matrix products, convolutions, the rest), so a missed
target can be traced to the kernels that miss it.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile

from vggt_ros.bench.models import random_inputs
from vggt_ros.model.fast import FastVGGT

# Substrings of kernel names, checked in this order (first match wins).
KERNEL_FAMILIES = (
    ("attention", ("flash", "fmha", "attention", "sdpa")),
    # before "matmul": cuDNN convolutions run as implicit GEMMs ("xmma_fprop_implicit_gemm")
    ("convolution", ("conv", "fprop", "dgrad", "wgrad")),
    ("matmul", ("gemm", "gemv", "xmma", "cutlass", "nvjet", "matmul", "wgmma")),
    ("copy / layout", ("copy", "cat", "transpose", "permute", "memcpy", "memset")),
)


def kernel_family(name: str) -> str:
    lowered = name.lower()
    if lowered.startswith("triton_"):  # inductor's fused kernels name the ops they absorbed
        return "fused element-wise (torch.compile)"
    for family, needles in KERNEL_FAMILIES:
        if any(n in lowered for n in needles):
            return family
    return "other (element-wise, norms, resampling)"


def profile_call(fn: Callable[[], Any], reps: int, top: int = 15) -> dict[str, Any]:
    """Device time per call of ``fn`` by kernel family and the ``top`` kernels (ms per call).

    ``fn`` must already be warmed up (compiled, graphs captured): compilation is not profiled.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    kernels: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            entry = kernels[event.name]
            entry[0] += event.device_time_total / 1000.0  # us -> ms
            entry[1] += 1
    families: dict[str, float] = defaultdict(float)
    for name, (ms, _) in kernels.items():
        families[kernel_family(name)] += ms / reps
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]
    return {
        "reps": reps,
        "total_kernel_ms": sum(families.values()),
        "families_ms": dict(sorted(families.items(), key=lambda kv: -kv[1])),
        "top_kernels": [{"name": name[:120], "ms": ms / reps, "calls": count / reps}
                        for name, (ms, count) in ranked],
    }


def format_profile(result: dict[str, Any]) -> str:
    lines = [f"kernel time per call: {result['total_kernel_ms']:.1f} ms"]
    lines += [f"  {family}: {ms:.1f} ms" for family, ms in result["families_ms"].items()]
    lines.append("  top kernels:")
    lines += [f"    {k['ms']:7.2f} ms  x{k['calls']:<5g} {k['name']}" for k in result["top_kernels"]]
    return "\n".join(lines)


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
