"""numpy <-> rclpy messages: building (rap_ros.nodes.conversions) and decoding (rap_ros.io.messages)
round trips, the REP-103 axes and the diagnostics helpers (pure functions, no node)."""
import math

import numpy as np
import pytest

pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped  # noqa: E402
from nav_msgs.msg import Path  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from rap_ros import geometry as geo  # noqa: E402
from rap_ros.io import messages as msgs  # noqa: E402
from rap_ros.nodes import conversions as cv  # noqa: E402

RNG = np.random.default_rng(0)


def random_rgb(height=5, width=7):
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_image_round_trip(encoding):
    channels, dtype = msgs.IMAGE_ENCODINGS[encoding]
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    pixels = RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    msg = cv.array_to_image(pixels, encoding, frame_id="cam")
    assert msg.step == 7 * channels * np.dtype(dtype).itemsize and msg.header.frame_id == "cam"
    np.testing.assert_array_equal(msgs.image_to_array(msg), pixels)


def test_rgb8_from_every_encoding():
    rgb = random_rgb()
    bgr = rgb[..., ::-1].copy()
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    cases = {"rgb8": rgb, "bgr8": bgr, "rgba8": np.concatenate([rgb, alpha], -1),
             "bgra8": np.concatenate([bgr, alpha], -1)}
    for encoding, pixels in cases.items():
        np.testing.assert_array_equal(msgs.image_to_rgb8(cv.array_to_image(pixels, encoding)), rgb)
    grey = rgb[..., 0]
    out = msgs.image_to_rgb8(cv.array_to_image(grey, "mono8"))
    np.testing.assert_array_equal(out, np.stack([grey] * 3, -1))
    out16 = msgs.image_to_rgb8(cv.array_to_image(grey.astype(np.uint16) * 256 + 17, "mono16"))
    np.testing.assert_array_equal(out16, np.stack([grey] * 3, -1))


def test_step_padding_and_big_endian():
    pixels = RNG.integers(0, 65535, (4, 3), dtype=np.uint16)
    padded = np.zeros((4, 10), np.uint8)  # 6 bytes of pixels + 4 bytes of padding per row
    padded[:, :6] = pixels.astype(">u2").view(np.uint8).reshape(4, 6)
    msg = Image(height=4, width=3, encoding="mono16", is_bigendian=1, step=10,
                data=padded.tobytes())
    np.testing.assert_array_equal(msgs.image_to_array(msg), pixels)
    rgb = random_rgb(3, 2)
    rows = np.zeros((3, 8), np.uint8)
    rows[:, :6] = rgb.reshape(3, 6)
    msg = Image(height=3, width=2, encoding="rgb8", step=8, data=rows.tobytes())
    np.testing.assert_array_equal(msgs.image_to_rgb8(msg), rgb)


@pytest.mark.parametrize("msg, match", [
    (Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8)), "unsupported"),
    (Image(height=0, width=2, encoding="rgb8", step=6, data=b""), "zero-sized"),
    (Image(height=2, width=0, encoding="rgb8", step=0, data=b""), "zero-sized"),
    (Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(11)), "fewer than"),
    (Image(height=2, width=2, encoding="rgb8", step=4, data=bytes(8)), "shorter than a row"),
])
def test_bad_images_raise(msg, match):
    with pytest.raises(ValueError, match=match):
        msgs.image_to_array(msg)


def test_compressed_round_trip():
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :12] = (250, 10, 10)
    rgb[:, 12:] = (10, 10, 250)
    np.testing.assert_array_equal(msgs.compressed_to_rgb8(cv.rgb8_to_compressed(rgb, "png")), rgb)
    jpeg = msgs.compressed_to_rgb8(cv.rgb8_to_compressed(rgb, "jpeg"))
    assert jpeg.shape == rgb.shape and np.abs(jpeg.astype(int) - rgb).mean() < 8
    from sensor_msgs.msg import CompressedImage
    with pytest.raises(ValueError):
        msgs.compressed_to_rgb8(CompressedImage(format="jpeg", data=b"not a jpeg"))
    with pytest.raises(ValueError):
        msgs.compressed_to_rgb8(CompressedImage(format="jpeg"))


