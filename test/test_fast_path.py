"""The fast inference path (vggt_ros.model.fast), on CPU.

The fast path must compute the reference function: in fp32 to float rounding, in bf16 within
bf16 tolerances; and its DINO cache must hand back exactly what recomputation gives.
"""
import copy

import pytest
import torch

from vggt_ros.bench.models import build_config, random_model
from vggt_ros.bench.models import random_inputs as bench_inputs
from vggt_ros.model.fast import FastOptions, FastVGGT, PatchTokenCache
from vggt_ros.model.layers import RotaryPositionEmbedding2D, patch_positions

S, H, W, N = 3, 42, 70, 5
ALL_HEADS = ("camera", "depth", "point", "track")


@pytest.fixture(scope="module")
def config(small_config):
    return small_config


@pytest.fixture(scope="module")
def reference(random_small_vggt):
    return random_small_vggt


def random_inputs(frames: int):
    """Seeded images [1,frames,3,H,W] and N query pixels (the benchmark's inputs)."""
    return bench_inputs(frames, H, W, N, torch.device("cpu"), seed=1)


@pytest.fixture(scope="module")
def inputs():
    return random_inputs(S)


@pytest.fixture(scope="module")
def reference_out(reference, inputs):
    with torch.inference_mode():
        return reference(*inputs, heads=ALL_HEADS)


HEAD_OUTPUTS = {"camera": ("pose_enc", "pose_enc_list"), "depth": ("depth", "depth_conf"),
                "point": ("world_points", "world_points_conf"), "track": ("track", "vis", "conf")}


@pytest.fixture(scope="module")
def fp32_runs(reference):
    """Per frame count: the inputs, the reference's outputs of every head and one fp32 fast
    path over a copy of the same weights."""
    runs = {}
    for frames in (S, 1):
        images, queries = random_inputs(frames)
        with torch.inference_mode():
            out = reference(images, queries, heads=ALL_HEADS)
        runs[frames] = (images, queries, out, FastVGGT(copy.deepcopy(reference)))
    return runs


@pytest.mark.parametrize("frames", [S, 1])
@pytest.mark.parametrize("heads", [ALL_HEADS, ("camera",), ("depth",), ("point",), ("track",)],
                         ids="+".join)
def test_fp32_fast_path_matches_the_reference(fp32_runs, frames, heads):
    images, queries, want, fast = fp32_runs[frames]
    assert fast.dtype == torch.float32  # CPU default: no lossy dtype
    with torch.inference_mode():
        out = fast(images, queries if "track" in heads else None, heads=heads)
    assert set(out) == {"images", *(key for head in heads for key in HEAD_OUTPUTS[head])}
    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf", "vis",
                "conf"):
        if key in out:
            torch.testing.assert_close(out[key], want[key], rtol=1e-4, atol=1e-5, msg=key)
    if "track" in out:
        torch.testing.assert_close(out["track"], want["track"], rtol=1e-4, atol=2e-3)
    if "pose_enc_list" in out:
        assert len(out["pose_enc_list"]) == len(want["pose_enc_list"])


def test_default_heads_skip_the_point_head(reference, inputs):
    fast = FastVGGT(copy.deepcopy(reference))
    with torch.inference_mode():
        out = fast(inputs[0])
    assert {"pose_enc", "depth", "depth_conf"} <= set(out)
    assert "world_points" not in out and "track" not in out


def test_bf16_fast_path_stays_within_bf16_tolerance(reference, inputs, reference_out):
    fast = FastVGGT(copy.deepcopy(reference), FastOptions(dtype=torch.bfloat16))
    qkv = fast.model.aggregator.frame_blocks[0].attn.qkv.weight
    assert qkv.dtype == torch.bfloat16  # stored once in the compute dtype
    assert fast.model.aggregator.frame_blocks[0].norm1.weight.dtype == torch.float32
    with torch.inference_mode():
        out = fast(inputs[0], heads=("camera", "depth"))
    assert all(torch.isfinite(out[k]).all() for k in ("pose_enc", "depth", "depth_conf"))
    assert out["depth"].dtype == torch.float32
    rel = ((out["depth"] - reference_out["depth"]).abs() / reference_out["depth"].abs()).median()
    assert rel < 1e-2
    assert (out["pose_enc"] - reference_out["pose_enc"]).abs().max() < 5e-2


