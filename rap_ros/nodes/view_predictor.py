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
      of the last frame to it (``pipeline.goal_scores``)

Memory
  Images over ``max_image_pixels`` are downscaled on arrival (counted on /diagnostics), then
  undistorted with camera_info's K and D (P and no undistortion when ``rectified``), through
  ``rap_ros.io.camera_frames`` as the trajectory_estimator's frames: only the latest image is
  undistorted, once, when a request uses it; the process's resident memory is reported on
  /diagnostics.

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

The parts (``rap_ros.nodes``): the parameters, ``predictor_settings``; the latest image,
intrinsics, odometry and map_points, ``predictor_inputs``; the warp's depth,
``warp_depths``; plans and preview requests -> PredictedView, ``view_requests``. The node
holds the subscriptions, the service, the publishers and the current camera pose (tf2 or
odometry).
"""
import sys
import threading

from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from rap_ros.io import messages
from rap_ros.nodes.diagnostics import (BadInputReporter, NodeDiagnostics, peak_memory_mb,
                                       resident_memory_mb)
from rap_ros.nodes.params import reliability_qos, resolve_backend
from rap_ros.nodes.predictor_inputs import PredictorInputs
from rap_ros.nodes.predictor_settings import declare_settings
from rap_ros.nodes.runner import run_nodes
from rap_ros.nodes.view_requests import ViewRequests
from rap_ros.nodes.warp_depths import WarpDepths
from rap_ros.pipeline.views import ViewPipeline
from rap_ros_msgs.msg import PredictedView
from rap_ros_msgs.srv import PreviewPaths

try:  # optional dependency: without tf2_ros the current pose comes from the odometry topic
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the installation
    tf2_ros = None

__all__ = ["ViewPredictor", "main"]


class ViewPredictor(Node):
    """ROS adapter over ViewPipeline (see the module docstring)."""

    def __init__(self, backend=None, node_name="view_predictor", **kwargs):
        super().__init__(node_name, **kwargs)
        self.settings = settings = declare_settings(self)
        backend = resolve_backend(backend, settings.model["backend"])
        self.backend = backend
        self.frames = int(backend.config.frames)
        model = settings.model
        self.pipeline = ViewPipeline(backend, steps=model["steps"], sampler=model["sampler"],
                                     seed=model["seed"], preview=settings.preview,
                                     max_preview_pixels=settings.max_preview_pixels,
                                     workers=settings.preview_workers)
        name = getattr(backend, "name", str(backend))
        self.diagnostics = NodeDiagnostics(f"{self.get_name()}: prediction", hardware_id=name)
        self.diagnostics.set_value("backend", name)

        self._lock = threading.Lock()
        self._bad_input = BadInputReporter(self.diagnostics, self.get_logger())
        self._warned_no_pose = False
        self.inputs = PredictorInputs(self._lock, self.diagnostics, self.get_logger(),
                                      self._bad_input,
                                      max_image_pixels=settings.max_image_pixels,
                                      fov_deg=settings.fov_deg, rectified=settings.rectified)
        # the warp needs a depth in the warp modes, and for a warp-conditioned model in all
        self.needs_depth = settings.preview != "model" or self.pipeline.conditioned
        self.depths = WarpDepths(settings, needs_depth=self.needs_depth,
                                 preview_size=self.pipeline.preview_size,
                                 latest_map=lambda: self.inputs.map, lookup=self._lookup)
        self.requests = ViewRequests(self.pipeline, settings, frames=self.frames,
                                     inputs=self.inputs, depths=self.depths,
                                     diagnostics=self.diagnostics, logger=self.get_logger(),
                                     bad_input=self._bad_input,
                                     current_camera=self.current_camera)

        # One callback group per input, so no input waits for another's callback; camera_info
        # best effort whatever qos_reliability says (reliable, its samples are lost behind
        # large images and repaired only seconds later: trajectory_estimator, issue 11).
        sensor_qos = reliability_qos(settings.qos_reliability, 2)
        info_qos = reliability_qos("best_effort", 2)
        self.image_sub = self.create_subscription(
            Image, "image", self.inputs.on_image, sensor_qos,
            callback_group=MutuallyExclusiveCallbackGroup())
        self.info_sub = self.create_subscription(
            CameraInfo, "camera_info", self.inputs.on_camera_info, info_qos,
            callback_group=MutuallyExclusiveCallbackGroup())
        self.estimated_info_sub = self.create_subscription(
            CameraInfo, "estimated_camera_info", self.inputs.on_estimated_info, 10,
            callback_group=MutuallyExclusiveCallbackGroup())
        self.odom_sub = self.create_subscription(
            Odometry, "odometry", self.inputs.on_odometry, 10,
            callback_group=MutuallyExclusiveCallbackGroup())
        self.map_sub = None
        if settings.depth_source == "map" and self.needs_depth:
            self.map_sub = self.create_subscription(
                PointCloud2, "map_points", self.inputs.on_map_points, 2,
                callback_group=MutuallyExclusiveCallbackGroup())
        self.tf_buffer = None
        if settings.use_tf and tf2_ros is not None:
            self.tf_buffer = tf2_ros.Buffer()
            self.tf_listener = tf2_ros.TransformListener(self.tf_buffer, self)
        # Model jobs run one at a time in their own group, so images and poses keep coming
        # in meanwhile (MultiThreadedExecutor). A plan arriving while busy replaces the
        # waiting one (depth 1).
        model_group = MutuallyExclusiveCallbackGroup()
        plan_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.plan_sub = self.create_subscription(Path, "plan", self._on_plan, plan_qos,
                                                 callback_group=model_group)
        self.preview_srv = self.create_service(PreviewPaths, "preview_paths",
                                               self.requests.preview,
                                               callback_group=model_group)
        self.view_pub = self.create_publisher(PredictedView, "predicted_view", 10)
        self.image_pub = self.create_publisher(Image, "predicted_image", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diag_timer = self.create_timer(settings.diagnostics_period,
                                            self._publish_diagnostics)
        pose_source = "tf2" if self.tf_buffer is not None else "the odometry topic"
        self.get_logger().info(f"view_predictor ready: backend {name}, {self.frames} frames, "
                               f"current pose from {pose_source}")

    # -------------------------------------------------------------- state lookups

    def intrinsics(self, width, height):
        """K (3, 3) for a source image of width x height and where it came from (the latest
        source's own K when it is that size)."""
        source = self.inputs.source
        own_K = (source.K if source is not None
                 and tuple(source.rgb.shape[1::-1]) == (width, height) else None)
        return self.inputs.intrinsics(width, height, own_K)

    def current_camera(self, plan_frame, first_plan_pose):
        """T_plan_camera (4, 4) of the camera now, optical axes, and how it was found."""
        camera_frame, T_base_camera = self.settings.camera_frame, self.settings.T_base_camera
        if self.tf_buffer is not None:
            try:
                transform = self.tf_buffer.lookup_transform(plan_frame, camera_frame, Time())
                return messages.transform_to_matrix(transform), "tf2"
            except Exception as error:  # tf2 lookup/extrapolation/connectivity errors
                self.get_logger().warn(f"tf2 lookup {plan_frame} -> {camera_frame} "
                                       f"failed ({error}); trying odometry",
                                       throttle_duration_sec=5.0)
        odometry = self.inputs.odometry
        if odometry is not None:
            frame, child, T = odometry
            if frame and plan_frame and frame != plan_frame:
                raise ValueError(f"the plan is in frame '{plan_frame}' but odometry is in "
                                 f"'{frame}', and tf2 cannot relate them")
            if child == camera_frame:
                return T, "odometry"
            return T @ T_base_camera, "odometry"
        if not self._warned_no_pose:
            self._warned_no_pose = True
            self.get_logger().warn("no camera pose from tf2 or odometry yet: assuming the "
                                   "camera is at the plan's first pose")
        return first_plan_pose @ T_base_camera, "plan start"

    def _lookup(self, target, source_frame):
        """T_target_source (4, 4) from tf2 (latest), or None."""
        if self.tf_buffer is None:
            return None
        try:
            return messages.transform_to_matrix(
                self.tf_buffer.lookup_transform(target, source_frame, Time()))
        except Exception:  # tf2 lookup/extrapolation/connectivity errors
            return None

    # -------------------------------------------------------------- requests, diagnostics

    def _on_plan(self, plan):
        self.requests.plan(plan, self._publish_view)

    def _publish_view(self, view):
        self.view_pub.publish(view)
        for image in view.frames:
            self.image_pub.publish(image)

    def _publish_diagnostics(self):
        have_source = self.inputs.has_source
        self.diagnostics.set_value("source image", "yes" if have_source else "no")
        self.diagnostics.set_value("resident memory (MB)", resident_memory_mb())
        self.diagnostics.set_value("peak resident memory (MB)", peak_memory_mb())
        self.diag_pub.publish(self.diagnostics.to_message(self.get_clock().now().to_msg()))


def main(args=None):
    """Console entry point: `view_predictor --ros-args ...`."""
    return run_nodes([ViewPredictor], args=args)


if __name__ == "__main__":
    sys.exit(main())
