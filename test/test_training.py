"""Training code: hand-computed losses, GT normalisation, data split, and that training learns."""
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vggt_ros.model import VGGT, VGGTConfig, load_vggt
from vggt_ros.synth import TRAJECTORIES
from vggt_ros.training import cli
from vggt_ros.training.correspondence import (matching_patch_targets, patch_flow,
                                              project_patch_centres_to_first_frame)
from vggt_ros.training.data import (HELD_OUT_SEED_MIN, DataConfig, SyntheticWindows,
                                    make_loader, track_ground_truth)
from vggt_ros.training.losses import (LossWeights, camera_loss, confidence_regression_loss,
                                      track_loss)
from vggt_ros.training.normalize import normalize_scene
from vggt_ros.training.checkpoints import load_checkpoint, save_checkpoint
from vggt_ros.training.config import TrainConfig, lr_at
from vggt_ros.training.model_setup import select_trainable
from vggt_ros.training.trainer import Trainer

TINY_DATA = dict(widths=(70,), min_height=56, max_height=70, min_frames=2, max_frames=3,
                 batch_size=2, clip_frames=6, pool_size=1, refresh_per_batch=0, num_tracks=8)


@pytest.fixture(scope="module")
def tiny_config(fixtures_dir: Path) -> VGGTConfig:
    return VGGTConfig.from_dict(json.loads((fixtures_dir / "small_config.json").read_text()))


@pytest.fixture(scope="module")
def tiny_batch() -> dict:
    return next(iter(SyntheticWindows(DataConfig(**TINY_DATA), seed=3)))


# ------------------------------------------------------------------ losses

def test_camera_loss_by_hand():
    gt = torch.zeros(1, 1, 9)
    off = torch.tensor([[[0.3, 0.3, 0.3, 0.05, 0.05, 0.05, 0.05, 0.2, 0.2]]])
    # smooth L1 (beta 0.1): 0.3 -> 0.25, 0.05 -> 0.5*0.05^2/0.1 = 0.0125, 0.2 -> 0.15;
    # parts weighted 1 (translation) + 1 (rotation) + 0.5 (fov)
    per_iteration = 0.25 + 0.0125 + 0.5 * 0.15
    weights = LossWeights()
    assert camera_loss([off, gt], gt, weights).item() == pytest.approx(0.6 * per_iteration)
    assert camera_loss([gt, off], gt, weights).item() == pytest.approx(per_iteration)
    with pytest.raises(ValueError, match="empty"):
        camera_loss([], gt)
    with pytest.raises(ValueError, match="shape"):
        camera_loss([torch.zeros(1, 2, 9)], gt)


def test_confidence_regression_loss_by_hand():
    pred = torch.tensor([1.0, 3.0]).view(1, 1, 1, 2, 1)
    gt = torch.full((1, 1, 1, 2, 1), 2.0)
    conf = torch.tensor([1.0, math.e]).view(1, 1, 1, 2)
    valid = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    # |diff| = 1, 1; log c = 0, 1; W-gradient of the difference = 2 with pair confidence (1+e)/2
    expected = (1 + math.e) / 2 - 0.2 * 0.5 + (1 + math.e) / 2 * 2
    assert confidence_regression_loss(pred, conf, gt, valid, alpha=0.2).item() == \
        pytest.approx(expected)
    without_gradient = confidence_regression_loss(pred, conf, gt, valid, 0.2, with_gradient=False)
    assert without_gradient.item() == pytest.approx((1 + math.e) / 2 - 0.1)
    # an invalid pixel contributes nothing, neither alone nor in a gradient pair
    valid[..., 1] = False
    assert confidence_regression_loss(pred, conf, gt, valid, 0.2).item() == pytest.approx(1.0)


def test_confidence_regression_loss_uses_point_norm_and_checks_shapes():
    pred = torch.tensor([[3.0, 4.0, 0.0]]).view(1, 1, 1, 1, 3)
    gt = torch.zeros_like(pred)
    conf = torch.ones(1, 1, 1, 1)
    valid = torch.ones(1, 1, 1, 1, dtype=torch.bool)
    assert confidence_regression_loss(pred, conf, gt, valid).item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="shape"):
        confidence_regression_loss(pred, conf, gt[..., :2], valid)
    with pytest.raises(ValueError, match="conf"):
        confidence_regression_loss(pred, conf[..., :0], gt, valid)


