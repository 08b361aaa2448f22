"""Reading damaged and unfinished bags: every intact message, never garbage, and a report that
says what was lost and where.

The expected counts come from readers that share no code with ours: the ``mcap`` package's
stream reader read until it fails, and Python's ``sqlite3`` stepping through the table.
"""
import io
import shutil
import sqlite3
import zlib
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.records import Chunk, Footer, Message
from mcap.stream_reader import StreamReader, breakup_chunk
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

from vggt_ros.io.bag_messages import IMAGE_TYPE, BagError, typestore
from vggt_ros.io.bag_reader import Bag, list_topics
from vggt_ros.io.image_stream import read_image_stream

from synth_runs import render_for_damage

FRAMES, W, H, SEED = 16, 32, 24, 2
IMAGE, INFO = "/camera/image_raw", "/camera/camera_info"
CHUNK_KIB = 8  # about three frames per chunk


def _synth_bag(out: Path, storage: str) -> Path:
    return render_for_damage(out, FRAMES, W, H, SEED, storage, CHUNK_KIB) / "bag"


@pytest.fixture(scope="module")
def sqlite_bag(tmp_path_factory) -> Path:
    return _synth_bag(tmp_path_factory.mktemp("synth_sqlite"), "sqlite3")


@pytest.fixture(scope="module")
def mcap_bag(tmp_path_factory) -> Path:
    return _synth_bag(tmp_path_factory.mktemp("synth_mcap"), "mcap")


def _storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def _damaged_copy(bag: Path, dst: Path, edit, keep_metadata: bool = False) -> Path:
    """``dst`` holding the bag's storage file with ``edit(bytes) -> bytes`` applied."""
    dst.mkdir()
    if keep_metadata:
        shutil.copy(bag / "metadata.yaml", dst / "metadata.yaml")
    source = _storage_file(bag)
    (dst / source.name).write_bytes(edit(source.read_bytes()))
    return dst


def _images(bag) -> list[bytes]:
    return [r.data.tobytes() for r in read_image_stream(bag, IMAGE)]


def _stream_reader_images(path: Path) -> int:
    """Image messages the mcap package's stream reader yields before it fails."""
    count, channels = 0, {}
    try:
        with path.open("rb") as handle:
            for record in StreamReader(handle, validate_crcs=True).records:
                if hasattr(record, "topic"):
                    channels[record.id] = record.topic
                elif isinstance(record, Message) and channels.get(record.channel_id) == IMAGE:
                    count += 1
    except Exception:  # the end of what it can read
        pass
    return count


def _image_chunks(path: Path) -> list[tuple[int, Chunk, int]]:
    """(offset, chunk, image messages in it) of every chunk, from the mcap package's summary
    of the intact file."""
    with path.open("rb") as handle:
        summary = make_reader(handle).get_summary()
    image_channels = {c.id for c in summary.channels.values() if c.topic == IMAGE}
    data = path.read_bytes()
    found = []
    for index in summary.chunk_indexes:
        stream = StreamReader(io.BytesIO(data[index.chunk_start_offset:]), skip_magic=True,
                              emit_chunks=True)
        chunk = next(iter(stream.records))
        images = sum(1 for r in breakup_chunk(chunk)
                     if isinstance(r, Message) and r.channel_id in image_channels)
        found.append((index.chunk_start_offset, chunk, images))
    return found


# ------------------------------------------------------------------ integrity on write

def test_every_mcap_chunk_carries_a_crc_of_its_content(mcap_bag):
    path = _storage_file(mcap_bag)
    with path.open("rb") as handle:
        records = list(StreamReader(handle, emit_chunks=True).records)
    chunks = [r for r in records if isinstance(r, Chunk)]
    assert len(chunks) >= 4
    for chunk in chunks:
        assert chunk.uncompressed_crc != 0
        assert chunk.uncompressed_crc == zlib.crc32(chunk.data)  # stored uncompressed
    footer = next(r for r in records if isinstance(r, Footer))
    assert footer.summary_crc != 0


