"""load_vggt: strict, safe loading with one clear CheckpointError per failure mode."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vggt_ros.model import CheckpointError, VGGTConfig, load_vggt

UNPICKLED: list[str] = []


def _mark_unpickled() -> "Payload":
    UNPICKLED.append("executed")
    return Payload()


class Payload:
    """A custom object in a pickle: weights_only loading must refuse it without running it."""

    def __reduce__(self):
        return (_mark_unpickled, ())


@pytest.fixture(scope="module")
def small_file(fixtures_dir: Path) -> Path:
    return fixtures_dir / "small_model.safetensors"


@pytest.fixture(scope="module")
def small_state(small_file: Path) -> dict[str, torch.Tensor]:
    return load_file(small_file)


@pytest.fixture(scope="module")
def small_config(fixtures_dir: Path) -> VGGTConfig:
    return VGGTConfig.from_dict(json.loads((fixtures_dir / "small_config.json").read_text()))


def _assert_same_weights(model, state):
    model_state = model.state_dict()
    assert set(model_state) == set(state)
    assert all(torch.equal(model_state[k], state[k]) for k in state)


def test_safetensors_load_uses_metadata_config(small_file, small_state, small_config):
    model = load_vggt(small_file)
    assert model.config == small_config
    _assert_same_weights(model, small_state)
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert model.aggregator._resnet_mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


@pytest.mark.parametrize("nesting", [None, "model", "state_dict"])
def test_pt_roundtrip_plain_and_nested(tmp_path, small_state, small_config, nesting):
    path = tmp_path / "model.pth"
    payload = small_state if nesting is None else {nesting: small_state, "epoch": 3}
    torch.save(payload, path)
    model = load_vggt(path, config=small_config)
    _assert_same_weights(model, small_state)


def test_dtype_cast_after_loading(small_file):
    model = load_vggt(small_file, dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model.aggregator._resnet_std.dtype == torch.float64


def test_disabled_head_keys_in_file_are_ignored(small_file, small_config):
    config = dataclasses.replace(small_config, enable_point=False, enable_track=False)
    model = load_vggt(small_file, config=config)
    assert model.point_head is None and model.track_head is None
    assert not any(k.startswith(("point_head.", "track_head.")) for k in model.state_dict())


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_vggt(tmp_path / "nope.safetensors")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unsupported checkpoint extension"):
        load_vggt(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_file(tmp_path, small_file, small_state, suffix):
    full = tmp_path / f"full{suffix}"
    if suffix == ".pt":
        torch.save(small_state, full)
    else:
        full.write_bytes(small_file.read_bytes())
    cut = tmp_path / f"cut{suffix}"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_vggt(cut)
    assert str(cut) in str(info.value)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello, I am text")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_vggt(path)


def test_pickle_with_custom_object_is_refused_unexecuted(tmp_path, small_state, small_config):
    path = tmp_path / "evil.pt"
    torch.save(dict(small_state, extra=Payload()), path)
    UNPICKLED.clear()
    with pytest.raises(CheckpointError, match="refused to load") as info:
        load_vggt(path, config=small_config)
    assert str(path) in str(info.value)
    assert UNPICKLED == []


def test_wrong_key_names_missing_and_unexpected(tmp_path, small_state, small_config):
    state = dict(small_state)
    state["aggregator.camera_tokens"] = state.pop("aggregator.camera_token")
    path = tmp_path / "renamed.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as info:
        load_vggt(path, config=small_config)
    message = str(info.value)
    assert "1 missing keys: aggregator.camera_token" in message
    assert "1 unexpected keys: aggregator.camera_tokens" in message
    assert str(path) in message


def test_wrong_shape_names_key_and_shapes(tmp_path, small_state, small_config):
    state = dict(small_state)
    state["depth_head.norm.weight"] = torch.zeros(7)
    path = tmp_path / "reshaped.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"depth_head\.norm\.weight \(file \[7\], model \[128\]\)"):
        load_vggt(path, config=small_config)


def test_default_config_does_not_fit_small_file(small_file):
    """Without metadata the VGGT-1B config is assumed; the small file must then be rejected."""
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_vggt(small_file, config=VGGTConfig())


def test_non_tensor_entry(tmp_path, small_state, small_config):
    path = tmp_path / "extra.pt"
    torch.save(dict(small_state, note="hello"), path)
    with pytest.raises(CheckpointError, match="not tensors: note"):
        load_vggt(path, config=small_config)