def test_track_loss_by_hand():
    gt = torch.zeros(1, 2, 1, 2)
    pred = torch.tensor([0.0, 0.0, 1.0, 2.0]).view(1, 2, 1, 2)
    vis_gt = torch.tensor([True, True]).view(1, 2, 1)
    half = torch.full((1, 2, 1), 0.5)
    # mean L1 over visible points: (0 + 3) / 2; BCE of 0.5 is ln 2
    assert track_loss(pred, half, gt, vis_gt).item() == pytest.approx(1.5 + math.log(2))
    vis_gt[0, 1, 0] = False  # the wrong position is not visible: only the BCE term remains
    assert track_loss(pred, half, gt, vis_gt).item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="visibility"):
        track_loss(pred, half[..., :0], gt, vis_gt)


# ------------------------------------------------------------------ normalisation

def _random_rigid(generator: torch.Generator, n: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.det(q))[:, None, None]
    pose = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    pose[:, :3, :3] = q
    pose[:, :3, 3] = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    return pose


def test_normalize_by_hand():
    # one identity camera, 1x2 image, fx=fy=1, principal point (0,0), depth 2:
    # points (0,0,2) and (2,0,2) -> mean distance 1 + sqrt(2)
    pose = torch.eye(4, dtype=torch.float64).view(1, 1, 4, 4)
    K = torch.eye(3, dtype=torch.float64).view(1, 1, 3, 3)
    K[..., 0, 2] = 0.0
    depth = torch.full((1, 1, 1, 2), 2.0, dtype=torch.float64)
    out = normalize_scene(pose, K, depth, torch.ones_like(depth, dtype=torch.bool))
    scale = 1 / (1 + math.sqrt(2))
    assert out.scale.item() == pytest.approx(scale)
    assert torch.allclose(out.depth, depth * scale)
    assert torch.allclose(out.world_points[0, 0, 0],
                          torch.tensor([[0.0, 0.0, 2.0], [2.0, 0.0, 2.0]], dtype=torch.float64)
                          * scale)
    assert torch.allclose(out.pose_enc[0, 0, :7].double(),
                          torch.tensor([0, 0, 0, 0, 0, 0, 1.0], dtype=torch.float64))


def test_normalize_is_invariant_to_world_frame_and_scale():
    g = torch.Generator().manual_seed(0)
    poses = _random_rigid(g, 3).view(1, 3, 4, 4)
    K = torch.tensor([[20.0, 0, 5], [0, 20.0, 4], [0, 0, 1]], dtype=torch.float64).expand(1, 3, 3, 3)
    depth = 1 + torch.rand(1, 3, 8, 10, generator=g, dtype=torch.float64)
    valid = torch.rand(1, 3, 8, 10, generator=g) > 0.2
    ref = normalize_scene(poses, K, depth, valid)
    assert torch.allclose(ref.cam_from_world[0, 0], torch.eye(4, dtype=torch.float64), atol=1e-12)
    mean_distance = ref.world_points.norm(dim=-1)[ref.valid].mean()
    assert mean_distance.item() == pytest.approx(1.0)
    assert (ref.world_points[~ref.valid] == 0).all()

    moved = poses @ torch.linalg.inv(_random_rigid(g, 1))  # another world frame
    scaled = moved.clone()
    scaled[..., :3, 3] *= 3.0  # and a 3x larger world
    other = normalize_scene(scaled, K, depth * 3.0, valid)
    for name in ("cam_from_world", "depth", "world_points", "pose_enc"):
        assert torch.allclose(getattr(ref, name), getattr(other, name), atol=1e-6), name
    assert other.scale.item() == pytest.approx(ref.scale.item() / 3.0)
    # points of frame 2 land where frame 0's camera model says they are
    cam2 = ref.cam_from_world[0, 2] @ torch.cat(
        [ref.world_points[0, 2], torch.ones(8, 10, 1, dtype=torch.float64)], -1)[..., None]
    assert torch.allclose(cam2[..., 2, 0][valid[0, 2]], ref.depth[0, 2][valid[0, 2]])


