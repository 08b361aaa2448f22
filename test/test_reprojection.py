"""The one track ground truth (vggt_ros.geometry.reprojection) behind both of its users: the
training batches and the pipeline's ground-truth double."""
import numpy as np
import torch

from vggt_ros.geometry.reprojection import reproject_queries
from vggt_ros.synth.gt_double import GroundTruthPredictor
from vggt_ros.synth import make_sequence
from vggt_ros.training.data import track_ground_truth


def test_training_targets_and_the_double_answer_from_the_same_geometry():
    seq = make_sequence(30, 48, 36, seed=4, trajectory="orbit")
    rows = [0, 12, 29]
    frames = [seq.frame(i) for i in rows]
    queries = np.random.default_rng(0).integers(0, 36, (20, 2)).astype(np.float64)
    answer = GroundTruthPredictor(seq).track(frames, queries)
    depth = torch.stack([torch.from_numpy(seq.render(i)[1]) for i in rows])
    tracks, visible = track_ground_truth(depth, seq.cam_from_world[rows], seq.K, queries)
    inside, seen = answer.confidence.astype(bool), answer.visibility.astype(bool)
    # every case occurs: visible, occluded inside the frame, outside the frame
    assert seen[1:].any() and (inside & ~seen)[1:].any() and not inside[1:].all()
    np.testing.assert_allclose(tracks.numpy()[inside], answer.tracks_uv[inside], atol=1e-4)
    assert (tracks.numpy()[~inside] == 0).all()
    np.testing.assert_array_equal(visible.numpy()[1:], answer.visibility[1:].astype(bool))


def test_half_pixel_borders_and_points_behind_the_camera():
    K = torch.tensor([[10.0, 0, 5], [0, 10.0, 5], [0, 0, 1]], dtype=torch.float64)
    depth = torch.full((3, 10, 10), 4.0, dtype=torch.float64)
    poses = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    poses[1, 0, 3] = 1.0  # camera 1 sees every point 10 * 1 / 4 = 2.5 px further right
    poses[2, :3, :3] = torch.diag(torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64))
    queries = torch.tensor([[6.9, 5.0], [7.1, 5.0]], dtype=torch.float64)
    truth = reproject_queries(depth, poses, K, queries)
    torch.testing.assert_close(truth.pixels[1, :, 0], torch.tensor([9.4, 9.6], dtype=torch.float64))
    assert truth.inside[1].tolist() == [True, False]  # nearest pixel 9 exists, 10 does not
    assert truth.visible[0].all() and truth.visible[1].tolist() == [True, False]
    assert torch.isnan(truth.pixels[2]).all() and not truth.inside[2].any()  # camera turned away
