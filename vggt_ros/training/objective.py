"""Loss assembly: one forward of a batch and every loss term of the run's configuration.

The model runs in two halves (``VGGT.aggregator`` then ``VGGT.run_heads``) so that the
auxiliary correspondence losses can read the aggregated tokens, and the matching loss the
input of one global block, through the model's own seams instead of forward hooks.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from vggt_ros.model import VGGT
from vggt_ros.model.layers import Block, Positions
from vggt_ros.training.config import TrainConfig
from vggt_ros.training.correspondence import (FlowProbe, first_frame_attention_logits, flow_loss,
                                              matching_loss, matching_patch_targets, patch_flow,
                                              project_patch_centres_to_first_frame)
from vggt_ros.training.losses import camera_loss, confidence_regression_loss, track_loss
from vggt_ros.training.normalize import normalize_scene


class BlockInputRecorder:
    """A ``BlockRunner`` that keeps the input of one block and runs every block the
    aggregator's own way (so gradient checkpointing still applies)."""

    def __init__(self, aggregator: torch.nn.Module, block: Block) -> None:
        self.aggregator, self.block = aggregator, block
        self.tokens: Optional[Tensor] = None
        self.positions: Optional[Positions] = None

    def __call__(self, block: Block, x: Tensor, pos: Optional[Positions]) -> Tensor:
        if block is self.block:
            self.tokens, self.positions = x, pos
        return self.aggregator.run_block(block, x, pos)


def compute_losses(model: VGGT, batch: dict[str, Tensor], config: TrainConfig,
                   device: torch.device, probe: Optional[FlowProbe] = None
                   ) -> dict[str, Tensor]:
    """Forward one batch and return every loss term plus their weighted ``total``.

    Auxiliary correspondence terms (training/correspondence.py): with a ``probe``, the patch
    flow read from aggregator layer ``config.flow_layer`` (one the DPT heads cache); with
    ``weights.match > 0``, the middle global block's attention (head 0) from later frames'
    patches to frame 0's, against the patch that really shows the same point.
    """
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    images = batch["images"].float() / 255.0
    target = normalize_scene(batch["cam_from_world"], batch["intrinsics"], batch["depth"],
                             batch["valid"])
    with_track = (config.train_track and "track" in config.losses
                  and model.track_head is not None and "query_points" in batch)
    heads = model.select_heads([h for h in config.losses if h in model.enabled_heads
                                and (h != "track" or with_track)], with_track)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=config.bf16 and device.type == "cuda")
    w = config.weights
    frames = images.shape[1]
    aggregator = model.aggregator
    recorder = (BlockInputRecorder(aggregator,
                                   aggregator.global_blocks[len(aggregator.global_blocks) // 2])
                if w.match > 0 and frames > 1 else None)
    with autocast:
        layers, patch_start = aggregator(images, recorder)
        pred = model.run_heads(layers, patch_start, images,
                               batch["query_points"] if with_track else None, heads)
    losses: dict[str, Tensor] = {}
    patch = model.config.patch_size
    if probe is not None or recorder is not None:
        projection = project_patch_centres_to_first_frame(
            target.depth, target.cam_from_world, target.intrinsics, target.valid, patch)
    if probe is not None:
        grid = (images.shape[-2] // patch, images.shape[-1] // patch)
        target_flow, flow_valid = patch_flow(projection, images.shape[-2:])
        layer = layers[config.flow_layer]
        if layer is None:
            raise ValueError(f"flow_layer {config.flow_layer} is not an output layer of the "
                             f"aggregator (the cached ones: {model.config.dpt_layers})")
        losses["flow"] = w.flow * flow_loss(probe(layer, patch_start, grid), target_flow,
                                            flow_valid)
    if recorder is not None:
        logits = first_frame_attention_logits(recorder.block, recorder.tokens,
                                              recorder.positions, frames, patch_start)
        losses["match"] = w.match * matching_loss(
            logits, matching_patch_targets(projection, target.depth, target.valid, patch))
    if "pose_enc_list" in pred:
        losses["camera"] = w.camera * camera_loss(pred["pose_enc_list"], target.pose_enc, w)
    if "depth" in pred:
        losses["depth"] = w.depth * confidence_regression_loss(
            pred["depth"], pred["depth_conf"], target.depth[..., None], target.valid, w.conf_alpha)
    if "world_points" in pred:
        losses["point"] = w.point * confidence_regression_loss(
            pred["world_points"], pred["world_points_conf"], target.world_points, target.valid,
            w.conf_alpha)
    if with_track:
        losses["track"] = w.track * track_loss(pred["track"], pred["vis"], batch["tracks"],
                                               batch["track_vis"])
    if not losses:
        raise ValueError("the model produced no output that has a loss")
    losses["total"] = sum(losses.values())
    return losses