def test_normalize_rejects_bad_input():
    pose = torch.eye(4).view(1, 1, 4, 4)
    K = torch.eye(3).view(1, 1, 3, 3)
    depth = torch.ones(1, 1, 2, 2)
    with pytest.raises(ValueError, match="no valid depth"):
        normalize_scene(pose, K, depth, torch.zeros(1, 1, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="intrinsics"):
        normalize_scene(pose, K[..., :2], depth, depth > 0)
    with pytest.raises(ValueError, match="bool mask"):
        normalize_scene(pose, K, depth, depth)


# ------------------------------------------------------------------ data

def test_held_out_seeds_are_never_trained_on():
    overlapping = DataConfig(**{**TINY_DATA, "seed_range": (0, HELD_OUT_SEED_MIN + 1)})
    with pytest.raises(ValueError, match="held-out"):
        make_loader(overlapping, seed=0, num_workers=0)
    with pytest.raises(ValueError, match="multiples of 14"):
        DataConfig(widths=(100,))


def test_batch_contents(tiny_batch):
    images = tiny_batch["images"]
    b, s, _, h, w = images.shape
    assert images.dtype == torch.uint8 and b == 2 and 2 <= s <= 3 and w == 70 and h in (56, 70)
    assert ((tiny_batch["seeds"] >= 0) & (tiny_batch["seeds"] < HELD_OUT_SEED_MIN)).all()
    assert tiny_batch["valid"].all()  # closed rooms: every pixel hits geometry
    K = tiny_batch["intrinsics"]
    assert torch.allclose(K[..., 0, 2], torch.full_like(K[..., 0, 2], w / 2))
    assert torch.allclose(K[..., 1, 2], torch.full_like(K[..., 1, 2], h / 2))
    assert torch.equal(tiny_batch["tracks"][:, 0], tiny_batch["query_points"])


def test_track_ground_truth_reprojects_and_detects_leaving_the_image():
    K = np.array([[10.0, 0, 5], [0, 10.0, 5], [0, 0, 1]])
    depth = torch.full((2, 10, 10), 4.0)
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[1, 0, 3] = -1.0  # camera 1 sits 1 m to the right: x_pix shifts by -10*1/4 = -2.5
    queries = np.array([[5, 5], [1, 3]])
    tracks, visible = track_ground_truth(depth, poses, K, queries)
    assert tracks.dtype == torch.float32 and visible.dtype == torch.bool
    assert torch.allclose(tracks[1, 0], torch.tensor([2.5, 5.0]))
    assert visible[1, 0] and not visible[1, 1]  # x = 1 - 2.5 < 0 leaves the image
    depth[1] = 2.0  # something now stands in front of every point in frame 1
    assert not track_ground_truth(depth, poses, K, queries)[1][1].any()


def test_batched_track_ground_truth_equals_one_window_at_a_time():
    from vggt_ros.synth import make_sequence

    windows = []
    for seed, trajectory in ((4, "loop"), (5, "orbit")):
        seq = make_sequence(6, 48, 36, seed=seed, trajectory=trajectory)
        depth = torch.stack([torch.from_numpy(seq.render(i)[1]) for i in (0, 2, 5)])
        windows.append((depth, seq.cam_from_world[[0, 2, 5]], seq.K))
    queries = np.random.default_rng(0).integers(0, 36, (2, 20, 2))
    tracks, visible = track_ground_truth(torch.stack([w[0] for w in windows]),
                                         np.stack([w[1] for w in windows]),
                                         np.stack([w[2] for w in windows]), queries)
    assert tracks.shape == (2, 3, 20, 2) and visible.shape == (2, 3, 20)
    for k, (depth, poses, K) in enumerate(windows):
        one_tracks, one_visible = track_ground_truth(depth, poses, K, queries[k])
        assert torch.equal(tracks[k], one_tracks) and torch.equal(visible[k], one_visible)
    assert visible[:, 1:].any() and not visible[:, 1:].all()  # a real mix of both cases


# ------------------------------------------------------------------ trainer

def test_lr_schedule():
    config = TrainConfig(steps=110, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(0.1)
    assert lr_at(9, config) == pytest.approx(1.0)
    assert lr_at(60, config) == pytest.approx(0.55)
    assert lr_at(110, config) == pytest.approx(0.1)


@pytest.mark.slow
def test_training_steps_reduce_the_loss(tiny_config, tiny_batch):
    torch.manual_seed(0)
    model = VGGT(tiny_config).train()
    trainer = Trainer(model, TrainConfig(steps=40, lr=1e-3, warmup_steps=1, min_lr_ratio=1.0,
                                         gradient_checkpointing=True), torch.device("cpu"))
    losses = [trainer.train_step(tiny_batch)["total"] for _ in range(12)]
    assert all(math.isfinite(x) for x in losses)
    assert min(losses[-3:]) < 0.7 * losses[0], losses


def test_trainable_subset_trains_only_it(tiny_config, tiny_batch):
    """The CPU camera stage: camera loss only, camera head + last block pair; the rest of the
    network must stay bit-identical (and the depth/point/track heads are not even run)."""
    torch.manual_seed(2)
    model = VGGT(tiny_config).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(steps=10, lr=1e-3, warmup_steps=1, losses=("camera",),
                         trainable=("camera_head", "aggregator.last1"))
    trainer = Trainer(model, config, torch.device("cpu"))
    last = len(model.aggregator.frame_blocks) - 1
    chosen = ("camera_head.", f"aggregator.frame_blocks.{last}.",
              f"aggregator.global_blocks.{last}.")
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {n for n, _ in model.named_parameters() if n.startswith(chosen)}
    assert trainer.trainable_parameters == sum(p.numel() for p in model.parameters()
                                               if p.requires_grad)
    losses = trainer.train_step(tiny_batch)
    assert set(losses) == {"camera", "total", "grad_norm"}
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(chosen) for k in changed)
    assert any(k.startswith(f"aggregator.global_blocks.{last}.") for k in changed)


def test_trainable_and_losses_are_validated(tiny_config):
    model = VGGT(tiny_config)
    depth = len(model.aggregator.frame_blocks)
    for spec in ("no_such_module", "aggregator.last0", f"aggregator.last{depth + 1}",
                 "aggregator.lastx"):
        with pytest.raises(ValueError, match="trainable"):
            select_trainable(model, (spec,))
    assert select_trainable(model, ()) == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="losses"):
        Trainer(model, TrainConfig(losses=("camera", "pose")), torch.device("cpu"))


