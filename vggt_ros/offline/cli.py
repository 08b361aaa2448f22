"""``vggt_map BAG --image-topic T``: build a map offline from a recorded bag.

Every ``pipeline`` and ``predictor`` setting of ``vggt_ros.settings`` is an option of the same
name (``--window_size`` or ``--window-size``), with the same default, help text and validation
as the live node's ROS parameter, so a map tuned offline transfers to the robot unchanged.

Exit codes: 0 success (also for a damaged or unfinished bag: every intact frame is mapped, a
warning says what was lost and summary.json says partial), 2 unusable input (bad option, bag,
topic, checkpoint, output folder), 128 + N after signal N (130 for Ctrl-C, 143 for SIGTERM).
The first SIGINT/SIGTERM writes the windows mapped so far as a complete, partial output set;
a second one aborts and leaves the folder's previous outputs. Errors are one line on stderr,
never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from vggt_ros import settings
from vggt_ros.evaluation.depth import synthetic_depth_source
from vggt_ros.export.health_text import health_lines, warning_line
from vggt_ros.export.output_set import OutputError, check_output_folder
from vggt_ros.export.outputs import FILES
from vggt_ros.io.bag_messages import IMAGE_TYPE, BagError
from vggt_ros.io.bag_reader import list_topics
from vggt_ros.io.tum import read_tum
from vggt_ros.offline.interrupts import TwoStepInterrupt
from vggt_ros.offline.mapper import MappingError, OfflineMapper, StoppedEarly, check_bag
from vggt_ros.offline.sensor_feed import ODOMETRY_TYPE, TF_TOPIC, TF_TYPE
from vggt_ros.pipeline.pipeline import PipelineConfig
from vggt_ros.pipeline.types import Predictor

PROG = "vggt_map"
GROUPS = ("pipeline", "predictor", "sensors")
# --gt-synth key -> (synthetic_depth_source argument, type)
SYNTH_KEYS = {"frames": ("num_frames", int), "width": ("width", int),
              "height": ("height", int), "seed": ("seed", int), "trajectory": ("trajectory", str)}


class UsageError(Exception):
    """A run that cannot start or go on (the message is the one line shown to the user)."""


PredictorFactory = Callable[[dict[str, Any]], Predictor]  # predictor settings -> Predictor


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage + exit itself
        raise UsageError(message)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _converter(setting: settings.Setting) -> Callable[[str], Any]:
    """str -> the setting's type; argparse reports a failure as "invalid int value: 'x'"."""
    return _parse_bool if setting.type is bool else setting.type


def _help(setting: settings.Setting) -> str:
    limits = []
    if setting.choices:
        limits.append("one of " + ", ".join(map(str, setting.choices)))
    if setting.min is not None:
        limits.append(f">= {setting.min:g}")
    if setting.max is not None:
        limits.append(f"<= {setting.max:g}")
    extra = f"; {', '.join(limits)}" if limits else ""
    return f"{setting.description} (default: {setting.default!r}{extra})".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Build a map (trajectory, PLY cloud, COLMAP model, "
                     "output bag, report, summary) offline from a ROS 2 bag, with the same "
                     "pipeline and settings as the live vggt node.")
    parser.add_argument("bag", type=Path, help="rosbag2 directory or .mcap/.db3 file")
    parser.add_argument("--image-topic", required=True,
                        help="sensor_msgs/Image or sensor_msgs/CompressedImage (JPEG, PNG) topic")
    parser.add_argument("--camera-info-topic", default=None,
                        help="sensor_msgs/CameraInfo topic (optional; checks the calibration)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: BAG name + '_map' beside the bag)")
    parser.add_argument("--gt", type=Path, default=None,
                        help="ground-truth TUM trajectory: adds ATE/RPE to summary.json")
    parser.add_argument("--gt-synth", default=None, metavar="frames=N,width=W,height=H,seed=S",
                        help="the vggt_synth arguments the bag was made with (trajectory=... "
                        "optional): re-renders ground-truth depth and adds AbsRel/delta<1.25")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    for group in GROUPS:
        options = parser.add_argument_group(f"{group} settings (as the live node's parameters)")
        for setting in settings.SETTINGS:
            if setting.group != group:
                continue
            names = [f"--{setting.name}"]
            if "_" in setting.name:
                names.append(f"--{setting.name.replace('_', '-')}")
            options.add_argument(*names, dest=setting.name, type=_converter(setting),
                                 default=setting.default, metavar=setting.type.__name__.upper(),
                                 help=_help(setting))
    return parser


def _synth_arguments(text: str) -> dict[str, Any]:
    """"frames=40,width=64,height=48,seed=1" -> synthetic_depth_source keyword arguments."""
    values: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in SYNTH_KEYS:
            raise UsageError(f"--gt-synth: expected key=value pairs with keys "
                             f"{sorted(SYNTH_KEYS)}, got {item!r}")
        name, kind = SYNTH_KEYS[key]
        try:
            values[name] = kind(value)
        except ValueError:
            raise UsageError(f"--gt-synth: {key} must be an integer, got {value!r}") from None
    missing = sorted(k for k, (name, _) in SYNTH_KEYS.items()
                     if name not in values and k != "trajectory")
    if missing:
        raise UsageError(f"--gt-synth: missing {', '.join(missing)}")
    return values


