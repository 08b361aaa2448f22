"""``vggt_bench --approx``: block-sparse global attention against exact attention.

For each window size and each setting: the exact fast path and the approximate one over the
same weights on the same inputs, timed end to end (camera + depth, median after warm-up, the
first call with its compilation reported apart), and the approximation's cost in accuracy
against the exact fast path: pose-encoding max abs error and depth median relative error. The
share of key blocks the selection kept is measured last, in one instrumented eager call per
case (the compiled graphs cannot report it), so a run cut short still has its timings.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable, Optional

import torch

from vggt_ros.bench.accuracy import relative_error
from vggt_ros.bench.models import random_inputs
from vggt_ros.bench.timing import Clock
from vggt_ros.model.fast import FastVGGT
from vggt_ros.model.aggregator import PATCH_START_IDX
from vggt_ros.model.sparse_attention import BlockSparseAttention, SparseGlobalAttention

HEADS = ("camera", "depth")


def parse_settings(text: str) -> list[SparseGlobalAttention]:
    """``"mass=0.9,max_ratio=0.25;max_ratio=0.5"``: settings separated by ';' (each as
    ``SparseGlobalAttention.parse`` reads it); an empty item is the default setting."""
    return [SparseGlobalAttention.parse(item) for item in text.split(";")]


def _first_call(clock: Clock, fn: Callable[[], Any]) -> tuple[Any, float]:
    """fn's output and the seconds of this (first: compiling) call."""
    t0 = time.perf_counter()
    out = fn()
    clock.sync()
    return out, time.perf_counter() - t0


def compare(exact: dict, approx: dict) -> dict[str, float]:
    """The approximation's distance from the exact fast path on the same inputs."""
    return {"pose_enc_max_abs": (approx["pose_enc"].double()
                                 - exact["pose_enc"].double()).abs().max().item(),
            "depth_median_rel": relative_error(approx["depth"], exact["depth"]).median().item(),
            "finite": bool(torch.isfinite(approx["pose_enc"]).all().item()
                           and torch.isfinite(approx["depth"]).all().item())}


