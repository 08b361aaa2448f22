"""What reading a bag recovered and what it could not: filled in while the messages are read.

Why a report and not an exception: a recording that lost power or has a few damaged bytes
still holds good messages before and after the damage. The readers skip what is damaged, say
here where and how much, and carry on; the caller decides what "partial" means for its output
and tells the user.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional


class RawMessage(NamedTuple):
    """One message as stored: serialised CDR bytes, not yet deserialised."""

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes


@dataclass
class Damage:
    """One damaged place of a storage file.

    ``fatal``: nothing after it could be read (a file cut short, a record that cannot be
    parsed); otherwise only the damaged part (an MCAP chunk, SQLite rows) was skipped.
    """

    file: str
    where: str  # "byte 1234 of 5678 (22 %)" or "row 74"
    reason: str
    fatal: bool
    lost_messages: Optional[int] = None  # known from the file's indexes, else None

    def describe(self) -> str:
        lost = (f", {self.lost_messages} messages lost" if self.lost_messages is not None
                else "")
        tail = "; nothing after it could be read" if self.fatal else "; skipped"
        return f"{self.file} at {self.where}: {self.reason}{lost}{tail}"


@dataclass
class ReadReport:
    """Counts and damage of one pass over a bag's storage files."""

    files: list[str] = field(default_factory=list)
    has_metadata: bool = True  # metadata.yaml was found (not needed for MCAP)
    topics: dict[str, str] = field(default_factory=dict)  # topic -> type, as found so far
    recovered: Counter[str] = field(default_factory=Counter)  # intact messages per topic
    lost: Counter[str] = field(default_factory=Counter)  # messages known lost, per topic
    chunks: int = 0
    damaged_chunks: int = 0
    unverified_chunks: int = 0  # MCAP chunks written without a CRC (not checkable)
    damage: list[Damage] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        """Every storage file was read to its end without damage."""
        return not self.damage

    def add(self, damage: Damage) -> Damage:
        self.damage.append(damage)
        return damage

    def warning(self, topic: Optional[str] = None) -> str:
        """One line for the user: how much was recovered and where the damage starts."""
        total = sum(self.recovered.values())
        on_topic = f" ({self.recovered[topic]} on {topic})" if topic else ""
        lost = sum(self.lost.values())
        lost_text = f"; {lost} messages known lost" if lost else ""
        if not self.damage:
            return f"read {total} messages{on_topic}; no damage"
        more = f" (+{len(self.damage) - 1} more damaged places)" if len(self.damage) > 1 else ""
        return (f"recovered {total} messages{on_topic}{lost_text}; the damage starts in "
                f"{self.damage[0].describe()}{more}")

    def as_dict(self) -> dict[str, Any]:
        """For summary.json."""
        return {
            "files": list(self.files),
            "metadata_yaml": self.has_metadata,
            "intact": self.intact,
            "recovered_messages": dict(self.recovered),
            "lost_messages": dict(self.lost),
            "chunks": self.chunks,
            "damaged_chunks": self.damaged_chunks,
            "chunks_without_crc": self.unverified_chunks,
            "damage": [{"file": d.file, "where": d.where, "reason": d.reason,
                        "fatal": d.fatal, "lost_messages": d.lost_messages}
                       for d in self.damage],
        }
