"""view_predictor: what the camera will see along a planned path ("images + camera -> video").

Subscribes
  image (sensor_msgs/Image): the current view, the source of every prediction
  camera_info (sensor_msgs/CameraInfo, optional): its intrinsics; without it the
      estimator's estimated_camera_info, else a pinhole camera of ``fov_deg``
  plan (nav_msgs/Path): poses of base_frame (or of the camera's body frame when base_frame
      is empty) in the odom or map frame
  odometry (nav_msgs/Odometry): the current pose, used when tf2_ros is not importable
Publishes
  predicted_view (rap_ros_msgs/PredictedView): T frames (the model's frame count), their
      camera poses (OpenCV optical axes, in the plan's frame) and stamps, and per-frame
      closed-loop consistency scores (PSNR, dB)
  predicted_image (sensor_msgs/Image): the same frames one by one, stamped at path times
  /diagnostics (diagnostic_msgs/DiagnosticArray)
Services
  preview_paths (rap_ros_msgs/PreviewPaths): K candidate paths in one batch, scored by
      closed-loop consistency and, with a goal image, SSIM of the last frame to it

Frames and units
  Camera poses along the plan are plan_pose @ T_base_camera, T_base_camera from
  ``camera_mount_xyz`` / ``camera_mount_rpy`` (as in trajectory_estimator). The path is
  prefixed with the current camera pose, resampled by arc length to T poses, expressed
  relative to the current camera and scaled to the model's normalised unit (mean distance of
  the centres from the first = 1). Stamps: the source image's stamp, then the plan's stamps
  interpolated along the path; an unstamped plan (all zero) is timed at ``default_speed``
  m/s from the source stamp.
"""
import math
import sys
import threading
import time

import numpy as np
from nav_msgs.msg import Odometry, Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from rap_ros.geometry import invert_pose, relative_to_first, scale_intrinsics
from rap_ros.nodes import conversions as cv
from rap_ros.nodes.diagnostics import LogThrottle, NodeDiagnostics
from rap_ros.nodes.trajectory_estimator import (ParameterError, declare, resolve_backend,
                                                declare_model_parameters,
                                                declare_mount_parameters, reliability_qos,
                                                run_nodes)
from rap_ros_msgs.msg import PredictedView
from rap_ros_msgs.srv import PreviewPaths

try:  # tf2_ros is optional: without it the current pose comes from the odometry topic
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the installation
    tf2_ros = None


# ------------------------------------------------------------------ path geometry


def _slerp_rotations(R0, R1, weights):
    """Rotations between R0[i] and R1[i] (n, 3, 3) at fractions weights (n,)."""
    from scipy.spatial.transform import Rotation

    relative = Rotation.from_matrix(np.swapaxes(R0, -1, -2) @ R1).as_rotvec()
    return R0 @ Rotation.from_rotvec(relative * weights[:, None]).as_matrix()


