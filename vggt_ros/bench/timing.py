"""Latency and memory of a callable on the device it runs on."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Optional

import torch


class Clock:
    """Median latency of a callable: CUDA events on GPU (after a sync), perf_counter on CPU."""

    def __init__(self, device: torch.device, warmup: int, reps: int) -> None:
        self.device, self.warmup, self.reps = device, warmup, reps

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def once(self, fn: Callable[[], Any]) -> float:
        self.sync()
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    def median(self, fn: Callable[[], Any], reps: Optional[int] = None) -> float:
        for _ in range(self.warmup):
            fn()
        return statistics.median(self.once(fn) for _ in range(reps or self.reps))

    def peak_gb(self, fn: Callable[[], Any], resident_bytes: int) -> Optional[float]:
        """Weights of the path + the activation peak of one call (other resident tensors, such
        as the second path's weights, are subtracted)."""
        if self.device.type != "cuda":
            return None
        self.sync()
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        fn()
        self.sync()
        return (resident_bytes + torch.cuda.max_memory_allocated(self.device) - base) / 1e9


def wall_samples_ms(fn: Callable[[], Any], repeats: int, sync: Callable[[], None],
                    warmup: int = 0) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones,
    ``sync`` (the device's synchronisation, or a no-op) around each: host work included, unlike
    ``Clock``'s device events, for stages that are partly CPU (a track request through the
    predictor, a pose solve)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        samples.append(1e3 * (time.perf_counter() - start))
    return samples


def tensor_bytes(module: torch.nn.Module) -> int:
    seen = {}
    for t in list(module.parameters()) + list(module.buffers()):
        seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())
