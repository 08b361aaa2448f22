"""Block-sparse global attention (vggt_ros.model.sparse_attention), the fast path's opt-in
approximation for long windows, on CPU.

Keeping every block must give exact attention; dropping blocks must change the result but stay
close where attention is concentrated; the blocks the method promises to keep are always kept;
and the FlexAttention formulation computes the same function as the dense one.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from vggt_ros.bench.models import random_inputs
from vggt_ros.model.fast import FastOptions, FastVGGT
from vggt_ros.model.sparse_attention import (BlockSparseAttention, SparseGlobalAttention,
                                             forced_blocks, kept_mask, select_blocks,
                                             special_first_order)

# Eager FlexAttention (the reference of its semantics) warns that it is not the fused kernel.
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

FRAMES, SPECIAL, PATCHES = 6, 5, 35  # 40 tokens per frame: 240 in all, 15 blocks of 16


def sparse(**kw) -> SparseGlobalAttention:
    return SparseGlobalAttention(**{"block_size": 16, "min_frames": 1, **kw})


def random_qkv(seed: int = 0, heads: int = 2, dim: int = 16):
    gen = torch.Generator().manual_seed(seed)
    n = FRAMES * (SPECIAL + PATCHES)
    return [torch.randn(1, heads, n, dim, generator=gen) for _ in range(3)]


def smooth_qkv(heads: int = 2, dim: int = 16, sharpness: float = 6.0):
    """Tokens of a smooth scene seen from slowly moving cameras: each patch's feature is a
    low-frequency function of its scene position (frame f sees positions shifted by f), so a
    query matches the nearby positions of every frame and attention is concentrated."""
    ys, xs = torch.meshgrid(torch.arange(5.0), torch.arange(7.0), indexing="ij")
    feats = []
    for f in range(FRAMES):
        pos = torch.stack((ys.flatten(), xs.flatten() + 0.5 * f), -1) / 7.0  # [35, 2]
        freqs = torch.arange(1, dim // 4 + 1) * math.pi / 2
        angles = pos[:, :, None] * freqs  # [35, 2, dim/4]
        patch = torch.cat((angles.sin(), angles.cos()), -1).flatten(1)  # [35, dim]
        special = torch.full((SPECIAL, dim), 0.1)
        feats.append(torch.cat((special, patch)))
    x = torch.cat(feats)[None, None].expand(1, heads, -1, -1)
    q = k = x * sharpness
    v = torch.cat((x[..., 1:], x[..., :1]), -1)  # any smooth values
    return q.contiguous(), k.contiguous(), v.contiguous()


def exact(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize("kernel", ["dense", "flex"])
def test_keeping_every_block_gives_exact_attention(kernel):
    q, k, v = random_qkv()
    attend = BlockSparseAttention(sparse(mass=1.0, kernel=kernel), FRAMES, SPECIAL)
    torch.testing.assert_close(attend(q, k, v), exact(q, k, v), rtol=1e-5, atol=1e-6)


def test_flex_and_dense_kernels_compute_the_same_sparse_attention():
    q, k, v = random_qkv(seed=3)
    options = dict(mass=0.5, max_ratio=0.4)
    dense = BlockSparseAttention(sparse(kernel="dense", **options), FRAMES, SPECIAL)(q, k, v)
    flex = BlockSparseAttention(sparse(kernel="flex", **options), FRAMES, SPECIAL)(q, k, v)
    torch.testing.assert_close(flex, dense, rtol=1e-5, atol=1e-6)
    assert (dense - exact(q, k, v)).abs().max() > 1e-3  # blocks were really dropped


def test_sparse_attention_differs_but_stays_close_on_a_smooth_input():
    q, k, v = smooth_qkv()
    attend = BlockSparseAttention(sparse(mass=0.9, max_ratio=0.5), FRAMES, SPECIAL)
    attend.record = []
    out, ref = attend(q, k, v), exact(q, k, v)
    kept = attend.record[0]
    error = (out - ref).norm() / ref.norm()
    assert kept < 0.8, kept  # the mass criterion dropped blocks
    assert 0 < error < 0.05, (kept, error)
    # On the same input, keeping less costs more.
    few = BlockSparseAttention(sparse(mass=0.5, max_ratio=0.2), FRAMES, SPECIAL)
    assert ((few(q, k, v) - ref).norm() / ref.norm()) > error


def test_selection_always_keeps_the_diagonal_special_and_first_frame_blocks():
    q, k, _ = random_qkv(seed=1)
    n, bs = q.shape[2], 16
    order = special_first_order(FRAMES, SPECIAL + PATCHES, SPECIAL, q.device)
    special_tokens = FRAMES * SPECIAL
    forced = forced_blocks(n, bs, special_tokens, special_tokens + PATCHES, q.device)
    counts, indices = select_blocks(q[:, :, order], k[:, :, order],
                                    sparse(mass=1e-6, max_ratio=0.01), forced)
    keep = kept_mask(counts, indices)
    nb = forced.shape[0]
    assert keep[..., torch.arange(nb), torch.arange(nb)].all()  # the diagonal
    assert keep[..., : -(-(special_tokens + PATCHES) // bs)].all()  # special + first frame keys
    assert keep[..., : -(-special_tokens // bs), :].all()  # special-token queries see all
    assert (keep == forced).all()  # and with these settings nothing else
    assert not forced.all()


def test_kept_blocks_are_listed_first_and_in_ascending_order():
    q, k, _ = random_qkv(seed=4)
    attend = BlockSparseAttention(sparse(mass=0.6, max_ratio=0.5), FRAMES, SPECIAL)
    order, _, forced = attend._layout(q.shape[2], q.device)
    counts, indices = select_blocks(q[:, :, order], k[:, :, order], attend.options, forced)
    nb = forced.shape[0]
    assert (indices.sort(-1).values == torch.arange(nb, dtype=torch.int32)).all()  # permutations
    for row, count in zip(indices.reshape(-1, nb), counts.flatten().tolist()):
        kept = row[:count]
        assert (kept[1:] > kept[:-1]).all()
    assert counts.min() < nb  # something was dropped


def test_special_tokens_come_first_and_patches_stay_frame_major():
    order = special_first_order(3, 4, 2, torch.device("cpu"))
    assert order.tolist() == [0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]


def test_max_ratio_caps_the_kept_blocks_beyond_the_forced_ones():
    q, k, v = random_qkv(seed=2)
    for ratio in (0.25, 0.5):
        attend = BlockSparseAttention(sparse(mass=1.0, max_ratio=ratio,
                                             keep_first_frame=False), FRAMES, SPECIAL)
        order, _, forced = attend._layout(q.shape[2], q.device)
        counts, _ = select_blocks(q[:, :, order], k[:, :, order], attend.options, forced)
        cap = math.ceil(ratio * forced.shape[-1])
        assert (counts.long() == torch.clamp(forced.sum(-1), min=cap)).all()


@pytest.fixture(scope="module")
def tiny_run(random_small_vggt):
    """A window of 8 frames at 84x112 (53 tokens per frame) and its exact fp32 fast path."""
    images, _ = random_inputs(8, 84, 112, 0, torch.device("cpu"), seed=5)
    with torch.inference_mode():
        out = FastVGGT(copy.deepcopy(random_small_vggt))(images)
    return images, out


def run_sparse(model, images, **options):
    fast = FastVGGT(copy.deepcopy(model), FastOptions(sparse_global=sparse(**options)))
    with torch.inference_mode():  # the attention object of inference-mode calls
        attend = fast.sparse_attention(images.shape[1], 6, 8)
        if attend is not None:
            attend.record = []
        return fast(images), (attend.record if attend is not None else None)


def test_fast_path_keeping_every_block_matches_exact_attention(random_small_vggt, tiny_run):
    images, ref = tiny_run
    out, record = run_sparse(random_small_vggt, images, mass=1.0)
    assert record and all(kept == 1.0 for kept in record)
    for key in ("pose_enc", "depth", "depth_conf"):
        torch.testing.assert_close(out[key], ref[key], rtol=1e-4, atol=1e-5)


def test_fast_path_with_sparse_global_attention_stays_close(random_small_vggt, tiny_run):
    images, ref = tiny_run
    out, record = run_sparse(random_small_vggt, images, mass=0.5, max_ratio=0.3)
    assert len(record) == random_small_vggt.config.depth  # every global block, no other
    assert max(record) < 0.9
    pose_err = (out["pose_enc"] - ref["pose_enc"]).abs().max().item()
    depth_rel = ((out["depth"] - ref["depth"]).abs() / ref["depth"].abs()).median().item()
    assert pose_err > 0 or depth_rel > 0  # an approximation, not the same function
    assert pose_err < 1e-2 and depth_rel < 1e-3, (pose_err, depth_rel)


def test_short_windows_and_the_default_stay_exact(random_small_vggt, tiny_run):
    images, ref = tiny_run
    assert FastOptions().sparse_global is None
    out, record = run_sparse(random_small_vggt, images, min_frames=9)
    assert record is None
    assert torch.equal(out["pose_enc"], ref["pose_enc"]) and torch.equal(out["depth"], ref["depth"])


@pytest.mark.slow
def test_compiled_global_blocks_trace_the_sparse_attention(random_small_vggt, tiny_run):
    """The approximation traced by torch.compile (aot_eager: the graphs dynamo and AOT autograd
    build, without generating kernels) computes what the eager blocks do."""
    images, _ = tiny_run
    options = sparse(mass=0.5, max_ratio=0.3, kernel="flex")
    eager = FastVGGT(copy.deepcopy(random_small_vggt), FastOptions(sparse_global=options))
    traced = FastVGGT(copy.deepcopy(random_small_vggt),
                      FastOptions(sparse_global=options, compile_blocks=True,
                                  compile_backend="aot_eager"))
    with torch.inference_mode():
        want, got = eager(images), traced(images)
    assert traced.compile_stats()["compiled_shapes"] >= 2  # the exact and the sparse blocks
    torch.testing.assert_close(got["pose_enc"], want["pose_enc"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["depth"], want["depth"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("options, match", [
    (dict(block_size=100), "block_size"),
    (dict(block_size=0), "block_size"),
    (dict(mass=0.0), "mass"),
    (dict(mass=1.5), "mass"),
    (dict(max_ratio=0.0), "max_ratio"),
    (dict(max_ratio=2.0), "max_ratio"),
    (dict(min_frames=0), "min_frames"),
    (dict(kernel="triton"), "kernel"),
])
def test_bad_sparse_options_are_rejected(options, match):
    with pytest.raises(ValueError, match=match):
        SparseGlobalAttention(**options)


def test_fast_options_reject_a_sparse_setting_of_the_wrong_type():
    with pytest.raises(ValueError, match="sparse_global"):
        FastOptions(sparse_global={"mass": 0.9})


def test_settings_text_parses_and_rejects_unknown_names():
    parsed = SparseGlobalAttention.parse("mass=0.8, max_ratio=0.25,block_size=64")
    assert (parsed.mass, parsed.max_ratio, parsed.block_size) == (0.8, 0.25, 64)
    assert SparseGlobalAttention.parse(parsed.describe()) == parsed
    with pytest.raises(ValueError, match="NAME=VALUE"):
        SparseGlobalAttention.parse("density=0.3")
    with pytest.raises(ValueError, match="mass"):
        SparseGlobalAttention.parse("mass=high")


def test_sparse_global_attention_setting_reaches_the_fast_path(random_small_vggt):
    from vggt_ros.inference.builder import build_predictor
    from vggt_ros.inference.predictor import VGGTPredictor
    from vggt_ros.settings import SETTINGS

    setting = next(s for s in SETTINGS if s.name == "sparse_global_attention")
    assert setting.default == 0.0 and setting.group == "predictor"  # off unless asked for
    assert setting.check(1.5) and setting.check(-0.1) and setting.check(0.25) is None
    predictor = VGGTPredictor(copy.deepcopy(random_small_vggt), device="cpu", fast=True,
                              sparse_global=SparseGlobalAttention(max_ratio=0.25))
    assert predictor.model.options.sparse_global == SparseGlobalAttention(max_ratio=0.25)
    warnings = []
    exact = build_predictor(checkpoint="", device="cpu", precision="auto",
                            preprocess_mode="crop", image_size=0, sparse_global_attention=0.25,
                            warn=warnings.append)
    assert not exact.fast and any("stays exact" in w for w in warnings)  # said, not silent


def test_tracker_precision_setting_reaches_the_fast_path_and_is_said_where_it_cannot(
        random_small_vggt):
    from vggt_ros.inference.builder import build_predictor
    from vggt_ros.inference.predictor import VGGTPredictor
    from vggt_ros.model.fast import TRACKER_PRECISIONS
    from vggt_ros.settings import SETTINGS

    setting = next(s for s in SETTINGS if s.name == "tracker_precision")
    assert setting.default == "fp32" and setting.group == "predictor"  # official unless asked
    assert tuple(setting.choices) == TRACKER_PRECISIONS
    assert setting.check("fp16") and setting.check("tf32") is None
    predictor = VGGTPredictor(copy.deepcopy(random_small_vggt), device="cpu", fast=True,
                              tracker_precision="tf32")
    assert predictor.model.options.tracker_precision == "tf32"
    assert predictor.describe()["tracker_precision"] == "tf32"  # diagnostics and summary
    warnings = []
    reference = build_predictor(checkpoint="", device="cpu", precision="auto",
                                preprocess_mode="crop", image_size=0, tracker_precision="bf16",
                                warn=warnings.append)
    assert not reference.fast and any("tracker_precision bf16" in w for w in warnings)
    quiet = []
    build_predictor(checkpoint="", device="cpu", precision="auto", preprocess_mode="crop",
                    image_size=0, warn=quiet.append)
    assert not any("tracker_precision" in w for w in quiet)  # the default says nothing
