"""ROS 2 bag and TUM trajectory I/O without a ROS installation (rosbags + NumPy).

Why a wrapper: rosbags raises many different exceptions for unusable input (missing path,
unknown storage, corrupt file, short CDR payload); the offline tools need one exception type
with a message naming the bag, topic and problem. Writing goes through :class:`BagWriter`,
which builds messages from plain dicts (missing fields get ROS defaults) and only makes the
bag visible under its final name once it is complete, so a crash never leaves a half bag
that looks valid.

Images are yielded with their raw fields; turning an encoding into RGB is
``vggt_ros.imaging``'s job.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from rosbags.interfaces import Nodetype
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore
from scipy.spatial.transform import Rotation

from vggt_ros.pipeline.types import CameraIntrinsics

IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_VERSION = 9
_NS = 1_000_000_000
_NUMPY_DTYPES = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "uint8": np.uint8, "int8": np.int8,
    "uint16": np.uint16, "int16": np.int16, "uint32": np.uint32, "int32": np.int32,
    "uint64": np.uint64, "int64": np.int64, "float32": np.float32, "float64": np.float64,
}


class BagError(RuntimeError):
    """A bag cannot be read or written as asked (message says which bag/topic and why)."""


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The ROS 2 Kilted type store (its hashes match the rclpy wheels we run against)."""
    return get_typestore(Stores.ROS2_KILTED)


# --------------------------------------------------------------------------- messages


def build_message(msgtype: str, fields: Any = None, ts: Optional[Typestore] = None) -> Any:
    """A typestore message object from a (nested) dict; objects pass through unchanged.

    Missing fields take ROS defaults (0, "", empty or zero-filled arrays, default nested
    messages). ``builtin_interfaces/msg/Time`` and ``Duration`` fields also accept integer
    nanoseconds. Unknown field names raise ``ValueError`` instead of being dropped.
    """
    ts = ts or typestore()
    if fields is not None and not isinstance(fields, Mapping):
        return fields
    if msgtype not in ts.fielddefs:
        raise ValueError(f"unknown message type {msgtype!r}")
    remaining = dict(fields or {})
    kwargs = {}
    for name, (node, detail) in ts.fielddefs[msgtype][1]:
        kwargs[name] = _field(node, detail, remaining.pop(name, None), ts, f"{msgtype}.{name}")
    if remaining:
        raise ValueError(f"{msgtype} has no field(s) {sorted(remaining)}")
    return ts.types[msgtype](**kwargs)


