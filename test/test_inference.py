"""The inference wrapper on a tiny random-weight VGGT (fixture config), CPU fp32."""

import numpy as np
import pytest
import torch

from vggt_ros.geometry.camera import project_points, unproject_depth
from vggt_ros.geometry.pose_encoding import pose_encoding_to_extri_intri
from vggt_ros.inference.predictor import VGGTPredictor, run_vggt
from vggt_ros.inference.preprocessing import model_input_size, preprocess_images
from vggt_ros.pipeline.types import Frame

SIZE = 70  # model input width for the tiny model (multiple of 14)


@pytest.fixture(scope="module")
def model(random_small_vggt):
    return random_small_vggt


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    images = [np.roll(base, shift, axis=1) for shift in (0, 2, 4)]
    return [Frame(stamp_ns=1000 * i, image=img, frame_id="cam") for i, img in enumerate(images)]


def _predictor(model, mode="crop"):
    return VGGTPredictor(model, device="cpu", precision="auto", preprocess_mode=mode,
                         image_size=SIZE, name="tiny")


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_predict_matches_the_raw_model(model, frames, mode):
    pred = _predictor(model, mode).predict(frames)
    width, height = model_input_size(40, 30, mode, SIZE)
    s = len(frames)
    assert pred.stamps_ns == [0, 1000, 2000]
    assert pred.cam_from_world.shape == (s, 4, 4) and pred.cam_from_world.dtype == np.float64
    np.testing.assert_array_equal(pred.cam_from_world[:, 3], np.tile([0, 0, 0, 1.0], (s, 1)))
    assert pred.intrinsics.shape == (s, 3, 3) and pred.intrinsics.dtype == np.float64
    assert pred.depth.shape == pred.depth_conf.shape == (s, height, width)
    assert pred.depth.dtype == pred.depth_conf.dtype == np.float32
    assert pred.images.shape == (s, height, width, 3) and pred.images.dtype == np.uint8
    assert len(pred.mappings) == s and {"preprocess", "inference"} <= set(pred.timings)

    batch, _ = preprocess_images([f.image for f in frames], mode, SIZE)
    with torch.no_grad():
        raw = model(torch.from_numpy(batch), heads=("camera", "depth"))
    extr, intr = pose_encoding_to_extri_intri(raw["pose_enc"][0], (height, width))
    np.testing.assert_array_equal(pred.cam_from_world[:, :3], extr.numpy())
    np.testing.assert_array_equal(pred.intrinsics, intr.numpy())
    np.testing.assert_array_equal(pred.depth, raw["depth"][0, ..., 0].numpy())
    np.testing.assert_array_equal(pred.depth_conf, raw["depth_conf"][0].numpy())
    np.testing.assert_array_equal(pred.images.transpose(0, 3, 1, 2) / np.float32(255), batch)


