"""MCAP storage for rosbags' bag ``Writer`` that writes chunk and summary CRCs.

Why: rosbags' own MCAP writer leaves every chunk CRC at 0, so a reader cannot tell a damaged
chunk from a good one and decodes the garbage. The ``mcap`` package's writer (maintained with
the format) computes the CRCs; rosbags keeps doing the rosbag2 part (connections, type hashes,
QoS, metadata.yaml). The file layout is what rosbag2's MCAP plugin writes: profile ``ros2``,
schemas in ``ros2msg``/``ros2idl``, ``cdr`` channels with their ``offered_qos_profiles`` and a
``rosbag2`` metadata record.
"""
from __future__ import annotations

import functools
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Literal

from mcap.writer import CompressionType
from mcap.writer import Writer as McapFileWriter
from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionMode

DEFAULT_CHUNK_SIZE = 1 << 20  # bytes: what rosbags and the mcap package use by default


class CrcMcapStorage:
    """rosbags ``StorageWriter`` protocol (``add_msgtype``, ``add_connection``, ``write``,
    ``close``, ``abort``) on top of the ``mcap`` package's writer, CRCs enabled."""

    def __init__(self, path: Path, compression: CompressionMode,
                 chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.path = path / f"{path.name}.mcap"
        self._file = self.path.open("xb")
        self._mcap = McapFileWriter(
            self._file, chunk_size=chunk_size,
            compression=(CompressionType.ZSTD if compression == CompressionMode.STORAGE
                         else CompressionType.NONE),
            enable_crcs=True)
        self._mcap.start(profile="ros2", library=f"vggt_ros, mcap {package_version('mcap')}")
        self._schema_ids: dict[str, int] = {}
        self._channel_ids: dict[int, int] = {}  # rosbags connection id -> mcap channel id

    def add_msgtype(self, connection: Connection) -> None:
        encoding = ("ros2msg" if connection.msgdef.format == MessageDefinitionFormat.MSG
                    else "ros2idl")
        self._schema_ids[connection.msgtype] = self._mcap.register_schema(
            connection.msgtype, encoding, connection.msgdef.data.encode())

    def add_connection(self, connection: Connection, offered_qos_profiles: str) -> None:
        self._channel_ids[connection.id] = self._mcap.register_channel(
            connection.topic, connection.ext.serialization_format,
            self._schema_ids[connection.msgtype],
            {"offered_qos_profiles": offered_qos_profiles})

    def write(self, connection: Connection, timestamp: int, data: bytes | memoryview) -> None:
        self._mcap.add_message(self._channel_ids[connection.id], log_time=timestamp,
                               data=bytes(data), publish_time=timestamp)

    def close(self, version: int, metadata: str) -> None:  # noqa: ARG002 (protocol signature)
        self._mcap.add_metadata("rosbag2", {"serialized_metadata": metadata})
        self._mcap.finish()
        self._file.close()

    def abort(self) -> None:
        """Leave the file without summary and footer (the caller removes it)."""
        self._file.close()


class Rosbag2Writer(Writer):
    """rosbags' ``Writer`` whose MCAP files carry CRCs (``chunk_size`` in bytes)."""

    def __init__(self, path: Path, *, version: Literal[8, 9], storage_plugin: StoragePlugin,
                 chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        super().__init__(path, version=version, storage_plugin=storage_plugin)
        plugins: dict[StoragePlugin, Any] = dict(Writer.STORAGE_PLUGINS)
        plugins[StoragePlugin.MCAP] = functools.partial(CrcMcapStorage, chunk_size=chunk_size)
        self.STORAGE_PLUGINS = plugins