def test_cli_trajectories_choose_the_clips_and_are_validated():
    parse = cli.build_parser().parse_args
    assert cli._train_config(parse([])).data.trajectories == TRAJECTORIES
    assert "turn" in TRAJECTORIES
    assert cli._train_config(parse(["--trajectories", "turn"])).data.trajectories == ("turn",)
    with pytest.raises(ValueError, match="trajectories"):
        cli._train_config(parse(["--trajectories", "turn,spiral"]))


def test_turn_windows_are_pure_rotation():
    config = DataConfig(**{**TINY_DATA, "trajectories": ("turn",), "num_tracks": 0})
    batch = next(iter(SyntheticWindows(config, seed=5)))
    target = normalize_scene(batch["cam_from_world"].double(), batch["intrinsics"].double(),
                             batch["depth"].double(), batch["valid"])
    translation = target.cam_from_world[:, 1:, :3, 3].norm(dim=-1)
    angle = torch.arccos(((target.cam_from_world[:, 1:, :3, :3].diagonal(dim1=-2, dim2=-1)
                           .sum(-1) - 1) / 2).clamp(-1, 1))
    assert float(translation.max()) < 0.05  # the height wobble only, at unit scene scale
    assert float(angle.min()) > math.radians(1.0)


def test_checkpoint_round_trip(tmp_path, tiny_config, tiny_batch):
    torch.manual_seed(1)
    config = TrainConfig(steps=10, warmup_steps=1)
    trainer = Trainer(VGGT(tiny_config).train(), config, torch.device("cpu"))
    trainer.train_step(tiny_batch)
    path = tmp_path / "ck"
    parts = save_checkpoint(path, trainer.model, trainer.optimizer, trainer.step, {"k": 1})
    assert parts and all(p.stat().st_size <= 15 * 2 ** 20 for p in parts)
    # saving (bf16 moments in the file) must not touch the live optimiser: training goes on
    live = next(iter(trainer.optimizer.state.values()))
    assert live["exp_avg"].dtype == live["exp_avg_sq"].dtype == torch.float32
    resumed = Trainer(VGGT(tiny_config).train(), config, torch.device("cpu"),
                      checkpoint_path=path)
    assert resumed.step == 1
    for a, b in zip(trainer.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    state = next(iter(resumed.optimizer.state.values()))
    assert state["exp_avg"].dtype == torch.float32
    parts[-1].write_bytes(parts[-1].read_bytes()[:-10])
    with pytest.raises(RuntimeError, match="truncated"):
        load_checkpoint(path)


def _plane_scene(cam_from_cam0: torch.Tensor, depth_m: float = 2.0, size: int = 28,
                 focal: float = 20.0):
    """Two frames of 28x28 looking at points all at ``depth_m`` (in frame 1's camera)."""
    depth = torch.full((1, 2, size, size), depth_m, dtype=torch.float64)
    K = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]],
                     dtype=torch.float64).expand(1, 2, 3, 3)
    poses = torch.stack((torch.eye(4, dtype=torch.float64), cam_from_cam0))[None]
    return depth, poses, K, torch.ones(1, 2, size, size, dtype=torch.bool)


