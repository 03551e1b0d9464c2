"""view_predictor: what the camera will see along a planned path ("images + camera -> video").

Subscribes
  image (sensor_msgs/Image): the current view, the source of every prediction
  camera_info (sensor_msgs/CameraInfo, optional): its intrinsics; without it the
      estimator's estimated_camera_info, else a pinhole camera of ``fov_deg``
  plan (nav_msgs/Path): poses of base_frame (or of the camera's body frame when base_frame
      is empty) in the odom or map frame
  odometry (nav_msgs/Odometry): the current pose, used when tf2_ros is not importable
  map_points (sensor_msgs/PointCloud2, optional): 3-D points of the scene (the estimator's
      local map), the depth of the warp with ``depth_source: map``
Publishes
  predicted_view (rap_ros_msgs/PredictedView): T frames (the model's frame count), their
      camera poses (OpenCV optical axes, in the plan's frame) and stamps, and per-frame
      closed-loop consistency scores (PSNR, dB). The frames follow ``preview``:
      "warp+model" (default): the source warped into each camera where the warp has data,
      the model's frame elsewhere, full frame (at most ``max_preview_pixels``); "warp": the
      warp alone; "model": the model's 64x64 frames of the centred square. A
      warp-conditioned model (the shipped one) is fed the warp in every mode but "warp".
      The warp's depth (``depth_source``): "map": map_points densified into a depth map of
      the source camera (``pipeline.depth``), the plane when there is no usable cloud (none,
      older than ``map_points_max_age``, fewer than ``map_points_min`` points in view, in a
      frame tf2 cannot relate to the plan's); "plane": a fronto-parallel plane at ``warp_depth``
      metres (0: rotation only). /diagnostics "warp depth" says which was used
  predicted_image (sensor_msgs/Image): the same frames one by one, stamped at path times
  /diagnostics (diagnostic_msgs/DiagnosticArray)
Services
  preview_paths (rap_ros_msgs/PreviewPaths): K candidate paths, run through the model in
      chunks of ``preview_chunk_size`` (memory grows with the chunk, not with K; at most
      ``max_preview_paths`` per request), scored by closed-loop consistency and, with a goal
      image, SSIM (goal_similarity) and the census distance (goal_distance)
      of the last frame to it (``pipeline.views.goal_scores``)

Memory
  Images over ``max_image_pixels`` are downscaled on arrival (counted on /diagnostics); the
  process's resident memory is reported on /diagnostics.

Frames and units
  Camera poses along the plan are plan_pose @ T_base_camera, T_base_camera from
  ``camera_mount_xyz`` / ``camera_mount_rpy`` (as in trajectory_estimator). The path is
  prefixed with the current camera pose, resampled by arc length to T poses, expressed
  relative to the current camera and scaled to the model's normalised unit (mean distance of
  the centres from the first = 1). Stamps: the source image's stamp, then the plan's stamps
  interpolated along the path; an unstamped plan (all zero) is timed at ``default_speed``
  m/s from the source stamp. map_points (metres, in their header's frame) are taken into
  the plan's frame (tf2 when the frames differ) and seen from the current camera, the pose
  the path starts at; their depths are divided by each path's scale as the plane's are.
"""
import math
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from rap_ros.geometry.cameras import (K_from_fov, invert_pose, relative_to_first,
                                      scale_intrinsics)
from rap_ros.io import messages
from rap_ros.io.images import limit_image_size
from rap_ros.nodes import conversions as cv
from rap_ros.nodes.diagnostics import (LogThrottle, NodeDiagnostics, peak_memory_mb,
                                       resident_memory_mb)
from rap_ros.nodes.params import (ParameterError, declare, declare_model_parameters,
                                  declare_mount_parameters, reliability_qos, resolve_backend)
