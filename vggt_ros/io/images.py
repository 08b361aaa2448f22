"""Raw ROS image buffers <-> NumPy arrays (no rclpy, so the offline tools can use it too).

``decode_image`` turns the fields of a ``sensor_msgs/Image`` into the HxWx3 uint8 RGB array the
pipeline expects, ``decode_compressed`` those of a ``sensor_msgs/CompressedImage`` (JPEG or PNG,
what most robots record to save bandwidth and disk). Both validate the buffer first (a camera
driver or a bag can hand us anything) and raise :class:`ImageDecodeError` with a
machine-readable ``kind`` so the node can count and throttle each failure class separately.
When the bytes already are unpadded rgb8 the result is a view of the message buffer (no copy);
every other encoding costs exactly one conversion.
"""
from __future__ import annotations

from array import array
from typing import Union

import cv2
import numpy as np

__all__ = [
    "ImageDecodeError",
    "SUPPORTED_ENCODINGS",
    "decode_image",
    "decode_compressed",
    "decode_32fc1",
    "DEPTH_ENCODINGS",
    "decode_depth",
    "encode_16uc1",
    "encode_32fc1",
    "encode_rgb8",
    "encode_compressed",
]

Buffer = Union[bytes, bytearray, memoryview, np.ndarray, array]

# encoding -> (channels, bytes per channel). Bytes per pixel decides the minimum row step.
_LAYOUT: dict[str, tuple[int, int]] = {
    "rgb8": (3, 1),
    "bgr8": (3, 1),
    "rgba8": (4, 1),
    "bgra8": (4, 1),
    "mono8": (1, 1),
    "mono16": (1, 2),
    "bayer_rggb8": (1, 1),
    "bayer_bggr8": (1, 1),
    "bayer_gbrg8": (1, 1),
    "bayer_grbg8": (1, 1),
}

# OpenCV names a Bayer pattern by the second row's 2nd/3rd pixels, so ROS "rggb" is OpenCV "BG"
# (checked against synthetic mosaics in test/test_imaging.py). The classic names exist in every
# OpenCV 4.x/5.x, unlike the newer explicit COLOR_BayerRGGB2RGB aliases.
_BAYER_TO_RGB: dict[str, int] = {
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUT)
# Depth as RealSense, OAK and Azure Kinect drivers publish it (REP-118): 16UC1 millimetres
# (mono16 is the same bytes under the older name), 32FC1 metres.
DEPTH_ENCODINGS: tuple[str, ...] = ("16UC1", "mono16", "32FC1")