# ------------------------------------------------------------------ unfinished files

@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_cut_mcap_gives_what_a_stream_reader_finds_and_says_where_it_ends(
        mcap_bag, tmp_path, fraction):
    originals = _images(mcap_bag)
    cut = _damaged_copy(mcap_bag, tmp_path / "cut", lambda b: b[:int(len(b) * fraction)])
    bag = Bag(cut)
    recovered = _images(bag)
    assert len(recovered) == _stream_reader_images(cut / "bag.mcap")
    assert 0 < len(recovered) < FRAMES
    assert recovered == originals[:len(recovered)]
    report = bag.report
    assert not report.intact and not report.has_metadata
    assert report.recovered[IMAGE] == len(recovered)
    (damage,) = report.damage
    assert damage.fatal and damage.file == "bag.mcap"
    size = (cut / "bag.mcap").stat().st_size
    assert f"of {size} (" in damage.where
    assert f"recovered {sum(report.recovered.values())} messages ({len(recovered)} on " \
           f"{IMAGE}); the damage starts in bag.mcap at byte" in report.warning(IMAGE)


def test_complete_mcap_in_a_folder_without_metadata_yaml_reads_whole(mcap_bag, tmp_path):
    folder = _damaged_copy(mcap_bag, tmp_path / "nometa", lambda b: b)
    bag = Bag(folder)
    assert _images(bag) == _images(mcap_bag)
    assert bag.report.intact and not bag.report.has_metadata
    assert list_topics(folder) == list_topics(mcap_bag)


def test_cut_sqlite_bag_gives_every_intact_row_and_no_zero_filled_one(tmp_path, sqlite_bag):
    originals = _images(sqlite_bag)
    cut = _damaged_copy(sqlite_bag, tmp_path / "cut", lambda b: b[:int(len(b) * 0.6)])
    # Python's sqlite3 stepping through the table: SQLite fills the cut-off pages with zeros,
    # so the last image it returns may be a whole-looking image with a zeroed tail.
    independent = sqlite3.connect(f"file:{cut / 'bag.db3'}?mode=ro", uri=True)
    independent.execute("PRAGMA writable_schema=ON")
    (image_id,) = independent.execute("SELECT id FROM topics WHERE name = ?",
                                      (IMAGE,)).fetchone()
    stepped = []
    try:
        for (data,) in independent.execute("SELECT data FROM messages WHERE topic_id = ? "
                                           "ORDER BY id", (image_id,)):
            stepped.append(bytes(typestore().deserialize_cdr(data, IMAGE_TYPE).data))
    except sqlite3.DatabaseError:
        pass
    intact = [image for image, original in zip(stepped, originals) if image == original]
    bag = Bag(cut)
    recovered = _images(bag)
    assert 0 < len(recovered) < FRAMES
    assert recovered == originals[:len(recovered)] == intact
    (damage,) = bag.report.damage
    assert damage.fatal and damage.where.startswith("row ")


def test_a_damaged_sqlite_page_loses_only_the_rows_on_it(tmp_path, sqlite_bag):
    originals = _images(sqlite_bag)

    def scribble_page(data: bytes) -> bytes:
        page = len(data) // 4096 // 2 * 4096  # a page in the middle (page size 4 KiB)
        return data[:page] + b"\xff" * 4096 + data[page + 4096:]

    bag = Bag(_damaged_copy(sqlite_bag, tmp_path / "page", scribble_page))
    recovered = _images(bag)
    assert FRAMES - 2 <= len(recovered) < FRAMES and set(recovered) <= set(originals)
    (damage,) = bag.report.damage
    assert not damage.fatal and damage.lost_messages >= 1
    assert sum(bag.report.lost.values()) == damage.lost_messages


# ------------------------------------------------------------------ damaged bytes