from rap_ros.nodes.runner import run_nodes
from rap_ros.pipeline.depth import depth_from_points, points_in_view
from rap_ros.pipeline.plans import plan_cameras
from rap_ros.pipeline.views import PREVIEW_MODES, ViewPipeline, goal_scores, per_frame_psnr
from rap_ros.pipeline.warp import fallback_plane_depth
from rap_ros_msgs.msg import PredictedView
from rap_ros_msgs.srv import PreviewPaths

try:  # optional dependency: without tf2_ros the current pose comes from the odometry topic
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the installation
    tf2_ros = None


# Most map_points kept from one cloud (evenly thinned beyond): the estimator sends at most
# its map_points_max (2000 by default); a larger cloud from another source must not make the
# densification (a Delaunay triangulation per preview call) arbitrarily slow.
MAX_MAP_POINTS = 20000
# The distance returned as goal_distance, the plane depth of the warp and where the warp's
# depth comes from, chosen by benchmarks/results/previews.md.
GOAL_DISTANCE = "census_distance"
WARP_DEPTH_DEFAULT = 5.0
DEPTH_SOURCES = ("map", "plane")
DEPTH_SOURCE_DEFAULT = "map"

# ------------------------------------------------------------------ node


class ViewPredictor(Node):
    """ROS adapter over ViewPipeline (see the module docstring)."""

    def __init__(self, backend=None, node_name="view_predictor", **kwargs):
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        backend = resolve_backend(backend, self.model["backend"])
        self.backend = backend
        self.frames = int(backend.config.frames)
        self.pipeline = ViewPipeline(backend, steps=self.model["steps"],
                                     sampler=self.model["sampler"], seed=self.model["seed"],
                                     preview=self.preview,
                                     max_preview_pixels=self.max_preview_pixels)
        name = getattr(backend, "name", str(backend))
        self.diagnostics = NodeDiagnostics(f"{self.get_name()}: prediction", hardware_id=name)
        self.diagnostics.set_value("backend", name)

        self._lock = threading.Lock()
        self._log_throttle = LogThrottle(2.0)
        self._source = None  # (seconds, stamp msg, rgb (H, W, 3))
        self._camera_info = None  # (K, (width, height))
        self._estimated_info = None
        self._odometry = None  # (frame_id, child_frame_id, T_frame_child)
        self._map = None  # (frame_id, stamp seconds, points (N, 3) metres)
        self._warned_no_pose = False
        self._warned_downscale = False

        # One callback group per input, so no input waits for another's callback; camera_info
        # best effort whatever qos_reliability says (reliable, its samples are lost behind
        # large images and repaired only seconds later: trajectory_estimator, issue 11).
        sensor_qos = reliability_qos(self.qos_reliability, 2)
        info_qos = reliability_qos("best_effort", 2)
        self.image_sub = self.create_subscription(
            Image, "image", self._on_image, sensor_qos,
            callback_group=MutuallyExclusiveCallbackGroup())
        self.info_sub = self.create_subscription(
            CameraInfo, "camera_info", self._on_camera_info, info_qos,
            callback_group=MutuallyExclusiveCallbackGroup())
        self.estimated_info_sub = self.create_subscription(
            CameraInfo, "estimated_camera_info", self._on_estimated_info, 10,
            callback_group=MutuallyExclusiveCallbackGroup())
        self.odom_sub = self.create_subscription(
            Odometry, "odometry", self._on_odometry, 10,
            callback_group=MutuallyExclusiveCallbackGroup())
        # the warp needs a depth in the warp modes, and for a warp-conditioned model in all
        self.needs_depth = self.preview != "model" or self.pipeline.conditioned
        self.map_sub = None
        if self.depth_source == "map" and self.needs_depth:
            self.map_sub = self.create_subscription(
                PointCloud2, "map_points", self._on_map_points, 2,
                callback_group=MutuallyExclusiveCallbackGroup())
        self.tf_buffer = None
        if self.use_tf and tf2_ros is not None:
            self.tf_buffer = tf2_ros.Buffer()
            self.tf_listener = tf2_ros.TransformListener(self.tf_buffer, self)
        # Model jobs run one at a time in their own group, so images and poses keep coming
        # in meanwhile (MultiThreadedExecutor). A plan arriving while busy replaces the
        # waiting one (depth 1).
        model_group = MutuallyExclusiveCallbackGroup()
        self.plan_sub = self.create_subscription(
            Path, "plan", self._on_plan, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE),
            callback_group=model_group)
        self.preview_srv = self.create_service(PreviewPaths, "preview_paths", self._on_preview,
                                               callback_group=model_group)
        self.view_pub = self.create_publisher(PredictedView, "predicted_view", 10)
        self.image_pub = self.create_publisher(Image, "predicted_image", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diag_timer = self.create_timer(self.diagnostics_period, self._publish_diagnostics)
        pose_source = "tf2" if self.tf_buffer is not None else "the odometry topic"
        self.get_logger().info(f"view_predictor ready: backend {name}, {self.frames} frames, "
                               f"current pose from {pose_source}")

    # -------------------------------------------------------------- parameters

    def _declare_parameters(self):
        self.model = declare_model_parameters(self, "predict")
        self.fov_deg = declare(self, "fov_deg", 60.0,
                               "Horizontal field of view (deg) assumed when neither "
                               "camera_info nor estimated_camera_info has arrived.", 1.0, 179.0)
        self.qos_reliability = declare(self, "qos_reliability", "best_effort",
                                       "Reliability of the image subscription "
                                       "(best_effort = sensor-data QoS; camera_info is "
                                       "always best effort).",
                                       choices=("best_effort", "reliable"))
        self.camera_frame = declare(self, "camera_frame", "camera_optical_frame",
                                    "Camera optical frame; frame_id of predicted_image.")
        self.base_frame = declare(self, "base_frame", "",
                                  "Frame whose poses the plan holds; empty: the camera's body "
                                  "frame (the mount parameters still apply).")
        self.T_base_camera = declare_mount_parameters(self)
        self.use_tf = declare(self, "use_tf", True,
                              "Look the current camera pose up in tf2 (when tf2_ros is "
                              "importable); otherwise use the odometry topic.")
        self.consistency = declare(self, "consistency", False,
                                   "Score predictions by closed-loop consistency (2 extra "
                                   "model jobs: about 3x the time); off: scores are empty.")
        self.max_plan_poses = declare(self, "max_plan_poses", 10000,
                                      "Plans with more poses are refused (with an error).",
                                      2, 1000000)
        self.max_preview_paths = declare(self, "max_preview_paths", 64,
                                         "preview_paths requests with more candidate paths "
                                         "are refused (success false, the message says "
                                         "why).", 1, 100000)
        self.preview_chunk_size = declare(self, "preview_chunk_size", 8,
                                          "Candidate paths per model call in preview_paths: "
                                          "the peak memory grows with it (about 20 MB a "
                                          "path), the speed hardly.", 1, 1024)
        self.max_image_pixels = declare(self, "max_image_pixels", 3840 * 2160,
                                        "Images (and goal images) with more pixels are "
                                        "downscaled on arrival, aspect kept, and counted on "
                                        "/diagnostics; 0: no limit.", 0, 10 ** 9)
        self.preview = declare(self, "preview", "warp+model",
                               "Preview frames: warp+model (the source warped into each "
                               "camera where the warp has data, the model's frame elsewhere, "
                               "full frame), guided (as warp+model, the model's frames "
                               "generated from the warp), warp (the warp alone) or model "
                               "(the model's frames of the centred square).",
                               choices=PREVIEW_MODES)
        self.warp_depth = declare(self, "warp_depth", WARP_DEPTH_DEFAULT,
                                  "Depth (m) of the fronto-parallel plane the warp assumes "
                                  "(translation included; pushed beyond 3x the path's "
                                  "forward reach); 0: rotation only (the scene at "
                                  "infinity). benchmarks/results/previews.md compares "
                                  "them.", 0.0, 1e6)
        self.depth_source = declare(self, "depth_source", DEPTH_SOURCE_DEFAULT,
                                    "Depth of the warp: map (map_points densified, the "
                                    "plane without a usable cloud) or plane (warp_depth).",
                                    choices=DEPTH_SOURCES)
        self.map_points_max_age = declare(self, "map_points_max_age", 10.0,
                                          "map_points whose stamp is more than this many "
                                          "seconds before the source image's are not used "
                                          "(the plane is).", 0.0, 1e6)
        self.map_points_min = declare(self, "map_points_min", 20,
                                      "Fewest map_points in the source camera's view for a "
                                      "map depth; fewer: the plane.", 3, 1000000)
        self.max_preview_pixels = declare(self, "max_preview_pixels", 320 * 240,
                                          "Warp-mode previews are at the source's size, "
                                          "downscaled (aspect kept) to at most this many "
                                          "pixels; 0: no limit.", 0, 10 ** 9)
        self.default_speed = declare(self, "default_speed", 0.5,
                                     "Speed (m/s) used to time unstamped plans.", 1e-3, 100.0)
        self.diagnostics_period = declare(self, "diagnostics_period", 1.0,
                                          "Seconds between /diagnostics messages.", 0.05, 60.0)
        if not self.camera_frame:
            raise ParameterError("parameter 'camera_frame' must not be empty")

    # -------------------------------------------------------------- inputs

    def _on_image(self, msg):
        self.diagnostics.tick("input")
        try:
            rgb = messages.image_to_rgb8(msg)
        except ValueError as error:
            self._bad_input(f"image dropped: {error}")
            return
        rgb = self._limit_size(rgb, "image")
        seconds = messages.stamp_seconds(msg.header.stamp)
        with self._lock:
            self._source = (seconds, msg.header.stamp, rgb)

    def _limit_size(self, rgb, what):
        """rgb within ``max_image_pixels`` (downscaled and counted when over it)."""
        height, width = rgb.shape[:2]
        rgb, downscaled = limit_image_size(rgb, self.max_image_pixels)
        if downscaled:
            self.diagnostics.count("images downscaled")
            self.diagnostics.set_value("last downscaled image",
                                       f"{what} {width}x{height} -> "
                                       f"{rgb.shape[1]}x{rgb.shape[0]}")
            if not self._warned_downscale:
                self._warned_downscale = True
                self.get_logger().warn(
                    f"{what} of {width}x{height} pixels is over max_image_pixels="
                    f"{self.max_image_pixels}: downscaled to {rgb.shape[1]}x{rgb.shape[0]} "
                    f"(counted on /diagnostics; logged once)")
        return rgb

    def _on_camera_info(self, msg):
        self._store_info(msg, "_camera_info")

    def _on_estimated_info(self, msg):
        self._store_info(msg, "_estimated_info")

    def _store_info(self, msg, attribute):
        try:
            info = messages.camera_info_to_K(msg)
        except ValueError as error:
            self._bad_input(f"camera info ignored: {error}")
            return
        with self._lock:
            setattr(self, attribute, info)

    def _on_odometry(self, msg):
        try:
            T = messages.pose_to_matrix(msg.pose.pose)
        except ValueError as error:
            self._bad_input(f"odometry ignored: {error}")
            return
        with self._lock:
            self._odometry = (msg.header.frame_id, msg.child_frame_id, T)

    def _on_map_points(self, msg):
        try:
            points = messages.pointcloud2_to_xyz(msg)
        except ValueError as error:
            self._bad_input(f"map_points ignored: {error}")
            return
        if len(points) > MAX_MAP_POINTS:  # bounded densification time whatever is sent
            keep = np.linspace(0, len(points) - 1, MAX_MAP_POINTS).round().astype(int)
            points = points[keep]
            self.diagnostics.count("map_points thinned")
        seconds = messages.stamp_seconds(msg.header.stamp)
        with self._lock:
            self._map = (msg.header.frame_id, seconds, points)

    def _bad_input(self, text):
        self.diagnostics.count("bad input")
        self.diagnostics.warn(text)
        if self._log_throttle.should_log(text):
            self.get_logger().warn(text)

    # -------------------------------------------------------------- state lookups

    def intrinsics(self, width, height):
        """K (3, 3) for a source image of width x height and where it came from."""
        with self._lock:
            info, source = self._camera_info, "camera_info"
            if info is None:
                info, source = self._estimated_info, "estimated_camera_info"
        if info is None:
            return K_from_fov(self.fov_deg, width, height), "fov_deg"
        K, (info_width, info_height) = info
        if (info_width, info_height) != (width, height):
            K = scale_intrinsics(K, width / info_width, height / info_height)
        return K, source

    def current_camera(self, plan_frame, first_plan_pose):
        """T_plan_camera (4, 4) of the camera now, optical axes, and how it was found."""
        if self.tf_buffer is not None:
            try:
                transform = self.tf_buffer.lookup_transform(plan_frame, self.camera_frame,
                                                            Time())
                return messages.transform_to_matrix(transform), "tf2"
            except Exception as error:  # tf2 lookup/extrapolation/connectivity errors
                self.get_logger().warn(f"tf2 lookup {plan_frame} -> {self.camera_frame} "
                                       f"failed ({error}); trying odometry",
                                       throttle_duration_sec=5.0)
        with self._lock:
            odometry = self._odometry
        if odometry is not None:
            frame, child, T = odometry
            if frame and plan_frame and frame != plan_frame:
                raise ValueError(f"the plan is in frame '{plan_frame}' but odometry is in "
                                 f"'{frame}', and tf2 cannot relate them")
            if child == self.camera_frame:
                return T, "odometry"
            return T @ self.T_base_camera, "odometry"
        if not self._warned_no_pose:
            self._warned_no_pose = True
            self.get_logger().warn("no camera pose from tf2 or odometry yet: assuming the "
                                   "camera is at the plan's first pose")
        return first_plan_pose @ self.T_base_camera, "plan start"

    def _prepare(self, plan, source):
        """nav_msgs/Path -> (world poses, stamps, rel poses) for the model; ValueError if
        the plan is unusable."""
        plan_stamps, plan_poses = messages.path_to_arrays(plan, self.max_plan_poses)
        T_now, _ = self.current_camera(plan.header.frame_id, plan_poses[0])
        return plan_cameras(plan_poses, plan_stamps, T_now, source[0], self.T_base_camera,
                            self.frames, self.default_speed)

    # -------------------------------------------------------------- jobs

    def _plane_depths(self, worlds):
        """Depth of the warp's plane in each path's normalised units ((P,), None for
        rotation only): ``warp_depth`` metres over the path's scale, pushed beyond the
        path's reach (``warp.fallback_plane_depth``)."""
        if self.warp_depth <= 0:
            return None
        depths = []
        for world in worlds:
            rel, scale = relative_to_first(invert_pose(world[0]) @ world)
            depths.append(fallback_plane_depth(rel, self.warp_depth / scale))
        return np.array(depths)

    def _map_depth(self, source, K, T_now, plan_frame):
        """z-depth (h, w) float32 in metres of the current camera T_now (plan frame) at the
        preview size from map_points, and what was used; (None, why not) when there is no
        usable cloud."""
        with self._lock:
            cloud = self._map
        if cloud is None:
            return None, "no map_points"
        frame, seconds, points = cloud
        age = source[0] - seconds
        if age > self.map_points_max_age:
            return None, (f"map_points {age:.1f} s older than the image (map_points_max_age "
                          f"{self.map_points_max_age:g})")
        if frame and plan_frame and frame != plan_frame:
            T = self._lookup(plan_frame, frame)
            if T is None:
                return None, f"map_points in '{frame}', the plan in '{plan_frame}', no tf2"
            points = points @ T[:3, :3].T + T[:3, 3]
        H, W = source[2].shape[:2]
        h, w = self.pipeline.preview_size(H, W)
        K_preview = scale_intrinsics(K, w / W, h / H)
        depth = depth_from_points(points, T_now, K_preview, (h, w),
                                  min_points=self.map_points_min)
        count = points_in_view(points, T_now, K_preview, (h, w))
        if depth is None:
            return None, f"{count} map points in view (map_points_min {self.map_points_min})"
        return depth, f"map ({count} points in view)"

    def _lookup(self, target, source_frame):
        """T_target_source (4, 4) from tf2 (latest), or None."""
        if self.tf_buffer is None:
            return None
        try:
            return messages.transform_to_matrix(
                self.tf_buffer.lookup_transform(target, source_frame, Time()))
        except Exception:  # tf2 lookup/extrapolation/connectivity errors
            return None

    def _depths(self, source, K, worlds, plan_frame):
        """The warp's depth for ViewPipeline (a map (P, h, w) or plane depths (P,), each in
        its path's normalised units; None: rotation only) and what it is."""
        if not self.needs_depth:
            return None, "none (model previews)"
        planes = self._plane_depths(worlds)
        plane = f"plane {self.warp_depth:g} m" if planes is not None else "rotation only"
        if self.depth_source != "map":
            return planes, plane
        depth, used = self._map_depth(source, K, worlds[0][0], plan_frame)
        if depth is None:
            return planes, f"{plane} ({used})"
        scales = np.array([relative_to_first(invert_pose(world[0]) @ world)[1]
                           for world in worlds], np.float32)
        return depth[None] / scales[:, None, None], used

    def _predict(self, source, rel, worlds, plan_frame):
        """Frames (P, T, h, w, 3) uint8, scores (P, T) dB (None without consistency) and
        the warp's depth source."""
        rgb = source[2]
        K, _ = self.intrinsics(rgb.shape[1], rgb.shape[0])
        depth, depth_used = self._depths(source, K, worlds, plan_frame)
        self.diagnostics.set_value("warp depth", depth_used)
        start = time.perf_counter()
        if self.consistency:
            results = self.pipeline.closed_loop_batch(rgb, K, rel, depth=depth,
                                                      chunk_size=self.preview_chunk_size)
            frames = np.stack([r.frames for r in results])
            scores = np.stack([per_frame_psnr(r.model_frames, r.regenerated)
                               for r in results])
        else:
            frames = self.pipeline.predict_batch(rgb, K, rel, depth=depth,
                                                 chunk_size=self.preview_chunk_size)
            scores = None
        self.diagnostics.latency("prediction", time.perf_counter() - start)
        return frames, scores, depth_used

    def _view_message(self, header_frame, header_stamp, source, world, stamps, frames, scores):
        view = PredictedView()
        view.header.frame_id = header_frame
        view.header.stamp = header_stamp
        view.source_stamp = source[1]
        stamp_msgs = [cv.seconds_to_stamp(max(0.0, s)) for s in stamps]
        view.frames = [cv.array_to_image(frame, "rgb8", stamp, self.camera_frame)
                       for frame, stamp in zip(frames, stamp_msgs)]
        view.poses = [cv.matrix_to_pose_stamped(T, stamp, header_frame)
                      for T, stamp in zip(world, stamp_msgs)]
        view.scores = [] if scores is None else [float(s) for s in scores]
        return view

    def _on_plan(self, plan):
        self.diagnostics.tick("plans")
        with self._lock:
            source = self._source
        if source is None:
            self._bad_input("plan ignored: no image received yet")
            return
        try:
            world, stamps, rel = self._prepare(plan, source)
        except ValueError as error:
            self.diagnostics.count("plans rejected")
            self._bad_input(f"plan rejected: {error}")
            return
        try:
            frames, scores, _ = self._predict(source, rel[None], world[None],
                                              plan.header.frame_id)
        except Exception as error:  # keep serving; report
            self.diagnostics.error(f"prediction failed: {error}")
            self.get_logger().error(f"prediction failed: {type(error).__name__}: {error}")
            return
        view = self._view_message(plan.header.frame_id, plan.header.stamp, source, world,
                                  stamps, frames[0], None if scores is None else scores[0])
        self.view_pub.publish(view)
        for image in view.frames:
            self.image_pub.publish(image)
        self.diagnostics.tick("output")
        self.diagnostics.count("predictions")
        if scores is not None:
            self.diagnostics.set_value("closed-loop consistency (dB)", float(scores[0].mean()))

    def _on_preview(self, request, response):
        response.success = False
        with self._lock:
            source = self._source
        if source is None:
            response.message = "no image received yet"
            return response
        if not request.paths:
            response.message = "no paths given"
            return response
        if len(request.paths) > self.max_preview_paths:
            response.message = (f"{len(request.paths)} paths requested; at most "
                                f"{self.max_preview_paths} per request (parameter "
                                f"max_preview_paths): send fewer or split the request")
            self.diagnostics.count("previews refused")
            self._bad_input(f"preview_paths: {response.message}")
            return response
        prepared = []
        for i, path in enumerate(request.paths):
            try:
                prepared.append(self._prepare(path, source))
            except ValueError as error:
                response.message = f"path {i} rejected: {error}"
                self._bad_input(f"preview_paths: {response.message}")
                return response
        goal = None
        if request.goal_image.height and request.goal_image.width:
            try:
                goal = self._limit_size(messages.image_to_rgb8(request.goal_image),
                                        "goal image")
            except ValueError as error:
                response.message = f"goal image rejected: {error}"
                self._bad_input(f"preview_paths: {response.message}")
                return response
        rel = np.stack([p[2] for p in prepared])
        try:
            frames, scores, depth_used = self._predict(source, rel, [p[0] for p in prepared],
                                                       request.paths[0].header.frame_id)
        except Exception as error:
            response.message = f"prediction failed: {type(error).__name__}: {error}"
            self.diagnostics.error(response.message)
            self.get_logger().error(response.message)
            return response
        for i, (path, (world, stamps, _)) in enumerate(zip(request.paths, prepared)):
            response.previews.append(self._view_message(
                path.header.frame_id, path.header.stamp, source, world, stamps, frames[i],
                None if scores is None else scores[i]))
        response.consistency = ([float(s.mean()) for s in scores] if scores is not None
                                else [math.nan] * len(prepared))
        if goal is not None:
            # the goal framed as the previews (full frame, or the model's centre square)
            goal_scored = goal_scores(frames[:, -1], self.pipeline.goal_view(goal,
                                                                             frames.shape[2:4]))
            response.goal_similarity = [float(v) for v in goal_scored["ssim"]]
            response.goal_distance = [float(v) for v in goal_scored[GOAL_DISTANCE]]
        response.success = True
        response.message = (f"{len(prepared)} previews of {frames.shape[1]} frames; warp "
                            f"depth: {depth_used}")
        self.diagnostics.count("previews", len(prepared))
        return response

    def _publish_diagnostics(self):
        with self._lock:
            have_source = self._source is not None
        self.diagnostics.set_value("source image", "yes" if have_source else "no")
        self.diagnostics.set_value("resident memory (MB)", resident_memory_mb())
        self.diagnostics.set_value("peak resident memory (MB)", peak_memory_mb())
        self.diag_pub.publish(self.diagnostics.to_message(self.get_clock().now().to_msg()))


def main(args=None):
    """Console entry point: `view_predictor --ros-args ...`."""
    return run_nodes([ViewPredictor], args=args)


if __name__ == "__main__":
    sys.exit(main())