def resample_path(poses, stamps, count):
    """Resample poses (N, 4, 4) and stamps (N,) to ``count`` poses equally spaced in arc
    length (camera centres); rotations are interpolated on the shortest arc.

    A path that does not move (total length ~ 0) is spaced by rotation angle instead, and
    a path that neither moves nor turns by index. Returns (poses (count, 4, 4), stamps).
    """
    poses = np.asarray(poses, dtype=np.float64)
    stamps = np.asarray(stamps, dtype=np.float64)
    if len(poses) == 1:
        return np.repeat(poses, count, axis=0), np.repeat(stamps, count)
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    if steps.sum() < 1e-9:
        cos = (np.einsum("nii->n", np.swapaxes(poses[:-1, :3, :3], 1, 2) @ poses[1:, :3, :3])
               - 1) / 2
        steps = np.arccos(np.clip(cos, -1.0, 1.0))
    if steps.sum() < 1e-9:
        steps = np.ones(len(poses) - 1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    targets = np.linspace(0.0, arc[-1], count)
    segment = np.clip(np.searchsorted(arc, targets, side="right") - 1, 0, len(poses) - 2)
    length = arc[segment + 1] - arc[segment]
    weight = np.where(length > 0, (targets - arc[segment]) / np.where(length > 0, length, 1), 0)
    weight = np.clip(weight, 0.0, 1.0)
    out = np.tile(np.eye(4), (count, 1, 1))
    a, b = poses[segment], poses[segment + 1]
    out[:, :3, 3] = (1 - weight[:, None]) * a[:, :3, 3] + weight[:, None] * b[:, :3, 3]
    out[:, :3, :3] = _slerp_rotations(a[:, :3, :3], b[:, :3, :3], weight)
    out_stamps = (1 - weight) * stamps[segment] + weight * stamps[segment + 1]
    return out, out_stamps


def plan_cameras(plan_poses, plan_stamps, T_plan_camera_now, source_seconds, T_base_camera,
                 count, default_speed):
    """Camera poses and stamps along a plan, ready for the model.

    plan_poses (N, 4, 4): base (or camera body) poses in the plan frame; plan_stamps (N,)
    seconds, all zero when unstamped; T_plan_camera_now (4, 4): the current camera (optical)
    in the plan frame; source_seconds: stamp of the source image.
    Returns (world (count, 4, 4) optical camera poses in the plan frame, stamps (count,),
    rel (count, 4, 4) relative to the current camera at the model's normalised scale).
    """
    cameras = np.asarray(plan_poses) @ T_base_camera
    poses = np.concatenate([T_plan_camera_now[None], cameras])
    if np.any(plan_stamps):
        stamps = np.concatenate([[source_seconds], plan_stamps])
        stamps = np.maximum.accumulate(stamps)
    else:
        steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
        stamps = source_seconds + np.concatenate([[0.0], np.cumsum(steps)]) / default_speed
        if not steps.any():  # turning in place: one frame per 0.1 s
            stamps = source_seconds + 0.1 * np.arange(len(poses))
    world, stamps = resample_path(poses, stamps, count)
    world[0] = T_plan_camera_now
    stamps[0] = source_seconds
    rel, _ = relative_to_first(invert_pose(T_plan_camera_now) @ world)
    return world, stamps, rel


def per_frame_psnr(a, b, cap=100.0):
    """PSNR (dB) of each frame of uint8 videos a, b (T, H, W, 3), capped at ``cap``."""
    from rap_ros.metrics import psnr

    values = psnr(a.astype(np.float64) / 255.0, b.astype(np.float64) / 255.0)
    return np.minimum(np.nan_to_num(values, nan=cap, posinf=cap), cap)


# ------------------------------------------------------------------ node


class ViewPredictor(Node):
    """ROS adapter over ViewPipeline (see the module docstring)."""

    def __init__(self, backend=None, node_name="view_predictor", **kwargs):
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        from rap_ros.pipeline import ViewPipeline

        backend = resolve_backend(backend, self.model["backend"])
        self.backend = backend
        self.frames = int(backend.config.frames)
        self.pipeline = ViewPipeline(backend, steps=self.model["steps"],
                                     sampler=self.model["sampler"], seed=self.model["seed"])
        name = getattr(backend, "name", str(backend))
        self.diagnostics = NodeDiagnostics(f"{self.get_name()}: prediction", hardware_id=name)
        self.diagnostics.set_value("backend", name)

        self._lock = threading.Lock()
        self._log_throttle = LogThrottle(2.0)
        self._source = None  # (seconds, stamp msg, rgb (H, W, 3))
        self._camera_info = None  # (K, (width, height))
        self._estimated_info = None
        self._odometry = None  # (frame_id, child_frame_id, T_frame_child)
        self._warned_no_pose = False

        sensor_qos = reliability_qos(self.qos_reliability, 2)
        self.image_sub = self.create_subscription(Image, "image", self._on_image, sensor_qos)
        self.info_sub = self.create_subscription(CameraInfo, "camera_info",
                                                 self._on_camera_info, sensor_qos)
        self.estimated_info_sub = self.create_subscription(
            CameraInfo, "estimated_camera_info", self._on_estimated_info, 10)
        self.odom_sub = self.create_subscription(Odometry, "odometry", self._on_odometry, 10)
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
        from diagnostic_msgs.msg import DiagnosticArray

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
                                       "Reliability of the image and camera_info "
                                       "subscriptions (best_effort = sensor-data QoS).",
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
        self.consistency = declare(self, "consistency", True,
                                   "Score predictions by closed-loop consistency (2 extra "
                                   "model jobs); off: scores are empty.")
        self.max_plan_poses = declare(self, "max_plan_poses", 10000,
                                      "Plans with more poses are refused (with an error).",
                                      2, 1000000)
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
            rgb = cv.image_to_rgb8(msg)
        except ValueError as error:
            self._bad_input(f"image dropped: {error}")
            return
        seconds = cv.stamp_to_seconds(msg.header.stamp)
        with self._lock:
            self._source = (seconds, msg.header.stamp, rgb)

    def _on_camera_info(self, msg):
        self._store_info(msg, "_camera_info")

    def _on_estimated_info(self, msg):
        self._store_info(msg, "_estimated_info")

    def _store_info(self, msg, attribute):
        try:
            info = cv.camera_info_to_K(msg)
        except ValueError as error:
            self._bad_input(f"camera info ignored: {error}")
            return
        with self._lock:
            setattr(self, attribute, info)

    def _on_odometry(self, msg):
        try:
            T = cv.pose_to_matrix(msg.pose.pose)
        except ValueError as error:
            self._bad_input(f"odometry ignored: {error}")
            return
        with self._lock:
            self._odometry = (msg.header.frame_id, msg.child_frame_id, T)

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
            return cv.K_from_fov(self.fov_deg, width, height), "fov_deg"
        K, (info_width, info_height) = info
        if (info_width, info_height) != (width, height):
            K = scale_intrinsics(K, width / info_width, height / info_height)
        return K, source

    def current_camera(self, plan_frame, first_plan_pose):
        """T_plan_camera (4, 4) of the camera now, optical axes, and how it was found."""
        if self.tf_buffer is not None:
            try:
                from rclpy.time import Time

                transform = self.tf_buffer.lookup_transform(plan_frame, self.camera_frame,
                                                            Time())
                return cv.transform_to_matrix(transform), "tf2"
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
        plan_stamps, plan_poses = cv.path_to_arrays(plan, self.max_plan_poses)
        T_now, _ = self.current_camera(plan.header.frame_id, plan_poses[0])
        return plan_cameras(plan_poses, plan_stamps, T_now, source[0], self.T_base_camera,
                            self.frames, self.default_speed)

    # -------------------------------------------------------------- jobs

    def _predict(self, source, rel):
        """Frames (P, T, S, S, 3) uint8 and scores (P, T) dB (None without consistency)."""
        rgb = source[2]
        K, _ = self.intrinsics(rgb.shape[1], rgb.shape[0])
        start = time.perf_counter()
        if self.consistency:
            results = self.pipeline.closed_loop_batch(rgb, K, rel)
            frames = np.stack([r.frames for r in results])
            scores = np.stack([per_frame_psnr(r.frames, r.regenerated) for r in results])
        else:
            frames, scores = self.pipeline.predict_batch(rgb, K, rel), None
        self.diagnostics.latency("prediction", time.perf_counter() - start)
        return frames, scores

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
            frames, scores = self._predict(source, rel[None])
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
                goal = cv.image_to_rgb8(request.goal_image)
            except ValueError as error:
                response.message = f"goal image rejected: {error}"
                self._bad_input(f"preview_paths: {response.message}")
                return response
        rel = np.stack([p[2] for p in prepared])
        try:
            frames, scores = self._predict(source, rel)
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
            from rap_ros.metrics import ssim

            target = _centre_square(goal, frames.shape[2]).astype(np.float64) / 255.0
            response.goal_similarity = [float(ssim(frames[i, -1].astype(np.float64) / 255.0,
                                                   target)) for i in range(len(prepared))]
        response.success = True
        response.message = f"{len(prepared)} previews of {frames.shape[1]} frames"
        self.diagnostics.count("previews", len(prepared))
        return response

    def _publish_diagnostics(self):
        with self._lock:
            have_source = self._source is not None
        self.diagnostics.set_value("source image", "yes" if have_source else "no")
        self.diag_pub.publish(self.diagnostics.to_message(self.get_clock().now().to_msg()))


def _centre_square(rgb, size):
    """Centre square of an RGB image resized to size x size (as the model frames it)."""
    height, width = rgb.shape[:2]
    side = min(height, width)
    y0, x0 = (height - side) // 2, (width - side) // 2
    return cv.resize_rgb8(np.ascontiguousarray(rgb[y0:y0 + side, x0:x0 + side]), size, size)


def main(args=None):
    """Console entry point: `view_predictor --ros-args ...`."""
    return run_nodes([ViewPredictor], args=args)


if __name__ == "__main__":
    sys.exit(main())
