"""Preprocessing on the inference device against upstream's Pillow path: the same geometry
exactly, pixels within a few levels, predictions close."""

import numpy as np
import pytest
import torch

from vggt_ros.inference.device_preprocessing import preprocess_on_device
from vggt_ros.inference.predictor import VGGTPredictor, run_vggt
from vggt_ros.inference.preprocessing import preprocess_images, preprocess_images_uint8
from vggt_ros.synth import make_sequence

CPU = torch.device("cpu")
# Largest and mean |device - Pillow| in uint8 levels that the device path may differ by
# (measured on rendered frames: see docs/PERFORMANCE.md, "Pipeline around the network").
MAX_LEVELS = 2
MEAN_LEVELS = 0.02


def _rendered(width: int, height: int) -> list[np.ndarray]:
    seq = make_sequence(3, width, height, seed=2)
    return [seq.render(i)[0] for i in range(3)]


@pytest.mark.parametrize("mode", ["crop", "pad"])
@pytest.mark.parametrize("sizes", [[(640, 480)], [(480, 640)], [(518, 392)], [(300, 700)],
                                   [(640, 480), (480, 640)], [(1280, 720), (33, 35)]])
def test_device_mappings_equal_the_pillow_paths_exactly(mode, sizes):
    images = [np.zeros((h, w, 3), np.uint8) for w, h in sizes]
    for target in (518, 224):
        host, host_maps = preprocess_images_uint8(images, mode, target)
        tensor, seen, device_maps = preprocess_on_device(images, mode, target, CPU)
        assert device_maps == host_maps
        assert tuple(tensor.shape) == (len(images), 3) + host.shape[1:3]
        # the padding is white and in the same place: black images differ only there
        np.testing.assert_array_equal(seen.permute(0, 2, 3, 1).numpy() == 255, host == 255)


@pytest.mark.parametrize("size", [(640, 480), (320, 240), (400, 600)])
def test_device_pixels_are_within_a_few_levels_of_pillow(size):
    images = _rendered(*size)
    for mode in ("crop", "pad"):
        host, _ = preprocess_images_uint8(images, mode, 518)
        tensor, seen, _ = preprocess_on_device(images, mode, 518, CPU)
        diff = np.abs(seen.permute(0, 2, 3, 1).numpy().astype(int) - host.astype(int))
        assert diff.max() <= MAX_LEVELS and diff.mean() <= MEAN_LEVELS, (diff.max(), diff.mean())
        torch.testing.assert_close(tensor, seen.float() / 255, rtol=0, atol=0)


def test_an_image_already_at_the_model_size_is_passed_through_unchanged():
    image = np.random.default_rng(0).integers(0, 256, (392, 518, 3), dtype=np.uint8)
    host, _ = preprocess_images([image], "crop", 518)
    tensor, _, _ = preprocess_on_device([image], "crop", 518, CPU)
    np.testing.assert_array_equal(tensor.numpy(), host)


def test_rgba_is_composited_over_white_on_the_device_too():
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 14:, 3] = 255
    host, _ = preprocess_images_uint8([rgba], "crop", 28)
    _, seen, _ = preprocess_on_device([rgba], "crop", 28, CPU)
    np.testing.assert_array_equal(seen.permute(0, 2, 3, 1).numpy(), host)


@pytest.mark.parametrize("image,error", [(np.zeros((10, 10, 3), np.float32), TypeError),
                                         (np.zeros((10, 10), np.uint8), ValueError)])
def test_bad_images_are_refused_like_the_pillow_path(image, error):
    with pytest.raises(error):
        preprocess_on_device([image], "crop", 518, CPU)


def test_predictions_from_device_preprocessing_stay_close(random_small_vggt):
    images = _rendered(160, 120)
    host = run_vggt(random_small_vggt, images, np.array([[40.0, 30.0]]), precision="fp32",
                    image_size=70)
    device = run_vggt(random_small_vggt, images, np.array([[40.0, 30.0]]), precision="fp32",
                      image_size=70, device_preprocessing=True)
    assert device.mappings == host.mappings
    assert np.abs(device.images.astype(int) - host.images.astype(int)).max() <= MAX_LEVELS
    for name in ("depth", "depth_conf", "intrinsics", "cam_from_world", "tracks_uv"):
        a, b = getattr(host, name), getattr(device, name)
        rel = np.abs(a - b).max() / max(np.abs(a).max(), 1e-6)
        assert rel < 0.05, (name, rel)


def test_the_reference_predictor_keeps_pillow_and_the_switch_is_reported(random_small_vggt):
    default = VGGTPredictor(random_small_vggt, device="cpu", image_size=70)
    switched = VGGTPredictor(random_small_vggt, device="cpu", image_size=70,
                             device_preprocessing=True)
    assert not default.device_preprocessing and switched.device_preprocessing
    assert default.describe()["preprocess_on"] == "host (Pillow)"
    assert switched.describe()["preprocess_on"] == "device"
