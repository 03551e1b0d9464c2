"""view_predictor as a real ROS 2 node.

* Unit level: arc-length resampling of plans and their expression relative to the camera.
* Across processes: `rap-ros up --no-estimator` in a subprocess; an image, camera info and
  the current pose (odometry topic, as without tf2_ros) go in; a plan gives a PredictedView
  with the model's frame count, the plan's stamps and poses, and the frames one by one on
  predicted_image; preview_paths scores 3 candidate paths against a goal image in one call.
* Bounded memory: candidates run in chunks with the same previews as in one batch;
  preview_paths refuses more than max_preview_paths (256 candidates) and answers a request
  at the limit with the process under a stated memory bound; an oversize image is
  downscaled and counted on /diagnostics.
"""
import math
import os
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("onnxruntime")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from rap_ros_msgs.msg import PredictedView  # noqa: E402
from rap_ros_msgs.srv import PreviewPaths  # noqa: E402
from rap_ros import geometry as geo  # noqa: E402
from rap_ros.backend.onnx_backend import OnnxBackend  # noqa: E402
from rap_ros.backend.shared import get_backend  # noqa: E402
from rap_ros.io import messages as msgs  # noqa: E402
from rap_ros.io.images import limit_image_size  # noqa: E402
from rap_ros.nodes import conversions as cv  # noqa: E402
from rap_ros.nodes.diagnostics import peak_memory_mb, resident_memory_mb  # noqa: E402
from rap_ros.pipeline.plans import plan_cameras, resample_path  # noqa: E402
from rap_ros.pipeline.views import ViewPipeline, chunks  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from test_trajectory_estimator import (Probe, diagnostic_values, model_spec,  # noqa: E402,F401
                                       node_command, start_process, stop_process,
                                       synthetic_clip)

# Peak resident memory (VmHWM) the view_predictor process may reach answering a
# preview_paths request at the limit (64 candidates, chunks of 8). Before chunking and
# without the memory arena off, one such request took the process to 3.8 GB.
PREVIEW_MEMORY_BOUND_MB = 800


def straight_plan(count, length, start=(0.0, 0.0, 0.0), yaw_end=0.0):
    """Base poses (count, 4, 4) along +x from ``start``, turning linearly to ``yaw_end``."""
    poses = np.stack([geo.matrix_from_xyz_rpy(
        (start[0] + length * f, start[1], start[2]), (0.0, 0.0, yaw_end * f))
        for f in np.linspace(0.0, 1.0, count)])
    return poses


# ------------------------------------------------------------------ unit level


def test_resample_path_by_arc_length():
    poses = straight_plan(3, 1.0)
    poses[1, 0, 3] = 0.1  # uneven spacing: 0, 0.1, 1.0
    out, stamps = resample_path(poses, np.array([0.0, 1.0, 2.0]), 5)
    np.testing.assert_allclose(out[:, 0, 3], [0.0, 0.25, 0.5, 0.75, 1.0], atol=1e-12)
    assert stamps[0] == 0.0 and stamps[-1] == 2.0 and np.all(np.diff(stamps) > 0)
    turn = straight_plan(4, 0.0, yaw_end=math.pi / 2)  # turning in place: spaced by angle
    out, _ = resample_path(turn, np.zeros(4), 3)
    yaw = np.arctan2(out[:, 1, 0], out[:, 0, 0])
    np.testing.assert_allclose(yaw, [0.0, math.pi / 4, math.pi / 2], atol=1e-9)
    single, _ = resample_path(poses[:1], np.zeros(1), 4)
    assert single.shape == (4, 4, 4)


