"""Reading rosbag2 bags, complete or not, with one exception type (no ROS installation).

A bag that cannot be read at all (nothing there, not a bag, a topic that is not in it) raises
:class:`~vggt_ros.io.bag_messages.BagError` with a message naming the bag, topic and problem.
Damage inside a bag does not raise: the storage readers (``mcap_recovery``,
``sqlite_recovery``) skip it and describe it in :attr:`Bag.report`, so an unfinished
recording or a few flipped bytes still give every intact message. Deserialising CDR is
rosbags' job (``decoded_messages``).
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, Optional

from rosbags.rosbag2 import Reader

from vggt_ros.io.bag_layout import BagLayout, resolve_bag
from vggt_ros.io.bag_messages import BagError, typestore
from vggt_ros.io.mcap_recovery import McapRecovery
from vggt_ros.io.read_report import Damage, RawMessage, ReadReport
from vggt_ros.io.sqlite_recovery import SqliteRecovery

_RECOVERY = {"mcap": McapRecovery, "sqlite3": SqliteRecovery}
# What a topic may carry: one message type, any of several, or None for any type.
Accepted = Optional[str | tuple[str, ...]]


class Bag:
    """A bag to read: each :meth:`messages` pass fills a fresh :attr:`report`."""

    def __init__(self, bag_path: str | os.PathLike) -> None:
        self.path = Path(bag_path)
        self.layout: BagLayout = resolve_bag(self.path)
        self.report = ReadReport(has_metadata=self.layout.metadata is not None)

    def messages(self, topics: Mapping[str, Accepted]) -> Iterator[RawMessage]:
        """Intact messages on ``topics`` (topic -> expected type, a tuple of accepted types, or
        None for any) in recording order. BagError when a topic is not in the bag or carries
        another type: at once when metadata.yaml lists the topics, else once the first message
        (or the end) shows it."""
        self.report = ReadReport(has_metadata=self.layout.metadata is not None)
        known = self.layout.topics()
        if known is not None:
            self._check(topics, known)
        checked: set[str] = set()
        for message in self._storage_messages(topics):
            if message.topic not in checked:
                self._check({message.topic: topics[message.topic]},
                            {message.topic: message.msgtype})
                checked.add(message.topic)
            yield message
        if known is None:
            self._check(topics, self.report.topics)

    def _storage_messages(self, topics: Mapping[str, Accepted]) -> Iterator[RawMessage]:
        if self.layout.compression_mode:
            self.report.files.extend(str(file) for file in self.layout.files)
            yield from _compressed_bag_messages(self.layout.path, topics, self.report)
            return
        for file in self.layout.files:
            yield from _RECOVERY[self.layout.storage](file, self.report).messages(topics)

    def _check(self, topics: Mapping[str, Accepted], found: Mapping[str, str]) -> None:
        for topic, accepted in topics.items():
            if topic not in found:
                damage = "" if self.report.intact else (
                    f" (only the readable part was searched: {self.report.warning()})")
                raise BagError(f"topic {topic!r} not in bag {self.path}; available: "
                               f"{sorted(found)}{damage}")
            accepted = (accepted,) if isinstance(accepted, str) else accepted
            if accepted and found[topic] not in accepted:
                raise BagError(f"topic {topic!r} in bag {self.path} carries "
                               f"{[found[topic]]}, expected {' or '.join(accepted)}")


def _compressed_bag_messages(path: Path, topics: Mapping[str, Accepted],
                             report: ReadReport) -> Iterator[RawMessage]:
    """Bags compressed by rosbag2 (compression_mode file or message): rosbags decompresses
    them. No recovery here: reading stops at the first damage, which is reported."""
    reader = Reader(path)
    try:
        reader.open()
    except Exception as exc:  # rosbags raises many types for unusable input
        raise BagError(f"{path} is not a readable compressed rosbag2 bag: {exc}") from exc
    try:
        report.topics.update({c.topic: c.msgtype for c in reader.connections})
        iterator = reader.messages(connections=[c for c in reader.connections
                                                if c.topic in topics])
        while True:
            try:
                conn, log_time, raw = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                report.add(Damage(path.name, f"message {sum(report.recovered.values())}",
                                  str(exc), fatal=True))
                return
            report.recovered[conn.topic] += 1
            yield RawMessage(conn.topic, conn.msgtype, log_time, bytes(raw))
    finally:
        reader.close()


def list_topics(bag_path: str | os.PathLike) -> dict[str, str]:
    """topic -> message type of every topic in the bag (a full read without metadata.yaml)."""
    bag = Bag(bag_path)
    known = bag.layout.topics()
    if known is not None:
        return known
    for _ in bag.messages({}):
        pass
    return dict(bag.report.topics)


def decoded_messages(messages: Iterator[RawMessage], bag_path: Any,
                     on_bad_message: Optional[Callable[[str], None]] = None
                     ) -> Iterator[tuple[RawMessage, Any]]:
    """(raw message, deserialised message) in order. A message that does not deserialise
    raises BagError, unless ``on_bad_message`` is given: then it gets the reason and the
    message is skipped."""
    ts = typestore()
    for index, raw in enumerate(messages):
        try:
            msg = ts.deserialize_cdr(raw.data, raw.msgtype)
        except Exception as exc:
            reason = (f"message {index} on {raw.topic} in {bag_path} ({raw.msgtype}) is "
                      f"truncated or corrupt: {exc}")
            if on_bad_message is None:
                raise BagError(reason) from exc
            on_bad_message(reason)
            continue
        yield raw, msg


def read_messages(bag_path: str | os.PathLike, topic: str,
                  msgtype: Optional[str] = None) -> Iterator[tuple[int, Any]]:
    """(log time ns, deserialised message) on ``topic`` in bag order, type-checked if given."""
    bag = Bag(bag_path)
    for raw, msg in decoded_messages(bag.messages({topic: msgtype}), bag_path):
        yield raw.log_time_ns, msg
