"""``vggt_train``: train (or fine-tune) a VGGT-structured model on synthetic scenes.

A long run is several invocations of the same command; each resumes from ``--checkpoint`` and
stops before ``--time-limit-s``. ``--export`` writes the weights as safetensors once the run's
``--steps`` are done (or at every chunk with ``--export-every-chunk``).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch

from vggt_ros.model import VGGTConfig
from vggt_ros.synth import TRAJECTORIES
from vggt_ros.training.config import LOSS_NAMES, TrainConfig
from vggt_ros.training.data import DataConfig, HELD_OUT_SEED_MIN
from vggt_ros.training.losses import LossWeights
from vggt_ros.training.model_setup import build_model
from vggt_ros.training.trainer import Trainer


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vggt_train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="JSON of VGGTConfig fields (default: VGGT-1B)")
    p.add_argument("--init-checkpoint", type=Path,
                   help="start from these weights (e.g. the official VGGT-1B), strict load")
    p.add_argument("--checkpoint", type=Path, help="resume/save prefix (files PREFIX.partNN)")
    p.add_argument("--log", type=Path, help="append one JSON line per logged step")
    p.add_argument("--export", type=Path, help="safetensors file written when the run is done")
    p.add_argument("--export-every-chunk", action="store_true",
                   help="also export after an unfinished chunk")
    p.add_argument("--export-only", action="store_true",
                   help="export --checkpoint to --export without training (recipe from the "
                        "checkpoint)")
    p.add_argument("--export-dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    p.add_argument("--steps", type=int, default=1000, help="total steps of the run")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--min-frames", type=int, default=2)
    p.add_argument("--max-frames", type=int, default=8)
    p.add_argument("--max-gap", type=int, default=4)
    p.add_argument("--widths", type=_int_list, default=(224,), help="e.g. 224 or 196,224,252")
    p.add_argument("--min-height", type=int, default=112)
    p.add_argument("--max-height", type=int, default=224)
    p.add_argument("--clip-frames", type=int, default=32)
    p.add_argument("--pool-size", type=int, default=6)
    p.add_argument("--refresh", type=int, default=2, help="clips re-rendered per batch per worker")
    p.add_argument("--trajectories", type=_name_list, default=TRAJECTORIES,
                   help=f"scene camera paths to draw clips from, of {TRAJECTORIES} (default: "
                        "all; e.g. turn alone is a pure-rotation curriculum stage)")
    p.add_argument("--num-tracks", type=int, default=64)
    p.add_argument("--no-track", action="store_true", help="do not train the track head")
    p.add_argument("--match-weight", type=float, default=0.0,
                   help="weight of the auxiliary loss that trains one attention head of the "
                        "middle global block to attend to the patch showing the same point "
                        "(training/correspondence.py; 0: off)")
    p.add_argument("--flow-layer", type=int, default=-1,
                   help="aggregator layer the flow probe reads, one of the config's dpt_layers "
                        "(default: the last)")
    p.add_argument("--flow-weight", type=float, default=0.0,
                   help="weight of the auxiliary patch-flow loss that teaches the aggregator "
                        "cross-view correspondence (training/correspondence.py; 0: off)")
    p.add_argument("--losses", type=_name_list, default=LOSS_NAMES,
                   help="heads to run and train, e.g. camera (default: all)")
    p.add_argument("--trainable", type=_name_list, default=(),
                   help="train only these parameters (others frozen): name prefixes or "
                        "aggregator.lastN, e.g. camera_head,aggregator.last2 (default: all)")
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader worker processes when scenes are rendered on the CPU")
    p.add_argument("--cpu-data", action="store_true",
                   help="render scenes on the CPU (workers) even when training on a GPU "
                        "(default: on the training GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit-s", type=float, default=0.0, help="stop this chunk before it")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--no-bf16", action="store_true", help="fp32 on CUDA too")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--save-every", type=int, default=0,
                   help="also checkpoint every N steps (a killed run keeps its progress)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--one-step-benchmark", action="store_true",
                   help="one step of VGGT-1B (random weights) at 8x518x392; prints memory/time")
    p.add_argument("--bench-frames", type=int, default=8)
    p.add_argument("--bench-size", type=_int_list, default=(518, 392), help="W,H")
    return p


def _model_config(path: Optional[Path]) -> Optional[VGGTConfig]:
    if path is None:
        return None
    try:
        return VGGTConfig.from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise SystemExit(f"vggt_train: cannot use --config {path}: {exc}") from exc


def _train_config(args: argparse.Namespace) -> TrainConfig:
    if args.flow_weight < 0 or args.match_weight < 0:
        raise SystemExit("vggt_train: --flow-weight and --match-weight must be >= 0")
    data = DataConfig(widths=args.widths, min_height=args.min_height, max_height=args.max_height,
                      min_frames=args.min_frames, max_frames=args.max_frames,
                      max_gap=args.max_gap, batch_size=args.batch_size,
                      clip_frames=args.clip_frames, pool_size=args.pool_size,
                      refresh_per_batch=args.refresh, trajectories=args.trajectories,
                      num_tracks=0 if args.no_track else args.num_tracks)
    return TrainConfig(steps=args.steps, lr=args.lr, warmup_steps=args.warmup,
                       weight_decay=args.weight_decay, bf16=not args.no_bf16,
                       gradient_checkpointing=args.gradient_checkpointing,
                       train_track=not args.no_track, losses=args.losses,
                       trainable=args.trainable, seed=args.seed, num_workers=args.workers,
                       render_on_gpu=not args.cpu_data,
                       time_limit_s=args.time_limit_s, log_every=args.log_every,
                       save_every=args.save_every, data=data,
                       weights=LossWeights(flow=args.flow_weight, match=args.match_weight),
                       flow_layer=args.flow_layer)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        # The heads run in fp32 even under autocast; TF32 keeps their matmuls/convs fast.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    config = _model_config(args.config)
    if args.one_step_benchmark:
        from vggt_ros.training.benchmark import one_step_benchmark

        width, height = args.bench_size
        result = one_step_benchmark(device, config, frames=args.bench_frames, height=height,
                                    width=width, bf16=not args.no_bf16)
        print(json.dumps(result, indent=1))
        return 0
    if args.export_only:
        return _export_only(args)
    try:
        train_config = _train_config(args)
        torch.manual_seed(args.seed)
        model = build_model(config, args.init_checkpoint, device)
        trainer = Trainer(model, train_config, device, checkpoint_path=args.checkpoint,
                          log_path=args.log)
    except ValueError as exc:
        print(f"vggt_train: {exc}", file=sys.stderr)
        return 2
    print(f"vggt_train: {sum(p.numel() for p in model.parameters()):,} parameters "
          f"({trainer.trainable_parameters:,} trained), "
          f"resuming at step {trainer.step}/{train_config.steps} on {_device_name(device)}",
          flush=True)
    summary = trainer.run()
    print(json.dumps({"summary": summary}), flush=True)
    if args.export is not None and (summary["done"] or args.export_every_chunk):
        from vggt_ros.training.export import export_model

        recipe = _recipe(summary["step"], asdict(train_config), summary["wall_s_total"],
                         _device_name(device), args.init_checkpoint)
        export_model(model, args.export, recipe, dtype=args.export_dtype)
        print(f"vggt_train: exported {args.export}", flush=True)
    return 0


def _recipe(step: int, train: dict, wall_s: float, device: str,
            init_checkpoint: Optional[Path]) -> dict:
    return {"steps": step, "train": train, "wall_s": wall_s, "device": device,
            "training_seeds": f"scene seeds drawn uniformly from [0, {HELD_OUT_SEED_MIN}); "
                              f"held out: >= {HELD_OUT_SEED_MIN}",
            "init_checkpoint": str(init_checkpoint) if init_checkpoint else None}


def _export_only(args: argparse.Namespace) -> int:
    """Write the weights of a saved training state (e.g. a chunk that stopped on time)."""
    from vggt_ros.model import VGGT
    from vggt_ros.training.export import export_model
    from vggt_ros.training.checkpoints import load_checkpoint

    if args.checkpoint is None or args.export is None:
        print("vggt_train: --export-only needs --checkpoint and --export", file=sys.stderr)
        return 2
    state = load_checkpoint(args.checkpoint)
    model = VGGT(VGGTConfig.from_json(state["config"]))
    model.load_state_dict(state["model"], strict=True)
    extra = json.loads(state["extra"])
    recipe = _recipe(int(state["step"]), extra.get("train_config", {}),
                     float(extra.get("wall_s_total", 0.0)), extra.get("device", "unknown"),
                     args.init_checkpoint)
    export_model(model, args.export, recipe, dtype=args.export_dtype)
    print(f"vggt_train: exported step {state['step']} to {args.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
