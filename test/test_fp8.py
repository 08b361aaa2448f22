"""FP8 block GEMMs (vggt_ros.model.fp8), checked on the CPU's FP8 GEMM.

The switch is opt-in because it changes the numbers: these tests pin what it must still be
(close to the bf16/fp32 product, only inside the blocks, never touching the checkpoint).
"""
import copy

import pytest
import torch
from torch import nn

from vggt_ros.bench.models import random_inputs
from vggt_ros.model.fast import FastOptions, FastVGGT
from vggt_ros.model.fp8 import E4M3_MAX, Fp8Linear, convert_block_linears, quantize_rows
from vggt_ros.model.layers import Block


def test_row_quantisation_keeps_three_mantissa_bits_per_row():
    x = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))
    x[3] *= 1000.0  # a loud row must not flatten the others: scales are per row
    q, scale = quantize_rows(x)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (64, 1)
    back = q.float() * scale
    assert back.abs().amax(dim=1).sub(x.abs().amax(dim=1)).abs().max() <= 1e-3 * x.abs().max()
    rel = (back - x).abs() / x.abs().amax(dim=1, keepdim=True)
    assert rel.max() <= 2.0 ** -4  # half an e4m3 ulp at the top of the range, relative to amax
    assert q.float().abs().max() <= E4M3_MAX


def test_fp8_linear_matches_the_linear_it_replaces_within_fp8_rounding():
    torch.manual_seed(0)
    linear = nn.Linear(64, 256)
    x = torch.randn(2, 10, 64)
    fp8 = Fp8Linear.from_linear(linear, torch.float32)
    y_ref, y = linear(x), fp8(x)
    assert y.shape == y_ref.shape == (2, 10, 256)
    assert (y - y_ref).norm() / y_ref.norm() < 0.05
    assert not torch.equal(y, y_ref)  # really computed in FP8


def test_fp8_linear_refuses_dimensions_the_gemm_cannot_take():
    with pytest.raises(ValueError, match="divisible by 16"):
        Fp8Linear.from_linear(nn.Linear(60, 64), torch.float32)


def test_conversion_replaces_only_the_block_linears_and_keeps_checkpoint_keys(
        random_small_vggt):
    model = copy.deepcopy(random_small_vggt)
    keys_before = set(model.state_dict())
    blocks = [m for m in model.aggregator.modules() if isinstance(m, Block)]
    replaced = convert_block_linears(model.aggregator, Block, torch.float32)
    assert replaced == 4 * len(blocks)  # qkv, proj, fc1, fc2 per block
    assert all(isinstance(b.attn.qkv, Fp8Linear) and isinstance(b.mlp.fc2, Fp8Linear)
               for b in blocks)
    assert isinstance(model.camera_head.trunk[0].attn.qkv, nn.Linear)  # heads untouched
    # The FP8 buffers are not persistent: the state dict loses the replaced weights but gains
    # nothing, so the reference model's keys are never confused with the converted ones.
    assert set(model.state_dict()) < keys_before
    assert set(random_small_vggt.state_dict()) == keys_before


def test_fast_path_with_fp8_blocks_stays_close_to_the_exact_fast_path(random_small_vggt):
    images, _ = random_inputs(3, 42, 70, 0, torch.device("cpu"), seed=1)
    exact = FastVGGT(copy.deepcopy(random_small_vggt))
    fp8 = FastVGGT(copy.deepcopy(random_small_vggt), FastOptions(fp8_blocks=True))
    with torch.inference_mode():
        ref, out = exact(images), fp8(images)
    depth_rel = ((out["depth"] - ref["depth"]).abs() / ref["depth"].abs()).median()
    assert 0 < depth_rel < 0.05
    assert 0 < (out["pose_enc"] - ref["pose_enc"]).abs().max() < 0.2