def test_camera_info():
    K = np.array([[100.0, 0, 31.5], [0, 101.0, 23.5], [0, 0, 1]])
    msg = cv.K_to_camera_info(K, 64, 48, frame_id="cam")
    K2, size = msgs.camera_info_to_K(msg)
    np.testing.assert_allclose(K2, K)
    assert size == (64, 48) and len(msg.p) == 12 and msg.p[0] == 100.0
    for bad in (np.zeros((3, 3)), np.diag([-1.0, 100.0, 1.0]), np.diag([np.nan, 1, 1])):
        info = CameraInfo(width=64, height=48, k=bad.reshape(-1).tolist())
        with pytest.raises(ValueError):
            msgs.camera_info_to_K(info)
    with pytest.raises(ValueError, match="zero image size"):
        msgs.camera_info_to_K(cv.K_to_camera_info(K, 0, 48))
    K3 = geo.K_from_fov(90.0, 64, 48)
    assert math.isclose(K3[0, 0], 32.0) and K3[0, 2] == 31.5


def random_pose():
    from rap_ros.geometry import random_rotation

    T = np.eye(4)
    T[:3, :3] = random_rotation(RNG, 1)[0]
    T[:3, 3] = RNG.normal(size=3)
    return T


def test_pose_and_transform_round_trip():
    T = random_pose()
    np.testing.assert_allclose(msgs.pose_to_matrix(cv.matrix_to_pose(T)), T, atol=1e-12)
    stamped = cv.matrix_to_pose_stamped(T, cv.seconds_to_stamp(3.25), "odom")
    assert stamped.header.frame_id == "odom" and stamped.header.stamp.sec == 3
    np.testing.assert_allclose(msgs.pose_message_to_matrix(stamped), T, atol=1e-12)
    transform = cv.matrix_to_transform(T, parent="odom", child="cam")
    assert (transform.header.frame_id, transform.child_frame_id) == ("odom", "cam")
    np.testing.assert_allclose(msgs.transform_to_matrix(transform), T, atol=1e-12)
    bad = cv.matrix_to_pose(T)
    bad.position.x = float("nan")
    with pytest.raises(ValueError):
        msgs.pose_to_matrix(bad)
    bad = cv.matrix_to_pose(T)
    bad.orientation.x = bad.orientation.y = bad.orientation.z = bad.orientation.w = 0.0
    with pytest.raises(ValueError, match="zero quaternion"):
        msgs.pose_to_matrix(bad)
    assert math.isclose(msgs.stamp_seconds(cv.seconds_to_stamp(12.000000001)), 12.000000001)


def test_rep103_axes():
    # The optical z axis (forward) is body x; optical x (right) is body -y; optical y is -z.
    np.testing.assert_allclose(geo.BODY_FROM_OPTICAL @ [0, 0, 1], [1, 0, 0])
    np.testing.assert_allclose(geo.BODY_FROM_OPTICAL @ [1, 0, 0], [0, -1, 0])
    np.testing.assert_allclose(geo.BODY_FROM_OPTICAL @ [0, 1, 0], [0, 0, -1])
    # The usual static transform camera_link -> camera_optical_frame: rpy (-pi/2, 0, -pi/2).
    T = geo.matrix_from_xyz_rpy((0, 0, 0), (-math.pi / 2, 0, -math.pi / 2))
    np.testing.assert_allclose(T[:3, :3], geo.BODY_FROM_OPTICAL, atol=1e-12)
    pose = random_pose()
    np.testing.assert_allclose(geo.optical_to_body(geo.body_to_optical(pose)), pose, atol=1e-12)
    # A yaw of +90 degrees turns x (forward) into y (left).
    np.testing.assert_allclose(geo.matrix_from_xyz_rpy((1, 2, 3), (0, 0, math.pi / 2))[:3, 0],
                               [0, 1, 0], atol=1e-12)


def make_path(poses, stamps, frame="odom"):
    msg = Path()
    msg.header.frame_id = frame
    msg.poses = [cv.matrix_to_pose_stamped(T, cv.seconds_to_stamp(s), frame)
                 for T, s in zip(poses, stamps)]
    return msg


