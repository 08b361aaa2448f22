"""VGGT training losses (paper §3.4): camera, confidence-weighted depth / point map, tracking.

Each loss returns a scalar tensor. Reductions are MEANS over the valid elements (the paper
writes sums): a mean keeps the weight of a term independent of image size and window length,
so the same learning rate works for every random batch shape.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

POSE_PARTS = {"translation": slice(0, 3), "rotation": slice(3, 7), "fov": slice(7, 9)}


@dataclass(frozen=True)
class LossWeights:
    """Relative weights; the defaults follow the paper (track 0.05, conf alpha 0.2)."""

    camera: float = 5.0
    depth: float = 1.0
    point: float = 1.0
    track: float = 0.05
    flow: float = 0.0  # auxiliary patch-flow loss (training/correspondence.py); 0 = off
    match: float = 0.0  # auxiliary attention-matching loss (same module); 0 = off
    conf_alpha: float = 0.2
    # Later camera refinement iterations count more: weight gamma^(n-1-i) for iteration i.
    camera_gamma: float = 0.6
    huber_delta: float = 0.1  # quadratic below, slope 1 above (so small errors keep a gradient)
    translation: float = 1.0
    rotation: float = 1.0
    fov: float = 0.5


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask``; 0 (still differentiable) when nothing is valid."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def camera_loss(pose_enc_list: Sequence[Tensor], gt_pose_enc: Tensor,
                weights: LossWeights = LossWeights()) -> Tensor:
    """Huber loss on the 9-number pose encoding, summed over every refinement iteration.

    The Huber is normalised by its delta (0.5 e^2 / delta below delta, |e| - delta / 2 above),
    i.e. slope 1 for large errors: with the plain form, errors of a few hundredths (typical
    quaternion errors) produced gradients too weak to train the camera head next to the dense
    losses (observed: the head collapsed to the identity pose). Each part (translation, quaternion, field of view) is averaged separately and weighted, so
    the 4-number quaternion does not dominate the 2-number FoV just by its size.
    """
    if len(pose_enc_list) == 0:
        raise ValueError("pose_enc_list is empty")
    n = len(pose_enc_list)
    total = gt_pose_enc.new_zeros(())
    for i, pred in enumerate(pose_enc_list):
        if pred.shape != gt_pose_enc.shape:
            raise ValueError(f"pose encoding {i} has shape {tuple(pred.shape)}, "
                             f"ground truth {tuple(gt_pose_enc.shape)}")
        iteration = gt_pose_enc.new_zeros(())
        for part, sl in POSE_PARTS.items():
            error = F.smooth_l1_loss(pred[..., sl].float(), gt_pose_enc[..., sl].float(),
                                     beta=weights.huber_delta)
            iteration = iteration + getattr(weights, part) * error
        total = total + weights.camera_gamma ** (n - 1 - i) * iteration
    return total


def _gradient_pairs(x: Tensor) -> tuple[Tensor, Tensor]:
    """Forward differences along W and H of [B,S,H,W,C]."""
    return x[:, :, :, 1:] - x[:, :, :, :-1], x[:, :, 1:] - x[:, :, :-1]


def confidence_regression_loss(pred: Tensor, conf: Tensor, gt: Tensor, valid: Tensor,
                               alpha: float = 0.2, with_gradient: bool = True) -> Tensor:
    """Aleatoric-uncertainty regression of a dense map (depth [.., 1] or points [.., 3]).

    loss = mean(c * ||pred - gt||) - alpha * mean(log c)
           + mean(c_pair * ||grad(pred - gt)||)            (gradient term, optional)
    over valid pixels (a gradient needs both pixels valid; c_pair is the mean of their
    confidences). pred/gt: [B,S,H,W,C]; conf and valid: [B,S,H,W].
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} "
                         "differ in shape")
    if conf.shape != pred.shape[:-1] or valid.shape != pred.shape[:-1]:
        raise ValueError(f"conf {tuple(conf.shape)} and valid {tuple(valid.shape)} must be "
                         f"{tuple(pred.shape[:-1])}")
    pred = pred.float()
    conf = conf.float()
    diff = torch.where(valid[..., None], pred - gt.float(), torch.zeros_like(pred))
    loss = (_masked_mean(conf * diff.norm(dim=-1), valid)
            - alpha * _masked_mean(torch.log(conf), valid))
    if with_gradient:
        for axis, grad in zip((3, 2), _gradient_pairs(diff)):
            length = valid.shape[axis] - 1
            first, second = valid.narrow(axis, 0, length), valid.narrow(axis, 1, length)
            pair_conf = 0.5 * (conf.narrow(axis, 0, length) + conf.narrow(axis, 1, length))
            loss = loss + _masked_mean(pair_conf * grad.norm(dim=-1), first & second)
    return loss


def track_loss(pred_tracks: Tensor, pred_vis: Tensor, gt_tracks: Tensor, gt_vis: Tensor,
               vis_is_logit: bool = False) -> Tensor:
    """L1 pixel error on visible track points plus visibility binary cross-entropy.

    pred_tracks/gt_tracks: [B,S,N,2] pixels; pred_vis: [B,S,N] probability (or logit);
    gt_vis: [B,S,N] bool.
    """
    if pred_tracks.shape != gt_tracks.shape or pred_tracks.shape[-1] != 2:
        raise ValueError(f"tracks must be [B,S,N,2] alike, got {tuple(pred_tracks.shape)} and "
                         f"{tuple(gt_tracks.shape)}")
    if pred_vis.shape != gt_vis.shape or pred_vis.shape != pred_tracks.shape[:-1]:
        raise ValueError(f"visibility must be {tuple(pred_tracks.shape[:-1])}, got "
                         f"{tuple(pred_vis.shape)} and {tuple(gt_vis.shape)}")
    error = (pred_tracks.float() - gt_tracks.float()).abs().sum(-1)
    position = _masked_mean(error, gt_vis)
    target = gt_vis.float()
    if vis_is_logit:
        visibility = F.binary_cross_entropy_with_logits(pred_vis.float(), target)
    else:
        with torch.autocast(device_type=pred_vis.device.type, enabled=False):
            probability = pred_vis.float().clamp(1e-6, 1 - 1e-6)
            visibility = F.binary_cross_entropy(probability, target)
    return position + visibility
