"""VGGT's official image preprocessing ("crop" / "pad") on NumPy images, plus pixel mappings.

The network was trained on images prepared by upstream ``load_and_preprocess_images``; feeding it
anything else (another resampler, another rounding) shifts its predictions, so this module
reproduces that function bit for bit (Pillow BICUBIC, x/255 in float32, white padding) and
records for every image how its pixels map onto the network input.

Pixel coordinates follow the ROS/OpenCV convention: integer coordinates are pixel centres. Pillow
resizes with pixel *areas* aligned (x_resized + 0.5 = (x + 0.5) * s), so a mapping carries a
half-pixel term in its offset, and the two axes have slightly different scales because the
resized height is rounded to a multiple of the patch size.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from vggt_ros.pipeline.types import PreprocessMapping
from vggt_ros.settings import BY_NAME

__all__ = [
    "PATCH_SIZE",
    "MODES",
    "model_input_size",
    "preprocess_image",
    "preprocess_images",
    "to_uint8_images",
]

PATCH_SIZE = 14
MODES = BY_NAME["preprocess_mode"].choices


def _check_args(mode: str, target: int) -> None:
    if mode not in MODES:
        raise ValueError(f"preprocess mode must be one of {MODES}, got {mode!r}")
    if target <= 0 or target % PATCH_SIZE:
        raise ValueError(f"target size must be a positive multiple of {PATCH_SIZE}, got {target}")


def _resized_size(width: int, height: int, mode: str, target: int) -> tuple[int, int]:
    """Size (w, h) the image is resized to before crop/pad (Python's banker's ``round``)."""
    _check_args(mode, target)
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if mode == "pad" and height > width:
        size = (round(width * target / height / PATCH_SIZE) * PATCH_SIZE, target)
    else:
        size = (target, round(height * target / width / PATCH_SIZE) * PATCH_SIZE)
    if min(size) <= 0:
        raise ValueError(f"a {width}x{height} image is too elongated for target {target} "
                         f"({mode}): it would be resized to {size[0]}x{size[1]}")
    return size


def model_input_size(width: int, height: int, mode: str = "crop",
                     target: int = 518) -> tuple[int, int]:
    """Network input size (w, h) for one ``width`` x ``height`` image (before batch padding)."""
    new_w, new_h = _resized_size(width, height, mode, target)
    if mode == "pad":
        return target, target
    return new_w, min(new_h, target)


def _to_rgb_pil(image: np.ndarray) -> Image.Image:
    """uint8 HxWx3 RGB or HxWx4 RGBA -> PIL RGB, RGBA composited over white like upstream."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a NumPy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image must be HxWx3 (RGB) or HxWx4 (RGBA), got shape {image.shape}")
    if image.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(image))
    rgba = Image.fromarray(np.ascontiguousarray(image))
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _centred_split(extra: int) -> tuple[int, int]:
    return extra // 2, extra - extra // 2


def _pad_to(chw: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """White-pad (value 1.0) to height x width with the centred split; returns (img, left, top)."""
    top, bottom = _centred_split(height - chw.shape[1])
    left, right = _centred_split(width - chw.shape[2])
    if top == bottom == left == right == 0:
        return chw, 0, 0
    return np.pad(chw, ((0, 0), (top, bottom), (left, right)), constant_values=1.0), left, top


def _mapping(original: tuple[int, int], resized: tuple[int, int], model: tuple[int, int],
             shift_x: int, shift_y: int) -> PreprocessMapping:
    """Mapping for an image resized to ``resized`` and placed at (shift_x, shift_y) in the model
    image (negative shift = cropped away)."""
    scale_x = resized[0] / original[0]
    scale_y = resized[1] / original[1]
    # x_model = (x + 0.5) * s - 0.5 + shift  =>  offset = 0.5 - 0.5 * s - shift
    valid = (max(shift_x, 0), max(shift_y, 0),
             min(shift_x + resized[0], model[0]), min(shift_y + resized[1], model[1]))
    return PreprocessMapping(original_size=original, model_size=model, scale=scale_x,
                       offset_x=0.5 - 0.5 * scale_x - shift_x,
                       offset_y=0.5 - 0.5 * scale_y - shift_y, valid=valid, scale_y=scale_y)


def _preprocess_one(image: np.ndarray, mode: str, target: int
                    ) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], int, int]:
    """-> (CHW float32, original (w,h), resized (w,h), shift_x, shift_y)."""
    pil = _to_rgb_pil(image)
    resized = _resized_size(pil.width, pil.height, mode, target)
    pil = pil.resize(resized, Image.Resampling.BICUBIC)
    chw = np.asarray(pil, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / 255
    shift_x = shift_y = 0
    if mode == "crop" and resized[1] > target:
        start = (resized[1] - target) // 2
        chw = chw[:, start:start + target, :]
        shift_y = -start
    elif mode == "pad":
        chw, shift_x, shift_y = _pad_to(chw, target, target)
    original = (image.shape[1], image.shape[0])
    return np.ascontiguousarray(chw), original, resized, shift_x, shift_y


def preprocess_images(images: Sequence[np.ndarray], mode: str = "crop", target: int = 518
                      ) -> tuple[np.ndarray, list[PreprocessMapping]]:
    """Images -> ([N,3,H,W] float32 in [0,1], per-image mappings), as upstream.

    Images whose processed shapes differ are white-padded (centred) to the largest height and
    width of the batch, exactly as upstream does; the mappings include that padding.
    """
    _check_args(mode, target)
    if len(images) == 0:
        raise ValueError("preprocess_images needs at least one image")
    done = [_preprocess_one(img, mode, target) for img in images]
    height = max(d[0].shape[1] for d in done)
    width = max(d[0].shape[2] for d in done)
    batch, mappings = [], []
    for chw, original, resized, shift_x, shift_y in done:
        padded, left, top = _pad_to(chw, height, width)
        batch.append(padded)
        mappings.append(_mapping(original, resized, (width, height), shift_x + left,
                                 shift_y + top))
    return np.stack(batch), mappings


def preprocess_image(image: np.ndarray, mode: str = "crop", target: int = 518
                     ) -> tuple[np.ndarray, PreprocessMapping]:
    """One image -> ([3,H,W] float32 in [0,1], mapping)."""
    batch, mappings = preprocess_images([image], mode, target)
    return batch[0], mappings[0]


def to_uint8_images(chw_batch: np.ndarray) -> np.ndarray:
    """[N,3,H,W] float in [0,1] -> [N,H,W,3] uint8 (exact for preprocessed images: k/255 -> k)."""
    if chw_batch.ndim != 4 or chw_batch.shape[1] != 3:
        raise ValueError(f"expected [N,3,H,W], got {chw_batch.shape}")
    return np.rint(np.clip(chw_batch, 0.0, 1.0) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
