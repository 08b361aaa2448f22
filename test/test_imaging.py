"""decode_image / decode_compressed / 32FC1 helpers against hand-built buffers."""
from array import array

import cv2
import numpy as np
import pytest

from vggt_ros.io.images import (
    ImageDecodeError,
    decode_32fc1,
    decode_compressed,
    decode_image,
    encode_32fc1,
    encode_compressed,
    encode_rgb8,
)

H, W = 6, 8


@pytest.fixture()
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def _padded(rows: np.ndarray, pad: int) -> tuple[bytes, int]:
    """rows [H, row_bytes] uint8 -> (data with `pad` junk bytes per row, step)."""
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    data = np.concatenate([rows, junk], axis=1)
    return data.tobytes(), data.shape[1]


def test_rgb8_unpadded_is_a_view_of_the_buffer(rgb):
    data = bytearray(rgb.tobytes())
    out = decode_image("rgb8", H, W, W * 3, data)
    np.testing.assert_array_equal(out, rgb)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8))
    assert out.flags.c_contiguous and out.dtype == np.uint8


def test_rgb8_from_message_style_array(rgb):
    out = decode_image("rgb8", H, W, W * 3, array("B", rgb.tobytes()))
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("pad", [0, 5])
def test_channel_orders_and_padding(rgb, pad):
    alpha = np.full((H, W, 1), 7, np.uint8)
    cases = {
        "rgb8": rgb,
        "bgr8": rgb[:, :, ::-1],
        "rgba8": np.concatenate([rgb, alpha], axis=2),
        "bgra8": np.concatenate([rgb[:, :, ::-1], alpha], axis=2),
    }
    for encoding, pixels in cases.items():
        data, step = _padded(pixels.reshape(H, -1), pad)
        out = decode_image(encoding, H, W, step, data)
        assert out.shape == (H, W, 3) and out.flags.c_contiguous, encoding
        np.testing.assert_array_equal(out, rgb, err_msg=encoding)


def test_mono8_replicated(rgb):
    gray = rgb[:, :, 0]
    data, step = _padded(gray, 3)
    out = decode_image("mono8", H, W, step, data)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_high_byte_and_endianness(bigendian):
    values = np.array([[0, 255, 256, 0x1234], [0x8000, 0xFF00, 0xFFFF, 511]], np.uint16)
    dtype = ">u2" if bigendian else "<u2"
    raw = values.astype(dtype).view(np.uint8).reshape(2, -1)
    data, step = _padded(raw, 2)
    out = decode_image("mono16", 2, 4, step, data, is_bigendian=bigendian)
    expected = np.array([[0, 0, 1, 0x12], [0x80, 0xFF, 0xFF, 1]], np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], expected)


# Position in each 2x2 cell of (R, G1, G2, B) for every ROS Bayer pattern, read off its name.
_BAYER_CELLS = {
    "bayer_rggb8": {"r": (0, 0), "b": (1, 1)},
    "bayer_bggr8": {"r": (1, 1), "b": (0, 0)},
    "bayer_gbrg8": {"r": (1, 0), "b": (0, 1)},
    "bayer_grbg8": {"r": (0, 1), "b": (1, 0)},
}


@pytest.mark.parametrize("encoding", sorted(_BAYER_CELLS))
def test_bayer_demosaic_recovers_a_flat_colour(encoding):
    """A uniform colour mosaicked with the named pattern must demosaic back to that colour."""
    colour = {"r": 200, "g": 90, "b": 30}
    h, w = 10, 12
    mosaic = np.full((h, w), colour["g"], np.uint8)
    for channel, (dy, dx) in _BAYER_CELLS[encoding].items():
        mosaic[dy::2, dx::2] = colour[channel]
    data, step = _padded(mosaic, 4)
    out = decode_image(encoding, h, w, step, data)
    interior = out[2:-2, 2:-2].reshape(-1, 3)
    np.testing.assert_array_equal(interior, np.tile([200, 90, 30], (len(interior), 1)))


