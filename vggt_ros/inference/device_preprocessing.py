"""VGGT's preprocessing with torch on the inference device: one upload of each uint8 frame.

The Pillow path (``preprocessing.py``) reproduces upstream bit for bit but resizes on the CPU,
one image after another (tens of milliseconds for a window of 640x480 frames). Here each frame
is uploaded once as uint8 and resized on the device with torch's antialiased bicubic filter,
which follows Pillow's resampling (the same a = -0.5 cubic kernel, widened by the scale when
shrinking) in float arithmetic instead of Pillow's 8-bit fixed-point weights; the result is
rounded to uint8 as Pillow's is, so the network sees the same kind of image and the colours the
pipeline keeps are exactly what it saw. Pixel values differ from Pillow's by a few levels at
most (docs/PERFORMANCE.md, "Pipeline around the network"); the geometry (crop, padding,
``PreprocessMapping``) is the same ``image_layouts`` as the Pillow path's, so the mappings are
identical.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vggt_ros.inference.preprocessing import check_image, image_layouts
from vggt_ros.pipeline.types import PreprocessMapping

__all__ = ["preprocess_on_device"]


def _to_rgb(frame: torch.Tensor) -> torch.Tensor:
    """[H,W,3|4] uint8 -> [3,H,W] float32 0..255, RGBA composited over white."""
    chw = frame.permute(2, 0, 1).float()
    if chw.shape[0] == 3:
        return chw
    alpha = chw[3:] / 255.0
    return chw[:3] * alpha + 255.0 * (1.0 - alpha)


def _levels(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0, 255)


def _resized(chw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[3,H,W] float 0..255 -> [3,h,w] uint8 at ``size`` (w, h), antialiased bicubic.

    Two passes, width then height, each rounded and clipped to 0..255 like Pillow's 8-bit
    intermediate image: in one float pass the overshoot of the cubic kernel at sharp edges is
    not clipped in between, and such pixels differ from Pillow's by up to ~10 levels."""
    out = chw[None]
    height, width = chw.shape[1:]
    if width != size[0]:
        out = _levels(F.interpolate(out, size=(height, size[0]), mode="bicubic",
                                    align_corners=False, antialias=True))
    if height != size[1]:
        out = _levels(F.interpolate(out, size=(size[1], size[0]), mode="bicubic",
                                    align_corners=False, antialias=True))
    return _levels(out[0]).to(torch.uint8)


def preprocess_on_device(images: Sequence[np.ndarray], mode: str, target: int,
                         device: torch.device) -> tuple[torch.Tensor, torch.Tensor,
                                                        list[PreprocessMapping]]:
    """Images (uint8 HxWx3/4) -> (network input [N,3,H,W] float32 in [0,1] on ``device``,
    the same as uint8 [N,3,H,W] on ``device``, per-image mappings)."""
    for image in images:
        check_image(image)
    layouts = image_layouts([(i.shape[1], i.shape[0]) for i in images], mode, target)
    width, height = layouts[0].size
    batch = torch.full((len(images), 3, height, width), 255, dtype=torch.uint8, device=device)
    for out, image, lay in zip(batch, images, layouts):
        frame = torch.from_numpy(np.ascontiguousarray(image)).to(device)
        resized = _resized(_to_rgb(frame), lay.resized)
        out[:, lay.top:lay.top + lay.kept_height, lay.left:lay.left + lay.resized[0]] = \
            resized[:, lay.crop_top:lay.crop_top + lay.kept_height]
    return batch.float().div_(255), batch, [lay.mapping() for lay in layouts]
