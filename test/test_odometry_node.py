"""trajectory_estimator on the odometry core, as a robot runs it (real rclpy, across processes).

One node process (`rap-ros up --no-predictor`, method geometry so the run is quick; the
model's part of method rap is covered by test_odometry.py and the default-method run of
test_trajectory_estimator.py) on simulated time. The test process plays the robot:
/tf_static with the camera mount (as robot_state_publisher would), camera_info, wheel
odometry and a synthetic drive at 10 Hz with /clock. Checked: a pose for every frame
(odometry, /tf odom -> base_link, path), the mount taken from /tf_static, covariance never
zero, the metric scale from wheel odometry within 5 %, a zero stamp amid sim-time frames not
taken for a time jump, ~/reset_to_pose, and no TF for a base frame that already has another
parent (on /tf_static, or from another node on /tf: a conflict, latched).
"""
import contextlib

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from nav_msgs.msg import Odometry, Path  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from rap_ros.geometry.frames import body_to_optical, matrix_from_xyz_rpy  # noqa: E402
from rap_ros.io import messages as msgs  # noqa: E402
from rap_ros.metrics import umeyama_alignment  # noqa: E402
from rap_ros.nodes import conversions as cv  # noqa: E402
from rap_ros.synth.dataset import held_out_seed, make_drive  # noqa: E402
from test_trajectory_estimator import (Probe, diagnostic_values, model_spec,  # noqa: E402,F401
                                       node_command, start_process, stop_process)

HZ = 10.0
FRAMES = 80
START = 500.0
MOUNT = body_to_optical(matrix_from_xyz_rpy([0.0, 0.0, 0.4], [0.0, 0.1, 0.0]))


@pytest.fixture(scope="module")
def drive():
    return make_drive(held_out_seed(33), frames=FRAMES, height=240, width=320, scene="room")


def static_qos():
    return QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                      reliability=ReliabilityPolicy.RELIABLE)


def base_poses(drive):
    """Ground-truth base poses (m) in the world: camera pose times the inverse mount."""
    return drive.c2w @ np.linalg.inv(MOUNT)


def play(probe, pubs, drive, start, zero_stamp_at=None, wheel=True, each=None):
    """Publish the drive at HZ with /clock, camera_info and wheel odometry (true base
    positions in metres); one frame gets a zero stamp when ``zero_stamp_at`` is set;
    ``each(i, stamp)`` is called before each image."""
    height, width = drive.frames.shape[1:3]
    info = cv.K_to_camera_info(drive.K, width, height, frame_id="camera_optical_frame")
    bases = base_poses(drive)
    info.header.stamp = cv.seconds_to_stamp(start)
    pubs["info"].publish(info)  # a driver's first camera_info comes with its first image
    probe.spin_for(0.2)
    for i, frame in enumerate(drive.frames):
        stamp = cv.seconds_to_stamp(start + i / HZ)
        pubs["clock"].publish(Clock(clock=stamp))
        info.header.stamp = stamp
        pubs["info"].publish(info)
        if wheel:
            odometry = Odometry(child_frame_id="base_link")
            odometry.header.stamp, odometry.header.frame_id = stamp, "wheel_odom"
            odometry.pose.pose = cv.matrix_to_pose(bases[i])
            pubs["wheel"].publish(odometry)
        if each is not None:
            each(i, stamp)
        image_stamp = cv.seconds_to_stamp(0.0) if i == zero_stamp_at else stamp
        pubs["image"].publish(cv.array_to_image(frame, "rgb8", image_stamp,
                                                "camera_optical_frame"))
        probe.spin_for(1.0 / HZ)


def make_probe(name, conflict=False, static_mount=True):
    probe = Probe(name)
    for kind, topic in ((Odometry, "odometry"), (Path, "path"), (TFMessage, "/tf"),
                        (DiagnosticArray, "/diagnostics")):
        probe.collect(kind, topic, 500)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {"image": probe.node.create_publisher(Image, "image", qos),
            "info": probe.node.create_publisher(CameraInfo, "camera_info", qos),
            "wheel": probe.node.create_publisher(Odometry, "wheel_odometry", 50),
            "clock": probe.node.create_publisher(Clock, "/clock", 10),
            "static": probe.node.create_publisher(TFMessage, "/tf_static", static_qos()),
            "tf": probe.node.create_publisher(TFMessage, "/tf", 100)}
    mount = cv.matrix_to_transform(MOUNT, cv.seconds_to_stamp(0.0), "base_link",
                                   "camera_optical_frame")
    transforms = [mount] if static_mount else []
    if conflict:  # a robot whose base_link already has a parent
        transforms.append(cv.matrix_to_transform(np.eye(4), cv.seconds_to_stamp(0.0),
                                                 "map", "base_link"))
    pubs["static"].publish(TFMessage(transforms=transforms))
    return probe, pubs


