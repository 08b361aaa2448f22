"""Reading rosbag2 bags with one exception type (rosbags + NumPy, no ROS installation).

Why a wrapper: rosbags raises many different exceptions for unusable input (missing path,
unknown storage, corrupt file, short CDR payload); the offline tools need one exception type
(:class:`~vggt_ros.io.bag_messages.BagError`) with a message naming the bag, topic and problem.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

from rosbags.rosbag2 import Reader

from vggt_ros.io.bag_messages import BagError, typestore


def open_bag(bag_path: str | os.PathLike) -> Reader:
    """An open rosbags Reader (close it when done); BagError for a missing or unreadable bag."""
    path = Path(bag_path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises many types for unusable input
        raise BagError(f"{path} is not a readable rosbag2 bag (not a bag, or its storage "
                       f"file is truncated or corrupt): {exc}") from exc
    return reader


def list_topics(bag_path: str | os.PathLike) -> dict[str, str]:
    """topic -> message type of every connection in the bag."""
    reader = open_bag(bag_path)
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def topic_connections(reader: Reader, bag_path: Any, topic: str,
                      msgtype: Optional[str]) -> list:
    """The connections of ``topic``; BagError when it is missing or carries another type."""
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        available = sorted({c.topic for c in reader.connections})
        raise BagError(f"topic {topic!r} not in bag {bag_path}; available: {available}")
    wrong = {c.msgtype for c in conns} - {msgtype} if msgtype else set()
    if wrong:
        raise BagError(f"topic {topic!r} in bag {bag_path} carries {sorted(wrong)}, "
                       f"expected {msgtype}")
    return conns


def decoded_messages(reader: Reader, bag_path: Any, conns: list,
                     on_bad_message: Optional[Callable[[str], None]] = None
                     ) -> Iterator[tuple[Any, int, Any]]:
    """(connection, log time, message) in bag order. A storage failure raises BagError (nothing
    after it can be read); a message that does not deserialise raises BagError too, unless
    ``on_bad_message`` is given: then it gets the reason and the message is skipped."""
    ts = typestore()
    iterator = reader.messages(connections=conns)
    index = 0
    try:
        while True:
            try:
                conn, log_time, raw = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                raise BagError(f"bag {bag_path} is corrupt or truncated after {index} "
                               f"messages: {exc}") from exc
            index += 1
            try:
                msg = ts.deserialize_cdr(raw, conn.msgtype)
            except Exception as exc:
                reason = (f"message {index - 1} on {conn.topic} in {bag_path} "
                          f"({conn.msgtype}) is truncated or corrupt: {exc}")
                if on_bad_message is None:
                    raise BagError(reason) from exc
                on_bad_message(reason)
                continue
            yield conn, log_time, msg
    finally:
        iterator.close()


def read_messages(bag_path: str | os.PathLike, topic: str,
                  msgtype: Optional[str] = None) -> Iterator[tuple[int, Any]]:
    """(log time ns, deserialised message) on ``topic`` in bag order, type-checked if given."""
    reader = open_bag(bag_path)
    try:
        conns = topic_connections(reader, bag_path, topic, msgtype)
        for _, log_time, msg in decoded_messages(reader, bag_path, conns):
            yield log_time, msg
    finally:
        reader.close()