def bench_approx(args, fast: FastVGGT, clock: Clock, log,
                 save: Callable[[], None] = lambda: None,
                 section: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Exact vs block-sparse global attention at ``args.approx_frames`` (module docstring).

    ``fast`` is the benchmark's exact fast path; the approximate paths share its (already
    converted) weights and its other options. The results fill ``section`` (returned) case by
    case and ``save`` is called after each.
    """
    settings = [replace(s, min_frames=1) for s in args.approx]  # every S asked for is sparse
    report = section if section is not None else {}
    report.update(settings=[s.describe() for s in settings], rows=[])
    report["kernel_check"] = check_kernels(args, fast, settings[0])
    log(f"[approx] kernel check: {report['kernel_check']}")
    save()
    variants = [FastVGGT(fast.model, replace(fast.options, sparse_global=s)) for s in settings]
    reps = max(1, args.approx_reps)
    poses: dict[tuple, torch.Tensor] = {}  # approximate pose encodings, for measure_kept
    for s in args.approx_frames:
        images, _ = random_inputs(s, args.height, args.width, 0, clock.device, args.seed + 77 + s)
        try:
            with torch.inference_mode():
                exact_out, first_s = _first_call(clock, lambda: fast(images, heads=HEADS))
                exact = {"first_s": first_s, "ms": clock.median(lambda: fast(images, heads=HEADS),
                                                                reps)}
        except torch.cuda.OutOfMemoryError as err:
            report["rows"].append({"frames": s, "error": f"out of memory: {err}"})
            log(f"[approx S={s}] exact path out of memory")
            continue
        log(f"[approx S={s}] exact: {exact['ms']:.1f} ms (first call {exact['first_s']:.1f} s)")
        for setting, variant in zip(settings, variants):
            row: dict[str, Any] = {"frames": s, "setting": setting.describe(),
                                   "exact_ms": exact["ms"], "exact_first_s": exact["first_s"]}
            try:
                with torch.inference_mode():
                    out, row["approx_first_s"] = _first_call(
                        clock, lambda: variant(images, heads=HEADS))
                    row.update(compare(exact_out, out))
                    poses[(setting, s)] = out["pose_enc"].float().cpu()
                    del out
                    row["approx_ms"] = clock.median(lambda: variant(images, heads=HEADS), reps)
                row["speedup"] = exact["ms"] / row["approx_ms"]
            except Exception as err:  # one failing case must not lose the others
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            log(f"[approx S={s}] {row}")
            report["rows"].append(row)
            save()
        del exact_out
        if clock.device.type == "cuda":
            torch.cuda.empty_cache()
    if args.approx_kept:
        measure_kept(args, fast, settings, report, log, save, poses)
    return report


def check_kernels(args, fast: FastVGGT, setting: SparseGlobalAttention) -> dict[str, Any]:
    """The device's FlexAttention kernel (compiled on CUDA) against the dense formulation of
    the same block selection, on random q/k/v of 8 frames of this grid in the compute dtype:
    the fast kernel must compute the same sparse attention before its speed means anything."""
    grid = fast.model.aggregator.patch_embed.patch_grid(args.height, args.width)
    frames = 8
    n = frames * (PATCH_START_IDX + grid[0] * grid[1])
    heads = fast.config.num_heads
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    q, k, v = (torch.randn(1, heads, n, fast.config.embed_dim // heads, generator=gen)
               .to(fast.device, fast.dtype) for _ in range(3))
    out: dict[str, Any] = {"tokens": n}
    try:
        with torch.inference_mode():
            flex = BlockSparseAttention(replace(setting, kernel="flex"), frames, PATCH_START_IDX)
            dense = BlockSparseAttention(replace(setting, kernel="dense"), frames, PATCH_START_IDX)
            exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            want, got = dense(q, k, v), flex(q, k, v)
        out["flex_vs_dense_max_abs"] = (got.float() - want.float()).abs().max().item()
        out["dense_vs_exact_max_abs"] = (want.float() - exact.float()).abs().max().item()
    except Exception as err:  # reported, and the timings still run
        out["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return out


def measure_kept(args, fast: FastVGGT, settings: list[SparseGlobalAttention],
                 report: dict[str, Any], log, save: Callable[[], None],
                 poses: dict[tuple, torch.Tensor]) -> None:
    """Mean share of key blocks kept per global layer, from one eager call per case; its pose
    encoding against the compiled run's checks that the attention traced into the compiled
    block computes what the eager one does (``compiled_vs_eager_pose_max_abs``)."""
    for setting in settings:
        options = replace(fast.options, sparse_global=setting, compile_blocks=False,
                          compile_heads=False)
        eager = FastVGGT(fast.model, options)
        grid = eager.model.aggregator.patch_embed.patch_grid(args.height, args.width)
        for s in args.approx_frames:
            row = next((r for r in report["rows"] if r["frames"] == s
                        and r.get("setting") == setting.describe()), None)
            if row is None:
                continue
            images, _ = random_inputs(s, args.height, args.width, 0, fast.device,
                                      args.seed + 77 + s)
            try:
                with torch.inference_mode():
                    attend = eager.sparse_attention(s, *grid)
                    attend.record = []
                    pose = eager(images, heads=("camera",))["pose_enc"].float().cpu()
                if (setting, s) in poses:
                    row["compiled_vs_eager_pose_max_abs"] = (
                        pose - poses[(setting, s)]).abs().max().item()
                row["kept_per_layer"] = attend.record
                row["kept_mean"] = sum(attend.record) / len(attend.record)
            except Exception as err:
                row["kept_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            log(f"[approx S={s} {setting.describe()}] kept share of key blocks: "
                f"{row.get('kept_mean', row.get('kept_error'))}; compiled vs eager pose: "
                f"{row.get('compiled_vs_eager_pose_max_abs')}")
            save()


def approx_lines(section: dict[str, Any]) -> list[str]:
    """The section as table lines for the benchmark's closing summary."""
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    check = section.get("kernel_check", {})
    lines = [f"block-sparse kernel check ({check.get('tokens')} tokens): flex vs dense max abs "
             f"{check.get('flex_vs_dense_max_abs', check.get('error'))}, dense vs exact "
             f"{check.get('dense_vs_exact_max_abs')}",
             "block-sparse global attention vs exact (fast path, camera+depth; errors against "
             "the exact fast path on the same inputs)",
             "S    | setting                                  | exact ms | approx ms | speed-up "
             "| kept blocks | pose max abs | depth med rel"]
    for row in section.get("rows", []):
        if "error" in row and "approx_ms" not in row:
            lines.append(f"{row['frames']:<4} | {row.get('setting', '-'):<40} | {row['error']}")
            continue
        setting = row["setting"].split(",keep_first_frame")[0]
        lines.append(f"{row['frames']:<4} | {setting:<40} | {fmt(row.get('exact_ms'), '.1f'):>8} "
                     f"| {fmt(row.get('approx_ms'), '.1f'):>9} | "
                     f"{fmt(row.get('speedup'), '.2f'):>8} | "
                     f"{fmt(row.get('kept_mean'), '.3f'):>11} "
                     f"| {fmt(row.get('pose_enc_max_abs'), '.2e'):>12} | "
                     f"{fmt(row.get('depth_median_rel'), '.2e'):>13}")
    return lines


def approx_markdown(section: dict[str, Any]) -> list[str]:
    """The section as a Markdown table (docs/PERFORMANCE.md)."""
    def fmt(row, key, spec):
        return "-" if row.get(key) is None else format(row[key], spec)

    out = ["| S | setting | exact ms | approximate ms | speed-up | key blocks kept | "
           "pose enc max abs err | depth median rel err | first call exact / approx s |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in section.get("rows", []):
        setting = row.get("setting", "-").split(",keep_first_frame")[0]
        if "approx_ms" not in row:
            out.append(f"| {row['frames']} | {setting} | {fmt(row, 'exact_ms', '.1f')} | "
                       f"{row.get('error', '-')} | | | | | |")
            continue
        out.append(f"| {row['frames']} | {setting} | {fmt(row, 'exact_ms', '.1f')} | "
                   f"{fmt(row, 'approx_ms', '.1f')} | {fmt(row, 'speedup', '.2f')}x | "
                   f"{fmt(row, 'kept_mean', '.3f')} | {fmt(row, 'pose_enc_max_abs', '.2e')} | "
                   f"{fmt(row, 'depth_median_rel', '.2e')} | {fmt(row, 'exact_first_s', '.1f')} / "
                   f"{fmt(row, 'approx_first_s', '.1f')} |")
    return out