def _flow(depth, poses, K, valid, patch):
    projection = project_patch_centres_to_first_frame(depth, poses, K, valid, patch)
    return patch_flow(projection, depth.shape[-2:])


def _matching(depth, poses, K, valid, patch):
    projection = project_patch_centres_to_first_frame(depth, poses, K, valid, patch)
    return matching_patch_targets(projection, depth, valid, patch)


def test_patch_flow_by_hand():
    # Camera 1 sits 0.1 to the left of camera 0 (x_cam1 = x_cam0 + 0.1): a point at depth 2
    # is 0.1 further left in camera 0, f*0.1/2 = 1 px, i.e. 1/28 of the width.
    shift = torch.eye(4, dtype=torch.float64)
    shift[0, 3] = 0.1
    flow, valid = _flow(*_plane_scene(shift), patch=14)
    assert flow.shape == (1, 2, 2, 2, 2) and bool(valid.all())
    assert torch.allclose(flow[0, 0], torch.zeros(2, 2, 2, dtype=torch.float64))
    assert torch.allclose(flow[0, 1, ..., 0], torch.full((2, 2), -1.0 / 28, dtype=torch.float64))
    assert torch.allclose(flow[0, 1, ..., 1], torch.zeros(2, 2, dtype=torch.float64))
    # Pure rotation about the camera y axis: the flow does not depend on depth.
    angle = math.radians(5.0)
    turn = torch.eye(4, dtype=torch.float64)
    turn[0, 0] = turn[2, 2] = math.cos(angle)
    turn[0, 2], turn[2, 0] = math.sin(angle), -math.sin(angle)
    near, _ = _flow(*_plane_scene(turn, depth_m=1.0), patch=14)
    far, _ = _flow(*_plane_scene(turn, depth_m=7.0), patch=14)
    assert torch.allclose(near, far) and float(near[0, 1, ..., 0].abs().min()) > 0.05
    # A centre that lands behind camera 0 has no target.
    behind = torch.eye(4, dtype=torch.float64)
    behind[2, 3] = 5.0  # camera 0 is 5 in front of camera 1, looking the same way
    _, valid = _flow(*_plane_scene(behind), patch=14)
    assert not bool(valid[0, 1].any()) and bool(valid[0, 0].all())


def test_matching_targets_by_hand():
    # Frame 1 sees everything 14 px (one patch) to the right of where frame 0 sees it.
    shift = torch.eye(4, dtype=torch.float64)
    shift[0, 3] = 1.4  # f * 1.4 / depth 2 = 14 px
    depth, poses, K, valid = _plane_scene(shift, size=56)
    targets = _matching(depth, poses, K, valid, patch=14)
    assert targets.shape == (1, 1, 4, 4)
    expected = torch.tensor([[-1 if c == 0 else r * 4 + c - 1 for c in range(4)]
                             for r in range(4)])
    assert torch.equal(targets[0, 0], expected)
    # The same geometry with something nearer in front of frame 0 everywhere: all hidden.
    occluded = depth.clone()
    occluded[:, 0] = 1.0
    assert bool((_matching(occluded, poses, K, valid, patch=14) == -1).all())


