"""Camera images from a bag, each paired with the calibration that was valid for it.

Images (``sensor_msgs/Image``, or ``sensor_msgs/CompressedImage`` as most robots record their
cameras) are yielded with their fields as recorded; turning them into RGB is
``vggt_ros.io.images``' job (:meth:`ImageRecord.rgb`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np

from vggt_ros.io.bag_messages import CAMERA_INFO_TYPE, COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, BagError
from vggt_ros.io.bag_reader import Bag, decoded_messages
from vggt_ros.io.images import decode_compressed, decode_image
from vggt_ros.io.stamps import join_ns
from vggt_ros.pipeline.types import CameraIntrinsics


# The types an image topic may carry (a depth topic: raw Image only).
COLOUR_IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)


@dataclass(frozen=True)
class ImageRecord:
    """One image from a bag, fields as recorded (not decoded). A CompressedImage has its
    ``compressed_format`` (e.g. "jpeg") and ``data`` holds the compressed bytes; its encoding
    is empty and its size is known only once decoded (0 here)."""

    stamp_ns: int  # header stamp
    log_time_ns: int  # bag receive time
    frame_id: str
    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: bool
    data: np.ndarray  # uint8 [>= step * height], or the compressed bytes
    camera_info: Optional[CameraIntrinsics]  # latest calibrated CameraInfo, see reader
    compressed_format: Optional[str] = None  # None: a raw sensor_msgs/Image

    def rgb(self) -> np.ndarray:
        """HxWx3 uint8 RGB; raises ``ImageDecodeError`` (with its ``kind``)."""
        if self.compressed_format is not None:
            return decode_compressed(self.compressed_format, self.data)
        return decode_image(self.encoding, self.height, self.width, self.step, self.data,
                            self.is_bigendian)


def _stamp_ns(msg: Any) -> int:
    return join_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)


def _intrinsics(msg: Any) -> Optional[CameraIntrinsics]:
    """CameraInfo -> intrinsics; None when uncalibrated (K all zero, the ROS convention)."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if k[0, 0] == 0.0:
        return None
    return CameraIntrinsics(k=k, width=int(msg.width), height=int(msg.height))


def read_image_stream(bag: Bag | str | os.PathLike, image_topic: str,
                      camera_info_topic: Optional[str] = None,
                      on_bad_message: Optional[Callable[[str], None]] = None,
                      accepted_types: tuple[str, ...] = COLOUR_IMAGE_TYPES
                      ) -> Iterator[ImageRecord]:
    """Images on ``image_topic`` in bag order with raw fields and their camera calibration.

    ``accepted_types``: the message types the topic may carry (Image or CompressedImage by
    default; a depth stream passes Image only).

    ``camera_info`` of each record is the latest CameraInfo logged before the image; images
    logged before the first CameraInfo get the first one (drivers often publish the info a
    moment after the image, and calibration does not change within a bag). Without
    ``camera_info_topic`` it is None. Raises BagError for a missing or unreadable bag, a
    missing topic, a wrong message type or image data shorter than ``step * height``; with
    ``on_bad_message``, a single undecodable or malformed message is reported to it and
    skipped instead (a long recording with one bad sample still maps). Damage in the storage
    files is skipped by the reader and described in ``bag.report`` (pass a :class:`Bag` to
    read it afterwards).
    """
    bag = bag if isinstance(bag, Bag) else Bag(bag)
    latest = None
    topics = {image_topic: accepted_types}
    if camera_info_topic:
        topics[camera_info_topic] = CAMERA_INFO_TYPE
        infos = decoded_messages(bag.messages({camera_info_topic: CAMERA_INFO_TYPE}), bag.path)
        first = next(infos, None)
        infos.close()
        if first is None:
            raise BagError(f"topic {camera_info_topic!r} in bag {bag.path} has no messages")
        latest = _intrinsics(first[1])
    for raw, msg in decoded_messages(bag.messages(topics), bag.path, on_bad_message):
        if raw.topic != image_topic:
            latest = _intrinsics(msg)
            continue
        try:
            record = _image_record(msg, raw.log_time_ns, latest, bag.path, image_topic)
        except BagError as exc:
            if on_bad_message is None:
                raise
            on_bad_message(str(exc))
            continue
        yield record


def _image_record(msg: Any, log_time: int, info: Optional[CameraIntrinsics], bag_path: Any,
                  topic: str) -> ImageRecord:
    data = np.asarray(msg.data, dtype=np.uint8)
    if hasattr(msg, "format"):  # CompressedImage: checked when decoded
        return ImageRecord(stamp_ns=_stamp_ns(msg), log_time_ns=int(log_time),
                           frame_id=msg.header.frame_id, encoding="", height=0, width=0,
                           step=0, is_bigendian=False, data=data, camera_info=info,
                           compressed_format=str(msg.format))
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
