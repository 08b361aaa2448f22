"""How far the fast path and the official bf16-autocast recipe are from an fp32 run of the
same weights on the same inputs."""
from __future__ import annotations

from typing import Any

import torch

from vggt_ros.bench.models import random_inputs
from vggt_ros.bench.stages import Paths

# Issue 17's accuracy bounds for the fast path against fp32 (camera + depth, S=8): what bf16
# weights and activations leave of the pose encoding, and of the depth.
POSE_ENC_MAX_ABS = 1.3e-2
DEPTH_MEDIAN_REL = 1e-3


def relative_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise |a - b| / |b| in float64, flattened."""
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
            "depth_median_rel": relative_error(out["depth"], ref32["depth"]).median().item(),
            "depth_p99_rel": torch.quantile(relative_error(out["depth"], ref32["depth"])[::97].float(), 0.99).item(),
            "conf_median_rel": relative_error(out["depth_conf"], ref32["depth_conf"]).median().item(),
        }
    report["fp32_depth_range"] = [ref32["depth"].min().item(), ref32["depth"].max().item()]
    report["fp32_pose_enc_abs_max"] = ref32["pose_enc"].abs().max().item()
    fast_r = report["fast"]
    report["pass"] = bool(fast_r["finite"] and fast_r["depth_median_rel"] <= DEPTH_MEDIAN_REL
                          and fast_r["pose_enc_max_abs"] <= POSE_ENC_MAX_ABS)
    # Random weights can make the pose sensitive to any bf16 rounding: say whether the fast
    # path is at least as close to fp32 as the official bf16-autocast recipe.
    report["fast_pose_within_official"] = bool(
        fast_r["pose_enc_max_abs"] <= report["reference_autocast"]["pose_enc_max_abs"])
    return report
