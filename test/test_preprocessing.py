"""Preprocessing against the upstream fixtures, and the pixel/intrinsics mappings it returns."""
import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from vggt_ros.inference.preprocessing import (model_input_size, preprocess_image, preprocess_images,
                                    to_uint8_images)

EXPECTED_CASES = ("crop.landscape", "crop.portrait", "crop.both",
                  "pad.landscape", "pad.portrait", "pad.both")


@pytest.fixture(scope="module")
def expected(fixtures_dir):
    return json.loads((fixtures_dir / "preprocess_expected.json").read_text())


def _load(fixtures_dir, name):
    return np.asarray(Image.open(fixtures_dir / name))  # RGBA stays RGBA


@pytest.mark.parametrize("case", EXPECTED_CASES)
def test_matches_reference_hash(fixtures_dir, expected, case):
    mode = case.split(".")[0]
    spec = expected[case]
    batch, mappings = preprocess_images([_load(fixtures_dir, f) for f in spec["files"]], mode)
    assert list(batch.shape) == spec["shape"] and batch.dtype == np.float32
    digest = hashlib.sha256(batch.astype("<f4").tobytes()).hexdigest()
    assert digest == spec["sha256_float32_le"]
    assert all(m.model_size == (batch.shape[3], batch.shape[2]) for m in mappings)


@pytest.mark.parametrize("case", ["crop.landscape", "crop.portrait", "pad.landscape",
                                  "pad.portrait"])
def test_matches_reference_tensor(fixtures_dir, expected, case):
    ref = load_file(str(fixtures_dir / "preprocess_expected.safetensors"))[case]
    image = _load(fixtures_dir, expected[case]["files"][0])
    chw, mapping = preprocess_image(image, case.split(".")[0])
    np.testing.assert_array_equal(chw, ref.reshape(chw.shape))
    assert model_input_size(image.shape[1], image.shape[0], case.split(".")[0]) == \
        (chw.shape[2], chw.shape[1])


def _blob_image(width, height, centre, sigma=2.5):
    """White image with a dark Gaussian blob: its intensity centroid is a sub-pixel landmark."""
    v, u = np.mgrid[0:height, 0:width]
    d2 = (u - centre[0]) ** 2 + (v - centre[1]) ** 2
    dark = np.exp(-d2 / (2 * sigma ** 2))
    return np.repeat(np.round(255 * (1 - dark))[..., None], 3, axis=2).astype(np.uint8)


def _dark_centroid(chw):
    weight = 1.0 - chw.mean(axis=0).astype(np.float64)
    v, u = np.mgrid[0:weight.shape[0], 0:weight.shape[1]]
    return np.array([(u * weight).sum(), (v * weight).sum()]) / weight.sum()


@pytest.mark.parametrize("mode,size,centre", [
    ("crop", (60, 45), (41.3, 33.7)),   # landscape: resized height rounded (scale_y != scale)
    ("crop", (36, 80), (12.2, 45.6)),   # portrait: rows cropped away
    ("pad", (60, 45), (17.5, 30.2)),    # rows padded
    ("pad", (36, 80), (25.1, 20.4)),    # columns padded, width rounded
])
def test_pixel_lands_where_mapping_says(mode, size, centre):
    chw, mapping = preprocess_image(_blob_image(*size, centre), mode)
    got = _dark_centroid(chw)
    # Tolerance 0.15 model px (uint8 quantisation of the blob); a single shared scale or a
    # missing half-pixel term would be off by 1.5 to 8 model px in these cases.
    np.testing.assert_allclose(got, mapping.to_model(np.array(centre)), atol=0.15)
    np.testing.assert_allclose(mapping.to_original(got), centre, atol=0.15 / mapping.scale)
    x0, y0, x1, y1 = mapping.valid
    outside = np.ones(chw.shape[1:], dtype=bool)
    outside[y0:y1, x0:x1] = False
    assert np.all(chw[:, outside] == 1.0)  # padding is white; real content lies in ``valid``


def test_intrinsics_follow_the_pixel_mapping():
    _, mapping = preprocess_image(np.zeros((45, 60, 3), np.uint8), "pad")
    k_orig = np.array([[50.0, 0.0, 29.0], [0.0, 52.0, 23.5], [0.0, 0.0, 1.0]])
    k_model = mapping.intrinsics_to_model(k_orig)
    points = np.random.default_rng(0).uniform([-1, -1, 2], [1, 1, 5], size=(20, 3))
    pix_orig = (points @ k_orig.T)[:, :2] / points[:, 2:]
    pix_model = (points @ k_model.T)[:, :2] / points[:, 2:]
    np.testing.assert_allclose(pix_model, mapping.to_model(pix_orig), atol=1e-9)
    np.testing.assert_allclose(mapping.intrinsics_to_original(k_model), k_orig, atol=1e-12)


def test_mixed_batch_is_padded_and_mapped(fixtures_dir):
    land, port = _load(fixtures_dir, "pre_landscape_rgb.png"), _load(fixtures_dir,
                                                                       "pre_portrait_rgba.png")
    batch, (m_land, m_port) = preprocess_images([land, port], "crop")
    single, m_single = preprocess_image(land, "crop")
    top = (batch.shape[2] - single.shape[1]) // 2
    np.testing.assert_array_equal(batch[0, :, top:top + single.shape[1]], single)
    np.testing.assert_allclose(m_land.to_model([5.0, 7.0]),
                               m_single.to_model([5.0, 7.0]) + [0, top], atol=1e-12)
    assert m_land.valid == (0, top, 518, top + single.shape[1])
    assert m_port.model_size == m_land.model_size == (518, 518)


def test_rgba_is_composited_over_white():
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 14:, 3] = 255  # left half fully transparent, right half opaque red-ish
    chw, _ = preprocess_image(rgba, "crop", target=28)
    assert np.all(chw[:, :, :10] == 1.0)
    np.testing.assert_array_equal(chw[:, :, 20:], np.array([200 / 255, 0, 0], np.float32)
                                  .reshape(3, 1, 1) * np.ones((1, 28, 8), np.float32))


def test_small_target_and_uint8_roundtrip():
    image = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    chw, mapping = preprocess_image(image, "crop", target=70)
    assert chw.shape == (3, 56, 70) and mapping.model_size == (70, 56)
    assert model_input_size(40, 30, "crop", target=70) == (70, 56)
    u8 = to_uint8_images(chw[None])
    np.testing.assert_array_equal(u8[0].transpose(2, 0, 1).astype(np.float32) / 255, chw)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"image": np.zeros((10, 10, 3), np.float32)}, TypeError, "uint8"),
    ({"image": np.zeros((10, 10), np.uint8)}, ValueError, "HxWx3"),
    ({"image": np.zeros((10, 10, 3), np.uint8), "mode": "squash"}, ValueError, "mode"),
    ({"image": np.zeros((10, 10, 3), np.uint8), "target": 500}, ValueError, "multiple of 14"),
    ({"image": np.zeros((2, 200, 3), np.uint8), "target": 28}, ValueError, "elongated"),
])
def test_bad_input_is_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        preprocess_image(**kwargs)
