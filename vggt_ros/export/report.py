"""report.png: a one-page visual check of a mapping run (matplotlib, Agg backend, no display).

Panels: a map view (the fused map from above with the trajectory, and the Sim(3)-aligned
ground truth when known), the trajectory's health in text (each metric beside its baseline,
the degenerate-trajectory warning in red), the trajectory seen from above, the histogram of
depth confidence that the confidence thresholds cut into, and a few keyframes next to their
predicted depth. The text panel is also stored in the PNG's ``Description`` (and the warning
in ``Warning``) text chunks, so scripts read what a person sees.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vggt_ros.io.atomic import PathLike, atomic_output  # noqa: E402

MAP_POINTS_SHOWN = 20_000  # a scatter of more adds ink, not information, and slows saving
# A trajectory whose second principal spread is below this share of its first, or of the map's
# spread, is a line or a point: it does not say which plane is "from above"; the cameras' up
# direction does.
PLANAR_SPREAD_RATIO = 0.1
WARNING_COLOR = "red"


@dataclass
class MapView:
    """The fused map and what is drawn on it, all in the map's own frame: the map is shown as
    it was built, and the ground truth is brought to it (not the other way round, which blows a
    collapsed estimate's map up by the alignment's huge scale)."""

    points: np.ndarray  # [M,3]
    colors: Optional[np.ndarray]  # [M,3] uint8 (None: grey)
    trajectory: np.ndarray  # [N,3] estimated camera centres
    up: Optional[np.ndarray] = None  # the cameras' mean up direction
    ground_truth: Optional[np.ndarray] = None  # [K,3] ground-truth centres in the map frame


def _top_view_axes(positions: np.ndarray) -> tuple[int, int]:
    """The two coordinate axes along which the path spreads most: "from above" for a ground
    robot whatever the frame convention (odom z up, or a camera optical frame with y down)."""
    spread = np.ptp(positions, axis=0) if len(positions) else np.ones(3)
    a, b = sorted(np.argsort(spread)[-2:])
    return int(a), int(b)


def top_down_basis(positions: np.ndarray, up: Optional[np.ndarray] = None,
                   scene_spread: float = 0.0) -> np.ndarray:
    """[3,3] orthonormal rows (along, across, up) of the view from above.

    The ground plane is the one spanned by the trajectory's two largest principal directions
    (a ground robot's path spreads along the floor, whatever the frame convention). A path that
    is a line or a point (driving straight, turning on the spot) spans no plane: its second
    principal spread (RMS) is under ``PLANAR_SPREAD_RATIO`` of its first or of
    ``scene_spread`` (the map's RMS spread). Then the plane is the one perpendicular to ``up``
    (the cameras' mean up direction), through the path's direction. The third row points to
    the side of ``up``, so the view is never mirrored.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    up = np.array([0.0, 0.0, 1.0]) if up is None or not np.any(up) else np.asarray(up, float)
    up = up / np.linalg.norm(up)
    spread, directions = np.zeros(3), np.eye(3)
    if len(positions) >= 2:
        _, singular, directions = np.linalg.svd(positions - positions.mean(0))
        spread[:len(singular)] = singular / np.sqrt(len(positions))
    if spread[0] > 0 and spread[1] >= PLANAR_SPREAD_RATIO * max(spread[0], scene_spread):
        first, second = directions[0], directions[1]
    else:
        first = directions[0] - (directions[0] @ up) * up if spread[0] > 0 else np.zeros(3)
        if np.linalg.norm(first) < 1e-9:  # no path direction: any horizontal one
            first = np.cross(up, np.eye(3)[np.argmin(np.abs(up))])
        first = first / np.linalg.norm(first)
        second = np.cross(up, first)
    normal = np.cross(first, second)
    if normal @ up < 0:
        second, normal = -second, -normal
    return np.stack([first, second, normal])


def _map_view(ax: plt.Axes, view: MapView) -> None:
    """The map from above, cut at the cameras' height like a floor plan (a ceiling would
    hide the room), with the trajectory and the ground truth on top."""
    trajectory = np.asarray(view.trajectory, dtype=np.float64).reshape(-1, 3)
    map_points = np.asarray(view.points, dtype=np.float64).reshape(-1, 3)
    scene_spread = (float(np.sqrt(np.mean(np.sum((map_points - map_points.mean(0)) ** 2, 1))))
                    if len(map_points) else 0.0)
    basis = top_down_basis(trajectory, view.up, scene_spread)
    origin = trajectory.mean(0) if len(trajectory) else np.zeros(3)

    def project(p: np.ndarray) -> np.ndarray:
        return (np.asarray(p, dtype=np.float64).reshape(-1, 3) - origin) @ basis.T

    points, path = project(map_points), project(trajectory)
    if len(points):
        keep = np.random.default_rng(0).permutation(len(points))[:MAP_POINTS_SHOWN]
        if len(path):
            keep = keep[points[keep, 2] <= path[:, 2].max()]
        keep = keep[np.argsort(points[keep, 2])]  # higher points over lower ones, as seen above
        colors = ("0.5" if view.colors is None or len(view.colors) != len(points)
                  else np.asarray(view.colors)[keep] / 255.0)
        ax.scatter(points[keep, 0], points[keep, 1], s=1.0, c=colors, marker=".",
                   linewidths=0, rasterized=True)
    if view.ground_truth is not None and len(view.ground_truth):
        gt = project(view.ground_truth)
        ax.plot(gt[:, 0], gt[:, 1], "k--", lw=1.2, label="ground truth (aligned)", zorder=3)
    if len(path):
        ax.plot(path[:, 0], path[:, 1], "-", color="tab:blue", lw=1.8, label="estimate",
                zorder=4)
        ax.plot(path[:1, 0], path[:1, 1], "o", color="tab:green", label="start", zorder=5)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("along the path (map units)")
    ax.set_ylabel("across the path")
    ax.set_title(f"map from above, cut at camera height ({len(points)} points)", fontsize=9)
    ax.legend(fontsize=7, loc="best")


def _health_panel(ax: plt.Axes, health_text: Sequence[str], warning: str) -> None:
    """The warning in red, then the metrics beside their baselines in a fixed-width font (the
    columns line up as printed)."""
    ax.axis("off")
    ax.set_title("trajectory health", fontsize=9)
    below = 0.0  # points from the top of the panel
    if warning:
        text = textwrap.fill(warning, width=72, subsequent_indent="  ")
        ax.text(0.0, 1.0, text, color=WARNING_COLOR, fontsize=9, fontweight="bold",
                va="top", ha="left", transform=ax.transAxes)
        below = 12.0 * (text.count("\n") + 2)
    ax.annotate("\n".join(health_text) or "no trajectory metrics", (0.0, 1.0),
                xycoords="axes fraction", xytext=(0.0, -below), textcoords="offset points",
                family="monospace", fontsize=8, va="top", ha="left")


def report_figure(positions: np.ndarray,
                  samples: Sequence[tuple[int, np.ndarray, np.ndarray]],
                  confidences: np.ndarray, gt_positions: Optional[np.ndarray] = None,
                  title: str = "", map_view: Optional[MapView] = None,
                  health_text: Sequence[str] = (), warning: str = "") -> Figure:
    """The report as a matplotlib Figure (arguments as ``write_report``)."""
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    if gt_positions is not None:
        gt_positions = np.asarray(gt_positions, dtype=np.float64).reshape(-1, 3)
    samples = list(samples)
    columns = max(2, len(samples))
    half = columns // 2 + columns % 2
    fig = plt.figure(figsize=(3.2 * columns, 14.0), dpi=80)
    grid = fig.add_gridspec(4, columns, height_ratios=[1.6, 1.0, 1.0, 1.0])

    _map_view(fig.add_subplot(grid[0, :half]),
              map_view or MapView(np.zeros((0, 3)), None, positions))
    _health_panel(fig.add_subplot(grid[0, half:]), health_text, warning)

    ax = fig.add_subplot(grid[1, :half])
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

    ax = fig.add_subplot(grid[1, half:])
    conf = np.asarray(confidences, dtype=np.float64)
    conf = conf[np.isfinite(conf)]
    if conf.size:
        ax.hist(conf, bins=50, color="tab:orange")
    ax.set_title(f"depth confidence ({conf.size} px sampled)")
    ax.set_xlabel("confidence")

    for col, (stamp, rgb, depth) in enumerate(samples):
        ax = fig.add_subplot(grid[2, col])
        ax.imshow(rgb)
        ax.set_title(f"{stamp / 1e9:.2f} s", fontsize=8)
        ax.axis("off")
        ax = fig.add_subplot(grid[3, col])
        shown = ax.imshow(np.where(np.isfinite(depth), depth, np.nan), cmap="viridis")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title("depth (NaN = filtered)", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_report(path: PathLike, positions: np.ndarray, samples: Sequence[tuple[int, np.ndarray,
                 np.ndarray]], confidences: np.ndarray, gt_positions: Optional[np.ndarray] = None,
                 title: str = "", map_view: Optional[MapView] = None,
                 health_text: Sequence[str] = (), warning: str = "") -> Path:
    """``positions`` [N,3] estimated camera centres (in the ground-truth frame when
    ``gt_positions`` [M,3] is given, i.e. already aligned); ``samples`` (stamp_ns, rgb [h,w,3],
    depth [h,w]) keyframes to show; ``confidences`` 1-D sample of depth confidences;
    ``map_view`` the fused map (without one, the map view shows the trajectory alone);
    ``health_text`` the metric lines and ``warning`` the degenerate-trajectory warning (""
    when none), as ``vggt_ros.export.health_text`` writes them."""
    fig = report_figure(positions, samples, confidences, gt_positions, title, map_view,
                        health_text, warning)
    metadata = {"Description": "\n".join(health_text)}
    if warning:
        metadata["Warning"] = warning
    path = Path(path)
    try:
        with atomic_output(path, "wb") as handle:
            fig.savefig(handle, format="png", metadata=metadata)
    finally:
        plt.close(fig)
    return path