def test_predict_is_deterministic(model, frames):
    predictor = _predictor(model)
    first, second = predictor.predict(frames), predictor.predict(frames)
    for name in ("cam_from_world", "intrinsics", "depth", "depth_conf"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


def test_original_intrinsics_reproject_depth_to_original_pixels(model, frames):
    result = run_vggt(model, [f.image for f in frames], precision="fp32", image_size=SIZE)
    np.testing.assert_allclose(result.world_points, unproject_depth(
        result.depth, result.cam_from_world, result.intrinsics))
    assert np.isfinite(result.intrinsics).all()
    for i, mapping in enumerate(result.mappings):
        k_orig = result.intrinsics_original[i]
        np.testing.assert_allclose(k_orig, mapping.intrinsics_to_original(result.intrinsics[i]))
        # A depth pixel's 3D point, seen by the camera with original intrinsics, lands on that
        # pixel's original-image position.
        pix, _ = project_points(result.world_points[i].reshape(-1, 3), result.cam_from_world[i],
                                k_orig)
        v, u = np.mgrid[0:result.depth.shape[1], 0:result.depth.shape[2]]
        expected = mapping.to_original(np.stack([u, v], -1).reshape(-1, 2))
        np.testing.assert_allclose(pix, expected, atol=1e-3)


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_track_maps_back_to_original_pixels(model, frames, mode):
    query = np.array([[5.0, 7.0], [33.5, 20.25], [20.0, 15.0]])
    tracks = _predictor(model, mode).track(frames, query)
    assert tracks.stamps_ns == [0, 1000, 2000]
    assert tracks.tracks_uv.shape == (3, 3, 2)
    assert tracks.visibility.shape == tracks.confidence.shape == (3, 3)
    # The tracker starts every track at its query, so frame 0 must come back as the query.
    np.testing.assert_allclose(tracks.tracks_uv[0], query, atol=1e-4)

    batch, mappings = preprocess_images([f.image for f in frames], mode, SIZE)
    queries = torch.from_numpy(mappings[0].to_model(query)).float()
    with torch.no_grad():
        raw = model(torch.from_numpy(batch), query_points=queries, heads=("track",))
    for i, mapping in enumerate(mappings):
        np.testing.assert_allclose(tracks.tracks_uv[i],
                                   mapping.to_original(raw["track"][0, i].numpy()), atol=1e-9)
    np.testing.assert_array_equal(tracks.visibility, raw["vis"][0].numpy())


def test_a_track_request_after_its_windows_predict_reuses_the_preprocessed_frames(
        model, frames, monkeypatch):
    import vggt_ros.inference.predictor as predictor_module
    calls = []
    preprocess = predictor_module.preprocess_for_model
    monkeypatch.setattr(predictor_module, "preprocess_for_model",
                        lambda *args: calls.append(len(args[0])) or preprocess(*args))
    query = np.array([[5.0, 7.0], [20.0, 15.0]])
    predictor = _predictor(model)
    predictor.predict(frames)
    reused = predictor.track(frames, query)
    assert calls == [3]  # the track request preprocessed nothing
    fresh = _predictor(model).track(frames, query)
    np.testing.assert_array_equal(reused.tracks_uv, fresh.tracks_uv)
    np.testing.assert_array_equal(reused.visibility, fresh.visibility)
    # The same stamps with another image, or another frame order, are preprocessed again.
    changed = [frames[0], frames[1], Frame(stamp_ns=frames[2].stamp_ns,
                                           image=frames[0].image.copy(), frame_id="cam")]
    predictor.track(changed, query)
    predictor.track(frames[::-1], query)
    assert calls == [3, 3, 3, 3]


def test_run_vggt_with_tracks_and_geometry(model, frames):
    result = run_vggt(model, [f.image for f in frames], np.array([[10.0, 10.0]]),
                      precision="fp32", image_size=SIZE)
    assert result.tracks_uv.shape == (3, 1, 2) and result.depth.shape[0] == 3
    assert result.intrinsics_original.shape == (3, 3, 3)


def test_describe(model):
    info = _predictor(model).describe()
    assert info["device"] == "cpu" and info["precision"] == "fp32" and info["name"] == "tiny"
    assert info["preprocess_mode"] == "crop" and info["image_size"] == str(SIZE)
    assert info["tracker_precision"] == "fp32"  # the reference tracker runs the model's


def test_bad_calls_are_rejected(model, frames):
    predictor = _predictor(model)
    odd = Frame(stamp_ns=5, image=np.zeros((32, 40, 3), np.uint8), frame_id="cam")
    with pytest.raises(ValueError, match="same size"):
        predictor.predict([frames[0], odd])
    with pytest.raises(ValueError, match="at least one frame"):
        predictor.predict([])
    with pytest.raises(ValueError, match="outside"):
        predictor.track(frames, np.array([[40.5, 3.0]]))
    with pytest.raises(ValueError, match=r"\[N,2\]"):
        predictor.track(frames, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        VGGTPredictor(model, device="cpu", precision="bf16")
    with pytest.raises(ValueError, match="precision"):
        VGGTPredictor(model, device="cpu", precision="double")
    with pytest.raises(ValueError, match="preprocess_mode"):
        VGGTPredictor(model, device="cpu", preprocess_mode="stretch")


def test_query_in_cropped_rows_is_rejected(model):
    tall = [np.full((80, 36, 3), 128, np.uint8)] * 2
    with pytest.raises(ValueError, match="crop"):
        run_vggt(model, tall, np.array([[10.0, 1.0]]), image_size=SIZE)
    result = run_vggt(model, tall, np.array([[10.0, 1.0]]), preprocess_mode="pad",
                      image_size=SIZE, geometry=False)
    assert result.depth is None and result.tracks_uv.shape == (2, 1, 2)


def test_outputs_come_to_the_host_as_numpy_with_their_values():
    from vggt_ros.inference.predictor import _to_host
    gen = torch.Generator().manual_seed(3)
    depth = torch.rand(2, 4, 5, generator=gen)
    images = (torch.rand(2, 3, 4, 5, generator=gen) * 255).to(torch.uint8)
    host = _to_host({"depth": depth, "images": images.permute(0, 2, 3, 1)})
    assert isinstance(host["depth"], np.ndarray) and host["images"].dtype == np.uint8
    np.testing.assert_array_equal(host["depth"], depth.numpy())
    np.testing.assert_array_equal(host["images"], images.permute(0, 2, 3, 1).numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_outputs_leave_the_gpu_whole_and_each_call_in_its_own_arrays():
    from vggt_ros.inference.predictor import _to_host
    gen = torch.Generator().manual_seed(4)
    depth = torch.rand(8, 392, 518, generator=gen).cuda()
    images = (torch.rand(8, 3, 392, 518, generator=gen) * 255).to(torch.uint8).cuda()
    first = _to_host({"depth": depth * 2, "images": images.permute(0, 2, 3, 1)})
    np.testing.assert_array_equal(first["depth"], (depth * 2).cpu().numpy())
    np.testing.assert_array_equal(first["images"], images.permute(0, 2, 3, 1).cpu().numpy())
    kept = first["depth"].copy()
    second = _to_host({"depth": depth * 3, "images": images.permute(0, 2, 3, 1)})
    np.testing.assert_array_equal(first["depth"], kept)  # not overwritten by the next call
    np.testing.assert_array_equal(second["depth"], (depth * 3).cpu().numpy())
