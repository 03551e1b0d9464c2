"""trajectory_estimator: camera ego-motion from monocular video.

Methods (parameter ``method``)
  rap (default): the odometry core (``rap_ros.odometry``: KLT tracking every frame, PnP
      against a local map, sliding-window bundle adjustment on GTSAM) with the joint model's
      video -> camera job fused in as a motion prior; a pose for every processed frame.
  geometry: the same core without the model.
  model: the model's own windowed poses (``rap_ros.pipeline.streaming.WindowStream``: windows
      of T frames every ``window_stride`` frames, chained), published in window batches.

Subscribes
  image (sensor_msgs/Image), or image/compressed (sensor_msgs/CompressedImage) when
      ``image_transport`` is "compressed"; sensor-data QoS unless ``qos_reliability`` says
      reliable
  camera_info (sensor_msgs/CameraInfo, optional): intrinsics (K, or P with
      ``rectified: true``) and distortion (plumb_bob, rational_polynomial, equidistant),
      removed from the images before tracking, as ``rap-ros evaluate`` does; always
      sensor-data QoS (best effort), whatever ``qos_reliability`` says
  wheel_odometry (nav_msgs/Odometry, optional): distance travelled, which sets the metric
      scale between keyframes (rap, geometry)
  /tf_static, /tf: the camera mount (base_frame -> the image's header.frame_id), and who
      parents which frame
Publishes
  /tf (tf2_msgs/TFMessage): odom_frame -> base_frame (REP-105), never once another node
      publishes an edge into base_frame (another parent on /tf or /tf_static, or odom_frame
      -> base_frame itself, e.g. a diff_drive_controller): latched for the node's life, an
      ERROR on /diagnostics every period and one log line say so (``camera_mount``)
  /tf_static: base_frame -> camera_frame of the mount parameters with ``publish_mount_tf``,
      once mount_timeout seconds of frames passed with the camera frame without a parent
  odometry (nav_msgs/Odometry): every processed frame, covariance from the bundle adjustment
      (never zero); while tracking is lost a null pose with covariance 9999 (rtabmap's
      convention) and ERROR on /diagnostics
  path (nav_msgs/Path): the trajectory, keyframes as corrected by each bundle adjustment
  map_points (sensor_msgs/PointCloud2): the local map's landmarks (rap, geometry) in
      odom_frame, metres (the published poses' scale), after each keyframe (at most
      ``map_points_max`` of them; an empty cloud after a reset); the view_predictor's depth
  estimated_camera_info (sensor_msgs/CameraInfo): the intrinsics in use when no camera info
      arrives
  /diagnostics (diagnostic_msgs/DiagnosticArray): rates, latency, drops, tracking health,
      map size, resident memory
Services (private names)
  ~/reset (std_srvs/Trigger): start a new trajectory at the next frame, at the odom origin
  ~/reset_to_pose (rap_ros_msgs/ResetToPose): the same, at a given base pose in odom_frame

Frames and units (REP-103/REP-105)
  Camera poses are in OpenCV optical axes (x right, y down, z forward). odom_frame is where
  base_frame was at the first frame (or the pose given to ~/reset_to_pose); base_frame has
  body axes (x forward, z up). The camera -> base mount comes from /tf_static (the robot's
  URDF through robot_state_publisher) for the images' header.frame_id; the
  camera_mount_xyz/rpy parameters are used with ``mount_source: parameters``, or when no
  mount arrives within ``mount_timeout`` seconds. Monocular odometry has no metric scale:
  ``scale`` (metres per odometry unit; settable at run time) applies until wheel odometry
  gives one. Lengths are metres once scaled, angles radians, stamps seconds.

The parts (``rap_ros.nodes``): the parameters, ``estimator_settings``; images and
camera_info, ``camera_input``; the frames of rap and geometry, ``odometry_frames``; the
model's windows, ``model_windows``; the worker thread, ``worker``; the mount and these
transforms, ``camera_mount``; the messages built from the poses, ``trajectory_output``.

Frames are processed on a worker thread; a frame arriving while the worker is busy waits in
a queue of ``queue_size`` frames, the oldest is dropped (and counted) when the queue is full.
A jump back in time larger than 1 s (a looping bag, a restarted simulation) restarts the
trajectory; smaller steps back are dropped; a zero stamp (an unstamped driver) is counted
("unstamped frames") and passes no stamp check, so it is never taken for a jump (rap,
geometry: ``OdometryFrames.admit(None)``; model: ``WindowStream.add`` with ``check=False``);
it is stamped, processed and published at the node's clock.
"""
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from rap_ros.geometry.transform_tree import frame_name
from rap_ros.io import messages
from rap_ros.nodes import conversions as cv
from rap_ros.nodes.camera_input import CameraInput
from rap_ros.nodes.camera_mount import CameraMount
from rap_ros.nodes.diagnostics import BadInputReporter, NodeDiagnostics, resident_memory_mb
from rap_ros.nodes.estimator_settings import METHODS, declare_settings
from rap_ros.nodes.model_windows import ModelWindows
from rap_ros.nodes.odometry_frames import OdometryFrames, QueuedFrame
from rap_ros.nodes.params import reliability_qos, resolve_backend
from rap_ros.nodes.runner import run_nodes
from rap_ros.nodes.tf_listener import TfTopics
from rap_ros.nodes.trajectory_output import TrajectoryOutput
from rap_ros.nodes.worker import WorkerThread
from rap_ros.odometry.metric_scale import ScaleAnchor, WheelScale
from rap_ros.ros_env import large_message_warning
from rap_ros_msgs.srv import ResetToPose