def test_plan_cameras_relative_to_the_camera():
    mount = geo.body_to_optical(np.eye(4))
    plan = straight_plan(20, 2.0, start=(1.0, 0.0, 0.0))
    T_now = geo.body_to_optical(geo.matrix_from_xyz_rpy((1.0, 0.0, 0.0), (0, 0, 0)))
    world, stamps, rel = plan_cameras(plan, np.zeros(20), T_now, 100.0, mount, 5, 0.5)
    np.testing.assert_allclose(rel[0], np.eye(4), atol=1e-12)
    # Moving forward (+x in odom) is moving along the optical z axis.
    assert np.all(np.diff(rel[:, 2, 3]) > 0) and np.allclose(rel[:, :2, 3], 0, atol=1e-9)
    # Normalised: mean distance of the centres from the first is 1.
    assert np.linalg.norm(rel[1:, :3, 3], axis=1).mean() == pytest.approx(1.0)
    np.testing.assert_allclose(world[-1][:3, 3], [3.0, 0.0, 0.0], atol=1e-9)
    # Unstamped plan: timed at 0.5 m/s from the source stamp.
    np.testing.assert_allclose(stamps, 100.0 + np.linspace(0, 2.0, 5) / 0.5, atol=1e-9)


def test_limit_image_size():
    image = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    small, downscaled = limit_image_size(image, 640 * 480)
    assert downscaled and small.dtype == np.uint8 and small.shape[2] == 3
    assert small.shape[0] * small.shape[1] <= 640 * 480
    assert abs(small.shape[1] / small.shape[0] - 16 / 9) < 0.01  # aspect kept
    assert small.shape[0] * small.shape[1] > 0.98 * 640 * 480  # not smaller than needed
    same, downscaled = limit_image_size(image, 1920 * 1080)
    assert same is image and not downscaled
    assert limit_image_size(image, 0) == (image, False)  # 0: no limit
    line, _ = limit_image_size(np.zeros((2, 5000, 3), np.uint8), 100)  # a side stays >= 1
    assert line.shape == (1, 100, 3)
    grey, _ = limit_image_size(np.zeros((100, 100, 1), np.uint8), 50 * 50)
    assert grey.shape == (50, 50, 1)


def test_source_image_comes_with_its_own_K_undistorted_once():
    """PredictorInputs keeps the latest image downscaled, undistorts it when it is read,
    once per image and calibration, and gives it with the K it was undistorted with."""
    import threading
    from types import SimpleNamespace

    from rap_ros.nodes.predictor_inputs import PredictorInputs

    counts, bad = [], []
    diagnostics = SimpleNamespace(tick=lambda key: None, count=counts.append,
                                  set_value=lambda key, value: None)
    inputs = PredictorInputs(threading.Lock(), diagnostics, SimpleNamespace(warn=bad.append),
                             bad.append, max_image_pixels=1024, fov_deg=60.0)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    inputs.on_image(cv.array_to_image(image, "rgb8", cv.seconds_to_stamp(5.0)))
    assert inputs.has_source and counts == ["images downscaled"]
    source = inputs.source
    assert source.seconds == 5.0 and source.rgb.shape == (27, 36, 3) and source.K is None
    assert inputs.intrinsics(36, 27, source.K)[1] == "fov_deg"
    K = np.array([[50.0, 0.0, 31.5], [0.0, 50.0, 23.5], [0.0, 0.0, 1.0]])
    info = cv.K_to_camera_info(K, 64, 48, cv.seconds_to_stamp(5.0))
    info.distortion_model, info.d = "plumb_bob", [0.1, -0.05, 0.0, 0.0, 0.0]
    inputs.on_camera_info(info)
    undistorted = inputs.source  # the same image, with the new calibration and its K
    assert undistorted is inputs.source  # undistorted once
    assert undistorted.K is not None and not np.array_equal(undistorted.rgb, source.rgb)
    K_used, origin = inputs.intrinsics(36, 27, undistorted.K)
    assert origin == "camera_info" and K_used is undistorted.K
    info.k = [0.0] * 9
    inputs.on_camera_info(info)  # unusable: reported, the calibration in use kept
    assert bad[-1].startswith("camera info ignored: ") and inputs.source is undistorted


def test_resident_memory_helpers():
    now, peak = resident_memory_mb(), peak_memory_mb()
    assert 1.0 < now <= peak + 1.0


def test_chunks():
    assert chunks(5, None) == [slice(0, 5)] == chunks(5, 8) == chunks(5, 0)
    assert chunks(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]