def test_flipped_bytes_in_a_chunk_are_caught_by_its_crc_and_only_that_chunk_is_lost(
        mcap_bag, tmp_path):
    path = _storage_file(mcap_bag)
    offset, chunk, images_in_chunk = _image_chunks(path)[2]
    in_chunk = sum(1 for r in breakup_chunk(chunk) if isinstance(r, Message))

    def flip(data: bytes) -> bytes:
        damaged = bytearray(data)
        middle = data.index(chunk.data[:64], offset) + len(chunk.data) // 2
        damaged[middle:middle + 16] = bytes(b ^ 0xFF for b in damaged[middle:middle + 16])
        return bytes(damaged)

    bag = Bag(_damaged_copy(mcap_bag, tmp_path / "flipped", flip, keep_metadata=True))
    recovered = _images(bag)
    originals = _images(mcap_bag)
    assert len(recovered) == FRAMES - images_in_chunk
    assert all(image in originals for image in recovered)  # nothing garbled got through
    report = bag.report
    assert report.damaged_chunks == 1 and sum(report.lost.values()) == in_chunk
    (damage,) = report.damage
    assert not damage.fatal and "CRC mismatch" in damage.reason
    assert damage.where.startswith(f"byte {offset} ") and damage.lost_messages == in_chunk


def test_random_bytes_never_yield_a_message_that_was_not_recorded(mcap_bag, tmp_path):
    rng = np.random.default_rng(0)
    originals = set(_images(mcap_bag))

    def scribble(data: bytes) -> bytes:
        damaged = bytearray(data)
        start = len(data) // 2
        damaged[start:start + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        return bytes(damaged)

    bag = Bag(_damaged_copy(mcap_bag, tmp_path / "scribbled", scribble, keep_metadata=True))
    recovered = _images(bag)
    assert set(recovered) <= originals and len(recovered) < FRAMES
    assert not bag.report.intact


# ------------------------------------------------------------------ what the user must fix

def test_errors_name_the_missing_metadata_yaml_or_storage_file(tmp_path, mcap_bag):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="has no metadata.yaml and no .mcap or .db3 file"):
        Bag(tmp_path / "empty")
    listed = tmp_path / "listed"
    listed.mkdir()
    shutil.copy(mcap_bag / "metadata.yaml", listed / "metadata.yaml")
    with pytest.raises(BagError, match="lists bag.mcap, which is missing: restore it, or "
                                       "remove metadata.yaml"):
        Bag(listed)
    with pytest.raises(BagError, match=f"topic '/nope' not in bag {tmp_path / 'nometa'}"):
        list(Bag(_damaged_copy(mcap_bag, tmp_path / "nometa", lambda b: b)).messages(
            {"/nope": None}))


def test_compressed_bag_is_read_through_rosbags(tmp_path):
    writer = Writer(tmp_path / "zstd", version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.FILE, CompressionFormat.ZSTD)
    with writer:
        conn = writer.add_connection(IMAGE, IMAGE_TYPE, typestore=typestore())
        message = typestore().types[IMAGE_TYPE](
            header=typestore().types["std_msgs/msg/Header"](
                stamp=typestore().types["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                frame_id="cam"),
            height=1, width=2, encoding="mono8", is_bigendian=0, step=2,
            data=np.array([7, 9], np.uint8))
        writer.write(conn, 5, typestore().serialize_cdr(message, IMAGE_TYPE))
    bag = Bag(tmp_path / "zstd")
    assert _images(bag) == [bytes([7, 9])] and bag.report.intact


def test_a_split_recording_whose_last_file_is_empty_gives_the_files_before(mcap_bag, tmp_path):
    folder = tmp_path / "split"
    folder.mkdir()
    shutil.copy(_storage_file(mcap_bag), folder / "bag_0.mcap")
    (folder / "bag_1.mcap").write_bytes(b"")  # the recorder had just opened the next file
    bag = Bag(folder)
    assert _images(bag) == _images(mcap_bag)
    (damage,) = bag.report.damage
    assert damage.file == "bag_1.mcap" and damage.fatal and "empty" in damage.reason