@pytest.mark.slow
def test_matching_loss_trains_the_attention_it_supervises(tiny_config, tiny_batch):
    torch.manual_seed(5)
    model = VGGT(tiny_config).train()
    config = TrainConfig(steps=20, lr=3e-3, warmup_steps=1, min_lr_ratio=1.0,
                         losses=("camera",), weights=LossWeights(match=1.0))
    trainer = Trainer(model, config, torch.device("cpu"))
    middle = model.aggregator.global_blocks[len(model.aggregator.global_blocks) // 2]
    before = middle.attn.qkv.weight.detach().clone()
    losses = [trainer.train_step(tiny_batch)["match"] for _ in range(10)]
    assert not torch.equal(before, middle.attn.qkv.weight)
    assert losses[0] > 0 and min(losses[-3:]) < 0.8 * losses[0], losses


def test_flow_probe_trains_and_round_trips_beside_the_model(tmp_path, tiny_config,
                                                               tiny_batch):
    torch.manual_seed(4)
    config = TrainConfig(steps=20, lr=2e-3, warmup_steps=1, min_lr_ratio=1.0,
                         losses=("camera",), weights=LossWeights(flow=1.0))
    trainer = Trainer(VGGT(tiny_config).train(), config, torch.device("cpu"))
    assert trainer.probe is not None
    flows = [trainer.train_step(tiny_batch)["flow"] for _ in range(8)]
    assert min(flows[-3:]) < 0.7 * flows[0], flows
    trainer.checkpoint_path = tmp_path / "ck"
    trainer.save()
    resumed = Trainer(VGGT(tiny_config).train(), config, torch.device("cpu"),
                      checkpoint_path=tmp_path / "ck")
    for a, b in zip(trainer.probe.state_dict().values(), resumed.probe.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="flow"):
        Trainer(VGGT(tiny_config).train(), TrainConfig(steps=20), torch.device("cpu"),
                checkpoint_path=tmp_path / "ck")
    # The probe can read an earlier layer, but only one the aggregator outputs (dpt_layers).
    sparse = dataclasses.replace(tiny_config, depth=5, dpt_layers=type(tiny_config.dpt_layers)(
        (0, 1, 2, 4)))

    def flow_at(layer: int) -> dict:
        config = TrainConfig(steps=20, losses=("camera",), weights=LossWeights(flow=1.0),
                             flow_layer=layer)
        return Trainer(VGGT(sparse).train(), config, torch.device("cpu")).train_step(tiny_batch)
    assert "flow" in flow_at(2)
    with pytest.raises(ValueError, match="flow_layer"):
        flow_at(3)
    # the model's own entry keeps exactly VGGT's keys (the probe is stored beside it)
    assert set(load_checkpoint(tmp_path / "ck")["model"]) == set(resumed.model.state_dict())


def test_cli_trains_resumes_and_exports(tmp_path, fixtures_dir):
    common = ["--config", str(fixtures_dir / "small_config.json"), "--warmup", "1",
              "--batch-size", "1", "--max-frames", "2", "--widths", "70", "--min-height", "56",
              "--max-height", "56", "--clip-frames", "3", "--pool-size", "1", "--refresh", "0",
              "--num-tracks", "4", "--checkpoint", str(tmp_path / "ck"),
              "--log", str(tmp_path / "log.jsonl"), "--log-every", "1", "--device", "cpu"]
    assert cli.main(common + ["--steps", "1"]) == 0
    export = tmp_path / "model.safetensors"
    assert cli.main(common + ["--steps", "2", "--export", str(export)]) == 0
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # the second call resumed instead of starting over
    model = load_vggt(export)
    assert model.config.embed_dim == 64
    assert cli.main(common + ["--steps", "3", "--trainable", "no_such_module"]) == 2
    with pytest.raises(SystemExit, match="--config"):
        cli.main(["--config", str(tmp_path / "missing.json")])