def node_process(model_spec, *extra):
    return start_process(node_command(
        "estimator", model_spec[0], "-p", "use_sim_time:=true", "-p", "method:=geometry",
        "-p", "queue_size:=100", "-p", "qos_reliability:=reliable",
        "-p", "diagnostics_period:=0.3", *extra))


@contextlib.contextmanager
def running_node(model_spec, name, *extra, conflict=False, inputs=("image", "info", "clock"),
                 collect=(), static_mount=True):
    """A node process (``node_process`` with ``extra`` arguments) and a probe met on every
    topic -> (probe, publishers); afterwards the node's output must hold no traceback."""
    process = node_process(model_spec, *extra)
    rclpy.init()
    probe, pubs = make_probe(name, conflict=conflict, static_mount=static_mount)
    for kind, topic in collect:
        probe.collect(kind, topic, 50)
    try:
        assert probe.wait_connected([pubs[k] for k in inputs])
        probe.spin_for(0.5)
        yield probe, pubs
    finally:
        probe.node.destroy_node()
        rclpy.try_shutdown()
        output = stop_process(process)
    assert "Traceback" not in output, output[-3000:]


def test_robot_frames_scale_stamps_and_reset(model_spec, drive):
    from rap_ros_msgs.srv import ResetToPose

    with running_node(model_spec, "odometry_node_probe",
                      inputs=("image", "info", "wheel", "clock")) as (probe, pubs):
        play(probe, pubs, drive, START, zero_stamp_at=FRAMES // 2)
        odometry = probe.received["odometry"]
        assert probe.spin_until(lambda: len(odometry) >= FRAMES, 30), (
            len(odometry), diagnostic_values(probe.received["/diagnostics"], "trajectory_estimator"))

        # A pose for every frame (the zero-stamped one included), odom -> base_link.
        assert len(odometry) == FRAMES
        assert all(o.child_frame_id == "base_link" and o.header.frame_id == "odom"
                   for o in odometry)
        transforms = [t for m in probe.received["/tf"] for t in m.transforms
                      if t.child_frame_id == "base_link"]
        assert transforms and all(t.header.frame_id == "odom" for t in transforms)
        assert probe.received["path"] and probe.received["path"][-1].header.frame_id == "odom"
        # Covariance from the BA / PnP: never all zeros, symmetric, positive diagonal.
        for o in odometry[5:]:
            C = np.array(o.pose.covariance).reshape(6, 6)
            assert np.allclose(C, C.T) and np.all(np.diag(C) > 0)
        values = diagnostic_values(probe.received["/diagnostics"], "trajectory_estimator")
        assert values.get("camera mount", "").startswith("tf"), values
        assert int(values.get("resets", 0)) == 0, "the zero stamp was taken for a time jump"
        assert int(values.get("unstamped frames", 0)) == 1
        assert "resident memory (MB)" in values

        # Odom is the base at the first frame. Scale from wheel odometry: the drive creeps for
        # its first ~40 frames (0.15 m: too little for a scale, which needs 0.3 m between
        # keyframes), so over the last 40 % of the frames, once the wheels gave the scale,
        # the Sim(3) alignment of the published base positions to the truth needs a scale
        # within 5 % of 1. Without wheel odometry this drive's scale is ~0.07.
        poses = np.stack([msgs.pose_to_matrix(o.pose.pose) for o in odometry])
        np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-6)
        truth = base_poses(drive)
        tail = int(0.6 * FRAMES)
        scale = umeyama_alignment(poses[tail:, :3, 3], truth[tail:, :3, 3])[0]
        assert "scale (m per unit, wheel odometry)" in values, values
        assert abs(scale - 1.0) < 0.05, f"metres / published metres = {scale:.3f}"

        # ~/reset_to_pose: the next frame starts at the given pose.
        client = probe.node.create_client(ResetToPose, "trajectory_estimator/reset_to_pose")
        request = ResetToPose.Request()
        request.pose.header.frame_id = "odom"
        request.pose.pose = cv.matrix_to_pose(matrix_from_xyz_rpy([5.0, -2.0, 0.0],
                                                                  [0.0, 0.0, 0.5]))
        assert probe.call(client, request).success
        odometry.clear()
        play(probe, pubs, drive, START + 100.0, wheel=False)
        assert probe.spin_until(lambda: len(odometry) > 0, 30)
        first = msgs.pose_to_matrix(odometry[0].pose.pose)
        np.testing.assert_allclose(first[:3, 3], [5.0, -2.0, 0.0], atol=1e-6)


