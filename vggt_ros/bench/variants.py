"""Sweep of fast-path switches (``vggt_bench --variants``): each variant's latency and its
distance from the fp32 outputs of the accuracy check."""
from __future__ import annotations

import copy
import time
from typing import Any

import torch

from vggt_ros.bench.accuracy import relative_error
from vggt_ros.bench.models import random_inputs
from vggt_ros.bench.stages import Paths
from vggt_ros.bench.timing import Clock
from vggt_ros.model.fast import FastOptions, FastVGGT

VARIANT_NAMES = ("eager", "heads_eager", "camera_bf16", "sdpa_cudnn", "sdpa_cudnn_compiled", "fp8")


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
                "sdpa_cudnn_compiled": (FastOptions(**cudnn), sizes),
                "fp8": (FastOptions(fp8_blocks=True), sizes)}
    rows = []
    for name in args.variants:
        options, sizes = variants[name]
        # FastVGGT converts weights in place: a variant with other weight formats gets a copy.
        same_weights = options.camera_fp32 and not options.fp8_blocks
        variant = FastVGGT(fast.model if same_weights else copy.deepcopy(fast.model), options)
        for s in sizes:
            images, _ = random_inputs(s, args.height, args.width, 0, clock.device, args.seed + s)
            row: dict[str, Any] = {"name": name, "frames": s}
            try:
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    variant(images)
                    clock.sync()
                    row["first_s"] = time.perf_counter() - t0
                    row["ms"] = clock.median(lambda: variant(images))
                    if s == paths.fp32_case[0].shape[1]:
                        ref_images, ref32 = paths.fp32_case
                        out = variant(ref_images)
                        row["pose_enc_max_abs"] = (out["pose_enc"] - ref32["pose_enc"]).abs().max().item()
                        row["depth_median_rel"] = relative_error(out["depth"], ref32["depth"]).median().item()
            except Exception as err:  # a variant failing must not lose the other results
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
            log(f"[variant {name} S={s}] {row}")
            rows.append(row)
    return rows