__all__ = ["METHODS", "TrajectoryEstimator", "main"]


class TrajectoryEstimator(Node):
    """ROS adapter over the odometry core (rap, geometry: ``OdometryFrames``) or a
    WindowStream of model windows (model: ``ModelWindows``); see the module docstring."""

    short_callbacks = True  # callbacks queue frames for the worker thread (nodes.runner)

    def __init__(self, backend=None, node_name="trajectory_estimator", **kwargs):
        super().__init__(node_name, **kwargs)
        self.settings = settings = declare_settings(self)
        self.method = settings.method
        self.backend = None
        if self.method != "geometry" or settings.consistency_every:
            self.backend = resolve_backend(backend, settings.model["backend"])
        backend_name = getattr(self.backend, "name", "none (geometry)")
        self.diagnostics = NodeDiagnostics(f"{self.get_name()}: trajectory",
                                           hardware_id=backend_name)
        self.diagnostics.set_value("backend", backend_name)
        self.diagnostics.set_value("method", self.method)

        self._lock = threading.Lock()          # input state, queue, published trajectory
        self._image_size_checked = False
        self._bad_input = BadInputReporter(self.diagnostics, self.get_logger())
        self._last_camera_pose = None          # latest odometry camera pose (run-time scale)
        self._lost_since = None                # seconds of the first frame lost, while lost
        self.anchor = ScaleAnchor(settings.scale)
        self.wheel = WheelScale()
        self.max_buffered = 0                  # most frames ever held (diagnostics)
        self.camera = CameraInput(self.diagnostics,
                                  max_image_pixels=settings.max_image_pixels,
                                  rectified=settings.rectified)
        self.frames = self.windows = None      # OdometryFrames or ModelWindows (below)

        # One callback group per input, so no input waits for another's callback.
        qos = reliability_qos(settings.qos_reliability, settings.qos_depth)
        # camera_info is always best effort (it matches reliable publishers too). A driver
        # publishes it with every image, and one is enough. Reliable, it came 1.5-1.9 s late
        # behind 640x480 rgb8 images (issue 11). With Fast DDS's default shared-memory
        # transport (512 KB segment per participant), a 0.9 MB image overflows the
        # publisher's segment and small camera_info samples of the same participant are lost
        # in transit. A reliable reader then delivers nothing after the gap until the
        # writer's periodic heartbeat brings a repair. Images do not wait like that: their
        # large writes carry heartbeats. Measured two-process at 30 Hz: reliable camera_info
        # latency median 672 ms, max 1.58 s; best effort 1 ms median, first one received.
        info_qos = reliability_qos("best_effort", settings.qos_depth)
        if settings.image_transport == "compressed":
            self.image_sub = self.create_subscription(
                CompressedImage, "image/compressed", self._on_compressed, qos,
                callback_group=MutuallyExclusiveCallbackGroup())
        else:
            self.image_sub = self.create_subscription(
                Image, "image", self._on_image, qos,
                callback_group=MutuallyExclusiveCallbackGroup())
        self.info_sub = self.create_subscription(
            CameraInfo, "camera_info", self._on_camera_info, info_qos,
            callback_group=MutuallyExclusiveCallbackGroup())
        self.wheel_sub = self.create_subscription(
            Odometry, "wheel_odometry", self._on_wheel_odometry, 50,
            callback_group=MutuallyExclusiveCallbackGroup())
        self.tf_topics = TfTopics(self, callback_group=MutuallyExclusiveCallbackGroup())
        self.mount = CameraMount(self.tf_topics, self.diagnostics, self.get_logger(),
                                 self.anchor, settings.T_base_camera_parameters,
                                 odom_frame=settings.odom_frame, base_frame=settings.base_frame,
                                 camera_frame=settings.camera_frame,
                                 mount_source=settings.mount_source,
                                 mount_timeout=settings.mount_timeout,
                                 publish_static=(self._publish_mount_tf
                                                 if settings.publish_mount_tf else None))
        # What goes out on /tf is recorded: our own transforms coming back are not conflicts.
        self.tf_pub = self.tf_topics.publisher(self.create_publisher(TFMessage, "/tf", 100))
        self.path_pub = self.create_publisher(Path, "path", 10)
        self.odom_pub = self.create_publisher(Odometry, "odometry", 50)
        self.info_pub = self.create_publisher(CameraInfo, "estimated_camera_info", 10)
        self.map_pub = (self.create_publisher(PointCloud2, "map_points", 2)
                        if settings.publish_map_points and self.method != "model" else None)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.output = TrajectoryOutput(self.mount, self.diagnostics, odom_pub=self.odom_pub,
                                       tf_pub=self.tf_pub, path_pub=self.path_pub,
                                       map_pub=self.map_pub, publish_tf=settings.publish_tf,
                                       max_path_length=settings.max_path_length,
                                       map_points_max=settings.map_points_max)
        if self.method == "model":
            self.windows = ModelWindows(settings, self.backend, lock=self._lock,
                                        mount=self.mount, output=self.output,
                                        diagnostics=self.diagnostics, logger=self.get_logger(),
                                        publish_intrinsics=self._publish_intrinsics,
                                        request_reset=self._request_reset)
            jobs = (lambda: self.windows.stream.full, self.windows.stream.take,
                    self.windows.process)
        else:
            self.frames = OdometryFrames(settings, self.backend, lock=self._lock,
                                         camera=self.camera, mount=self.mount,
                                         output=self.output, diagnostics=self.diagnostics,
                                         logger=self.get_logger(), anchor=self.anchor,
                                         wheel=self.wheel, publish_frame=self._publish_frame,
                                         publish_intrinsics=self._publish_intrinsics,
                                         request_reset=self._request_reset)
            jobs = (lambda: bool(self.frames.queue), self.frames.queue.popleft,
                    self.frames.process)
        self.worker = WorkerThread(self._lock, has_work=jobs[0], take_work=jobs[1],
                                   process=jobs[2], on_error=self._job_failed,
                                   name="rap_ros_estimator")
        if settings.publish_mount_tf:  # the parameters mount, for a robot without a URDF:
            # published by the mount once mount_timeout s of frames found no camera parent
            qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
            self.static_pub = self.create_publisher(TFMessage, "/tf_static", qos)
        services = MutuallyExclusiveCallbackGroup()
        self.reset_srv = self.create_service(Trigger, "~/reset", self._on_reset,
                                             callback_group=services)
        self.reset_pose_srv = self.create_service(ResetToPose, "~/reset_to_pose",
                                                  self._on_reset_to_pose,
                                                  callback_group=services)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.diag_timer = self.create_timer(settings.diagnostics_period,
                                            self._publish_diagnostics)
        self.worker.start()
        self.get_logger().info(
            f"trajectory_estimator ready: method {self.method}, backend {backend_name}, "
            f"{settings.odom_frame} -> {settings.base_frame or '<camera frame>'}, mount from "
            f"{settings.mount_source}, tf via {self.tf_topics.backend}")

    @property
    def T_base_camera_parameters(self):
        """The camera_mount_xyz/rpy mount: (4, 4) optical frame in base_frame, metres."""
        return self.settings.T_base_camera_parameters

    def _publish_mount_tf(self):
        """The parameters mount on /tf_static (``CameraMount``, under the lock)."""
        self.static_pub.publish(TFMessage(transforms=[
            self.mount.static_transform(self.get_clock().now().to_msg())]))

    def _on_set_parameters(self, parameters):
        for parameter in parameters:
            if parameter.name == "scale":
                value = float(parameter.value)
                if not 1e-6 <= value <= 1e6:
                    return SetParametersResult(successful=False,
                                               reason="scale must be in [1e-6, 1e6]")
                with self._lock:
                    self.anchor.set_scale(value, self._last_odometry_pose())
                self.get_logger().info(f"scale set to {value} m per odometry unit")
        return SetParametersResult(successful=True)

    # -------------------------------------------------------------- input

    def _on_camera_info(self, msg):
        with self._lock:
            try:
                changed = self.camera.calibrate_from_info(msg)
            except ValueError as error:
                error_text = str(error)
            else:
                if changed and self.method == "model":
                    calibration = self.camera.calibration
                    self.windows.stream.set_intrinsics(calibration.K, calibration.size)
                return
        self._bad_input(f"camera_info ignored: {error_text}")

    def _on_wheel_odometry(self, msg):
        try:
            T = messages.pose_message_to_matrix(msg)
        except ValueError as error:
            self._bad_input(f"wheel odometry ignored: {error}")
            return
        with self._lock:
            if not self.wheel.add_wheel(messages.stamp_seconds(msg.header.stamp), T[:3, 3]):
                self.diagnostics.count("wheel odometry out of order")

    def _on_image(self, msg):
        if not self._image_size_checked:  # the first raw image: will the transport carry it?
            self._image_size_checked = True
            warning = large_message_warning(len(msg.data))
            if warning:
                self.get_logger().warn(warning)
                self.diagnostics.set_value("transport", warning)
        self._on_frame(msg, messages.image_to_rgb8)

    def _on_compressed(self, msg):
        self._on_frame(msg, messages.compressed_to_rgb8)

    def _on_frame(self, msg, decode):
        """Admit, decode, undistort and queue one frame (subscription thread)."""
        arrival = time.perf_counter()
        self.diagnostics.tick("input")
        seconds = messages.stamp_seconds(msg.header.stamp)
        unstamped = seconds == 0.0
        if unstamped:  # an unstamped driver: counted; its messages get the node's clock
            msg.header.stamp = self.get_clock().now().to_msg()
            self.diagnostics.count("unstamped frames")
        # An unstamped frame passes no stamp check (odometry: ``admit(None)``; model:
        # ``check=False``), so the node's clock (sim time, a bag's) is never compared with the
        # frames' stamps (no time jump); it is processed at the node's clock.
        if self.method == "model":
            if unstamped:
                seconds = messages.stamp_seconds(msg.header.stamp)
            with self._lock:
                refused = self.windows.stream.screen(seconds, check=not unstamped)
            if refused:
                self.diagnostics.count(refused)
                return
        else:
            with self._lock:
                take, reset = self.frames.admit(None if unstamped else seconds)
                if reset:
                    self.get_logger().warn(f"{reset}: resetting the trajectory")
                    self.frames.queue.clear()
                    self._request_reset(reset)
            if not take:
                return
            if unstamped:
                seconds = messages.stamp_seconds(msg.header.stamp)
        try:
            rgb = decode(msg)  # only frames that may be used are decoded
        except ValueError as error:
            self._bad_input(f"image dropped: {error}")
            return
        rgb, recorded_size, K = self.camera.prepare(rgb)
        with self._lock:
            if self.method == "model":
                if not self.windows.add(rgb, seconds, msg.header.stamp,
                                        check=not unstamped):
                    return
            else:
                self.frames.put(QueuedFrame(seconds, msg.header.stamp, msg.header.frame_id,
                                            rgb, recorded_size, K, arrival))
            self.max_buffered = max(self.max_buffered, self._buffered())
            if self.method != "model" or self.windows.stream.full:
                self.worker.notify()

    # -------------------------------------------------------------- reset

    def _on_reset(self, request, response):
        self._reset(np.eye(4), "reset service")
        response.success = True
        response.message = "trajectory reset: the next frame starts at the odom origin"
        self.get_logger().info(response.message)
        return response

    def _on_reset_to_pose(self, request, response):
        odom_frame = self.settings.odom_frame
        frame = frame_name(request.pose.header.frame_id or '')
        if frame and frame != odom_frame:
            response.success = False
            response.message = (f"the pose must be given in {odom_frame}, not {frame}")
            return response
        try:
            T = messages.pose_to_matrix(request.pose.pose)
        except ValueError as error:
            response.success, response.message = False, f"pose refused: {error}"
            return response
        self._reset(T, "reset_to_pose service")
        response.success = True
        response.message = (f"trajectory reset: the next frame starts at "
                            f"{np.round(T[:3, 3], 3).tolist()} in {odom_frame}")
        self.get_logger().info(response.message)
        return response

    def _reset(self, T_odom_start, reason):
        with self._lock:
            self.mount.T_odom_start = np.array(T_odom_start, dtype=np.float64)
            if self.method == "model":
                self.windows.stream.reset()
            else:
                self.frames.clear()
            self._request_reset(reason)

    def _request_reset(self, reason):
        """Forget the published run (caller holds the lock); the odometry core is reset by
        the worker before its next frame."""
        self.output.clear(self.get_clock().now().to_msg())
        self.anchor.reset()
        self.wheel.reset()
        if self.frames is not None:
            self.frames.reset_requested()
        self.diagnostics.count("resets")
        self.diagnostics.set_value("last reset", reason)

    # -------------------------------------------------------------- worker thread output

    def _job_failed(self, error):
        self.diagnostics.error(f"frame failed: {type(error).__name__}: {error}")
        self.get_logger().error(f"frame failed: {type(error).__name__}: {error}")

    def _last_odometry_pose(self):
        return np.eye(4) if self._last_camera_pose is None else self._last_camera_pose

    def _publish_frame(self, result, stamp, seconds, camera_frame, T_base_camera):
        """Odometry (+ TF, path) of one tracked frame; a null pose while lost."""
        child = self.mount.child_frame(camera_frame)
        self.diagnostics.set_value("tracking", result.health)
        self.diagnostics.set_value("PnP inliers", int(result.inliers))
        self.diagnostics.set_value("tracks", int(result.tracks))
        if result.health == "lost":
            if self._lost_since is None:
                self._lost_since = seconds
                self.get_logger().error(f"tracking lost at t={seconds:.3f} s")
            self.diagnostics.error("tracking lost")
            self.diagnostics.count("frames lost")
            self.output.lost(stamp, child)
            return
        if result.recovered or self._lost_since is not None:
            if self._lost_since is not None:
                self.get_logger().info(f"tracking recovered after {seconds - self._lost_since:.2f}"
                                       " s")
                self.diagnostics.count("recoveries")
            self._lost_since = None
        self._last_camera_pose = result.c2w
        self.output.frame(result.index, result.c2w, result.covariance, stamp, seconds, child,
                          T_base_camera, self.wheel.relative_sigma)
        self.diagnostics.count("frames tracked")

    def _publish_intrinsics(self, K, width, height, stamp, camera_frame):
        self.info_pub.publish(cv.K_to_camera_info(K, width, height, stamp, camera_frame))

    # -------------------------------------------------------------- diagnostics, shutdown

    def _buffered(self):
        """Frames held: queued or in windows, and those of the job in progress. Caller holds
        the lock."""
        if self.method == "model":
            return self.windows.held(self.worker.busy)
        return len(self.frames.queue) + int(self.worker.busy)

    def _publish_diagnostics(self):
        with self._lock:
            held = self._buffered()
            self.mount.check_tf_conflicts()  # latched: ERROR every period
        self.diagnostics.set_value("buffered frames", held)
        self.diagnostics.set_value("max buffered frames", self.max_buffered)
        self.diagnostics.set_value("resident memory (MB)", float(resident_memory_mb()))
        if self.frames is not None:
            for key, value in self.frames.map_size().items():
                self.diagnostics.set_value(f"map {key}", int(value))
        self.diag_pub.publish(self.diagnostics.to_message(self.get_clock().now().to_msg()))

    def destroy_node(self):
        self.worker.stop(timeout=30.0)
        if self.frames is not None:
            self.frames.close()
        return super().destroy_node()


def main(args=None):
    """Console entry point: `trajectory_estimator --ros-args ...`."""
    return run_nodes([TrajectoryEstimator], args=args)


if __name__ == "__main__":
    sys.exit(main())
