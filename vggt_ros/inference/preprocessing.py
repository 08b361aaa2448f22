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

from dataclasses import dataclass
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
    "preprocess_images_uint8",
    "image_layouts",
    "ImageLayout",
    "check_image",
    "to_float_images",
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


def check_image(image: np.ndarray) -> None:
    """Raise TypeError/ValueError unless ``image`` is uint8 HxWx3 (RGB) or HxWx4 (RGBA)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a NumPy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image must be HxWx3 (RGB) or HxWx4 (RGBA), got shape {image.shape}")


def _to_rgb_pil(image: np.ndarray) -> Image.Image:
    """uint8 HxWx3 RGB or HxWx4 RGBA -> PIL RGB, RGBA composited over white like upstream."""
    if image.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(image))
    rgba = Image.fromarray(np.ascontiguousarray(image))
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _centred_split(extra: int) -> tuple[int, int]:
    return extra // 2, extra - extra // 2


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


@dataclass(frozen=True)
class ImageLayout:
    """Where one image goes in the network input: resized to ``resized`` (w, h), then its
    rows [crop_top, crop_top + kept_height) placed at (left, top) of a ``size`` (w, h) canvas
    that is white elsewhere. The one geometry both preprocessing paths (Pillow here, torch in
    ``device_preprocessing``) follow, so their mappings are the same by construction."""

    original: tuple[int, int]
    resized: tuple[int, int]
    crop_top: int
    kept_height: int
    left: int
    top: int
    size: tuple[int, int]

    def mapping(self) -> PreprocessMapping:
        return _mapping(self.original, self.resized, self.size, self.left,
                        self.top - self.crop_top)


def _own_layout(width: int, height: int, mode: str, target: int
                ) -> tuple[tuple[int, int], int, int, int, int, tuple[int, int]]:
    """One image alone: (resized, crop_top, kept_height, left, top, own size)."""
    resized = _resized_size(width, height, mode, target)
    if mode == "crop":
        crop_top = (resized[1] - target) // 2 if resized[1] > target else 0
        kept = min(resized[1], target)
        return resized, crop_top, kept, 0, 0, (resized[0], kept)
    top, _ = _centred_split(target - resized[1])
    left, _ = _centred_split(target - resized[0])
    return resized, 0, resized[1], left, top, (target, target)


def image_layouts(sizes: Sequence[tuple[int, int]], mode: str = "crop", target: int = 518
                  ) -> list[ImageLayout]:
    """The layout of each image (w, h) of one batch: upstream's resize and crop/pad, then the
    centred white padding to the batch's largest height and width."""
    _check_args(mode, target)
    if len(sizes) == 0:
        raise ValueError("preprocessing needs at least one image")
    own = [_own_layout(w, h, mode, target) for w, h in sizes]
    width = max(o[5][0] for o in own)
    height = max(o[5][1] for o in own)
    layouts = []
    for original, (resized, crop_top, kept, left, top, size) in zip(sizes, own):
        pad_top, _ = _centred_split(height - size[1])
        pad_left, _ = _centred_split(width - size[0])
        layouts.append(ImageLayout(tuple(original), resized, crop_top, kept, left + pad_left,
                                   top + pad_top, (width, height)))
    return layouts


def _resized_pil(image: np.ndarray, resized: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 resized with Pillow's BICUBIC (upstream's resampler)."""
    pil = _to_rgb_pil(image)
    return np.asarray(pil.resize(resized, Image.Resampling.BICUBIC), dtype=np.uint8)


def preprocess_images_uint8(images: Sequence[np.ndarray], mode: str = "crop",
                            target: int = 518) -> tuple[np.ndarray, list[PreprocessMapping]]:
    """Images -> ([N,H,W,3] uint8 network input, white = 255 in the padding, per-image
    mappings). ``x / 255`` in float32 of it is upstream's input, bit for bit."""
    for image in images:
        check_image(image)
    layouts = image_layouts([(i.shape[1], i.shape[0]) for i in images], mode, target)
    width, height = layouts[0].size
    batch = np.full((len(images), height, width, 3), 255, dtype=np.uint8)
    for out, image, lay in zip(batch, images, layouts):
        resized = _resized_pil(image, lay.resized)
        out[lay.top:lay.top + lay.kept_height, lay.left:lay.left + lay.resized[0]] = \
            resized[lay.crop_top:lay.crop_top + lay.kept_height]
    return batch, [lay.mapping() for lay in layouts]


def preprocess_images(images: Sequence[np.ndarray], mode: str = "crop", target: int = 518
                      ) -> tuple[np.ndarray, list[PreprocessMapping]]:
    """Images -> ([N,3,H,W] float32 in [0,1], per-image mappings), as upstream.

    Images whose processed shapes differ are white-padded (centred) to the largest height and
    width of the batch, exactly as upstream does; the mappings include that padding.
    """
    batch, mappings = preprocess_images_uint8(images, mode, target)
    return to_float_images(batch), mappings


def to_float_images(uint8_batch: np.ndarray) -> np.ndarray:
    """[N,H,W,3] uint8 -> [N,3,H,W] float32 x / 255 (upstream's ToTensor)."""
    return np.ascontiguousarray(uint8_batch.transpose(0, 3, 1, 2)).astype(np.float32) / 255


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