def test_chunked_previews_equal_one_batch(model_spec):
    """The node's chunked path gives the previews of one batch (same noise per path)."""
    backend = get_backend(model_spec[0])
    T = int(backend.config.frames)
    clip = synthetic_clip(seed=7, frames=T)
    paths = np.stack([plan_cameras(straight_plan(10, 2.0, yaw_end=yaw), np.zeros(10),
                                   geo.body_to_optical(np.eye(4)), 0.0,
                                   geo.body_to_optical(np.eye(4)), T, 0.5)[2]
                      for yaw in (0.0, 0.4, -0.4, 0.8, -0.8)])
    one = ViewPipeline(backend, seed=3).closed_loop_batch(clip.frames[0], clip.K, paths)
    chunked = ViewPipeline(backend, seed=3).closed_loop_batch(clip.frames[0], clip.K, paths,
                                                             chunk_size=2)
    assert len(chunked) == len(one) == 5
    for a, b in zip(one, chunked):
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 1
        assert np.abs(a.regenerated.astype(int) - b.regenerated.astype(int)).max() <= 1
        np.testing.assert_allclose(a.c2w, b.c2w, atol=1e-4)
        assert a.psnr == pytest.approx(b.psnr, abs=0.05)
    frames = ViewPipeline(backend, seed=3).predict_batch(clip.frames[0], clip.K, paths)
    frames_chunked = ViewPipeline(backend, seed=3).predict_batch(clip.frames[0], clip.K, paths,
                                                                chunk_size=3)
    assert np.abs(frames.astype(int) - frames_chunked.astype(int)).max() <= 1


def test_backend_memory_arena_option(model_spec):
    backend = get_backend(model_spec[0])
    if not isinstance(backend, OnnxBackend):
        pytest.skip("not an ONNX backend")
    assert backend.memory_arena == "off"  # the default, by benchmarks/results/memory.md
    with pytest.raises(ValueError, match="memory_arena"):
        OnnxBackend(backend.model_dir, memory_arena="sometimes")
    x = np.random.default_rng(0).standard_normal(
        (2, backend.config.frames, 3, backend.config.image_size,
         backend.config.image_size)).astype(np.float32)
    shrink = OnnxBackend(backend.model_dir, threads=1, warmup=False, memory_arena="shrink")
    np.testing.assert_allclose(shrink.encode(x), backend.encode(x), atol=1e-5)


# ------------------------------------------------------------------ across processes


@pytest.fixture(scope="module")
def frames_per_view(model_spec):
    from rap_ros.backend.shared import get_backend

    return int(get_backend(model_spec[0]).config.frames)


def wait_for_subscribers(probe, publishers, timeout=60):
    assert probe.spin_until(lambda: all(p.get_subscription_count() > 0 for p in publishers),
                            timeout), "the view predictor never subscribed"