def _field(node: int, detail: Any, value: Any, ts: Typestore, where: str) -> Any:
    if node == Nodetype.BASE:
        return _scalar(detail[0], value, where)
    if node == Nodetype.NAME:
        if detail in ("builtin_interfaces/msg/Time", "builtin_interfaces/msg/Duration") and \
                isinstance(value, (int, np.integer)):
            value = {"sec": int(value) // _NS, "nanosec": int(value) % _NS}
        return build_message(detail, value, ts)
    (sub_node, sub_detail), size = detail
    if sub_node == Nodetype.BASE and sub_detail[0] in _NUMPY_DTYPES:
        arr = np.asarray([] if value is None else value, dtype=_NUMPY_DTYPES[sub_detail[0]])
        if value is None and node == Nodetype.ARRAY:
            arr = np.zeros(size, dtype=arr.dtype)
        arr = arr.ravel()
        if node == Nodetype.ARRAY and arr.size != size:
            raise ValueError(f"{where} needs exactly {size} values, got {arr.size}")
        return arr
    items = list(value) if value is not None else [None] * (size if node == Nodetype.ARRAY
                                                            else 0)
    if node == Nodetype.ARRAY and len(items) != size:
        raise ValueError(f"{where} needs exactly {size} items, got {len(items)}")
    return [_field(sub_node, sub_detail, item, ts, where) for item in items]


def _scalar(kind: str, value: Any, where: str) -> Any:
    if kind == "string" or kind == "wstring":
        return "" if value is None else str(value)
    if kind == "bool":
        return bool(value)
    if kind.startswith("float"):
        return 0.0 if value is None else float(value)
    if kind in _NUMPY_DTYPES:
        return 0 if value is None else int(value)
    raise ValueError(f"{where}: unsupported field type {kind!r}")


def header(stamp_ns: int, frame_id: str) -> dict:
    """A std_msgs/Header dict (stamp from integer nanoseconds)."""
    return {"stamp": int(stamp_ns), "frame_id": frame_id}


# --------------------------------------------------------------------------- writing


class BagWriter:
    """Writes a rosbag2 (version 9) atomically; connections are added on first use per topic.

    Usage::

        with BagWriter(out / "bag", storage="mcap") as bag:
            bag.write("/camera/image_raw", IMAGE_TYPE, {"header": header(t, fid), ...}, t)

    The bag is assembled in a hidden temporary directory beside ``path`` and renamed to
    ``path`` on a clean exit; on an exception the temporary directory is removed.
    """

    def __init__(self, path: str | os.PathLike, storage: str = "mcap",
                 ts: Optional[Typestore] = None) -> None:
        if storage not in STORAGES:
            raise BagError(f"unknown storage {storage!r}; expected one of {sorted(STORAGES)}")
        self.path = Path(path)
        self.storage = storage
        self.ts = ts or typestore()
        self._writer: Optional[Writer] = None
        self._tmpdir: Optional[Path] = None
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> "BagWriter":
        if self.path.exists():
            raise BagError(f"{self.path} already exists; refusing to overwrite a bag")
        if not self.path.parent.is_dir():
            raise BagError(f"parent directory of {self.path} does not exist")
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.partial-",
                                             dir=self.path.parent))
        self._writer = Writer(self._tmpdir / self.path.name, version=BAG_VERSION,
                              storage_plugin=STORAGES[self.storage])
        self._writer.open()
        return self

    def write(self, topic: str, msgtype: str, message: Any, log_time_ns: int) -> None:
        """Serialise ``message`` (dict or typestore object) on ``topic`` at ``log_time_ns``."""
        if self._writer is None:
            raise BagError("BagWriter.write called outside its `with` block")
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.ts)
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


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ImageRecord:
    """One sensor_msgs/Image from a bag, fields as recorded (not decoded)."""

    stamp_ns: int  # header stamp
    log_time_ns: int  # bag receive time
    frame_id: str
    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: bool
    data: np.ndarray  # uint8 [>= step * height]
    camera_info: Optional[CameraIntrinsics]  # latest calibrated CameraInfo, see reader


def _open_reader(bag_path: str | os.PathLike) -> Reader:
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
    reader = _open_reader(bag_path)
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def _connections(reader: Reader, bag_path: Any, topic: str, msgtype: Optional[str]) -> list:
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        available = sorted({c.topic for c in reader.connections})
        raise BagError(f"topic {topic!r} not in bag {bag_path}; available: {available}")
    wrong = {c.msgtype for c in conns} - {msgtype} if msgtype else set()
    if wrong:
        raise BagError(f"topic {topic!r} in bag {bag_path} carries {sorted(wrong)}, "
                       f"expected {msgtype}")
    return conns