def test_the_mount_can_come_from_dynamic_tf(model_spec, drive):
    """The mount published on /tf with every frame (no /tf_static: a driver or a moving
    joint's robot_state_publisher) is read as one on /tf_static is; the node's odom ->
    base_link goes on beside it, no conflict."""
    def mount_on_tf(i, stamp):
        pubs["tf"].publish(TFMessage(transforms=[cv.matrix_to_transform(
            MOUNT, stamp, "base_link", "camera_optical_frame")]))

    with running_node(model_spec, "dynamic_mount_probe", static_mount=False,
                      inputs=("image", "info", "clock", "tf")) as (probe, pubs):
        play(probe, pubs, drive, START, wheel=False, each=mount_on_tf)
        odometry = probe.received["odometry"]
        assert probe.spin_until(lambda: len(odometry) >= FRAMES, 30), len(odometry)
        probe.spin_for(0.7)
        values = diagnostic_values(probe.received["/diagnostics"], "trajectory_estimator")
        assert values.get("camera mount", "").startswith("tf"), values
        assert [t for m in probe.received["/tf"] for t in m.transforms
                if t.child_frame_id == "base_link" and t.header.frame_id == "odom"]
        assert not [s for a in probe.received["/diagnostics"] for s in a.status
                    if s.level == DiagnosticStatus.ERROR], values


def test_no_tf_for_a_base_frame_with_another_parent(model_spec, drive):
    # base_link is parented by `map` on /tf_static: the node must not add odom -> base_link.
    with running_node(model_spec, "odometry_conflict_probe", conflict=True) as (probe, pubs):
        play(probe, pubs, drive, START, wheel=False)
        assert probe.spin_until(lambda: len(probe.received["odometry"]) >= 20, 30)
        probe.spin_for(0.7)
        assert not [t for m in probe.received["/tf"] for t in m.transforms
                    if t.child_frame_id == "base_link"]
        errors = [s for a in probe.received["/diagnostics"] for s in a.status
                  if "already has the parent map" in s.message]
        assert errors and errors[-1].level == DiagnosticStatus.ERROR


FOREIGN_Z = -7.0  # the other node's transforms carry this height: told apart from ours


