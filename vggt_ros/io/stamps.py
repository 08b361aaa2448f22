"""ROS stamps as integer nanoseconds, and their two wire forms (sec + nanosec, decimal text).

Everything in vggt_ros carries stamps as one integer (exact, orderable, a dict key); only the
message and file boundaries split or print them, through these functions.
"""
from __future__ import annotations

__all__ = ["NS_PER_S", "split_ns", "join_ns", "format_seconds"]

NS_PER_S = 1_000_000_000


def split_ns(stamp_ns: int) -> tuple[int, int]:
    """Nanoseconds -> (sec, nanosec) with 0 <= nanosec < 1e9, as builtin_interfaces wants."""
    return int(stamp_ns) // NS_PER_S, int(stamp_ns) % NS_PER_S


def join_ns(sec: int, nanosec: int) -> int:
    """(sec, nanosec) of a builtin_interfaces/Time -> nanoseconds."""
    return int(sec) * NS_PER_S + int(nanosec)


def format_seconds(stamp_ns: int) -> str:
    """Nanoseconds -> exact 'seconds.nanoseconds' (9 decimals, no float rounding)."""
    sec, nanosec = split_ns(stamp_ns)
    return f"{sec}.{nanosec:09d}"
