"""The model's state_dict must match the official checkpoint key list exactly (names, shapes,
order), so that strict loading of the released file works. Built on the meta device: no memory."""
import json
from pathlib import Path

import pytest
import torch

from vggt_ros.model import VGGT, VGGTConfig

HEAD_PREFIXES = {"camera": "camera_head.", "depth": "depth_head.", "point": "point_head.",
                 "track": "track_head."}


def _read_tsv(path: Path) -> list[tuple[str, list[int]]]:
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["key", "shape", "dtype"]
    return [(key, json.loads(shape)) for key, shape, _ in (ln.split("\t") for ln in lines[1:])]


def _model_keys(config: VGGTConfig) -> list[tuple[str, list[int]]]:
    with torch.device("meta"):
        model = VGGT(config)
    return [(k, list(v.shape)) for k, v in model.state_dict().items()]


@pytest.fixture(scope="module")
def official_keys(fixtures_dir: Path) -> list[tuple[str, list[int]]]:
    return _read_tsv(fixtures_dir.parent / "checkpoint_keys.tsv")


@pytest.fixture(scope="module")
def small_config(fixtures_dir: Path) -> VGGTConfig:
    return VGGTConfig.from_dict(json.loads((fixtures_dir / "small_config.json").read_text()))


def test_vggt_1b_keys_shapes_and_order(official_keys):
    keys = _model_keys(VGGTConfig())
    assert len(official_keys) == 1797
    assert keys == official_keys
    assert sum(torch.Size(shape).numel() for _, shape in keys) == 1_256_537_516


def test_small_config_reproduces_fixture_keys(fixtures_dir, small_config):
    assert _model_keys(small_config) == _read_tsv(fixtures_dir / "small_checkpoint_keys.tsv")


@pytest.mark.parametrize("head", sorted(HEAD_PREFIXES))
def test_disabling_a_head_removes_exactly_its_keys(official_keys, head):
    keys = _model_keys(VGGTConfig(**{f"enable_{head}": False}))
    assert keys == [kv for kv in official_keys if not kv[0].startswith(HEAD_PREFIXES[head])]


def test_normalisation_constants_are_not_checkpoint_keys():
    model = VGGT(VGGTConfig(embed_dim=64, depth=1, num_heads=4, dino_depth=1, dino_heads=4,
                            img_size=28, dpt_layers=[0, 0, 0, 0], enable_camera=False,
                            enable_depth=False, enable_point=False, enable_track=False))
    buffers = dict(model.named_buffers())
    assert set(buffers) == {"aggregator._resnet_mean", "aggregator._resnet_std"}
    assert not set(buffers) & set(model.state_dict())
    assert buffers["aggregator._resnet_mean"].flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    assert buffers["aggregator._resnet_std"].flatten().tolist() == pytest.approx([0.229, 0.224, 0.225])
