"""Benchmark of the VGGT reference and fast inference paths (``vggt_bench``); see docs/PERFORMANCE.md."""
