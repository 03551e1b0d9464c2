"""Pure helpers of the robot integration: the transform tree fed by /tf and /tf_static, the
metric scale from wheel odometry, and the continuous re-scaling of published poses."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rap_ros.geometry.frames import matrix_from_xyz_rpy
from rap_ros.geometry.transform_tree import TransformTree
from rap_ros.odometry.metric_scale import ScaleAnchor, WheelScale


def test_tree_lookups_along_and_across_branches():
    tree = TransformTree()
    T_base_cam = matrix_from_xyz_rpy([0.3, 0.0, 0.5], [0.0, 0.2, 0.1])
    T_base_lidar = matrix_from_xyz_rpy([0.0, 0.1, 0.8], [0.0, 0.0, 1.0])
    T_odom_base = matrix_from_xyz_rpy([2.0, 1.0, 0.0], [0.0, 0.0, -0.4])
    assert tree.set("base_link", "camera", T_base_cam, static=True)
    assert tree.set("/base_link", "lidar", T_base_lidar, static=True)  # leading '/' ignored
    assert tree.set("odom", "base_link", T_odom_base)
    np.testing.assert_allclose(tree.lookup("base_link", "camera"), T_base_cam)
    np.testing.assert_allclose(tree.lookup("odom", "camera"), T_odom_base @ T_base_cam)
    np.testing.assert_allclose(tree.lookup("camera", "lidar"),
                               np.linalg.inv(T_base_cam) @ T_base_lidar, atol=1e-12)
    assert tree.lookup("camera", "nowhere") is None
    assert tree.parent("camera") == "base_link" and tree.parent("odom") is None
    tree.clear()  # a time jump forgets the dynamic edges only
    assert tree.parent("base_link") is None and tree.parent("camera") == "base_link"


def test_tree_refuses_bad_edges_and_stays_bounded():
    tree = TransformTree(max_frames=3)
    assert not tree.set("a", "a", np.eye(4))
    bad = np.eye(4)
    bad[0, 3] = np.nan
    assert not tree.set("a", "b", bad)
    for i in range(3):
        assert tree.set("root", f"f{i}", np.eye(4))
    assert not tree.set("root", "f3", np.eye(4)) and len(tree) == 3
    assert tree.set("root", "f0", np.eye(4))  # updating a known edge is always allowed


def drive(n=200, seed=0):
    """Base positions (m) of a drive with turns and stops, 10 Hz."""
    rng = np.random.default_rng(seed)
    speed = np.clip(np.cumsum(rng.normal(0, 0.05, n)) + 0.8, 0.0, 1.5)
    speed[80:100] = 0.0  # a stop
    heading = np.cumsum(rng.normal(0, 0.05, n))
    steps = np.stack([np.cos(heading), np.sin(heading), np.zeros(n)], 1) * speed[:, None] * 0.1
    return np.cumsum(steps, axis=0)


@pytest.mark.parametrize("drift_per_100", [0.0, 0.05])
def test_wheel_scale_follows_the_visual_scale_within_5_percent(drift_per_100):
    """Visual positions are the truth at 0.3 units per metre, drifting by ``drift_per_100``
    per 100 frames, plus noise; keyframes every 5 frames, windows of 8 keyframes."""
    truth = drive()
    rng = np.random.default_rng(1)
    units_per_metre = 0.3 * (1 + drift_per_100) ** (np.arange(len(truth)) / 100.0)
    steps = np.diff(truth, axis=0, prepend=truth[:1]) * units_per_metre[:, None]
    visual = np.cumsum(steps, axis=0) + rng.normal(0, 0.002, truth.shape)
    wheel = WheelScale()
    for i, p in enumerate(truth):
        wheel.add_wheel(i / 10.0, p)
    keyframes = list(range(0, len(truth), 5))
    for k in range(8, len(keyframes)):
        window = [(f / 10.0, visual[f]) for f in keyframes[k - 8:k]]
        scale = wheel.estimate(window)
        if scale is None:
            continue
        frame = keyframes[k - 1]
        expected = 1.0 / units_per_metre[frame]
        assert abs(scale / expected - 1.0) < 0.05, (frame, scale, expected)
    assert wheel.relative_sigma is not None and wheel.relative_sigma < 0.05


def test_wheel_scale_needs_distance_and_ignores_out_of_order_samples():
    wheel = WheelScale(min_distance=0.5)
    assert wheel.add_wheel(0.0, [0, 0, 0]) and wheel.add_wheel(1.0, [0.1, 0, 0])
    assert not wheel.add_wheel(0.5, [5, 0, 0])            # out of order
    assert not wheel.add_wheel(2.0, [np.nan, 0, 0])       # not finite
    assert wheel.estimate([(0.0, [0, 0, 0]), (1.0, [1, 0, 0])]) is None  # 0.1 m < 0.5 m


def test_scale_anchor_keeps_the_output_continuous():
    anchor = ScaleAnchor(2.0)
    poses = [matrix_from_xyz_rpy([0.1 * i, 0.0, 0.0], [0, 0, 0.05 * i]) for i in range(20)]
    out = [anchor.apply(T) for T in poses[:10]]
    np.testing.assert_allclose(out[9][:3, 3], poses[9][:3, 3] * 2.0, atol=1e-9)
    anchor.set_scale(3.0, poses[9])
    np.testing.assert_allclose(anchor.apply(poses[9]), out[9], atol=1e-12)  # no jump
    step_in = np.linalg.inv(poses[9]) @ poses[10]
    step_out = np.linalg.inv(out[9]) @ anchor.apply(poses[10])
    np.testing.assert_allclose(step_out[:3, 3], 3.0 * step_in[:3, 3], atol=1e-12)
    np.testing.assert_allclose(Rotation.from_matrix(step_out[:3, :3]).as_rotvec(),
                               Rotation.from_matrix(step_in[:3, :3]).as_rotvec(), atol=1e-12)


@pytest.mark.parametrize("model, d", [("plumb_bob", [-0.2, 0.05, 0.001, -0.001, 0.0]),
                                      ("rational_polynomial", [-0.2, 0.05, 0.0, 0.0, 0.0,
                                                               0.01, 0.0, 0.0]),
                                      ("equidistant", [-0.05, 0.01, 0.0, 0.0])])
def test_undistortion_of_each_camera_model_keeps_every_pixel_valid(model, d):
    """The node's and the evaluator's undistortion: every output pixel sees the recorded
    image (no black border for the tracker), and a recorded point lands where the new K
    projects its ray."""
    import cv2

    from rap_ros.geometry.undistort import undistort, undistortion

    K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])
    maps, K_new, note = undistortion(K, d, model, 320, 240)
    assert maps is not None and model in note
    image = np.full((240, 320, 3), 200, np.uint8)
    out = undistort(image, maps)
    assert (out[2:-2, 2:-2] > 150).all()  # no border of unseen pixels
    # A ray through the optical axis stays at the principal point of the new K.
    centre = np.array([[[160.0, 120.0]]])
    if model == "equidistant":
        ideal = cv2.fisheye.undistortPoints(centre, K, np.array(d), P=K_new)
    else:
        ideal = cv2.undistortPoints(centre, K, np.array(d), P=K_new)
    np.testing.assert_allclose(ideal.ravel(), K_new[:2, 2], atol=1.0)
    assert undistortion(K, np.zeros(5), "plumb_bob", 320, 240)[0] is None
    assert undistortion(K, d, "kannala_brandt_8", 320, 240)[0] is None


def test_undistorter_applies_one_calibration_at_any_image_size():
    """The node downscales oversize images before undistorting: the calibration at half size
    gives half the intrinsics and (nearly) the downscaled full-size result; an image not
    recorded at the calibrated size is left alone, without intrinsics."""
    import cv2

    from rap_ros.geometry.undistort import Undistorter, undistort, undistortion

    K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])
    d = np.array([-0.25, 0.08, 0.001, -0.001, 0.0])
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), (320, 240),
                       interpolation=cv2.INTER_CUBIC)
    undistorter = Undistorter(K, (320, 240), "plumb_bob", d)
    assert undistorter.matches(K, (320, 240), "plumb_bob", d.copy())
    assert not undistorter.matches(K, (320, 240), "plumb_bob", d * 2)
    full, K_full = undistorter(image, (320, 240))
    maps, K_expected, _ = undistortion(K, d, "plumb_bob", 320, 240)
    np.testing.assert_array_equal(full, undistort(image, maps))
    np.testing.assert_allclose(K_full, K_expected)
    half = cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA)
    small, K_small = undistorter(half, (320, 240))
    np.testing.assert_allclose(K_small[:2, :2], K_full[:2, :2] / 2, rtol=0.01)
    expected = cv2.resize(full, (160, 120), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(small[4:-4, 4:-4] - expected[4:-4, 4:-4]).mean() < 6.0
    assert np.abs(half.astype(float) - expected).mean() > 10.0  # the distortion is visible
    same, none = undistorter(image, (640, 480))
    assert same is image and none is None


def test_rectified_topics_use_the_projection_matrix():
    from types import SimpleNamespace

    from rap_ros.io.messages import camera_info_calibration

    info = SimpleNamespace(width=320, height=240, distortion_model="plumb_bob",
                           d=[-0.2, 0.05, 0.0, 0.0, 0.0],
                           k=[300.0, 0, 160, 0, 300, 120, 0, 0, 1],
                           p=[280.0, 0, 158, 0, 0, 281, 119, 0, 0, 0, 1, 0])
    K, size, model, d = camera_info_calibration(info, rectified=False)
    assert K[0, 0] == 300.0 and model == "plumb_bob" and len(d) == 5
    K, size, model, d = camera_info_calibration(info, rectified=True)
    np.testing.assert_allclose(K, [[280, 0, 158], [0, 281, 119], [0, 0, 1]])
    assert size == (320, 240) and not len(d)
    info.p = [0.0] * 12
    with pytest.raises(ValueError, match="projection"):
        camera_info_calibration(info, rectified=True)


# ------------------------------------------------------------------ camera frame admission


def _camera_info(K, P, width, height, model="plumb_bob", d=(-0.25, 0.08, 0.001, -0.001, 0.0)):
    """A sensor_msgs/CameraInfo look-alike (the fields camera_info_calibration reads)."""
    from types import SimpleNamespace
    return SimpleNamespace(width=width, height=height, k=np.asarray(K, float).ravel(),
                           p=np.asarray(P, float).ravel(), distortion_model=model,
                           d=list(d))


def _texture(height, width, seed=0):
    import cv2
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


K_RAW = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
P_RECT = np.array([[480.0, 0, 322.0, 0], [0, 480.0, 236.0, 0], [0, 0, 1, 0]])


def test_camera_frames_downscale_then_undistort_and_count():
    from rap_ros.geometry.undistort import undistortion
    from rap_ros.io.camera_frames import DEFAULT_MAX_IMAGE_PIXELS, CameraFrames
    from rap_ros.io.images import limit_image_size

    assert DEFAULT_MAX_IMAGE_PIXELS == 1280 * 1024
    image = _texture(480, 640)
    frames = CameraFrames(max_image_pixels=320 * 240)
    assert frames.admit(image).K is None  # no calibration yet: downscaled only
    assert frames.calibrate_from_info(_camera_info(K_RAW, P_RECT, 640, 480))
    assert not frames.calibrate_from_info(_camera_info(K_RAW, P_RECT, 640, 480))  # repeated
    frame = frames.admit(image)
    assert frame.downscaled and frame.recorded_size == (640, 480) and frames.downscaled == 2
    small, _ = limit_image_size(image, 320 * 240)
    assert frame.rgb.shape == small.shape == (240, 320, 3)
    maps, K_small, _ = undistortion(np.diag([0.5, 0.5, 1.0]) @ K_RAW,
                                    [-0.25, 0.08, 0.001, -0.001, 0.0], "plumb_bob", 320, 240)
    np.testing.assert_allclose(frame.K, K_small)
    assert maps is not None and not np.array_equal(frame.rgb, small)  # remapped
    np.testing.assert_allclose(frames.admitted_K(), frame.K)  # known before any image
    assert frames.admitted_size((640, 480)) == (320, 240)
    assert frames.admit(_texture(240, 320)).K is None  # camera_info for another size
    unlimited = CameraFrames(max_image_pixels=0)
    unlimited.calibrate_from_info(_camera_info(K_RAW, P_RECT, 640, 480))
    full = unlimited.admit(image)
    assert not full.downscaled and full.rgb.shape == image.shape and unlimited.downscaled == 0


def test_camera_frames_rectified_uses_P_and_does_not_remap():
    from rap_ros.io.camera_frames import CameraFrames

    image = _texture(480, 640, seed=1)
    frames = CameraFrames(max_image_pixels=0, rectified=True)
    frames.calibrate_from_info(_camera_info(K_RAW, P_RECT, 640, 480))
    frame = frames.admit(image)
    assert frame.rgb is image or np.array_equal(frame.rgb, image)  # no undistortion
    np.testing.assert_allclose(frame.K, P_RECT[:, :3])
    halved = CameraFrames(max_image_pixels=320 * 240, rectified=True)
    halved.calibrate_from_info(_camera_info(K_RAW, P_RECT, 640, 480))
    frame = halved.admit(image)
    np.testing.assert_allclose(frame.K, np.diag([0.5, 0.5, 1.0]) @ P_RECT[:, :3])
    assert frame.rgb.shape == (240, 320, 3)


def test_node_camera_input_is_the_shared_admission():
    """The trajectory_estimator's CameraInput adapter gives CameraFrames' images and K, and
    counts the downscaled ones on its diagnostics."""

    from rap_ros.io.camera_frames import CameraFrames
    from rap_ros.nodes.camera_input import CameraInput

    class Diagnostics:
        def __init__(self):
            self.counts, self.warnings = {}, []

        def count(self, key):
            self.counts[key] = self.counts.get(key, 0) + 1

        def warn(self, text):
            self.warnings.append(text)

    for rectified in (False, True):
        info = _camera_info(K_RAW, P_RECT, 640, 480, model="equidistant", d=(0.1, -0.02, 0, 0))
        diagnostics = Diagnostics()
        node = CameraInput(diagnostics, max_image_pixels=320 * 240,
                           rectified=rectified)
        assert node.calibrate_from_info(info)
        shared = CameraFrames(max_image_pixels=320 * 240, rectified=rectified)
        shared.calibrate_from_info(info)
        image = _texture(480, 640, seed=2)
        rgb, recorded_size, K = node.prepare(image)
        frame = shared.admit(image)
        assert recorded_size == (640, 480) and np.array_equal(rgb, frame.rgb)
        np.testing.assert_allclose(K, frame.K)
        assert diagnostics.counts == {"images downscaled (max_image_pixels)": 1}
        assert not diagnostics.warnings


class _Sink(list):
    """A publisher that keeps what it is given."""
    publish = list.append


class _NoDiagnostics:
    def tick(self, name):
        pass


def _trajectory_output(scale, max_path_length):
    """The node's TrajectoryOutput with its publishers replaced by lists: (output, odometry
    sink, path sink)."""
    pytest.importorskip("rclpy")
    from rap_ros.nodes.camera_mount import CameraMount
    from rap_ros.nodes.trajectory_output import TrajectoryOutput

    mount = CameraMount(None, _NoDiagnostics(), None, ScaleAnchor(scale), np.eye(4),
                        odom_frame="odom", base_frame="", camera_frame="camera",
                        mount_source="parameters", mount_timeout=0.0)
    odometry, paths = _Sink(), _Sink()
    output = TrajectoryOutput(mount, _NoDiagnostics(), odom_pub=odometry, tf_pub=_Sink(),
                              path_pub=paths, map_pub=None, publish_tf=False,
                              max_path_length=max_path_length, map_points_max=10)
    return output, odometry, paths


def test_the_scale_uncertainty_enters_the_odometry_covariance():
    """What robot_localization reads: with wheel odometry, the scale's relative sigma times
    the distance from the odom origin is added to the position variance of `odometry` (the
    node's TrajectoryOutput, its publishers replaced by lists)."""
    output, odometry, _ = _trajectory_output(2.0, 10)
    c2w = np.eye(4)
    c2w[:3, 3] = [0.0, 0.0, 5.0]  # 5 units = 10 m from the origin at scale 2
    for sigma in (0.0, 0.1):
        output.frame(0, c2w, np.eye(6) * 1e-4, None, 1.0, "camera", np.eye(4),
                     relative_sigma=sigma)
    without, with_scale = (np.diag(np.reshape(o.pose.covariance, (6, 6))) for o in odometry)
    np.testing.assert_allclose(with_scale[:3] - without[:3], (0.1 * 10.0) ** 2)
    np.testing.assert_allclose(with_scale[3:], without[3:])


def test_a_long_path_is_published_proportionally_less_often(monkeypatch):
    """rclpy converts a path at about 5 ms per 1,000 poses on the node's thread: up to
    PATH_POSES_PER_PERIOD poses the corrected path goes out every PATH_PERIOD_S, beyond it
    proportionally less often (10,000 poses: every 5 s), so its cost per second stays flat."""
    output, _, paths = _trajectory_output(1.0, 20000)
    from rap_ros.nodes import trajectory_output as out_mod

    clock = [0.0]
    monkeypatch.setattr(out_mod.time, "monotonic", lambda: clock[0])

    def run_until(frames, hz=30.0):
        """Frames at ``hz`` up to ``frames`` in all, a BA (correct_path) after each;
        returns the seconds between the path messages sent meanwhile."""
        sent = []
        while len(output._path) < frames:
            clock[0] += 1.0 / hz
            n = len(output._path)
            output.frame(n, np.eye(4), np.eye(6) * 1e-4, None, clock[0], "camera", np.eye(4))
            before = len(paths)
            output.correct_path({n: np.eye(4)}, np.eye(4))
            if len(paths) > before:
                sent.append(clock[0])
        return np.diff(sent)

    short = run_until(out_mod.PATH_POSES_PER_PERIOD)
    assert np.all(np.abs(short[1:] - out_mod.PATH_PERIOD_S) < 0.04), short
    run_until(9000)
    long = run_until(10000)
    assert len(long) and np.all(long > 4.4), long  # ~5 s apart at 9,000-10,000 poses
    assert len(paths[-1].poses) > 9000
