"""vggt_synth bags and vggt_ros.io (bags, TUM): round trips through rosbags, TUM files, clear
errors."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, Writer
from scipy.spatial.transform import Rotation

from vggt_ros.io.bag_messages import IMAGE_TYPE, BagError, build_message, typestore
from vggt_ros.io.bag_reader import Bag, list_topics, read_messages
from vggt_ros.io.bag_writer import BagWriter
from vggt_ros.io.image_stream import read_image_stream
from vggt_ros.io.tum import read_tum, write_tum
from vggt_ros.topics.messages import header
from vggt_ros.synth import make_sequence
from vggt_ros.synth.cli import GROUND_TRUTH_FRAME, main

FRAMES, W, H, SEED = 10, 64, 48, 4
ARGS = ["--frames", str(FRAMES), "--width", str(W), "--height", str(H), "--seed", str(SEED)]
IMAGE, INFO, TF = "/camera/image_raw", "/camera/camera_info", "/tf"
DEPTH, DEPTH_INFO, ODOM, TF_STATIC = ("/camera/depth/image_raw", "/camera/depth/camera_info",
                                      "/odom", "/tf_static")


@pytest.fixture(scope="module")
def expected():
    return make_sequence(FRAMES, W, H, seed=SEED, trajectory="loop")


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def synth_dir(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"synth_{request.param}")
    assert main([str(out), *ARGS, "--storage", request.param]) == 0
    return out


def test_bag_contents_read_with_rosbags(synth_dir, expected):
    bag = synth_dir / "bag"
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9
    assert not [p for p in synth_dir.iterdir() if p.name.startswith(".")]  # no temp leftovers
    ts = typestore()
    counts, stamps = {}, {}
    with Reader(bag) as reader:
        for conn, log_time, raw in reader.messages():
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            if conn.topic in (TF, TF_STATIC):
                tf = msg.transforms[0]
                edge = (tf.header.frame_id, tf.child_frame_id)
                assert edge in {("world", GROUND_TRUTH_FRAME), ("odom", "base_link"),
                                ("base_link", "camera_optical_frame")}, edge
                head = tf.header
            else:
                head = msg.header
                assert head.frame_id == ("odom" if conn.topic == ODOM else
                                         "camera_optical_frame")
            stamp = head.stamp.sec * 10**9 + head.stamp.nanosec
            assert stamp == log_time
            stamps.setdefault(conn.topic, []).append(stamp)
    # By default the bag also holds the scale sensors: registered depth and wheel odometry.
    assert counts == {IMAGE: FRAMES, INFO: FRAMES, TF: 2 * FRAMES, DEPTH: FRAMES,
                      DEPTH_INFO: FRAMES, ODOM: FRAMES, TF_STATIC: 1}
    for topic in (IMAGE, INFO, DEPTH, DEPTH_INFO, ODOM):
        np.testing.assert_array_equal(stamps[topic], expected.stamps_ns)
    np.testing.assert_array_equal(stamps[TF], np.repeat(expected.stamps_ns, 2))
    assert list_topics(bag) == {IMAGE: IMAGE_TYPE, INFO: "sensor_msgs/msg/CameraInfo",
                                TF: "tf2_msgs/msg/TFMessage", DEPTH: IMAGE_TYPE,
                                DEPTH_INFO: "sensor_msgs/msg/CameraInfo",
                                ODOM: "nav_msgs/msg/Odometry",
                                TF_STATIC: "tf2_msgs/msg/TFMessage"}


def test_image_stream_matches_rendered_frames(synth_dir, expected):
    records = list(read_image_stream(synth_dir / "bag", IMAGE, INFO))
    assert len(records) == FRAMES
    for i in (0, FRAMES - 1):
        rec = records[i]
        assert rec.stamp_ns == expected.stamps_ns[i]
        assert (rec.encoding, rec.width, rec.height, rec.step) == ("rgb8", W, H, 3 * W)
        assert rec.frame_id == "camera_optical_frame" and not rec.is_bigendian
        np.testing.assert_array_equal(rec.data.reshape(H, W, 3), expected.render(i)[0])
        np.testing.assert_allclose(rec.camera_info.k, expected.K)
        assert (rec.camera_info.width, rec.camera_info.height) == (W, H)
    _, info = next(read_messages(synth_dir / "bag", INFO))
    assert info.distortion_model == "plumb_bob" and not np.any(info.d)
    np.testing.assert_allclose(np.asarray(info.p).reshape(3, 4)[:, :3], expected.K)
    np.testing.assert_array_equal(np.asarray(info.r).reshape(3, 3), np.eye(3))
    assert all(r.camera_info is None for r in read_image_stream(synth_dir / "bag", IMAGE))


def test_tum_file_and_tf_match_ground_truth(synth_dir, expected):
    lines = [line for line in (synth_dir / "groundtruth_tum.txt").read_text().splitlines()
             if not line.startswith("#")]
    assert len(lines) == FRAMES and all(len(line.split()) == 8 for line in lines)
    assert lines[1].split()[0] == "1.100000000"
    stamps, poses = read_tum(synth_dir / "groundtruth_tum.txt")
    np.testing.assert_array_equal(stamps, expected.stamps_ns)
    np.testing.assert_allclose(poses, expected.world_from_cam, atol=1e-8)
    ground_truth = [m.transforms[0] for _, m in read_messages(synth_dir / "bag", TF)
                    if m.transforms[0].child_frame_id == GROUND_TRUTH_FRAME]
    assert len(ground_truth) == FRAMES
    for i, transform in enumerate(ground_truth):
        tr = transform.transform
        np.testing.assert_allclose([tr.translation.x, tr.translation.y, tr.translation.z],
                                   expected.world_from_cam[i][:3, 3], atol=1e-12)
        quat = [tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w]
        np.testing.assert_allclose(Rotation.from_quat(quat).as_matrix(),
                                   expected.world_from_cam[i][:3, :3], atol=1e-12)


def test_console_script_and_existing_bag_refused(tmp_path, capsys):
    script = Path(sys.executable).with_name("vggt_synth")
    out = tmp_path / "run"
    done = subprocess.run([str(script), str(out), "--frames", "2", "--width", "32",
                           "--height", "24", "--storage", "sqlite3"],
                          capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert list_topics(out / "bag")
    assert main([str(out), "--frames", "2", "--width", "32", "--height", "24"]) == 2
    assert "already exists" in capsys.readouterr().err


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_and_non_bag_paths(tmp_path):
    with pytest.raises(BagError, match="not found"):
        list_topics(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="has no metadata.yaml and no .mcap or .db3 file"):
        list_topics(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BagError, match="neither an MCAP .* nor a SQLite3"):
        next(read_image_stream(tmp_path / "notes.txt", IMAGE))
    (tmp_path / "notes.mcap").write_text("hello")
    with pytest.raises(BagError, match="does not start with the MCAP magic"):
        next(read_image_stream(tmp_path / "notes.mcap", IMAGE))


@pytest.mark.parametrize("codec", ["png", "jpeg"])
def test_compressed_image_stream_decodes_to_the_rendered_frames(tmp_path, expected, codec):
    """--image-format writes CompressedImage on image_raw/compressed, as image_transport
    does; the stream takes the type from the bag and decodes (PNG exactly, JPEG closely)."""
    assert main([str(tmp_path), *ARGS, "--image-format", codec, "--no-depth", "--no-odom"]) == 0
    assert list_topics(tmp_path / "bag")[IMAGE + "/compressed"] == \
        "sensor_msgs/msg/CompressedImage"
    records = list(read_image_stream(tmp_path / "bag", IMAGE + "/compressed", INFO))
    assert [r.stamp_ns for r in records] == list(expected.stamps_ns)
    for i in (0, FRAMES - 1):
        assert records[i].compressed_format == f"rgb8; {codec} compressed bgr8"
        np.testing.assert_allclose(records[i].camera_info.k, expected.K)
        error = np.abs(records[i].rgb().astype(int) - expected.render(i)[0])
        # (JPEG at quality 95 on these textures at 64x48: 3.7 grey levels on average; red and
        # blue swapped: 15)
        assert error.max() == 0 if codec == "png" else error.mean() < 6.0


def test_missing_topic_and_wrong_type(synth_dir):
    with pytest.raises(BagError, match="'/camera/left' not in bag"):
        next(read_image_stream(synth_dir / "bag", "/camera/left"))
    with pytest.raises(BagError, match="expected sensor_msgs/msg/Image"):
        next(read_image_stream(synth_dir / "bag", TF))
    with pytest.raises(BagError, match="expected sensor_msgs/msg/CameraInfo"):
        next(read_image_stream(synth_dir / "bag", IMAGE, IMAGE))


def test_truncated_bag_file_gives_the_messages_before_the_cut(synth_dir, tmp_path):
    bag = _copy(synth_dir / "bag", tmp_path / "bag")
    data_file = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    raw = data_file.read_bytes()
    data_file.write_bytes(raw[: len(raw) // 2])
    complete = [r.stamp_ns for r in read_image_stream(synth_dir / "bag", IMAGE)]
    reader = Bag(bag)
    cut = [r.stamp_ns for r in read_image_stream(reader, IMAGE)]
    assert cut == complete[:len(cut)] and len(cut) < FRAMES
    assert not reader.report.intact and reader.report.damage[-1].fatal


def test_corrupt_message_payload_raises(tmp_path):
    with Writer(tmp_path / "garbage", version=9) as writer:
        conn = writer.add_connection(IMAGE, IMAGE_TYPE, typestore=typestore())
        writer.write(conn, 1, b"\x00\x01\x00\x00\x07\x00")
    with pytest.raises(BagError, match="message 0 on /camera/image_raw .* truncated or corrupt"):
        next(read_image_stream(tmp_path / "garbage", IMAGE))


def test_bad_messages_can_be_skipped_instead(tmp_path):
    with BagWriter(tmp_path / "mixed", storage="mcap") as bag:
        for stamp, size in ((1, 48), (2, 40), (3, 48)):  # the second image is truncated
            bag.write(IMAGE, IMAGE_TYPE, {"header": header(stamp, "cam"), "height": 4,
                                          "width": 4, "encoding": "rgb8", "step": 12,
                                          "data": np.zeros(size, np.uint8)}, stamp)
    reasons = []
    records = list(read_image_stream(tmp_path / "mixed", IMAGE, on_bad_message=reasons.append))
    assert [r.stamp_ns for r in records] == [1, 3]
    assert len(reasons) == 1 and "truncated" in reasons[0]


def test_truncated_image_payload_raises(tmp_path):
    with BagWriter(tmp_path / "short", storage="mcap") as bag:
        bag.write(IMAGE, IMAGE_TYPE, {"header": header(5, "cam"), "height": 4, "width": 4,
                                      "encoding": "rgb8", "step": 12,
                                      "data": np.zeros(40, np.uint8)}, 5)
    with pytest.raises(BagError, match="truncated: 40 bytes < step\\*height = 48"):
        next(read_image_stream(tmp_path / "short", IMAGE))


def test_bag_writer_is_atomic_and_validates(tmp_path):
    target = tmp_path / "bag"
    with pytest.raises(RuntimeError, match="boom"):
        with BagWriter(target) as bag:
            bag.write(TF, "tf2_msgs/msg/TFMessage", {"transforms": [{}]}, 1)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # neither the bag nor its temporary directory
    with BagWriter(target, storage="sqlite3") as bag:
        bag.write(TF, "tf2_msgs/msg/TFMessage", {"transforms": [{"child_frame_id": "a"}]}, 1)
        with pytest.raises(BagError, match="already carries"):
            bag.write(TF, IMAGE_TYPE, {}, 2)
    (_, msg), = read_messages(target, TF)
    assert msg.transforms[0].child_frame_id == "a" and msg.transforms[0].transform.rotation.w == 0
    with pytest.raises(BagError, match="already exists"):
        BagWriter(target).__enter__()
    with pytest.raises(BagError, match="unknown storage"):
        BagWriter(tmp_path / "x", storage="rosbag1")
    with pytest.raises(ValueError, match="no field"):
        build_message("geometry_msgs/msg/Point", {"x": 1.0, "w": 2.0})
    with pytest.raises(ValueError, match="exactly 9"):
        build_message("sensor_msgs/msg/CameraInfo", {"k": np.eye(2)})


def test_tum_round_trip_exact_stamps_and_errors(tmp_path):
    stamps = np.array([1_700_000_000_123_456_789, 1_700_000_000_223_456_789], dtype=np.int64)
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[1, :3, :3] = Rotation.from_euler("xyz", [0.3, -1.2, 2.5]).as_matrix()
    poses[1, :3, 3] = [1.5, -2.25, 0.125]
    write_tum(tmp_path / "t.txt", stamps, poses)
    got_stamps, got_poses = read_tum(tmp_path / "t.txt")
    np.testing.assert_array_equal(got_stamps, stamps)
    np.testing.assert_allclose(got_poses, poses, atol=1e-8)
    (tmp_path / "bad.txt").write_text("1.0 0 0 0 0 0 1\n")
    with pytest.raises(ValueError, match="bad.txt:1: expected 8 columns, got 7"):
        read_tum(tmp_path / "bad.txt")
    (tmp_path / "zero.txt").write_text("1.0 0 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match="zero quaternion"):
        read_tum(tmp_path / "zero.txt")
    with pytest.raises(ValueError, match="N stamps and N poses"):
        write_tum(tmp_path / "x.txt", stamps[:1], poses)


def test_parallel_rendering_writes_the_same_images(tmp_path):
    from vggt_ros.synth.cli import write_sequence_bag

    seq = make_sequence(num_frames=6, width=32, height=24, seed=5)
    write_sequence_bag(seq, tmp_path / "serial", workers=1)
    write_sequence_bag(seq, tmp_path / "parallel", workers=2)
    serial = [r.data.tobytes() for r in read_image_stream(tmp_path / "serial", "/camera/image_raw")]
    parallel = [r.data.tobytes()
                for r in read_image_stream(tmp_path / "parallel", "/camera/image_raw")]
    assert len(serial) == 6 and serial == parallel