class ImageDecodeError(ValueError):
    """A buffer that cannot be read as an image. ``kind`` is one of
    ``unsupported_encoding``, ``zero_size``, ``bad_step``, ``short_data`` and, for compressed
    images, ``unsupported_format`` and ``undecodable``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _rows(height: int, width: int, step: int, data: Buffer, channels: int,
          itemsize: int, encoding: str) -> np.ndarray:
    """Validate the geometry and return the [height, width*bytes_per_pixel] byte view."""
    if height <= 0 or width <= 0:
        raise ImageDecodeError("zero_size", f"{encoding} image has zero size ({width}x{height})")
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ImageDecodeError(
            "bad_step", f"{encoding} image step {step} < width*bytes_per_pixel = {width}*"
            f"{channels * itemsize} = {row_bytes}")
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < height * step:
        raise ImageDecodeError(
            "short_data", f"{encoding} image data has {buf.size} bytes, needs height*step = "
            f"{height}*{step} = {height * step}")
    return buf[: height * step].reshape(height, step)[:, :row_bytes]


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """HxW uint8 -> C-contiguous HxWx3 with three equal channels."""
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def decode_image(encoding: str, height: int, width: int, step: int, data: Buffer,
                 is_bigendian: bool = False) -> np.ndarray:
    """Image fields -> C-contiguous HxWx3 uint8 RGB.

    mono16 is scaled to 8 bit by keeping the high byte (the full 16-bit range maps onto 0..255,
    as an image viewer would show it). The result may share memory with ``data`` (unpadded
    rgb8) and is then read-only when ``data`` is immutable; callers must not write into it.
    """
    layout = _LAYOUT.get(encoding)
    if layout is None:
        raise ImageDecodeError(
            "unsupported_encoding",
            f"unsupported image encoding '{encoding}' "
            f"(supported: {', '.join(SUPPORTED_ENCODINGS)})")
    channels, itemsize = layout
    rows = _rows(int(height), int(width), int(step), data, channels, itemsize, encoding)
    if encoding == "mono16":
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        return _grey_to_rgb((np.ascontiguousarray(rows).view(dtype) >> 8).astype(np.uint8))
    if encoding in _BAYER_TO_RGB:
        return cv2.cvtColor(np.ascontiguousarray(rows), _BAYER_TO_RGB[encoding])
    pixels = rows.reshape(rows.shape[0], int(width), channels)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels)
    if encoding == "mono8":
        return _grey_to_rgb(pixels[:, :, 0])
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])  # rgba8


def decode_compressed(image_format: str, data: Buffer) -> np.ndarray:
    """CompressedImage fields -> C-contiguous HxWx3 uint8 RGB.

    ``image_format`` (the message's ``format``) is what image_transport's compressed plugin
    writes ("jpeg", "png", or e.g. "rgb8; jpeg compressed bgr8"). The codec is read from the
    bytes themselves, and the decoded channel order is always OpenCV's BGR: the plugin
    converts colour images to bgr8 before compressing, whatever the camera's encoding was.
    Grey images become three equal channels, 16-bit ones keep their high byte (as ``mono16``
    in ``decode_image``), alpha is dropped.
    compressedDepth (depth_image_transport's format) is refused: it is depth, not colour.
    """
    if "compresseddepth" in image_format.lower().replace(" ", ""):
        raise ImageDecodeError("unsupported_format",
                               f"compressed image format '{image_format}' is depth "
                               f"(compressedDepth), not a colour image")
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageDecodeError("zero_size",
                               f"compressed image ('{image_format}') has no data")
    pixels = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise ImageDecodeError("undecodable",
                               f"compressed image ('{image_format}', {buf.size} bytes) does "
                               f"not decode as JPEG or PNG (truncated or corrupt?)")
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise ImageDecodeError("unsupported_format",
                               f"compressed image ('{image_format}') decodes to {pixels.dtype} "
                               f"pixels; 8 or 16 bit expected")
    if pixels.ndim == 2:  # OpenCV decodes a grey image as HxW, never HxWx1
        return _grey_to_rgb(pixels)
    return np.ascontiguousarray(pixels[:, :, 2::-1])  # BGR or BGRA -> RGB


def encode_rgb8(image: np.ndarray) -> bytes:
    """HxWx3 uint8 RGB -> the ``data`` of an unpadded rgb8 image (step = 3*width)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"rgb8 needs an HxWx3 uint8 array, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image).tobytes()


def encode_compressed(image: np.ndarray, codec: str, jpeg_quality: int = 95
                      ) -> tuple[str, bytes]:
    """HxWx3 uint8 RGB -> (``format``, ``data``) of a CompressedImage, as image_transport's
    compressed plugin writes it from an rgb8 image (its default JPEG quality is 95). ``codec``:
    "jpeg" or "png" (lossless)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"needs an HxWx3 uint8 RGB array, got {image.shape} {image.dtype}")
    options = {"jpeg": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]),
               "png": (".png", [])}
    if codec not in options:
        raise ValueError(f"codec must be one of {sorted(options)}, got {codec!r}")
    extension, params = options[codec]
    ok, data = cv2.imencode(extension, np.ascontiguousarray(image[:, :, ::-1]), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {codec}")
    return f"rgb8; {codec} compressed bgr8", data.tobytes()


def encode_32fc1(image: np.ndarray) -> bytes:
    """HxW float image (depth, confidence) -> little-endian float32 bytes, step = 4*width.

    Always little-endian so the message's ``is_bigendian`` can be a constant False.
    """
    image = np.asarray(image)
    if image.ndim != 2 or 0 in image.shape:
        raise ValueError(f"32FC1 needs a non-empty HxW array, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"32FC1 needs a floating-point array, got {image.dtype}")
    return np.ascontiguousarray(image, dtype="<f4").tobytes()


def decode_32fc1(height: int, width: int, step: int, data: Buffer,
                 is_bigendian: bool = False) -> np.ndarray:
    """32FC1 image fields -> HxW float32 (native byte order), e.g. to read depth back."""
    rows = _rows(int(height), int(width), int(step), data, 1, 4, "32FC1")
    dtype = np.dtype(">f4" if is_bigendian else "<f4")
    return np.ascontiguousarray(rows).view(dtype).astype(np.float32, copy=False)


def decode_depth(encoding: str, height: int, width: int, step: int, data: Buffer,
                 is_bigendian: bool = False) -> np.ndarray:
    """A depth image's fields -> HxW float32 metres, NaN where the sensor has no reading
    (0 in 16UC1; 0, NaN or inf in 32FC1). Raises ImageDecodeError like ``decode_image``."""
    if encoding not in DEPTH_ENCODINGS:
        raise ImageDecodeError("unsupported_encoding",
                               f"unsupported depth encoding '{encoding}' (supported: "
                               f"{', '.join(DEPTH_ENCODINGS)})")
    if encoding == "32FC1":
        metres = decode_32fc1(height, width, step, data, is_bigendian)
    else:
        rows = _rows(int(height), int(width), int(step), data, 1, 2, encoding)
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        metres = np.ascontiguousarray(rows).view(dtype).astype(np.float32) / 1000.0
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(metres) & (metres > 0), metres, np.nan).astype(np.float32)


def encode_16uc1(depth_m: np.ndarray) -> bytes:
    """HxW metres -> little-endian 16UC1 millimetres (NaN, <= 0 and beyond 65.535 m -> 0,
    the no-reading value), step = 2*width."""
    depth_m = np.asarray(depth_m, dtype=np.float64)
    if depth_m.ndim != 2 or 0 in depth_m.shape:
        raise ValueError(f"16UC1 needs a non-empty HxW array, got shape {depth_m.shape}")
    with np.errstate(invalid="ignore"):
        mm = np.where(np.isfinite(depth_m), np.rint(depth_m * 1000.0), 0.0)
        mm = np.where((mm > 0) & (mm <= 65535), mm, 0.0)
    return np.ascontiguousarray(mm, dtype="<u2").tobytes()