def _check_inputs(args: argparse.Namespace, out: Path) -> None:
    """Cheap checks before the (slow) model load: the bag opens, the topics exist with the
    right types and the image topic is not empty, the ground-truth file parses, the output
    folder can be written."""
    check_bag(args.bag, args.image_topic, args.camera_info_topic)
    sensor_topic = {"depth": (args.depth_topic, IMAGE_TYPE),
                    "odometry": (args.odom_topic, ODOMETRY_TYPE) if args.odom_topic
                    else (TF_TOPIC, TF_TYPE)}.get(args.scale_source)
    if sensor_topic is not None:
        topics = list_topics(args.bag)
        if topics.get(sensor_topic[0]) != sensor_topic[1]:
            raise UsageError(f"--scale-source {args.scale_source} reads {sensor_topic[0]} "
                             f"({sensor_topic[1]}), which bag {args.bag} does not hold; bag "
                             f"topics: {sorted(topics)}")
    if args.gt is not None:
        read_tum(args.gt)
    check_output_folder(out, FILES.values())


def _model_predictor(predictor_settings: dict[str, Any]) -> Predictor:
    """The network named by the settings. torch is imported only once the input is known to
    be good."""
    from vggt_ros.inference.builder import build_predictor
    from vggt_ros.inference.device import ModelUnavailableError
    from vggt_ros.model.loading import CheckpointError

    try:
        return build_predictor(**predictor_settings,
                               log=lambda message: print(f"{PROG}: {message}", file=sys.stderr))
    except (ModelUnavailableError, CheckpointError) as exc:
        raise UsageError(f"cannot load the model: {exc}") from None


def _run(argv: Optional[Sequence[str]], predictor_factory: PredictorFactory) -> int:
    args = build_parser().parse_args(argv)
    values = {s.name: getattr(args, s.name) for s in settings.SETTINGS if s.group in GROUPS}
    problems = settings.validate(values)
    config = PipelineConfig.from_settings(values)
    if not problems:
        try:
            config.validate()
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise UsageError("; ".join(problems))
    gt_depth = (synthetic_depth_source(**_synth_arguments(args.gt_synth)) if args.gt_synth
                else None)
    out = args.out or args.bag.with_name(args.bag.name.removesuffix(".mcap") + "_map")
    _check_inputs(args, out)
    predictor = predictor_factory(settings.of_group(values, "predictor"))
    mapper = OfflineMapper(predictor, config, not args.no_progress,
                           sensor_settings=settings.of_group(values, "sensors"))
    with TwoStepInterrupt(mapper.request_stop, PROG) as interrupt:
        try:
            summary = mapper.run(args.bag, args.image_topic, out, args.camera_info_topic,
                                 args.gt, gt_depth)
        except StoppedEarly as exc:
            print(f"{PROG}: {exc}; nothing written, {out} is unchanged", file=sys.stderr)
            return 128 + interrupt.received
    print("\n".join(summary_lines(summary, out)))
    return 128 + interrupt.received if mapper.stopped_by else 0


def summary_lines(summary: dict[str, Any], out: Path) -> list[str]:
    """What ``vggt_map`` prints at the end: the run in one line, the trajectory's metrics
    beside their baselines, and the degenerate-trajectory warning when there is one."""
    line = (f"{PROG}: {summary['frames_read']} frames, {summary['keyframes']} keyframes, "
            f"{summary['windows']} windows in {summary['wall_time_s']:.1f} s "
            f"({summary['frames_per_second']:.1f} frames/s) -> {out}")
    scale = summary["scale"]
    line += (f"; scale {scale['status']} ({scale['source']}, {scale['windows_scaled']} "
             f"windows scaled, {scale['windows_skipped']} skipped)"
             if scale["source"] in ("depth", "odometry") else
             f"; scale {scale['status']} ({scale['source']})")
    rigid = summary["metrics"].get("trajectory", {}).get("ate_se3")
    if rigid:  # the Sim(3) ATE stands in the health rows below, beside its baseline
        line += f"; SE(3) ATE {rigid['rmse']:.4g} m (no scale fitted)"
    if summary["partial"]:
        line += "; PARTIAL: " + "; ".join(summary["partial_reasons"])
    health = summary["trajectory_health"]
    lines = [line] + ["  " + row for row in health_lines(
        health, summary["metrics"].get("trajectory"), summary["pose_source"],
        summary["intrinsics_source"])]
    warning = warning_line(health)
    return lines + [f"{PROG}: {warning}"] if warning else lines


def main(argv: Optional[Sequence[str]] = None,
         predictor_factory: PredictorFactory = _model_predictor) -> int:
    """``vggt_map``; ``predictor_factory`` builds the predictor from the predictor settings
    (tests pass a ground-truth double)."""
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(levelname)s: %(message)s")
    try:
        return _run(argv, predictor_factory)
    except (UsageError, BagError, MappingError, OutputError, ValueError, OSError) as exc:
        # ValueError/OSError: unreadable ground-truth file, unwritable output directory.
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: aborted; the output folder holds one complete set: the earlier run's, "
              f"unless this run had finished writing", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
