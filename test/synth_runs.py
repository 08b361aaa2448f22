"""``vggt_synth`` runs for the tests that map or damage a rendered bag: one place that spells
its command line."""
from pathlib import Path

from vggt_ros.synth.cli import main as synth_main

# The sequence the mapper tests share (rendered once per session by conftest's `mapping_dir`).
MAPPING_FRAMES, MAPPING_WIDTH, MAPPING_HEIGHT, MAPPING_SEED = 40, 64, 48, 1


def render(out: Path, frames: int, width: int, height: int, seed: int, *options: str) -> Path:
    """Render a sequence into ``out`` (bag + ground truth), asserting vggt_synth succeeds."""
    assert synth_main([str(out), "--frames", str(frames), "--width", str(width), "--height",
                       str(height), "--seed", str(seed), *options]) == 0
    return out


def render_for_damage(out: Path, frames: int, width: int, height: int, seed: int, storage: str,
                      chunk_kib: int) -> Path:
    """A small-chunked bag of images and camera info only, so the damage the recovery tests
    do lands where they expect it, whatever sensor topics vggt_synth adds by default."""
    return render(out, frames, width, height, seed, "--storage", storage, "--chunk-kib",
                  str(chunk_kib), "--no-depth", "--no-odom")
