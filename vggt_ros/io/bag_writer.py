"""Atomic rosbag2 writing: a bag only appears under its final name once it is complete.

A crash or an exception while writing never leaves a half bag that looks valid: the bag is
assembled in a hidden temporary directory beside its target and renamed onto it on success.
MCAP files carry chunk CRCs (``vggt_ros.io.mcap_storage``), so readers can detect damage.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

from rosbags.interfaces import Qos
from rosbags.rosbag2 import StoragePlugin
from rosbags.typesys.store import Typestore

from vggt_ros.io.bag_messages import BagError, build_message, typestore
from vggt_ros.io.mcap_storage import DEFAULT_CHUNK_SIZE, Rosbag2Writer

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_VERSION = 9


class BagWriter:
    """Writes a rosbag2 (version 9) atomically; connections are added on first use per topic.

    Usage::

        with BagWriter(out / "bag", storage="mcap") as bag:
            bag.write("/camera/image_raw", IMAGE_TYPE, {"header": messages.header(t, fid), ...}, t)

    The bag is assembled in a hidden temporary directory beside ``path`` and renamed to
    ``path`` on a clean exit; on an exception the temporary directory is removed.
    ``chunk_size`` (bytes, MCAP only) bounds what a recording that stops mid-way loses: the
    chunk being filled.
    """

    def __init__(self, path: str | os.PathLike, storage: str = "mcap",
                 ts: Optional[Typestore] = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if storage not in STORAGES:
            raise BagError(f"unknown storage {storage!r}; expected one of {sorted(STORAGES)}")
        if chunk_size <= 0:
            raise BagError(f"chunk_size must be > 0 bytes, got {chunk_size}")
        self.path = Path(path)
        self.storage = storage
        self.ts = ts or typestore()
        self.chunk_size = chunk_size
        self._writer: Optional[Rosbag2Writer] = None
        self._tmpdir: Optional[Path] = None
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> "BagWriter":
        if self.path.exists():
            raise BagError(f"{self.path} already exists; refusing to overwrite a bag")
        if not self.path.parent.is_dir():
            raise BagError(f"parent directory of {self.path} does not exist")
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-",
                                             dir=self.path.parent))
        self._writer = Rosbag2Writer(self._tmpdir / self.path.name, version=BAG_VERSION,
                                     storage_plugin=STORAGES[self.storage],
                                     chunk_size=self.chunk_size)
        self._writer.open()
        return self

    def write(self, topic: str, msgtype: str, message: Any, log_time_ns: int,
              offered_qos: Sequence[Qos] = ()) -> None:
        """Serialise ``message`` (dict or typestore object) on ``topic`` at ``log_time_ns``.

        ``offered_qos`` is recorded with the topic's connection on its first message (what
        ``ros2 bag play`` publishes it with, e.g. transient local for latched topics).
        """
        if self._writer is None:
            raise BagError("BagWriter.write called outside its `with` block")
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.ts,
                                               offered_qos_profiles=offered_qos)
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise BagError(f"topic {topic} already carries {conn.msgtype}, not {msgtype}")
        data = self.ts.serialize_cdr(build_message(msgtype, message, self.ts), msgtype)
        self._writer.write(conn, int(log_time_ns), data)

    def __exit__(self, exc_type, exc, tb) -> None:
        writer, self._writer = self._writer, None
        try:
            if exc_type is None:
                writer.close()
                if self.path.exists():
                    raise BagError(f"{self.path} appeared while writing; bag left unwritten")
                os.rename(self._tmpdir / self.path.name, self.path)
            else:
                writer.abort()
        finally:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