def test_path_round_trip_and_validation():
    poses = np.stack([random_pose() for _ in range(5)])
    stamps = np.arange(5) * 0.1 + 10
    out_stamps, out_poses = msgs.path_to_arrays(make_path(poses, stamps))
    np.testing.assert_allclose(out_stamps, stamps, atol=1e-9)
    np.testing.assert_allclose(out_poses, poses, atol=1e-12)
    again = cv.poses_to_path(poses, stamps, "map")
    assert again.header.frame_id == "map" and len(again.poses) == 5

    with pytest.raises(ValueError, match="empty"):
        msgs.path_to_arrays(Path())
    with pytest.raises(ValueError, match="backwards"):
        msgs.path_to_arrays(make_path(poses, stamps[::-1]))
    nan_path = make_path(poses, stamps)
    nan_path.poses[2].pose.position.y = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        msgs.path_to_arrays(nan_path)
    with pytest.raises(ValueError, match="more than the limit"):
        msgs.path_to_arrays(make_path(poses, stamps), max_poses=4)
    other = make_path(poses, stamps)
    other.poses[1].header.frame_id = "map"
    with pytest.raises(ValueError, match="frame"):
        msgs.path_to_arrays(other)
    unstamped = make_path(poses, np.zeros(5))
    assert not msgs.path_to_arrays(unstamped)[0].any()
    single = Path(poses=[PoseStamped()])
    single.poses[0].pose.orientation.w = 1.0
    assert msgs.path_to_arrays(single)[1].shape == (1, 4, 4)


def test_covariance_layout():
    # rot_trans input: rotation variance 1, translation variance 4 -> ROS puts translation first.
    C = np.diag([1.0, 1.0, 1.0, 4.0, 4.0, 4.0])
    ros = np.array(msgs.covariance_to_ros(C, order="rot_trans")).reshape(6, 6)
    np.testing.assert_allclose(np.diag(ros), [4, 4, 4, 1, 1, 1])
    # Rotating from optical to body axes moves the optical z variance onto body x.
    C = np.diag([0.0, 0.0, 9.0, 0.0, 0.0, 0.0])
    ros = np.array(msgs.covariance_to_ros(C, rotation=geo.BODY_FROM_OPTICAL)).reshape(6, 6)
    assert ros[0, 0] == pytest.approx(9.0) and ros[2, 2] == pytest.approx(0.0)
    np.testing.assert_allclose(msgs.covariance_from_ros(msgs.covariance_to_ros(np.eye(6))), np.eye(6))
    with pytest.raises(ValueError):
        msgs.covariance_to_ros(np.full((6, 6), np.nan))


def test_twist_between():
    a = np.eye(4)
    b = geo.matrix_from_xyz_rpy((1.0, 0, 0), (0, 0, 0.2))
    linear, angular = geo.twist_between(a, b, 0.5)
    np.testing.assert_allclose(angular, [0, 0, 0.4], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(linear), 2.0)
    assert geo.twist_between(a, b, 0.0)[0].tolist() == [0, 0, 0]


def test_diagnostics_helpers():
    from diagnostic_msgs.msg import DiagnosticStatus

    from rap_ros.nodes.diagnostics import LogThrottle, NodeDiagnostics, RateMeter

    meter = RateMeter(window_s=5.0)
    for i in range(11):
        meter.tick(now=100.0 + 0.1 * i)
    assert meter.rate(now=101.0) == pytest.approx(10.0)
    assert meter.rate(now=200.0) == 0.0  # old events age out

    diagnostics = NodeDiagnostics("node: what", hardware_id="cpu")
    diagnostics.count("dropped")
    diagnostics.count("dropped", 2)
    diagnostics.latency("window", 0.5)
    diagnostics.latency("window", 1.5)
    diagnostics.set_value("backend", "onnx")
    diagnostics.warn("bad image")
    message = diagnostics.to_message(cv.seconds_to_stamp(5.0))
    status = message.status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.WARN and status.message == "bad image"
    assert values["dropped"] == "3" and values["backend"] == "onnx"
    assert values["window latency (s)"] == "last 1.500 mean 1.000 max 1.500"
    assert diagnostics.status().level == DiagnosticStatus.OK  # the level lasts one period

    throttle = LogThrottle(period_s=60.0)
    assert throttle.should_log("a") and not throttle.should_log("a")
    assert throttle.should_log("b")
