"""The tracker's local correlation (fast path) against the reference's full correlation volume."""
import pytest
import torch

from vggt_ros.model.tracker import CorrelationPyramid

B, S, N, C, H, W = 1, 3, 9, 16, 23, 31


@pytest.fixture(scope="module")
def features():
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(B, S, C, H, W, generator=gen),
            torch.randn(B, S, N, C, generator=gen))


@pytest.mark.parametrize("where", ["inside", "on_and_past_the_border"])
def test_local_correlation_gives_the_full_volumes_window_samples(features, where):
    fmaps, track_feats = features
    gen = torch.Generator().manual_seed(1)
    if where == "inside":
        coords = torch.rand(B, S, N, 2, generator=gen) * torch.tensor([W - 1.0, H - 1.0])
    else:  # windows reaching outside every level: the zero padding must agree too
        coords = torch.rand(B, S, N, 2, generator=gen) * torch.tensor([W + 10.0, H + 10.0]) - 5
    full = CorrelationPyramid(fmaps, levels=4, radius=3).sample(track_feats, coords)
    local = CorrelationPyramid(fmaps, levels=4, radius=3, local=True).sample(track_feats, coords)
    assert local.shape == full.shape == (B, S, N, 4 * 7 * 7)
    torch.testing.assert_close(local, full, rtol=1e-5, atol=1e-5)
    assert full.abs().max() > 1  # the values compared are not all zero


def test_a_track_far_outside_the_image_correlates_to_zero(features):
    fmaps, track_feats = features
    coords = torch.full((B, S, N, 2), -100.0)
    local = CorrelationPyramid(fmaps, levels=2, radius=2, local=True).sample(track_feats, coords)
    assert torch.equal(local, torch.zeros_like(local))