@pytest.mark.parametrize(
    "kwargs, kind",
    [
        (dict(encoding="yuv422"), "unsupported_encoding"),
        (dict(encoding="16UC1"), "unsupported_encoding"),
        (dict(height=0), "zero_size"),
        (dict(width=0, step=0), "zero_size"),
        (dict(step=W * 3 - 1), "bad_step"),
        (dict(data=bytes(H * W * 3 - 1)), "short_data"),
        (dict(step=W * 3 + 4), "short_data"),  # step claims padding the data does not have
    ],
)
def test_bad_buffers_raise_with_kind(kwargs, kind):
    args = dict(encoding="rgb8", height=H, width=W, step=W * 3, data=bytes(H * W * 3))
    args.update(kwargs)
    with pytest.raises(ImageDecodeError) as err:
        decode_image(**args)
    assert err.value.kind == kind
    assert str(err.value)  # a message naming the problem
    assert isinstance(err.value, ValueError)


def test_mono16_step_must_cover_two_bytes_per_pixel():
    with pytest.raises(ImageDecodeError) as err:
        decode_image("mono16", 2, 4, 4, bytes(16))
    assert err.value.kind == "bad_step" and "8" in str(err.value)


def test_encode_rgb8_round_trip(rgb):
    data = encode_rgb8(rgb)
    assert len(data) == H * W * 3
    np.testing.assert_array_equal(decode_image("rgb8", H, W, W * 3, data), rgb)
    with pytest.raises(ValueError):
        encode_rgb8(rgb.astype(np.float32))


def test_32fc1_round_trip_keeps_nan_and_inf():
    depth = np.arange(H * W, dtype=np.float64).reshape(H, W) / 7.0
    depth[1, 2] = np.nan
    depth[3, 4] = np.inf
    data = encode_32fc1(depth)
    assert len(data) == H * W * 4
    back = decode_32fc1(H, W, W * 4, data)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, depth.astype(np.float32))
    big = depth.astype(">f4").tobytes()
    np.testing.assert_array_equal(decode_32fc1(H, W, W * 4, big, is_bigendian=True),
                                  depth.astype(np.float32))
    with pytest.raises(ValueError):
        encode_32fc1(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError):
        encode_32fc1(np.zeros((0, 2), np.float32))


# --- sensor_msgs/CompressedImage ---------------------------------------------------------------

def test_png_compressed_image_decodes_to_the_exact_rgb(rgb):
    image_format, data = encode_compressed(rgb, "png")
    assert image_format == "rgb8; png compressed bgr8"  # image_transport's format string
    out = decode_compressed(image_format, array("B", data))  # rclpy hands over an array
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_jpeg_compressed_image_keeps_the_colours_in_rgb_order():
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 200
    out = decode_compressed(*encode_compressed(red, "jpeg"))
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - red).max() <= 4  # lossy, but red stays red


@pytest.mark.parametrize("image_format", ["jpeg", "png", "mono8; png compressed mono8", ""])
def test_the_codec_is_read_from_the_bytes_not_the_format_string(rgb, image_format):
    _, data = encode_compressed(rgb, "png")
    np.testing.assert_array_equal(decode_compressed(image_format, data), rgb)


def test_grey_16_bit_and_alpha_images_become_rgb():
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    _, png = cv2.imencode(".png", grey)
    np.testing.assert_array_equal(decode_compressed("png", png.tobytes()),
                                  np.repeat(grey[:, :, None], 3, axis=2))
    grey16 = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000)
    _, png16 = cv2.imencode(".png", grey16)
    np.testing.assert_array_equal(decode_compressed("mono16; png compressed mono16",
                                                    png16.tobytes())[..., 0],
                                  (grey16 >> 8).astype(np.uint8))
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 10, 30, 255  # blue 10, red 30, opaque
    _, png_alpha = cv2.imencode(".png", bgra)
    out = decode_compressed("bgra8; png compressed bgra8", png_alpha.tobytes())
    assert out.shape == (4, 4, 3) and tuple(out[0, 0]) == (30, 0, 10)


@pytest.mark.parametrize("image_format, data, kind", [
    ("16UC1; compressedDepth png", b"\x00" * 12 + b"png", "unsupported_format"),
    ("jpeg", b"", "zero_size"),
    ("jpeg", bytes(range(256)) * 4, "undecodable"),
    ("png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "undecodable"),
])
def test_unusable_compressed_images_are_refused_by_kind(image_format, data, kind):
    with pytest.raises(ImageDecodeError) as err:
        decode_compressed(image_format, data)
    assert err.value.kind == kind and image_format in str(err.value)


def test_encode_compressed_refuses_what_it_cannot_write(rgb):
    with pytest.raises(ValueError, match="codec"):
        encode_compressed(rgb, "webp")
    with pytest.raises(ValueError, match="HxWx3"):
        encode_compressed(rgb[..., 0], "png")
