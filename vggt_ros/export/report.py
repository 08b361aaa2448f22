"""report.png: a one-page visual check of a mapping run (matplotlib, Agg backend, no display).

Panels: the trajectory seen from above (with the Sim(3)-aligned ground truth when known), a
few keyframes next to their predicted depth, and the histogram of depth confidence that the
confidence thresholds cut into.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402

from vggt_ros.io.atomic import PathLike, atomic_output  # noqa: E402


def _top_view_axes(positions: np.ndarray) -> tuple[int, int]:
    """The two coordinate axes along which the path spreads most: "from above" for a ground
    robot whatever the frame convention (odom z up, or a camera optical frame with y down)."""
    spread = np.ptp(positions, axis=0) if len(positions) else np.ones(3)
    a, b = sorted(np.argsort(spread)[-2:])
    return int(a), int(b)


def write_report(path: PathLike, positions: np.ndarray, samples: Sequence[tuple[int, np.ndarray,
                 np.ndarray]], confidences: np.ndarray, gt_positions: Optional[np.ndarray] = None,
                 title: str = "") -> Path:
    """``positions`` [N,3] estimated camera centres (in the ground-truth frame when
    ``gt_positions`` [M,3] is given, i.e. already aligned); ``samples`` (stamp_ns, rgb [h,w,3],
    depth [h,w]) keyframes to show; ``confidences`` 1-D sample of depth confidences."""
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    samples = list(samples)
    columns = max(2, len(samples))
    fig = plt.figure(figsize=(3.2 * columns, 9.0), dpi=80)
    grid = fig.add_gridspec(3, columns)

    ax = fig.add_subplot(grid[0, : columns // 2 + columns % 2])
    ref = gt_positions if gt_positions is not None and len(gt_positions) else positions
    a, b = _top_view_axes(np.asarray(ref, dtype=np.float64).reshape(-1, 3))
    names = "xyz"
    if gt_positions is not None and len(gt_positions):
        ax.plot(gt_positions[:, a], gt_positions[:, b], "k--", lw=1, label="ground truth",
                zorder=3)
    if len(positions):
        ax.plot(positions[:, a], positions[:, b], "-", color="tab:blue", lw=1.5,
                label="estimate" + (" (Sim(3)-aligned)" if gt_positions is not None else ""))
        ax.plot(positions[:1, a], positions[:1, b], "o", color="tab:green", label="start")
    ax.set_xlabel(names[a])
    ax.set_ylabel(names[b])
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("trajectory (top view)")
    ax.legend(fontsize=7, loc="best")

    ax = fig.add_subplot(grid[0, columns // 2 + columns % 2:])
    conf = np.asarray(confidences, dtype=np.float64)
    conf = conf[np.isfinite(conf)]
    if conf.size:
        ax.hist(conf, bins=50, color="tab:orange")
    ax.set_title(f"depth confidence ({conf.size} px sampled)")
    ax.set_xlabel("confidence")

    for col, (stamp, rgb, depth) in enumerate(samples):
        ax = fig.add_subplot(grid[1, col])
        ax.imshow(rgb)
        ax.set_title(f"{stamp / 1e9:.2f} s", fontsize=8)
        ax.axis("off")
        ax = fig.add_subplot(grid[2, col])
        shown = ax.imshow(np.where(np.isfinite(depth), depth, np.nan), cmap="viridis")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title("depth (NaN = filtered)", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_output(path, "wb") as handle:
            fig.savefig(handle, format="png")
    finally:
        plt.close(fig)
    return path
