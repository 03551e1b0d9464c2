"""map_points between the nodes (issue 12), real rclpy across processes.

* The trajectory_estimator (geometry) publishes its local map on ``map_points`` after
  keyframes, in odom, in the published poses' metres (seen from the published camera pose
  of the same stamp, the points lie in front of it and in its image), at most
  ``map_points_max`` of them.
* The view_predictor warps with the plane until a cloud arrives, then with the cloud's depth
  (exactly the ViewPipeline warp of the densified cloud, seen from the camera the paths
  start at), and with the plane again for a stale cloud; the preview_paths message says
  which depth was used.
* The estimator's landmark transform is its poses' (mount, odom origin, re-anchored scale).
"""
import re

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("onnxruntime")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from rap_ros import geometry as geo  # noqa: E402
from rap_ros.geometry.cameras import invert_pose, relative_to_first  # noqa: E402
from rap_ros.io import messages as msgs  # noqa: E402
from rap_ros.nodes import conversions as cv  # noqa: E402
from rap_ros.nodes.predictor_inputs import MAX_MAP_POINTS  # noqa: E402
from rap_ros.pipeline.depth import (depth_from_points, points_in_view,  # noqa: E402
                                    project_points)

from test_odometry_node import MOUNT, play, running_node  # noqa: E402
from test_trajectory_estimator import (Probe, model_spec, node_command,  # noqa: E402,F401
                                       start_process, stop_process, synthetic_clip)
from test_view_predictor import (has_source_image, send_until, straight_plan,  # noqa: E402
                                 wait_for_subscribers)

MAP_POINTS_MAX = 60


def test_estimator_publishes_its_local_map(model_spec):
    """geometry on a 3 s drive: map_points after keyframes, in odom, at most map_points_max,
    in the published poses' metres (scale 3: seen from the camera of the published pose
    with the same stamp, the points are in front of it and mostly in its image)."""
    from rap_ros.synth.dataset import held_out_seed, make_drive

    drive = make_drive(held_out_seed(1), frames=30, height=120, width=160, scene="room")
    with running_node(model_spec, "map_points_probe", "-p", "scale:=3.0",
                      "-p", f"map_points_max:={MAP_POINTS_MAX}",
                      collect=((PointCloud2, "map_points"),)) as (probe, pubs):
        play(probe, pubs, drive, 700.0, wheel=False)
        odometry = probe.received["odometry"]
        clouds = probe.received["map_points"]
        assert probe.spin_until(lambda: len(odometry) >= 30 and clouds, 20), (
            len(odometry), len(clouds))
    assert len(clouds) < len(odometry), "a cloud per frame: expected one per keyframe"
    poses = {msgs.stamp_seconds(o.header.stamp): msgs.pose_to_matrix(o.pose.pose)
             for o in odometry}
    in_view = []
    for cloud in clouds:
        assert cloud.header.frame_id == "odom"
        points = msgs.pointcloud2_to_xyz(cloud)
        assert 0 < len(points) <= MAP_POINTS_MAX
        stamp = msgs.stamp_seconds(cloud.header.stamp)
        if stamp not in poses:
            continue
        camera = poses[stamp] @ MOUNT  # odom -> base_link -> camera (as published)
        uv, z = project_points(points, camera, drive.K)
        assert np.mean(z > 0) > 0.95, np.mean(z > 0)
        in_view.append(points_in_view(points, camera, drive.K, (120, 160)) / len(points))
    assert in_view, "no cloud stamped like an odometry message"
    # the window's landmarks include points only older keyframes saw (on this turning drive
    # 27-100 % of a cloud is in view), so "many": a cloud in the wrong frame or scale puts
    # (almost) none in view
    assert min(in_view) > 0.2 and np.median(in_view) > 0.4, in_view


@pytest.fixture(scope="module")
def warp_predictor(model_spec):
    """A view_predictor in warp mode (no model job per preview), no consistency."""
    process = start_process(node_command("predictor", model_spec[0], "-p", "preview:=warp",
                                         "-p", "consistency:=false", "-p", "use_tf:=false"))
    yield process
    output = stop_process(process)
    assert "Traceback" not in output, output[-3000:]