def send_until(probe, send, condition, timeout=20.0, period=0.2):
    """Call ``send()`` every ``period`` s until ``condition()`` holds (then twice more, for
    the inputs sent beside the one the condition sees) or ``timeout`` s pass; returns
    ``condition()``. The node's input subscriptions are best effort: a message sent before
    the node's side of discovery has matched the publisher is lost (one CI run lost all
    three images a test sent 0.2 s apart)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        send()
        probe.spin_for(period)
    for _ in range(2):
        send()
        probe.spin_for(period)
    return condition()


def has_source_image(probe):
    """The view_predictor says on /diagnostics that it holds a source image."""
    values = diagnostic_values(probe.received["/diagnostics"], "view_predictor")
    return values.get("source image") == "yes"


def test_plan_to_predicted_view_and_previews(model_spec, frames_per_view):
    T = frames_per_view
    process = start_process(node_command("predictor", model_spec[0], "-p", "steps:=2",
                                         "-p", "consistency:=true"))  # off by default
    rclpy.init()
    probe = Probe("predictor_probe")
    try:
        from nav_msgs.msg import Path

        probe.collect(PredictedView, "predicted_view", 10)
        probe.collect(Image, "predicted_image", 100)
        probe.collect(DiagnosticArray, "/diagnostics", 50)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        image_pub = probe.node.create_publisher(Image, "image", reliable)
        info_pub = probe.node.create_publisher(CameraInfo, "camera_info", reliable)
        odom_pub = probe.node.create_publisher(Odometry, "odometry", reliable)
        plan_pub = probe.node.create_publisher(Path, "plan", reliable)
        wait_for_subscribers(probe, [image_pub, info_pub, odom_pub, plan_pub])

        clip = synthetic_clip(seed=5, frames=T)
        source_stamp = cv.seconds_to_stamp(200.0)
        # The robot's base is at (1, 0, 0) in odom; the camera looks along its x axis.
        odometry = Odometry(child_frame_id="base_link")
        odometry.header.frame_id = "odom"
        odometry.header.stamp = source_stamp
        odometry.pose.pose = cv.matrix_to_pose(geo.matrix_from_xyz_rpy((1, 0, 0), (0, 0, 0)))

        def send_inputs():
            image_pub.publish(cv.array_to_image(clip.frames[0], "rgb8", source_stamp))
            info_pub.publish(cv.K_to_camera_info(clip.K, 64, 48, source_stamp))
            odom_pub.publish(odometry)
        assert send_until(probe, send_inputs, lambda: has_source_image(probe)), \
            "the view predictor never took the image"

        plan_poses = straight_plan(30, 3.0, start=(1.0, 0.0, 0.0), yaw_end=0.3)
        plan_stamps = 200.0 + np.linspace(0.0, 6.0, 30)
        plan = cv.poses_to_path(plan_poses, plan_stamps, "odom", source_stamp)
        plan_pub.publish(plan)
        assert probe.spin_until(lambda: probe.received["predicted_view"], 60), \
            "no predicted_view"
        view = probe.received["predicted_view"][0]
        assert view.header.frame_id == "odom" and view.source_stamp.sec == 200
        assert len(view.frames) == len(view.poses) == len(view.scores) == T
        assert all(np.isfinite(view.scores))
        frame = msgs.image_to_rgb8(view.frames[1])
        # the default preview ("warp+model") is full frame, at the source's size
        assert frame.shape == clip.frames[0].shape
        seconds = np.array([msgs.stamp_seconds(p.header.stamp) for p in view.poses])
        assert seconds[0] == pytest.approx(200.0) and seconds[-1] == pytest.approx(206.0)
        assert np.all(np.diff(seconds) > 0)
        poses = np.stack([msgs.pose_message_to_matrix(p) for p in view.poses])
        # First: the current camera; last: the plan's end, camera optical axes.
        np.testing.assert_allclose(poses[0][:3, 3], [1.0, 0.0, 0.0], atol=1e-6)
        np.testing.assert_allclose(poses[-1][:3, 3], [4.0, 0.0, 0.0], atol=1e-6)
        np.testing.assert_allclose(poses[0][:3, :3], geo.BODY_FROM_OPTICAL, atol=1e-6)
        np.testing.assert_allclose(poses[-1][:3, :3],
                                   geo.body_to_optical(plan_poses[-1])[:3, :3], atol=1e-6)
        assert probe.spin_until(lambda: len(probe.received["predicted_image"]) >= T, 10)
        image_stamps = [msgs.stamp_seconds(m.header.stamp)
                        for m in probe.received["predicted_image"][:T]]
        np.testing.assert_allclose(image_stamps, seconds, atol=1e-6)

        # preview_paths: three candidates (straight, left, right) and a goal image.
        client = probe.node.create_client(PreviewPaths, "preview_paths")
        request = PreviewPaths.Request()
        for yaw in (0.0, 0.5, -0.5):
            request.paths.append(cv.poses_to_path(
                straight_plan(10, 2.0, start=(1.0, 0.0, 0.0), yaw_end=yaw),
                np.zeros(10), "odom"))
        request.goal_image = cv.array_to_image(clip.frames[-1], "rgb8")
        response = probe.call(client, request, timeout=60)
        assert response.success, response.message
        assert len(response.previews) == len(response.consistency) == 3
        assert len(response.goal_similarity) == len(response.goal_distance) == 3
        assert all(-1.0 <= s <= 1.0 for s in response.goal_similarity)
        assert all(0.0 <= d <= 2.0 for d in response.goal_distance)
        # the previews turn with their paths: left and right differ
        left, right = (msgs.image_to_rgb8(response.previews[i].frames[-1]).astype(float)
                       for i in (1, 2))
        assert np.abs(left - right).mean() > 10.0
        assert all(len(p.frames) == T and len(p.poses) == T for p in response.previews)
        # Without a goal image goal_similarity is empty.
        response = probe.call(client, PreviewPaths.Request(paths=request.paths[:1]))
        assert response.success and not response.goal_similarity and not response.goal_distance
    finally:
        probe.node.destroy_node()
        rclpy.try_shutdown()
        output = stop_process(process)
    assert "Traceback" not in output, output[-3000:]


def process_peak_mb(pid):
    """VmHWM (peak resident memory) of a process in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def test_preview_paths_memory_is_bounded(model_spec, frames_per_view):
    """256 candidates are refused clearly; 64 (the limit) are answered in chunks of 8 with
    the process under PREVIEW_MEMORY_BOUND_MB; an image over max_image_pixels is
    downscaled and counted on /diagnostics. Consistency off keeps the test short (the
    chunked closed loop is the same code path, checked above)."""
    T = frames_per_view
    process = start_process(node_command(
        "predictor", model_spec[0], "-p", "consistency:=false",
        "-p", "max_image_pixels:=1024", "-p", "diagnostics_period:=0.3"))
    rclpy.init()
    probe = Probe("predictor_memory_probe")
    try:
        probe.collect(DiagnosticArray, "/diagnostics", 50)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        image_pub = probe.node.create_publisher(Image, "image", reliable)
        wait_for_subscribers(probe, [image_pub])
        clip = synthetic_clip(seed=5, frames=T)  # 64 x 48 = 3072 pixels > 1024
        image = cv.array_to_image(clip.frames[0], "rgb8", cv.seconds_to_stamp(10.0))

        def downscaled():
            values = diagnostic_values(probe.received["/diagnostics"], "view_predictor")
            return int(values.get("images downscaled", 0)) >= 1 and values
        assert send_until(probe, lambda: image_pub.publish(image), downscaled), \
            "no downscaled image on /diagnostics"
        values = downscaled()
        assert values["last downscaled image"] == "image 64x48 -> 36x27"
        assert float(values["resident memory (MB)"]) > 10.0

        client = probe.node.create_client(PreviewPaths, "preview_paths")
        yaws = np.linspace(-0.8, 0.8, 256)
        paths = [cv.poses_to_path(straight_plan(10, 2.0, yaw_end=yaw), np.zeros(10), "odom")
                 for yaw in yaws]
        response = probe.call(client, PreviewPaths.Request(paths=paths), timeout=60)
        assert not response.success and not response.previews
        assert "256 paths" in response.message and "64" in response.message
        assert "max_preview_paths" in response.message

        response = probe.call(client, PreviewPaths.Request(paths=paths[::4]), timeout=120)
        assert response.success, response.message
        assert len(response.previews) == 64
        assert all(len(p.frames) == T for p in response.previews)
        # consistency off (the default): NaN per path, no per-frame scores
        assert len(response.consistency) == 64 and all(math.isnan(c) for c in response.consistency)
        assert not any(len(p.scores) for p in response.previews)
        peak = process_peak_mb(process.pid)
        print(f"view_predictor peak resident memory: {peak:.0f} MB")
        assert peak < PREVIEW_MEMORY_BOUND_MB, f"peak {peak:.0f} MB"
    finally:
        probe.node.destroy_node()
        rclpy.try_shutdown()
        output = stop_process(process)
    assert "Traceback" not in output, output[-3000:]
    assert "downscaled to 36x27" in output
