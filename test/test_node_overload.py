"""Overload: a 30 Hz 640x480 camera into ``vggt_node`` on the CPU with the demo model.

The node cannot keep up (every frame is a keyframe candidate here: keyframe_min_interval 0),
and that must be visible rather than silent: every frame the camera published is accounted for
in /diagnostics (received + transport gaps + frames due in pauses over 1 s; received =
skipped by policy + queue drops + rejected + keyframes + waiting), the status goes WARN with a
log line saying what to change, and the node's memory stays bounded. The numbers it measures
go to docs/PERFORMANCE.md.
"""
import json
import os
import statistics
import time
from pathlib import Path

import pytest
import rclpy

from live_harness import (CameraPlayer, NodeProcess, context, sliding_frames, stream,
                          vggt_node)

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.timeout(400)]

RATE_HZ, W, H = 30.0, 640, 480
STREAM_S = float(os.environ.get("VGGT_OVERLOAD_SECONDS", "90"))
# Memory may grow while buffers fill (the first minute); after that it must stay flat.
MEMORY_FROM_S = min(60.0, STREAM_S * 2 / 3)
# RSS swings by 100-150 MB within a window (inference buffers, one sample a second catches a
# peak now and then), so a leak is judged on the level the samples sit at (their median),
# and a single peak only against a wider bound.
MAX_LEVEL_GROWTH, MAX_PEAK_GROWTH = 0.10, 0.30


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_overload_at_30_hz_640x480_is_accounted_warned_and_bounded(tmp_path):
    images, k = sliding_frames(W, H, 60)
    process = NodeProcess(tmp_path, vggt_node(), params={
        "device": "cpu", "keyframe_min_interval": 0.0, "max_map_points": 200000,
        "diagnostics_period": 1.0, "publish_map": False})
    ctx = context()
    player = CameraPlayer(ctx)
    levels, messages_seen, rss = [], [], []
    try:
        # The node first warms up three window shapes of the demo model on the CPU: 46 s each
        # on the 2-core machine shared with other jobs, past the 120 s this used to wait.
        player.connect(process, timeout=300)
        base = player.diagnostics()
        seen = len(player.got["/diagnostics"])

        def sample(elapsed_s):
            nonlocal seen
            rss.append((elapsed_s, _rss_mb(process.proc.pid)))
            for msg in player.got["/diagnostics"][seen:]:
                levels.append(int.from_bytes(msg.status[0].level, "little"))
                messages_seen.append(msg.status[0].message)
            seen = len(player.got["/diagnostics"])

        t0 = time.monotonic()
        published = stream(player, images, k, RATE_HZ, STREAM_S, sample)
        publish_s = time.monotonic() - t0
        player.spin_for(3.0)  # the last diagnostics after the stream
        end = player.diagnostics()
    finally:
        player.close()
        rclpy.shutdown(context=ctx)
        text = process.log()
        assert process.stop() == 0, text[-3000:]

    def delta(key):
        return int(end[key]) - int(base.get(key, 0))

    received = delta("frames.received")
    gaps = delta("frames.transport_gaps")
    in_pauses = delta("frames.in_pauses")  # the camera never pauses: the node got nothing for 1 s
    parts = {key: delta(f"frames.{key}") for key in
             ("skipped_by_policy", "queue_drops", "rejected", "keyframes", "waiting")}
    # The level after the first minute against the level in its second half (buffers filled);
    # peak against peak with more room.
    settled = [mb for t, mb in rss if MEMORY_FROM_S / 2 <= t < MEMORY_FROM_S]
    later = [mb for t, mb in rss if t >= MEMORY_FROM_S]
    growth = statistics.median(later) / statistics.median(settled) - 1
    peak_growth = max(later) / max(mb for t, mb in rss if t < MEMORY_FROM_S) - 1
    numbers = {"published": published, "publish_s": round(publish_s, 1), "received": received,
               "transport_gaps": gaps, "in_pauses": in_pauses,
               "longest_pause_s": end["frames.longest_pause_s"], **parts, "keyframes_published":
               end["keyframes_published"], "warn_periods": sum(lvl == 1 for lvl in levels),
               "diagnostics_periods": len(levels),
               "rss_mb": [(round(t), round(mb)) for t, mb in rss],
               "memory_growth_after_60s": round(growth, 4),
               "memory_peak_growth_after_60s": round(peak_growth, 4)}
    (tmp_path / "overload.json").write_text(json.dumps(numbers, indent=1))
    print("overload numbers:", json.dumps(numbers))
    assert abs(received + gaps + in_pauses - published) <= 0.02 * published, numbers
    assert abs(sum(parts.values()) - received) <= max(2, 0.02 * received), numbers
    assert parts["queue_drops"] > 0 and parts["keyframes"] > 0, numbers
    assert any("falling behind" in m for m in messages_seen) and 1 in levels, numbers
    assert in_pauses == 0 or "no image for over 1 s" in text, text[-3000:]
    assert "cannot keep up" in text and "keyframe_min_interval" in text, text[-3000:]
    assert growth <= MAX_LEVEL_GROWTH and peak_growth <= MAX_PEAK_GROWTH, numbers
