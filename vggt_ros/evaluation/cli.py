"""``vggt_eval EST_TUM GT_TUM``: trajectory (and optionally depth) accuracy of an estimate.

Prints the numbers and writes them as JSON: the same ``evaluate_trajectory`` that
``vggt_map --gt`` puts into summary.json, so the two always agree.

Depth (optional): ``--depth-dir`` and ``--gt-depth-dir`` hold one ``<stamp_ns>.npy`` HxW float
array per frame, same size in both; files are paired by name. AbsRel and delta<1.25 are
computed after per-frame median scaling.

Exit codes: 0 success, 2 unusable input (one line on stderr, never a traceback).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from vggt_ros.evaluation.metrics import (MetricsError, combine_depth_metrics, depth_metrics,
                                         evaluate_trajectory)
from vggt_ros.io.strict_json import write_json
from vggt_ros.io.tum import read_tum

PROG = "vggt_eval"


class UsageError(Exception):
    """Input that cannot be evaluated (the message is the one line shown)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="ATE (Sim(3)-aligned) and RPE of a TUM trajectory "
                     "against ground truth; optional depth AbsRel / delta<1.25.")
    parser.add_argument("estimate", type=Path, help="estimated trajectory (TUM format)")
    parser.add_argument("ground_truth", type=Path, help="ground-truth trajectory (TUM format)")
    parser.add_argument("--max-diff-ms", type=float, default=20.0,
                        help="largest stamp difference of an associated pose pair (default 20)")
    parser.add_argument("--rpe-delta", type=int, default=1,
                        help="RPE frame distance in associated poses (default 1)")
    parser.add_argument("--depth-dir", type=Path, default=None,
                        help="predicted depth maps, <stamp_ns>.npy each")
    parser.add_argument("--gt-depth-dir", type=Path, default=None,
                        help="ground-truth depth maps, <stamp_ns>.npy each")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the results (default: ESTIMATE stem + "
                        "'_eval.json' beside it)")
    return parser


def evaluate_depth_dirs(pred_dir: Path, gt_dir: Path) -> dict[str, Any]:
    """Pair ``<stamp_ns>.npy`` files by name and compute frame-averaged depth metrics."""
    for d in (pred_dir, gt_dir):
        if not d.is_dir():
            raise UsageError(f"depth directory not found: {d}")
    pred = {p.name: p for p in pred_dir.glob("*.npy")}
    gt = {p.name: p for p in gt_dir.glob("*.npy")}
    common = sorted(set(pred) & set(gt))
    if not common:
        raise UsageError(f"no <stamp_ns>.npy file name is in both {pred_dir} and {gt_dir}")
    per_frame = []
    for name in common:
        p, g = np.load(pred[name]), np.load(gt[name])
        if p.shape != g.shape or p.ndim != 2:
            raise UsageError(f"{name}: predicted depth {p.shape} and ground truth {g.shape} "
                             f"must be the same HxW size")
        try:
            per_frame.append(depth_metrics(p, g))
        except MetricsError:
            per_frame.append({"frames": 0, "frames_without_valid_pixels": 1})
    out = combine_depth_metrics(per_frame)
    out["unpaired_predictions"] = len(set(pred) - set(gt))
    return out


def _run(argv: Optional[Sequence[str]]) -> int:
    args = build_parser().parse_args(argv)
    if args.max_diff_ms < 0 or args.rpe_delta < 1:
        raise UsageError("--max-diff-ms must be >= 0 and --rpe-delta >= 1")
    if (args.depth_dir is None) != (args.gt_depth_dir is None):
        raise UsageError("--depth-dir and --gt-depth-dir must be given together")
    est_stamps, est_poses = read_tum(args.estimate)
    gt_stamps, gt_poses = read_tum(args.ground_truth)
    results: dict[str, Any] = {"estimate": str(args.estimate),
                               "ground_truth": str(args.ground_truth)}
    results["trajectory"] = evaluate_trajectory(est_stamps, est_poses, gt_stamps, gt_poses,
                                                int(round(args.max_diff_ms * 1e6)),
                                                args.rpe_delta)
    if args.depth_dir is not None:
        results["depth"] = evaluate_depth_dirs(args.depth_dir, args.gt_depth_dir)
    out = args.json or args.estimate.with_name(args.estimate.stem + "_eval.json")
    write_json(out, results)
    traj = results["trajectory"]
    ate = traj["ate"]
    print(f"associated poses : {traj['associated']} of {traj['estimated_poses']} estimated")
    print(f"ATE RMSE         : {ate['rmse']:.6g} ({ate['rmse_percent_of_path']:.4g} % of "
          f"{ate['path_length']:.4g} path; Sim(3) scale {ate['scale']:.6g})")
    print(f"SE(3) ATE RMSE   : {traj['ate_se3']['rmse']:.6g} (no scale fitted: metres for a "
          f"metric estimate)")
    if "rpe" in traj:
        rpe = traj["rpe"]
        print(f"RPE (delta {rpe['delta']})    : {rpe['trans_rmse']:.6g} translation RMSE, "
              f"{rpe['rot_rmse_deg']:.4g} deg rotation RMSE")
    if "depth" in results:
        depth = results["depth"]
        print(f"depth            : AbsRel {depth['abs_rel']:.4g}, delta<1.25 "
              f"{depth['delta_1_25']:.4g} over {depth['frames']} frames")
    print(f"written          : {out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        return _run(argv)
    except (UsageError, MetricsError, ValueError, OSError) as exc:
        # ValueError: malformed TUM line; OSError: missing file, unwritable JSON.
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
