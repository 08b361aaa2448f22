"""Messages from an MCAP file record by record, complete or not, checking every chunk's CRC.

Why not rosbags' MCAP reader: it needs the footer and summary (an unfinished recording has
neither), and it stops at the first chunk whose CRC does not match. Here the file is read from
the front, so everything up to the last intact record is found. The ``mcap`` package parses
each record and checks chunk CRCs; this module only decides what to do with damage:

* a chunk whose CRC does not match (or that does not decompress) is skipped and counted; the
  message indexes written after it tell how many messages, on which topics, were lost;
* a record that cannot be framed (a length past the end of the file, an unknown opcode) ends
  reading: the file was cut there (an unfinished recording) or is damaged beyond that point;
* a file that ends without a footer is an unfinished recording: everything read is kept.

Messages come in file order, which is recording order.
"""
from __future__ import annotations

import struct
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, Collection, Iterator, Optional

from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Message, MessageIndex, Schema
from mcap.stream_reader import CRCValidationError, breakup_chunk

from vggt_ros.io.bag_messages import BagError
from vggt_ros.io.read_report import Damage, RawMessage, ReadReport

MAGIC = b"\x89MCAP0\r\n"
_FRAME = struct.Struct("<BQ")  # every MCAP record: opcode (uint8), body length (uint64)
_KNOWN = {int(op) for op in Opcode}
_PRIVATE = range(0x80, 0x100)  # opcodes the spec reserves for user records


def _where(offset: int, size: int) -> str:
    return f"byte {offset} of {size} ({100 * offset // max(size, 1)} %)"


class McapRecovery:
    """One pass over one MCAP file; damage and counts go to ``report``."""

    def __init__(self, path: Path, report: ReadReport) -> None:
        self.path = path
        self.report = report
        self.size = path.stat().st_size
        self._schemas: dict[int, str] = {}  # schema id -> message type
        self._channels: dict[int, tuple[str, str, str]] = {}  # id -> topic, type, encoding
        self._lost_chunk: Optional[Damage] = None  # the damaged chunk whose indexes follow

    def messages(self, topics: Collection[str]) -> Iterator[RawMessage]:
        """Intact messages on ``topics`` (a file that is no MCAP at all is fatal damage at
        byte 0: the other files of the bag are still read)."""
        self.report.files.append(str(self.path))
        with self.path.open("rb") as handle:
            magic = handle.read(len(MAGIC))
            if magic != MAGIC:
                self._stop(0, "the file is empty" if not magic
                           else "the file does not start with the MCAP magic (not an MCAP file)")
                return
            yield from self._records(handle, len(MAGIC), topics)

    def _records(self, handle: BinaryIO, offset: int,
                 topics: Collection[str]) -> Iterator[RawMessage]:
        while True:
            frame = handle.read(_FRAME.size)
            if len(frame) < _FRAME.size:
                self._stop(offset, "the file ends without a footer (an unfinished recording)")
                return
            opcode, length = _FRAME.unpack(frame)
            if opcode not in _KNOWN and opcode not in _PRIVATE:
                self._stop(offset, f"unknown record opcode {opcode:#04x} (damaged bytes)")
                return
            if length > self.size - offset - _FRAME.size:
                self._stop(offset, f"a {Opcode(opcode).name if opcode in _KNOWN else 'private'} "
                           f"record runs past the end of the file (cut short)")
                return
            body = handle.read(length)
            if opcode == Opcode.FOOTER:
                return
            yield from self._record(opcode, body, offset, topics)
            offset += _FRAME.size + length

    def _stop(self, offset: int, reason: str) -> None:
        self.report.add(Damage(self.path.name, _where(offset, self.size), reason, fatal=True))

    def _record(self, opcode: int, body: bytes, offset: int,
                topics: Collection[str]) -> Iterator[RawMessage]:
        stream = ReadDataStream(BytesIO(body))
        try:
            if opcode == Opcode.CHUNK:
                chunk = Chunk.read(stream)
            elif opcode == Opcode.MESSAGE_INDEX and self._lost_chunk is not None:
                self._count_lost(MessageIndex.read(stream))
                return
            elif opcode == Opcode.SCHEMA:
                loose = Schema.read(stream)
            elif opcode == Opcode.CHANNEL:
                loose = Channel.read(stream)
            elif opcode == Opcode.MESSAGE:  # outside a chunk no CRC guards it
                loose = Message.read(stream, len(body))
            else:
                return  # indexes, statistics, metadata: not needed to read messages
        except Exception as exc:  # the mcap parser on damaged bytes: struct, EOF, decode
            reason = f"unreadable {Opcode(opcode).name} record ({type(exc).__name__})"
            if opcode == Opcode.CHUNK:
                self._damaged_chunk(offset, reason)
            else:
                self.report.add(Damage(self.path.name, _where(offset, self.size), reason,
                                       fatal=False))
            return
        if opcode == Opcode.CHUNK:
            yield from self._chunk(chunk, offset, topics)
        else:
            yield from self._inner([loose], topics)

    def _chunk(self, chunk: Chunk, offset: int,
               topics: Collection[str]) -> Iterator[RawMessage]:
        try:
            records = breakup_chunk(chunk, validate_crc=True)
        except CRCValidationError:
            self._damaged_chunk(offset, "chunk CRC mismatch (damaged bytes)")
            return
        except Exception as exc:  # decompression or record parsing of damaged bytes
            self._damaged_chunk(offset, f"chunk does not decode ({type(exc).__name__})")
            return
        self.report.chunks += 1
        self._lost_chunk = None
        if chunk.uncompressed_crc == 0:
            self.report.unverified_chunks += 1
        yield from self._inner(records, topics)

    def _damaged_chunk(self, offset: int, reason: str) -> None:
        """Count a chunk that is skipped; its message indexes (next records) count the loss."""
        self.report.chunks += 1
        self.report.damaged_chunks += 1
        self._lost_chunk = self.report.add(Damage(self.path.name, _where(offset, self.size),
                                                  reason, fatal=False, lost_messages=0))

    def _count_lost(self, index: MessageIndex) -> None:
        channel = self._channels.get(index.channel_id)
        topic = channel[0] if channel else f"<channel {index.channel_id}>"
        self.report.lost[topic] += len(index.records)
        self._lost_chunk.lost_messages += len(index.records)

    def _inner(self, records: list, topics: Collection[str]) -> Iterator[RawMessage]:
        for record in records:
            if isinstance(record, Schema):
                self._schemas[record.id] = record.name
            elif isinstance(record, Channel):
                msgtype = self._schemas.get(record.schema_id, "")
                self._channels[record.id] = (record.topic, msgtype, record.message_encoding)
                self.report.topics.setdefault(record.topic, msgtype)
            elif isinstance(record, Message):
                channel = self._channels.get(record.channel_id)
                if channel is None:  # its Channel record was in a damaged chunk
                    self.report.lost[f"<channel {record.channel_id}>"] += 1
                    continue
                topic, msgtype, encoding = channel
                self.report.recovered[topic] += 1
                if topic in topics:
                    if encoding != "cdr":
                        raise BagError(f"topic {topic!r} in {self.path} is encoded as "
                                       f"{encoding!r}; only ROS 2 CDR can be read")
                    yield RawMessage(topic, msgtype, record.log_time, record.data)
