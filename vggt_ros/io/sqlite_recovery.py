"""Messages from a rosbag2 SQLite3 file row by row, so a damaged file gives up only its
damaged rows.

Why not rosbags' SQLite reader: it reads the whole table in one query, and one bad page
("database disk image is malformed") ends it with nothing. Here every row is looked up by its
id on its own; a row that cannot be read is counted and the next one is tried. ``apsw`` (the
SQLite binding rosbags itself uses) does the reading, for one reason: its VFS hook lets a read
past the end of the file fail. SQLite fills such reads with zeros, so a row whose last pages
were cut off would come back whole-looking with a zeroed tail; here it is counted as lost.

A recording cut short leaves a file shorter than its header says; SQLite refuses to open such a
file unless ``writable_schema`` is on. The connection is read-only, so nothing is written.

SQLite keeps no checksums: damaged bytes that still form valid pages are not detected here
(the CDR decoder catches some). MCAP files with CRCs are the safer recording format.
"""
from __future__ import annotations

from pathlib import Path
from typing import Collection, Iterator, Optional
from urllib.parse import quote

import apsw

from vggt_ros.io.bag_messages import BagError
from vggt_ros.io.read_report import Damage, RawMessage, ReadReport

# With the highest id unreadable, reading ends after this many ids in a row gave nothing.
PROBE_IDS = 1000
VFS_NAME = "vggt-ros-no-zero-fill"


class _NoZeroFillFile(apsw.VFSFile):
    """The default VFS's file, except that reading bytes the file does not have fails."""

    def xRead(self, amount: int, offset: int) -> bytes:  # noqa: N802 (apsw's name)
        if offset + amount > self.xFileSize():
            raise apsw.IOError(f"read of {amount} bytes at {offset}: past the end of the file")
        return super().xRead(amount, offset)


class _NoZeroFillVfs(apsw.VFS):
    def __init__(self) -> None:
        super().__init__(VFS_NAME, "")

    def xOpen(self, name, flags) -> _NoZeroFillFile:  # noqa: N802 (apsw's name)
        return _NoZeroFillFile("", name, flags)


_VFS: Optional[_NoZeroFillVfs] = None  # registered with SQLite on first use, for the process


class SqliteRecovery:
    """One pass over one rosbag2 ``.db3`` file; damage and counts go to ``report``."""

    def __init__(self, path: Path, report: ReadReport) -> None:
        self.path = path
        self.report = report

    def _connect(self) -> apsw.Connection:
        global _VFS
        _VFS = _VFS or _NoZeroFillVfs()
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        db = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI,
                             vfs=VFS_NAME)
        db.execute("PRAGMA writable_schema=ON")
        return db

    def _topics(self, db: apsw.Connection) -> dict[int, tuple[str, str]]:
        topics = {tid: (name, msgtype, fmt) for tid, name, msgtype, fmt in
                  db.execute("SELECT id, name, type, serialization_format FROM topics")}
        for topic_id, (name, msgtype, fmt) in topics.items():
            if fmt != "cdr":
                raise BagError(f"topic {name!r} in {self.path} is encoded as {fmt!r}; only "
                               f"ROS 2 CDR can be read")
            self.report.topics.setdefault(name, msgtype)
        return {tid: (name, msgtype) for tid, (name, msgtype, _) in topics.items()}

    def messages(self, topics: Collection[str]) -> Iterator[RawMessage]:
        """Intact messages on ``topics`` in recording (row id) order (a file whose topics
        table cannot be read is fatal damage: the other files of the bag are still read)."""
        self.report.files.append(str(self.path))
        try:
            db = self._connect()
        except apsw.Error as exc:
            self._unreadable(exc)
            return
        try:
            by_id = self._topics(db)
        except apsw.Error as exc:
            self._unreadable(exc)
            db.close()
            return
        try:
            wanted = [tid for tid, (name, _) in by_id.items() if name in topics]
            yield from self._rows(db, by_id, wanted)
        finally:
            db.close()

    def _unreadable(self, exc: apsw.Error) -> None:
        self.report.add(Damage(self.path.name, "its first pages", f"not a rosbag2 SQLite3 "
                               f"file, or damaged where the topics are listed ({exc})",
                               fatal=True))

    def _rows(self, db: apsw.Connection, by_id: dict[int, tuple[str, str]],
              wanted: list[int]) -> Iterator[RawMessage]:
        marks = ",".join("?" * len(wanted)) or "NULL"
        query = (f"SELECT topic_id, timestamp, CASE WHEN topic_id IN ({marks}) THEN data END "
                 f"FROM messages WHERE id = ?")
        last = self._last_id(db)
        damage: Optional[Damage] = None
        row_id, misses = 0, 0
        while (row_id < last) if last is not None else (misses < PROBE_IDS):
            row_id += 1
            try:
                row = db.execute(query, (*wanted, row_id)).fetchone()
            except apsw.Error as exc:
                misses += 1
                if damage is None:
                    damage = self.report.add(Damage(self.path.name, f"row {row_id}",
                                                    f"unreadable rows ({exc})",
                                                    fatal=False, lost_messages=0))
                if last is not None:  # the row exists (ids are dense) but is lost
                    damage.lost_messages += 1
                    self.report.lost["<unknown topic>"] += 1
                continue
            if row is None:  # no such id (a gap), or past the end when the end is unknown
                misses += 1
                continue
            misses, damage = 0, None
            topic_id, stamp, data = row
            name, msgtype = by_id.get(topic_id, (f"<topic {topic_id}>", ""))
            self.report.recovered[name] += 1
            if data is not None:
                yield RawMessage(name, msgtype, int(stamp), bytes(data))
        if damage is not None and last is None:  # the unreadable run went on to the end
            damage.fatal, damage.lost_messages = True, None

    @staticmethod
    def _last_id(db: apsw.Connection) -> Optional[int]:
        """The highest message id, or None when the last pages are missing (a cut file)."""
        try:
            (last,) = db.execute("SELECT max(id) FROM messages").fetchone()
        except apsw.Error:
            return None
        return int(last or 0)