@pytest.mark.parametrize("parent", ["map", "odom"])
def test_no_tf_once_another_node_publishes_into_the_base_frame(model_spec, drive, parent):
    """From frame 20 to 50 another node publishes ``parent -> base_link`` on /tf at camera
    rate: another parent (map), or the node's own edge (odom, as a diff_drive_controller
    would). The node's own odom -> base_link, coming back through its /tf subscription, is
    not taken for a conflict before; after it, the node stops publishing odom -> base_link for
    good (latched: also once the other node went quiet), keeps publishing odometry, and
    /diagnostics says ERROR naming the conflict."""
    start_at, stop_at, margin = 20, 50, 5
    with running_node(model_spec, f"odometry_tf_{parent}_probe") as (probe, pubs):
        other = probe.node.create_publisher(TFMessage, "/tf", 100)
        assert probe.spin_until(lambda: other.get_subscription_count() >= 2, 30)
        T = np.eye(4)
        T[2, 3] = FOREIGN_Z

        def publish_other(i, stamp):
            if start_at <= i < stop_at:
                other.publish(TFMessage(transforms=[
                    cv.matrix_to_transform(T, stamp, parent, "base_link")]))

        play(probe, pubs, drive, START, wheel=False, each=publish_other)
        odometry = probe.received["odometry"]
        assert probe.spin_until(lambda: len(odometry) >= FRAMES, 30), len(odometry)
        probe.spin_for(0.7)
        ours = [msgs.stamp_seconds(t.header.stamp) for m in probe.received["/tf"]
                for t in m.transforms if t.child_frame_id == "base_link"
                and t.header.frame_id == "odom" and t.transform.translation.z != FOREIGN_Z]
        assert len([t for t in ours if t < START + start_at / HZ]) >= start_at // 2, ours
        late = [t for t in ours if t >= START + (start_at + margin) / HZ]
        assert not late, f"odom -> base_link published on after the conflict: {late}"
        named = ("another node also publishes odom -> base_link on /tf" if parent == "odom"
                 else "already has the parent map (map -> base_link on /tf")
        errors = [s for a in probe.received["/diagnostics"] for s in a.status
                  if named in s.message]
        assert errors and all(s.level == DiagnosticStatus.ERROR for s in errors), [
            s.message for a in probe.received["/diagnostics"] for s in a.status][-5:]
        last = [s for s in probe.received["/diagnostics"][-1].status
                if "trajectory_estimator" in s.name]
        assert last and last[0].level == DiagnosticStatus.ERROR and named in last[0].message


def test_rap_without_camera_info_answers_every_frame(model_spec, drive):
    """Method rap (model_intrinsics by default), no camera_info: the first frames wait for it
    (camera_info_timeout), then for the model's intrinsics (one window); each of them still
    gets its odometry message, in order, and the intrinsics are published."""
    frames = 30
    with running_node(model_spec, "no_info_probe", "-p", "method:=rap", "-p",
                      "camera_info_timeout:=0.5",
                      inputs=("image", "clock"),
                      collect=[(CameraInfo, "estimated_camera_info")]) as (probe, pubs):
        for i, frame in enumerate(drive.frames[:frames]):
            stamp = cv.seconds_to_stamp(START + i / HZ)
            pubs["clock"].publish(Clock(clock=stamp))
            pubs["image"].publish(cv.array_to_image(frame, "rgb8", stamp,
                                                    "camera_optical_frame"))
            probe.spin_for(1.0 / HZ)
        odometry = probe.received["odometry"]
        assert probe.spin_until(lambda: len(odometry) >= frames, 60), len(odometry)
        probe.spin_for(0.5)
        stamps = [msgs.stamp_seconds(o.header.stamp) for o in odometry]
        np.testing.assert_allclose(stamps, START + np.arange(frames) / HZ, atol=1e-6)
        values = diagnostic_values(probe.received["/diagnostics"], "trajectory_estimator")
        assert int(values.get("frames held for camera_info", 0)) > 0, values
        assert int(values.get("frames buffered for intrinsics", 0)) > 0, values
        assert probe.received["estimated_camera_info"]


# ------------------------------------------------------------------ one calibration path

DISTORTION = ("plumb_bob", np.array([-0.25, 0.08, 0.001, -0.001, 0.0]))
LATE_INFO = 3  # camera_info starts with this frame


def distort(images, K, d):
    """What a lens with plumb_bob coefficients ``d`` would record of pinhole renders: for
    each recorded pixel, the ideal pixel it shows (cv2.undistortPoints), sampled."""
    import cv2

    height, width = images.shape[1:3]
    u, v = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    pixels = np.stack([u.ravel(), v.ravel()], 1)[:, None]
    ideal = cv2.undistortPoints(pixels, K, d, P=K).reshape(height, width, 2)
    return np.stack([cv2.remap(image, ideal[..., 0], ideal[..., 1], cv2.INTER_LINEAR)
                     for image in images])


