"""vggt_synth's scale sensors: a registered depth camera and wheel odometry with realistic errors,
while the ground truth stays exact."""
import numpy as np

from vggt_ros.geometry.camera import se3_inverse
from vggt_ros.io.bag_reader import list_topics, read_messages
from vggt_ros.io.images import decode_depth
from vggt_ros.synth import make_sequence
from vggt_ros.synth.cli import main
from vggt_ros.synth.sensors import MOUNT, DepthNoise, OdometryNoise, noisy_depth, wheel_odometry

FRAMES, W, H, SEED = 6, 32, 24, 3


def test_depth_noise_grows_with_range_and_the_sensor_has_holes():
    rng = np.random.default_rng(0)
    near, far = np.full((200, 200), 1.0), np.full((200, 200), 4.0)
    noise_m = [np.nanstd(np.where(d > 0, d, np.nan)) for d in (noisy_depth(near, rng),
                                                                noisy_depth(far, rng))]
    assert noise_m[1] > 5 * noise_m[0]  # quadratic in the range
    scene = np.full((50, 50), 2.0)
    scene[:, 25:] = 8.0  # a wall beyond the sensor's 6 m
    scene[:5] = 0.1  # something closer than its 0.2 m
    reading = noisy_depth(scene, rng, DepthNoise(hole_share=0.0))
    assert np.all(reading[:, 25:] == 0) and np.all(reading[:5] == 0)
    assert np.all(reading[5:, 24] == 0) and np.all(reading[5, :25] == 0)  # depth edges
    assert np.all(reading[6:, :24] > 0)


def test_odometry_integrates_the_mounted_base_motion_with_drift():
    seq = make_sequence(40, W, H, seed=SEED, trajectory="forward")
    exact = wheel_odometry(seq.world_from_cam, np.random.default_rng(0),
                           OdometryNoise(travel_noise=0.0, heading_noise_deg=0.0))
    world_from_base = seq.world_from_cam @ se3_inverse(MOUNT)
    np.testing.assert_allclose(exact, se3_inverse(world_from_base[0]) @ world_from_base,
                               atol=1e-9)
    noisy = wheel_odometry(seq.world_from_cam, np.random.default_rng(0))
    error = np.linalg.norm(noisy[:, :3, 3] - exact[:, :3, 3], axis=1)
    assert 0 < error[8] < error[-1]  # drifts
    travel = np.linalg.norm(exact[8, :3, 3] - exact[0, :3, 3])
    assert error[8] < 0.05 * travel  # while a window's travel stays accurate


def test_the_bag_holds_registered_depth_and_odometry_unless_switched_off(tmp_path):
    seq = make_sequence(FRAMES, W, H, seed=SEED, trajectory="loop")
    assert main([str(tmp_path / "with"), "--frames", str(FRAMES), "--width", str(W),
                 "--height", str(H), "--seed", str(SEED)]) == 0
    depths = [m for _, m in read_messages(tmp_path / "with" / "bag", "/camera/depth/image_raw")]
    assert len(depths) == FRAMES
    for i, msg in enumerate(depths):
        assert (msg.encoding, msg.width, msg.height) == ("16UC1", W, H)
        metres = decode_depth(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        truth = seq.render(i)[1]
        good = np.isfinite(metres)
        assert good.mean() > 0.5
        assert np.median(np.abs(metres[good] / truth[good] - 1)) < 0.02
    odometry = [m for _, m in read_messages(tmp_path / "with" / "bag", "/odom")]
    assert [(m.header.frame_id, m.child_frame_id) for m in odometry[:1]] == [("odom",
                                                                              "base_link")]
    assert main([str(tmp_path / "without"), "--frames", "2", "--width", str(W), "--height",
                 str(H), "--no-depth", "--no-odom"]) == 0
    assert set(list_topics(tmp_path / "without" / "bag")) == {
        "/camera/image_raw", "/camera/camera_info", "/tf"}


def test_an_unregistered_depth_camera_has_its_own_calibration_frame_and_extrinsic(tmp_path):
    from vggt_ros.offline.sensor_feed import BagSensors
    from vggt_ros.synth.sensors import DEPTH_FRAME_ID, depth_camera

    seq = make_sequence(FRAMES, W, H, seed=SEED, trajectory="loop")
    assert main([str(tmp_path / "s"), "--frames", str(FRAMES), "--width", str(W), "--height",
                 str(H), "--seed", str(SEED), "--depth-unregistered", "--no-odom"]) == 0
    bag = tmp_path / "s" / "bag"
    camera = depth_camera(W, H)
    depths = [m for _, m in read_messages(bag, "/camera/depth/image_raw")]
    infos = [m for _, m in read_messages(bag, "/camera/depth/camera_info")]
    assert {(m.header.frame_id, m.width, m.height) for m in depths + infos} == {
        (DEPTH_FRAME_ID, camera.width, camera.height)}
    np.testing.assert_allclose(np.asarray(infos[0].k).reshape(3, 3), camera.K)
    statics = [t for _, m in read_messages(bag, "/tf_static") for t in m.transforms]
    assert [(t.header.frame_id, t.child_frame_id) for t in statics] == [
        ("camera_optical_frame", DEPTH_FRAME_ID)]
    # Reprojected into the colour camera through the bag's own calibration and extrinsic, the
    # sensor's depth is the colour camera's true depth.
    sensors = BagSensors(bag, tolerance_s=0.01, max_gap_s=0.5,
                         depth_topic="/camera/depth/image_raw")
    for i in (0, FRAMES - 1):
        got, problems = sensors.attach(seq.frame(i))
        assert problems == []
        truth = seq.render(i)[1]
        seen = np.isfinite(got.depth_m)
        assert seen.mean() > 0.5
        assert np.median(np.abs(got.depth_m[seen] / truth[seen] - 1)) < 0.02
    sensors.close()
