"""One check shared by the recovery and interruption tests: a ``vggt_map`` output folder holds
exactly one complete output set, and its files agree with each other.

Every file is read with a reader that shares no code with the writers: ``mcap`` (with CRC
checks) and rosbags for the bag, plyfile for the map, plain text for TUM and COLMAP.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from mcap.reader import make_reader
from mcap.records import Chunk
from mcap.stream_reader import StreamReader
from plyfile import PlyData
from rosbags.rosbag2 import Reader

OUTPUT_FILES = ["colmap", "map.ply", "outputs.mcap", "report.png", "summary.json",
                "trajectory_tum.txt"]


def _rows(path: Path) -> list[str]:
    """Data lines (an image's POINTS2D line may be empty), comments left out."""
    return [line for line in path.read_text().split("\n")[:-1] if not line.startswith("#")]


def assert_one_complete_set(out: Path) -> dict:
    """The folder's summary, after checking that every file describes the same run."""
    assert sorted(p.name for p in out.iterdir()) == OUTPUT_FILES
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], \
        "a staging folder was left beside the output folder"
    summary = json.loads((out / "summary.json").read_text())
    keyframes = summary["keyframes"]
    tum = _rows(out / "trajectory_tum.txt")
    assert len(tum) == keyframes and all(len(row.split()) == 8 for row in tum)
    images = _rows(out / "colmap" / "images.txt")
    assert len(images) == 2 * keyframes  # two lines per image
    assert len(_rows(out / "colmap" / "points3D.txt")) == summary["map_points"]
    assert PlyData.read(str(out / "map.ply"))["vertex"].count == summary["map_points"]
    with Reader(out / "outputs.mcap") as bag:
        counts = {c.topic: c.msgcount for c in bag.connections}
    with (out / "outputs.mcap").open("rb") as handle:
        chunks = [r for r in StreamReader(handle, emit_chunks=True).records
                  if isinstance(r, Chunk)]
    assert chunks and all(chunk.uncompressed_crc != 0 for chunk in chunks)
    with (out / "outputs.mcap").open("rb") as handle:  # and every CRC matches
        crc_checked = Counter(channel.topic for _, channel, _ in
                              make_reader(handle, validate_crcs=True).iter_messages())
    assert crc_checked == Counter({t: n for t, n in counts.items() if n})
    assert counts.get("/tf", 0) == keyframes
    assert counts.get("/vggt/points", 0) == summary["windows"]
    tum_stamps = [row.split()[0] for row in tum]
    assert len(set(tum_stamps)) == keyframes
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return summary