def _decoded(reader: Reader, bag_path: Any, conns: list,
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
    reader = _open_reader(bag_path)
    try:
        conns = _connections(reader, bag_path, topic, msgtype)
        for _, log_time, msg in _decoded(reader, bag_path, conns):
            yield log_time, msg
    finally:
        reader.close()


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * _NS + int(msg.header.stamp.nanosec)


def _intrinsics(msg: Any) -> Optional[CameraIntrinsics]:
    """CameraInfo -> intrinsics; None when uncalibrated (K all zero, the ROS convention)."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if k[0, 0] == 0.0:
        return None
    return CameraIntrinsics(k=k, width=int(msg.width), height=int(msg.height))


def read_image_stream(bag_path: str | os.PathLike, image_topic: str,
                      camera_info_topic: Optional[str] = None,
                      on_bad_message: Optional[Callable[[str], None]] = None
                      ) -> Iterator[ImageRecord]:
    """Images on ``image_topic`` in bag order with raw fields and their camera calibration.

    ``camera_info`` of each record is the latest CameraInfo logged before the image; images
    logged before the first CameraInfo get the first one (drivers often publish the info a
    moment after the image, and calibration does not change within a bag). Without
    ``camera_info_topic`` it is None. Raises BagError for a missing/corrupt bag, a missing
    topic, a wrong message type or image data shorter than ``step * height``; with
    ``on_bad_message``, a single undecodable or malformed message is reported to it and
    skipped instead (a long recording with one bad sample still maps).
    """
    reader = _open_reader(bag_path)
    try:
        image_conns = _connections(reader, bag_path, image_topic, IMAGE_TYPE)
        info_conns = (_connections(reader, bag_path, camera_info_topic, CAMERA_INFO_TYPE)
                      if camera_info_topic else [])
        latest = None
        if info_conns:
            infos = _decoded(reader, bag_path, info_conns)
            first = next(infos, None)
            infos.close()
            if first is None:
                raise BagError(f"topic {camera_info_topic!r} in bag {bag_path} has no messages")
            latest = _intrinsics(first[2])
        for conn, log_time, msg in _decoded(reader, bag_path, image_conns + info_conns,
                                            on_bad_message):
            if conn.msgtype == CAMERA_INFO_TYPE:
                latest = _intrinsics(msg)
                continue
            try:
                record = _image_record(msg, log_time, latest, bag_path, image_topic)
            except BagError as exc:
                if on_bad_message is None:
                    raise
                on_bad_message(str(exc))
                continue
            yield record
    finally:
        reader.close()


def _image_record(msg: Any, log_time: int, info: Optional[CameraIntrinsics], bag_path: Any,
                  topic: str) -> ImageRecord:
    data = np.asarray(msg.data, dtype=np.uint8)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0 or step < width:
        raise BagError(f"image on {topic} in {bag_path} at {_stamp_ns(msg)} ns has invalid "
                       f"size {width}x{height} step {step}")
    if data.size < step * height:
        raise BagError(f"image on {topic} in {bag_path} at {_stamp_ns(msg)} ns is truncated: "
                       f"{data.size} bytes < step*height = {step * height}")
    return ImageRecord(stamp_ns=_stamp_ns(msg), log_time_ns=int(log_time),
                       frame_id=msg.header.frame_id, encoding=msg.encoding, height=height,
                       width=width, step=step, is_bigendian=bool(msg.is_bigendian), data=data,
                       camera_info=info)


# --------------------------------------------------------------------------- TUM


def format_stamp(stamp_ns: int) -> str:
    """Integer nanoseconds -> exact 'seconds.nanoseconds' (9 decimals, no float rounding)."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"negative stamp {stamp_ns} ns")
    return f"{stamp_ns // _NS}.{stamp_ns % _NS:09d}"


def write_tum(path: str | os.PathLike, stamps_ns: np.ndarray, world_from_cam: np.ndarray) -> None:
    """TUM trajectory 'stamp tx ty tz qx qy qz qw' of world_from_cam, written atomically."""
    stamps = np.asarray(stamps_ns)
    poses = np.asarray(world_from_cam, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] not in ((4, 4), (3, 4)) or len(poses) != len(stamps):
        raise ValueError(f"need N stamps and N poses [N,4,4], got {stamps.shape} stamps and "
                         f"poses {poses.shape}")
    quats = Rotation.from_matrix(poses[:, :3, :3]).as_quat() if len(poses) else np.zeros((0, 4))
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    for stamp, t, q in zip(stamps, poses[:, :3, 3], quats):
        values = " ".join(f"{x:.9f}" for x in (*t, *q))
        lines.append(f"{format_stamp(stamp)} {values}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def read_tum(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(stamps_ns [N] int64, world_from_cam [N,4,4]) from a TUM file; '#' lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TUM file not found: {path}")
    stamps, rows = [], []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cols = line.split()
        if len(cols) != 8:
            raise ValueError(f"{path}:{lineno}: expected 8 columns, got {len(cols)}")
        try:
            stamps.append(int((Decimal(cols[0]) * _NS).to_integral_value()))
            rows.append([float(c) for c in cols[1:]])
        except (InvalidOperation, ValueError) as exc:
            raise ValueError(f"{path}:{lineno}: not a number: {line!r}") from exc
    values = np.array(rows, dtype=np.float64).reshape(-1, 7)
    norms = np.linalg.norm(values[:, 3:], axis=1)
    if np.any(~np.isfinite(values)) or np.any(norms < 1e-9):
        bad = int(np.argmax(~np.isfinite(values).all(axis=1) | (norms < 1e-9)))
        raise ValueError(f"{path}: pose {bad} has a non-finite value or a zero quaternion")
    poses = np.tile(np.eye(4), (len(values), 1, 1))
    if len(values):
        poses[:, :3, :3] = Rotation.from_quat(values[:, 3:] / norms[:, None]).as_matrix()
    poses[:, :3, 3] = values[:, :3]
    return np.array(stamps, dtype=np.int64), poses
