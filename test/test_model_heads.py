"""Parity of the camera / depth / point / track heads with the upstream reference.

Each head is loaded alone (strict) from the fixture weights and fed the reference aggregator
tokens (``dbg.aggregated_tokens.*``), so a mismatch here points at the head, not the trunk.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from vggt_ros.model.camera_head import CameraHead
from vggt_ros.model.config import VGGTConfig
from vggt_ros.model.dpt_head import DPTHead
from vggt_ros.model.track_head import TrackHead

PATCH_START_IDX = 5
TOL = 1e-5
RTOL = 1e-4
TRACK_TOL = 1e-3  # pixels: see test_model_parity.TRACK_ATOL
CASES = ("a", "b", "c")


def build_heads(config: VGGTConfig) -> dict[str, torch.nn.Module]:
    """Heads keyed by their state_dict prefix in the full model."""
    return {
        "camera_head": CameraHead(config),
        "depth_head": DPTHead(config, output_dim=2, activation="exp", conf_activation="expp1"),
        "point_head": DPTHead(config, output_dim=4, activation="inv_log", conf_activation="expp1"),
        "track_head": TrackHead(config),
    }


def read_key_table(path) -> list[tuple[str, list[int]]]:
    rows = path.read_text().splitlines()[1:]
    return [(key, json.loads(shape)) for key, shape, _ in (row.split("\t") for row in rows if row)]


def head_shapes(module: torch.nn.Module, prefix: str) -> list[tuple[str, list[int]]]:
    """(key, shape) in state_dict order (the checkpoint's order matters to the full model)."""
    return [(f"{prefix}.{k}", list(v.shape)) for k, v in module.state_dict().items()]


def expected_shapes(table: list[tuple[str, list[int]]], prefix: str) -> list[tuple[str, list[int]]]:
    return [(k, v) for k, v in table if k.startswith(prefix + ".")]


@pytest.fixture(scope="module")
def small_config(fixtures_dir) -> VGGTConfig:
    return VGGTConfig.from_dict(json.loads((fixtures_dir / "small_config.json").read_text()))


@pytest.fixture(scope="module")
def heads(fixtures_dir, small_config) -> dict[str, torch.nn.Module]:
    state = load_file(str(fixtures_dir / "small_model.safetensors"))
    built = build_heads(small_config)
    for prefix, head in built.items():
        sub = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
        head.load_state_dict(sub, strict=True)
        head.eval()
    return built


@pytest.fixture(scope="module")
def io(fixtures_dir) -> dict[str, torch.Tensor]:
    return load_file(str(fixtures_dir / "small_io.safetensors"))


def case_inputs(io, case: str):
    tokens = [io[f"{case}.dbg.aggregated_tokens.{i}"] for i in range(4)]
    images = io[f"{case}.in.images"][None]
    queries = io[f"{case}.in.query_points"][None]
    return tokens, images, queries


def excess(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """How far ``actual`` lies outside the fixtures' suggested band around ``expected``
    (shared/vggt_spec/fixtures/README.md: atol 1e-5 / rtol 1e-4 across torch builds and CPUs):
    max(|actual - expected| - RTOL * |expected|), compared against TOL."""
    assert actual.shape == expected.shape, (tuple(actual.shape), tuple(expected.shape))
    return ((actual - expected).abs() - RTOL * expected.abs()).max().item()


@pytest.mark.parametrize("case", CASES)
def test_camera_head_matches_reference(heads, io, case):
    tokens, _, _ = case_inputs(io, case)
    with torch.no_grad():
        poses = heads["camera_head"](tokens)
    assert len(poses) == 4
    assert excess(torch.stack(poses), io[f"{case}.out.pose_enc_list"]) <= TOL


@pytest.mark.parametrize("case", CASES)
def test_depth_head_matches_reference(heads, io, case):
    tokens, images, _ = case_inputs(io, case)
    with torch.no_grad():
        depth, conf = heads["depth_head"](tokens, images, PATCH_START_IDX)
    assert excess(depth.log(), io[f"{case}.out.depth"].log()) <= TOL
    assert excess(conf.log(), io[f"{case}.out.depth_conf"].log()) <= TOL


@pytest.mark.parametrize("case", CASES)
def test_point_head_matches_reference(heads, io, case):
    tokens, images, _ = case_inputs(io, case)
    with torch.no_grad():
        points, conf = heads["point_head"](tokens, images, PATCH_START_IDX)
    assert excess(points, io[f"{case}.out.world_points"]) <= TOL
    assert excess(conf.log(), io[f"{case}.out.world_points_conf"].log()) <= TOL


@pytest.mark.parametrize("case", CASES)
def test_track_head_matches_reference(heads, io, case):
    tokens, images, queries = case_inputs(io, case)
    with torch.no_grad():
        tracks, vis, conf = heads["track_head"](tokens, images, PATCH_START_IDX, queries)
    assert excess(tracks, io[f"{case}.out.track"]) <= TRACK_TOL
    assert excess(vis, io[f"{case}.out.vis"]) <= TOL
    assert excess(conf, io[f"{case}.out.conf"]) <= TOL
    # Frame 0 is the query frame: its track is the query itself.
    assert torch.equal(tracks[:, 0], queries)


def test_dpt_frame_chunking_does_not_change_results(heads, io):
    # Equal up to BLAS blocking (conv batch size changes), not necessarily bit for bit.
    tokens, images, _ = case_inputs(io, "a")  # 3 frames -> chunks of 2 + 1
    with torch.no_grad():
        whole = heads["depth_head"](tokens, images, PATCH_START_IDX, frames_chunk_size=None)
        chunked = heads["depth_head"](tokens, images, PATCH_START_IDX, frames_chunk_size=2)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_small_head_keys_match_fixture_checkpoint(fixtures_dir, small_config):
    table = read_key_table(fixtures_dir / "small_checkpoint_keys.tsv")
    for prefix, head in build_heads(small_config).items():
        assert head_shapes(head, prefix) == expected_shapes(table, prefix), prefix


def test_default_head_keys_match_official_checkpoint(fixtures_dir):
    table = read_key_table(fixtures_dir.parent / "checkpoint_keys.tsv")
    with torch.device("meta"):
        built = build_heads(VGGTConfig())
    for prefix, head in built.items():
        assert head_shapes(head, prefix) == expected_shapes(table, prefix), prefix


def test_bad_inputs_raise_clear_errors(heads, io):
    tokens, images, queries = case_inputs(io, "b")
    with pytest.raises(ValueError, match="layer 2"):
        heads["depth_head"]([tokens[0], tokens[1], None, tokens[3]], images, PATCH_START_IDX)
    with pytest.raises(ValueError, match="multiple of patch"):
        heads["depth_head"](tokens, images[..., :69], PATCH_START_IDX)
    with pytest.raises(ValueError, match=r"\[B,S,3,H,W\]"):
        heads["depth_head"](tokens, images[0], PATCH_START_IDX)
    with pytest.raises(ValueError, match=r"query_points must be \[B,N,2\]"):
        heads["track_head"](tokens, images, PATCH_START_IDX, queries[0])
    with pytest.raises(ValueError, match="last aggregator layer"):
        heads["camera_head"](tokens[:3] + [None])
    with pytest.raises(ValueError, match="num_iterations"):
        heads["camera_head"](tokens, num_iterations=0)
    with pytest.raises(ValueError, match="unknown DPT activation"):
        DPTHead(VGGTConfig(), activation="softplus")