def test_rope_tables_reproduce_the_reference_rotation(config):
    head_dim = config.embed_dim // config.num_heads
    h, w, frames = 3, 5, 2
    rope = RotaryPositionEmbedding2D(config.rope_freq)
    positions = patch_positions(h, w, 5, torch.device("cpu")).repeat_tokens(frames)
    tokens = torch.randn(2, config.num_heads, positions.yx.shape[1], head_dim)
    expected = rope(tokens, positions)
    got = rope.table(positions, head_dim, torch.device("cpu")).rotate(tokens)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_dino_cache_gives_recomputed_tokens_and_only_encodes_new_frames(reference):
    fast = FastVGGT(copy.deepcopy(reference), FastOptions(cache_frames=6))
    frames = torch.rand(1, 6, 3, H, W, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        first = fast.patch_tokens(frames[:, :4], frame_keys=[0, 1, 2, 3])
        assert (fast.cache.hits, fast.cache.misses) == (0, 4)
        slid = fast.patch_tokens(frames[:, 2:6], frame_keys=[2, 3, 4, 5])
        assert (fast.cache.hits, fast.cache.misses) == (2, 6)  # only frames 4, 5 were encoded
        fresh = fast.encode_frames(frames[0, 2:6])
    torch.testing.assert_close(slid[0], fresh, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(slid[0, :2], first[0, 2:], rtol=0, atol=0)
    assert len(fast.cache) == 6


def test_patch_token_cache_is_lru_and_bounded():
    cache = PatchTokenCache(2)
    cache.put("a", torch.zeros(1))
    cache.put("b", torch.ones(1))
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", torch.ones(1))
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2
    with pytest.raises(ValueError, match="capacity"):
        PatchTokenCache(-1)


def test_track_request_reuses_the_last_window(reference, inputs):
    images, queries = inputs
    fast = FastVGGT(copy.deepcopy(reference))
    keys = ["k0", "k1", "k2"]
    with torch.inference_mode():
        fast(images, frame_keys=keys)
        misses = fast.cache.misses
        same = fast(images, queries, heads=("track",), frame_keys=keys)
        assert fast.cache.misses == misses and fast.cache.hits == 0  # no backbone run at all
        direct = fast(images, queries, heads=("track",))  # unkeyed: full recomputation
        torch.testing.assert_close(same["track"], direct["track"], rtol=1e-4, atol=2e-3)
        # Another frame first: by default the backbone re-runs (query frame = reference frame,
        # as the official code requires), with DINO tokens from the cache.
        order = [2, 0, 1]
        moved_keys = [keys[i] for i in order]
        moved = fast(images[:, order], queries, heads=("track",), frame_keys=moved_keys)
        assert fast.cache.hits == S
        rerun = fast(images[:, order], queries, heads=("track",))
        torch.testing.assert_close(moved["track"], rerun["track"], rtol=1e-4, atol=2e-3)
        # Opt-in approximation: re-use the window's tokens with reordered track features.
        approx = FastVGGT(copy.deepcopy(reference), FastOptions(reuse_permuted_tokens=True))
        approx(images, frame_keys=keys)
        hits = approx.cache.hits
        reused = approx(images[:, order], queries, heads=("track",), frame_keys=moved_keys)
        assert approx.cache.hits == hits  # no backbone run
    for out in (moved, reused):
        assert out["track"].shape == (1, S, N, 2)
        torch.testing.assert_close(out["track"][:, 0], queries)  # the query frame is frame 0


def test_tracker_switches_change_only_the_trackers_arithmetic(reference, inputs, reference_out):
    images, queries = inputs
    want = reference_out["track"]
    before = torch.get_float32_matmul_precision()
    runs = {}
    with torch.inference_mode():
        for name, options in {"full": dict(tracker_local_correlation=False), "local": {},
                              "bf16": dict(tracker_precision="bf16")}.items():
            fast = FastVGGT(copy.deepcopy(reference), FastOptions(**options))
            runs[name] = fast(images, queries, heads=("track",))
    assert torch.get_float32_matmul_precision() == before  # no process-wide switch left behind
    torch.testing.assert_close(runs["full"]["track"], want, rtol=1e-4, atol=2e-3)
    torch.testing.assert_close(runs["local"]["track"], want, rtol=1e-4, atol=2e-3)
    bf16 = runs["bf16"]
    assert bf16["track"].dtype == torch.float32
    torch.testing.assert_close(bf16["track"][:, 0], queries)  # frame 0 stays at the query
    assert 0 < (bf16["track"] - want).abs().max() < 2.0  # pixels: rounded, not broken
    assert (bf16["vis"] - reference_out["vis"]).abs().max() < 0.05


def _nan_graphs(graph_module, example_inputs):
    """A torch.compile backend whose compiled code returns NaN (a miscompiled kernel)."""
    def run(*args):
        return [t * float("nan") if isinstance(t, torch.Tensor) and t.is_floating_point() else t
                for t in graph_module(*args)]
    return run


def test_a_compiled_network_that_returns_nan_is_rerun_eagerly_and_stays_eager(reference, inputs):
    torch._dynamo.reset()
    images = inputs[0]
    lines = []
    eager = FastVGGT(copy.deepcopy(reference))
    broken = FastVGGT(copy.deepcopy(reference), FastOptions(
        compile_blocks=True, compile_heads=True, compile_backend=_nan_graphs), log=lines.append)
    keys = ["a", "b", "c"]
    with torch.inference_mode():
        want = eager(images)
        got = broken(images, frame_keys=keys)
        again = broken(images, frame_keys=keys)  # from the cache the eager run refilled
    torch._dynamo.reset()
    for out in (got, again):
        for key in ("pose_enc", "depth", "depth_conf"):
            torch.testing.assert_close(out[key], want[key], rtol=1e-5, atol=1e-6, msg=key)
    assert not broken.compiles
    assert broken.compile_stats()["nonfinite_fallbacks"] == 1
    assert any("non-finite" in line for line in lines)


@pytest.mark.parametrize("options, match", [
    (dict(dpt_chunk=0), "dpt_chunk"),
    (dict(sdpa_priority=("fastest",)), "sdpa_priority"),
    (dict(cache_frames=-1), "cache_frames"),
    (dict(dtype=torch.float64), "dtype"),
    (dict(tracker_precision="fp16"), "tracker_precision"),
])
def test_bad_options_are_rejected(options, match):
    with pytest.raises(ValueError, match=match):
        FastOptions(**options)


def test_only_a_vggt_can_be_wrapped():
    with pytest.raises(TypeError, match="VGGT"):
        FastVGGT(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("call, error, match", [
    (lambda fast, images: fast(images, frame_keys=["only-one"]), ValueError, "frame_keys"),
    (lambda fast, images: fast(images, heads=("normals",)), ValueError, "unknown heads"),
    (lambda fast, images: fast(torch.rand(1, 2, 3, 40, 70)), ValueError,
     "multiple of the patch size"),
    (lambda fast, images: fast(images, heads="depth"), TypeError, "collection of names"),
], ids=["frame_keys", "unknown_head", "image_size", "heads_string"])
def test_bad_inputs_are_rejected(reference, inputs, call, error, match):
    fast = FastVGGT(copy.deepcopy(reference))
    with pytest.raises(error, match=match):
        call(fast, inputs[0])


@pytest.mark.slow
def test_predictor_fast_path_matches_the_reference_predictor(reference):
    import numpy as np

    from vggt_ros.inference.predictor import VGGTPredictor
    from vggt_ros.pipeline.types import Frame

    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    frames = [Frame(stamp_ns=i, image=np.roll(base, 2 * i, axis=1), frame_id="cam")
              for i in range(4)]
    slow = VGGTPredictor(copy.deepcopy(reference), device="cpu", image_size=W)
    quick = VGGTPredictor(copy.deepcopy(reference), device="cpu", image_size=W, fast=True)
    assert (slow.describe()["path"], quick.describe()["path"]) == ("reference", "fast")
    a, b = slow.predict(frames[:3]), quick.predict(frames[:3])
    np.testing.assert_allclose(b.depth, a.depth, rtol=1e-4)
    np.testing.assert_allclose(b.cam_from_world, a.cam_from_world, atol=1e-4)
    assert (quick.model.cache.misses, quick.model.cache.hits) == (3, 0)
    # Query on another frame: the backbone re-runs with it first, DINO tokens from the cache.
    order = [2, 0, 1]
    track = quick.track([frames[i] for i in order], np.array([[10.0, 12.0]]))
    assert (quick.model.cache.misses, quick.model.cache.hits) == (3, 3)
    # The next (sliding) window encodes only its new frame.
    c, d = slow.predict(frames[1:]), quick.predict(frames[1:])
    assert (quick.model.cache.misses, quick.model.cache.hits) == (4, 5)
    np.testing.assert_allclose(d.depth, c.depth, rtol=1e-4)
    assert track.tracks_uv.shape == (3, 1, 2)
    np.testing.assert_allclose(track.tracks_uv[0], [[10.0, 12.0]], atol=1e-3)
    with pytest.raises(ValueError, match="fast path"):
        VGGTPredictor(torch.nn.Linear(2, 2), device="cpu", fast=True)


def test_compile_model_setting_reaches_the_fast_path(reference):
    from vggt_ros.inference.predictor import VGGTPredictor

    default = VGGTPredictor(copy.deepcopy(reference), device="cpu", image_size=W, fast=True)
    eager = VGGTPredictor(copy.deepcopy(reference), device="cpu", image_size=W, fast=True,
                          compile_model=False)
    assert (default.model.options.compile_blocks, default.model.options.compile_heads) == (
        None, None)  # None: compiled on CUDA, eager on the CPU
    assert (eager.model.options.compile_blocks, eager.model.options.compile_heads) == (
        False, False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_replays_give_the_eager_results():
    # The benchmark's tiny config, not the fixtures: this runs on the GPU machine, which has
    # no copy of ../shared.
    device = torch.device("cuda")
    model = random_model(build_config("tiny"), 0, device)
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(1, S, 3, H, W, generator=gen).to(device)
    queries = (torch.rand(1, N, 2, generator=gen) * torch.tensor([W - 1.0, H - 1.0])).to(device)
    plain = dict(compile_blocks=False, compile_heads=False, dtype=torch.float32)
    eager = FastVGGT(copy.deepcopy(model),
                     FastOptions(cuda_graph_camera=False, cuda_graph_tracker=False, **plain))
    graphed = FastVGGT(copy.deepcopy(model), FastOptions(**plain))
    with torch.inference_mode():
        want = eager(images, queries, heads=("camera", "track"))
        for _ in range(2):  # the first call captures, the second replays
            got = graphed(images, queries, heads=("camera", "track"))
    for key in ("pose_enc", "track", "vis", "conf"):
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_blocks_with_head_dim_32_give_the_eager_tokens():
    # The demo model's shape (4 heads of 32): torch 2.11's inductor once compiled the RoPE swap
    # of its per-frame blocks into NaN and 20 % wrong tokens (docs/PERFORMANCE.md).
    import dataclasses

    from vggt_ros.model.embedded import embedded_config

    device = torch.device("cuda")
    config = dataclasses.replace(embedded_config())
    images = torch.rand(1, 4, 3, 392, 518, generator=torch.Generator().manual_seed(0)).to(device)
    tokens = {}
    for name, options in (("eager", FastOptions(compile_blocks=False, compile_heads=False)),
                          ("compiled", FastOptions(compile_blocks=True))):
        fast = FastVGGT(random_model(config, 0, device), options)
        grid = fast.model.aggregator.patch_embed.patch_grid(392, 518)
        with torch.inference_mode(), fast.attention_context():
            layers = fast.aggregate(fast.patch_tokens(images, None), *grid)
        tokens[name] = torch.cat([t.flatten() for t in layers if t is not None])
    assert torch.isfinite(tokens["compiled"]).all()
    error = (tokens["compiled"] - tokens["eager"]).abs().max() / tokens["eager"].abs().max()
    assert error < 1e-2