def test_view_predictor_warps_with_the_map_depth(model_spec, warp_predictor):
    from rap_ros.backend.shared import get_backend
    from rap_ros.pipeline.views import ViewPipeline
    from rap_ros_msgs.srv import PreviewPaths

    T = int(get_backend(model_spec[0]).config.frames)
    clip = synthetic_clip(seed=5, frames=2)
    height, width = clip.frames[0].shape[:2]
    rclpy.init()
    probe = Probe("map_depth_probe")
    try:
        probe.collect(DiagnosticArray, "/diagnostics", 50)
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        pubs = [probe.node.create_publisher(kind, topic, reliable) for kind, topic in
                ((Image, "image"), (CameraInfo, "camera_info"), (Odometry, "odometry"),
                 (PointCloud2, "map_points"))]
        image_pub, info_pub, odom_pub, map_pub = pubs
        wait_for_subscribers(probe, pubs)
        stamp = cv.seconds_to_stamp(300.0)
        odometry = Odometry(child_frame_id="base_link")
        odometry.header.frame_id, odometry.header.stamp = "odom", stamp
        odometry.pose.pose = cv.matrix_to_pose(np.eye(4))

        def send_inputs():
            image_pub.publish(cv.array_to_image(clip.frames[0], "rgb8", stamp))
            info_pub.publish(cv.K_to_camera_info(clip.K, width, height, stamp))
            odom_pub.publish(odometry)
        assert send_until(probe, send_inputs, lambda: has_source_image(probe)), \
            "the view predictor never took the image"
        client = probe.node.create_client(PreviewPaths, "preview_paths")
        request = PreviewPaths.Request(paths=[cv.poses_to_path(
            straight_plan(10, 1.0, yaw_end=yaw), np.zeros(10), "odom") for yaw in (0.0, 0.3)])

        def previews():
            response = probe.call(client, request, timeout=30)
            assert response.success, response.message
            frames = np.stack([[msgs.image_to_rgb8(f) for f in p.frames]
                               for p in response.previews])
            worlds = np.stack([[msgs.pose_message_to_matrix(q) for q in p.poses]
                               for p in response.previews])
            return response.message, frames, worlds

        message, plane, worlds = previews()
        assert "plane 5 m (no map_points)" in message, message

        # A wall 2.5 m ahead of the camera (odom x = 2.5; the camera looks along odom x).
        rng = np.random.default_rng(0)
        wall = np.stack([np.full(300, 2.5), rng.uniform(-3, 3, 300),
                         rng.uniform(-2, 2, 300)], axis=1)
        map_pub.publish(cv.points_to_pointcloud2(wall, stamp, "odom"))
        probe.spin_for(0.5)
        message, mapped, worlds = previews()
        assert "map (" in message and "points in view" in message, message
        assert np.abs(mapped.astype(float) - plane).mean() > 2.0  # the depth changed the warp
        # ... and it is the ViewPipeline warp of the densified cloud, seen from the camera
        # the paths start at, in each path's normalised units
        camera = worlds[0, 0]
        np.testing.assert_allclose(camera, geo.body_to_optical(np.eye(4)), atol=1e-6)
        received = msgs.pointcloud2_to_xyz(cv.points_to_pointcloud2(wall))  # float32
        depth = depth_from_points(received, camera, clip.K, (height, width))
        rel, scales = zip(*(relative_to_first(invert_pose(w[0]) @ w) for w in worlds))
        expected = ViewPipeline(get_backend(model_spec[0]), preview="warp").predict_batch(
            clip.frames[0], clip.K, np.stack(rel),
            depth=depth[None] / np.array(scales, np.float32)[:, None, None])
        assert expected.shape == mapped.shape == (2, T, height, width, 3)
        # (up to float rounding of the poses' quaternions: a z-buffer tie may flip)
        differ = np.abs(expected.astype(int) - mapped).max(axis=-1) > 1
        assert differ.mean() < 1e-3, differ.mean()

        # A cloud much older than the image: the plane again.
        map_pub.publish(cv.points_to_pointcloud2(wall, cv.seconds_to_stamp(100.0), "odom"))
        probe.spin_for(0.5)
        message, stale, _ = previews()
        assert "plane 5 m (map_points 200.0 s older" in message, message
        assert np.abs(stale.astype(int) - plane).max() <= 1

        # A cloud far larger than an estimator sends: thinned on arrival, still used.
        huge = np.repeat(wall, 200, axis=0)  # 60,000 points
        map_pub.publish(cv.points_to_pointcloud2(huge, stamp, "odom"))
        probe.spin_for(1.0)
        message, _, _ = previews()
        in_view = re.search(r"map \((\d+) points in view", message)
        assert in_view and 0 < int(in_view.group(1)) <= MAX_MAP_POINTS, message
    finally:
        probe.node.destroy_node()
        rclpy.try_shutdown()


def test_map_points_follow_the_published_poses_transform(model_spec):
    """odom_points is child_pose's transform applied to positions: the mount, the odom
    origin of ~/reset_to_pose and a scale re-anchored mid-run (wheel odometry) included."""
    from rclpy.parameter import Parameter

    from rap_ros.nodes.trajectory_estimator import TrajectoryEstimator

    rclpy.init()
    try:
        node = TrajectoryEstimator(parameter_overrides=[
            Parameter("backend", value=model_spec[0]), Parameter("method", value="geometry"),
            Parameter("base_frame", value=""), Parameter("scale", value=2.0)])
        try:
            mount = node.T_base_camera_parameters
            node.mount.T_odom_start = geo.matrix_from_xyz_rpy((1.0, -2.0, 0.5), (0.1, 0.0, 0.7))
            pose = geo.matrix_from_xyz_rpy((0.3, 0.2, 1.5), (0.0, 0.4, -0.2))
            node.anchor.set_scale(0.5, pose)  # re-anchored at a pose, as wheel odometry does
            points = np.random.default_rng(0).normal(size=(20, 3)) * 4
            expected = []
            for X in points:
                T = np.eye(4)
                T[:3, 3] = X
                expected.append(node.mount.child_pose(T, mount)[:3, 3])
            np.testing.assert_allclose(node.mount.odom_points(points, mount), expected, atol=1e-9)
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
