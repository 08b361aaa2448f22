"""decode_image / 32FC1 helpers against hand-built buffers."""
from array import array

import numpy as np
import pytest

from vggt_ros.io.images import (
    ImageDecodeError,
    decode_32fc1,
    decode_image,
    encode_32fc1,
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