def test_distorted_camera_gives_the_same_poses_live_and_offline(model_spec, tmp_path):
    """A distorted camera (plumb_bob): `rap-ros evaluate` on the bag and the node fed the same
    images and camera_info undistort through the same function and agree on the poses."""
    from types import SimpleNamespace

    from rap_ros.evaluation.run import RunOptions, evaluate_input
    from rap_ros.geometry.frames import BODY_FROM_OPTICAL
    from rap_ros.io.bag import write_bag
    from rap_ros.io.tum import read_tum_trajectory
    from rap_ros.metrics import ate, path_length

    clip = make_drive(held_out_seed(33), frames=80, height=240, width=320, scene="room")
    frames = distort(clip.frames, clip.K, DISTORTION[1])
    distorted = SimpleNamespace(frames=frames, K=clip.K, c2w=clip.c2w, stamps=clip.stamps,
                                meta=clip.meta)
    bag = write_bag(tmp_path / "bag", distorted, distortion=DISTORTION)
    offline = evaluate_input(bag, tmp_path / "offline",
                             options=RunOptions(method="geometry", progress=False))
    assert offline["status"] == "ok", offline.get("error")
    estimate = read_tum_trajectory(tmp_path / "offline" / "estimate_tum.txt")
    offline_stamps, offline_c2w = estimate.stamps, estimate.c2w

    with running_node(model_spec, "distortion_probe", "-p", "base_frame:=''") as (probe, pubs):
        info = cv.K_to_camera_info(clip.K, 320, 240, frame_id="camera_optical_frame")
        info.distortion_model, info.d = DISTORTION[0], [float(v) for v in DISTORTION[1]]
        start = float(offline_stamps[0])
        for i, frame in enumerate(frames):
            stamp = cv.seconds_to_stamp(start + i / HZ)
            pubs["clock"].publish(Clock(clock=stamp))
            info.header.stamp = stamp
            if i >= LATE_INFO:  # the first frames wait for it, then are undistorted too
                pubs["info"].publish(info)
            pubs["image"].publish(cv.array_to_image(frame, "rgb8", stamp,
                                                    "camera_optical_frame"))
            probe.spin_for(1.0 / HZ)
        odometry = probe.received["odometry"]
        assert probe.spin_until(lambda: len(odometry) >= len(frames), 30), len(odometry)
    # odom -> camera frame with a virtual base at the camera: back to camera poses.
    to_body = np.eye(4)
    to_body[:3, :3] = BODY_FROM_OPTICAL
    tracked = [i for i, o in enumerate(odometry) if o.pose.covariance[0] < 9999.0]
    assert len(tracked) >= 0.9 * len(frames), f"{len(frames) - len(tracked)} frames lost live"
    live = np.stack([np.linalg.inv(to_body) @ msgs.pose_to_matrix(odometry[i].pose.pose)
                     for i in tracked])
    length = path_length(clip.c2w)
    agreement = ate(live, offline_c2w[tracked])["rmse"] / path_length(offline_c2w)
    live_error = ate(live, clip.c2w[tracked])["rmse"] / length
    offline_error = ate(offline_c2w, clip.c2w[:len(offline_c2w)])["rmse"] / length
    print(f"live vs offline {100 * agreement:.2f} % of path ({len(tracked)} frames); vs "
          f"truth: live {100 * live_error:.2f} %, offline {100 * offline_error:.2f} %")
    assert agreement < 0.03, f"live and offline differ by {100 * agreement:.1f} % of path"
    assert live_error < 0.05 and offline_error < 0.05


def test_scale_is_settable_at_run_time():
    """`ros2 param set /trajectory_estimator scale 2.0` while running: the published poses
    continue from where they are at the new scale; out-of-range values are refused."""
    from rclpy.parameter import Parameter

    from rap_ros.nodes.trajectory_estimator import TrajectoryEstimator

    rclpy.init()
    try:
        node = TrajectoryEstimator(parameter_overrides=[
            Parameter("method", value="geometry"), Parameter("mount_source", value="parameters")])
        try:
            mount = node.T_base_camera_parameters
            step = np.eye(4)
            step[2, 3] = 1.0  # one odometry unit along the optical axis = base x
            before = node.mount.child_pose(step, mount)
            node._last_camera_pose = step
            result = node.set_parameters([Parameter("scale", value=2.0)])[0]
            assert result.successful and node.anchor.scale == 2.0
            np.testing.assert_allclose(node.mount.child_pose(step, mount), before, atol=1e-12)
            two = step.copy()
            two[2, 3] = 2.0
            np.testing.assert_allclose(node.mount.child_pose(two, mount)[:3, 3], [3.0, 0, 0],
                                       atol=1e-12)
            refused = node.set_parameters([Parameter("scale", value=-1.0)])[0]
            assert not refused.successful and node.anchor.scale == 2.0
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
