"""trajectory_estimator: camera ego-motion from monocular video (the "video -> camera" job).

Subscribes
  image (sensor_msgs/Image), or image/compressed (sensor_msgs/CompressedImage) when
      ``image_transport`` is "compressed"; sensor-data QoS unless ``qos_reliability`` says
  camera_info (sensor_msgs/CameraInfo, optional): intrinsics of the images
Publishes
  /tf (tf2_msgs/TFMessage): odom_frame -> camera_frame, or odom_frame -> base_frame when a
      base frame is set (REP-105)
  path (nav_msgs/Path), odometry (nav_msgs/Odometry): the same motion, in odom_frame
  estimated_camera_info (sensor_msgs/CameraInfo): the model's intrinsics, when no camera
      info arrives
  /diagnostics (diagnostic_msgs/DiagnosticArray)
Services
  reset (std_srvs/Trigger): start a new trajectory at the next frame

Frames and units (REP-103/REP-105)
  The model works in OpenCV optical axes (x right, y down, z forward) at a normalised scale
  (the camera centres of the first window lie on average one unit from the first). Poses
  are published in metres with ``scale`` metres per model unit. The camera (optical frame)
  is mounted in the base frame at ``camera_mount_xyz`` (m) and ``camera_mount_rpy`` (rad,
  roll/pitch/yaw of the camera's body axes, x forward, z up; the optical rotation is added
  on top). odom_frame is the base frame's pose at the first frame (x forward, z up); with no
  base_frame the mount defines a virtual base at the camera, so odom is the camera's body
  frame at start.

Frames go through the pipeline's ``WindowStream`` (``rap_ros.pipeline.streaming``), the code
path of ``rap-ros evaluate`` too: taken at most every ``frame_interval`` seconds (header
stamps), gathered into sliding windows of the model's frame count T, one window every
``window_stride`` frames, estimated on a worker thread and chained. Frames arriving while
the next window is complete but the model is still busy are dropped and counted, so at most
T decoded frames wait at any time; a jump back in time or a new image size restarts the
trajectory.
"""
import collections
import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from rap_ros.geometry.cameras import invert_pose
from rap_ros.geometry.poses import twist_between
from rap_ros.io import messages
from rap_ros.nodes import conversions as cv
from rap_ros.nodes.diagnostics import LogThrottle, NodeDiagnostics
from rap_ros.nodes.params import (ParameterError, declare, declare_model_parameters,
                                  declare_mount_parameters, reliability_qos, resolve_backend)
from rap_ros.nodes.runner import run_nodes
from rap_ros.pipeline.streaming import DEFAULT_STRIDE, WindowStream
from rap_ros.pipeline.trajectory import TrajectoryPipeline
from rap_ros.pipeline.views import ViewPipeline

# ------------------------------------------------------------------ node


class TrajectoryEstimator(Node):
    """ROS adapter over a WindowStream of TrajectoryPipeline windows (see the module
    docstring)."""

    def __init__(self, backend=None, node_name="trajectory_estimator", **kwargs):
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        backend = resolve_backend(backend, self.model["backend"])
        self.backend = backend
        self.window_length = int(backend.config.frames)
        if not 1 <= self.window_stride < self.window_length:
            raise ParameterError(
                f"parameter 'window_stride' is {self.window_stride}; the model's window has "
                f"{self.window_length} frames, so it must be in [1, {self.window_length - 1}]")
        self.pipeline = TrajectoryPipeline(backend, steps=self.model["steps"],
                                           sampler=self.model["sampler"],
                                           samples=self.samples, seed=self.model["seed"],
                                           refine=self.refine)
        self.view_pipeline = (ViewPipeline(backend, steps=self.model["steps"],
                                           sampler=self.model["sampler"],
                                           seed=self.model["seed"], estimator=self.pipeline)
                              if self.consistency_every else None)
        self.stream = WindowStream(self.pipeline, stride=self.window_stride,
                                   frame_interval=self.frame_interval, keep_history=False)
        self.diagnostics = NodeDiagnostics(f"{self.get_name()}: trajectory",
                                           hardware_id=getattr(backend, "name", str(backend)))
        self.diagnostics.set_value("backend", getattr(backend, "name", str(backend)))

        self._lock = threading.Lock()
        self._log_throttle = LogThrottle(2.0)
        self._work = threading.Condition(self._lock)
        self._busy = False
        self._stopping = False
        self._windows = 0
        self.max_buffered = 0  # most frames ever held (buffer + in flight), for tests
        self._path = collections.deque(maxlen=self.max_path_length)
        self._previous = None  # (seconds, T_odom_child) of the last published pose

        qos = reliability_qos(self.qos_reliability, self.qos_depth)
        if self.image_transport == "compressed":
            self.image_sub = self.create_subscription(
                CompressedImage, "image/compressed", self._on_compressed, qos)
        else:
            self.image_sub = self.create_subscription(Image, "image", self._on_image, qos)
        self.info_sub = self.create_subscription(CameraInfo, "camera_info",
                                                 self._on_camera_info, qos)
        self.tf_pub = self.create_publisher(TFMessage, "/tf", 100)
        self.path_pub = self.create_publisher(Path, "path", 10)
        self.odom_pub = self.create_publisher(Odometry, "odometry", 50)
        self.info_pub = self.create_publisher(CameraInfo, "estimated_camera_info", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if self.publish_mount_tf and self.base_frame != self.camera_frame:
            self._publish_static_mount()
        self.reset_srv = self.create_service(Trigger, "reset", self._on_reset,
                                             callback_group=MutuallyExclusiveCallbackGroup())
        self.diag_timer = self.create_timer(self.diagnostics_period, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work_loop, name="rap_ros_estimator",
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"trajectory_estimator ready: backend {self.diagnostics.hardware_id}, window "
            f"{self.window_length} frames every {self.window_stride}, frame_interval "
            f"{self.frame_interval} s, {self.odom_frame} -> {self.child_frame}")

    # -------------------------------------------------------------- parameters

    def _declare_parameters(self):
        self.model = declare_model_parameters(self, "estimate")
        self.samples = declare(self, "samples", 1,
                               "Diffusion samples per window; their spread gives the odometry "
                               "pose covariance (1: zero covariance).", 1, 32)
        self.refine = declare(self, "refine", True,
                              "Refine each window's rotations and directions of travel against "
                              "optical flow of the input images, keeping the model's step "
                              "lengths (rap_ros.pipeline.refine); false: the model's poses "
                              "alone.")
        self.image_transport = declare(self, "image_transport", "raw",
                                       "raw: subscribe 'image' (sensor_msgs/Image); "
                                       "compressed: 'image/compressed' (CompressedImage).",
                                       choices=("raw", "compressed"))
        self.qos_reliability = declare(self, "qos_reliability", "best_effort",
                                       "Reliability of the image and camera_info "
                                       "subscriptions (best_effort = sensor-data QoS).",
                                       choices=("best_effort", "reliable"))
        self.qos_depth = declare(self, "qos_depth", 5, "Queue depth of the image subscription "
                                 "(keep last).", 1, 100)
        self.frame_interval = declare(self, "frame_interval", 0.1,
                                      "Take at most one frame every frame_interval seconds "
                                      "(header stamps), the model's training rate; 0 takes "
                                      "every frame.", 0.0, 10.0)
        self.window_stride = declare(self, "window_stride", DEFAULT_STRIDE,
                                     "Frames between the starts of consecutive windows "
                                     "(1 .. T-1, T the model's window length); smaller: "
                                     "more overlap, more compute per frame.", 1, 1000)
        self.odom_frame = declare(self, "odom_frame", "odom",
                                  "Fixed frame of the estimate (REP-105 odom).")
        self.camera_frame = declare(self, "camera_frame", "camera_optical_frame",
                                    "Camera optical frame (x right, y down, z forward).")
        self.base_frame = declare(self, "base_frame", "",
                                  "Robot base frame; empty: publish odom -> camera_frame. "
                                  "Else odom -> base_frame, using the camera mount below.")
        self.T_base_camera = declare_mount_parameters(self)
        self.publish_mount_tf = declare(self, "publish_mount_tf", False,
                                        "Also publish base_frame -> camera_frame from the "
                                        "mount parameters on /tf_static.")
        self.scale = declare(self, "scale", 1.0,
                             "Metres per model unit. Monocular: the unit is the mean distance "
                             "of the first window's camera centres from its first camera.",
                             1e-6, 1e6)
        self.publish_tf = declare(self, "publish_tf", True, "Publish the pose on /tf.")
        self.max_path_length = declare(self, "max_path_length", 10000,
                                       "Poses kept in the published path (the latest).",
                                       1, 1000000)
        self.consistency_every = declare(self, "consistency_every", 0,
                                         "Run the closed-loop consistency check on every "
                                         "N-th window (3 extra model jobs); 0 disables.",
                                         0, 100000)
        self.diagnostics_period = declare(self, "diagnostics_period", 1.0,
                                          "Seconds between /diagnostics messages.", 0.05, 60.0)
        if not self.base_frame:
            self.base_frame = self.camera_frame
        self.child_frame = self.base_frame
        for name in ("odom_frame", "camera_frame"):
            if not getattr(self, name):
                raise ParameterError(f"parameter '{name}' must not be empty")
        if self.odom_frame == self.child_frame:
            raise ParameterError(f"odom_frame and the published child frame are both "
                                 f"'{self.odom_frame}'")

    def _publish_static_mount(self):
        qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
        self.static_pub = self.create_publisher(TFMessage, "/tf_static", qos)
        self.static_pub.publish(TFMessage(transforms=[cv.matrix_to_transform(
            self.T_base_camera, self.get_clock().now().to_msg(), self.base_frame,
            self.camera_frame)]))

    # -------------------------------------------------------------- input

    def _on_camera_info(self, msg):
        try:
            K, size = messages.camera_info_to_K(msg)
        except ValueError as error:
            self._bad_input(f"camera_info ignored: {error}")
            return
        with self._lock:
            self.stream.set_intrinsics(K, size)

    def _on_image(self, msg):
        self._on_frame(msg, messages.image_to_rgb8)

    def _on_compressed(self, msg):
        self._on_frame(msg, messages.compressed_to_rgb8)

    def _on_frame(self, msg, decode):
        """Admit, subsample, drop or buffer one frame (subscription thread)."""
        self.diagnostics.tick("input")
        seconds = messages.stamp_seconds(msg.header.stamp)
        if seconds == 0.0:  # an unstamped driver: use the arrival time
            now = self.get_clock().now()
            msg.header.stamp = now.to_msg()
            seconds = now.nanoseconds * 1e-9
        with self._lock:
            refused = self.stream.screen(seconds)
        if refused:
            self.diagnostics.count(refused)
            return
        try:
            rgb = decode(msg)  # only frames that may be used are decoded
        except ValueError as error:
            self._bad_input(f"image dropped: {error}")
            return
        with self._lock:
            admission = self.stream.add(rgb, seconds, msg.header.stamp)
            if admission.reset:
                self.get_logger().warn(f"{admission.detail}: resetting the trajectory")
                self._restarted(admission.reset)
            if not admission.taken:
                self.diagnostics.count(admission.reason)
                return
            self.diagnostics.tick("accepted")
            held = self.stream.buffered + (self.window_length if self._busy else 0)
            self.max_buffered = max(self.max_buffered, held)
            if self.stream.full:
                self._work.notify()

    def _bad_input(self, text):
        self.diagnostics.count("bad input")
        self.diagnostics.warn(text)
        if self._log_throttle.should_log(text):
            self.get_logger().warn(text)

    # -------------------------------------------------------------- reset

    def _on_reset(self, request, response):
        with self._lock:
            self.stream.reset()
            self._restarted("reset service")
        response.success = True
        response.message = "trajectory reset: the next frame starts a new odom origin"
        self.get_logger().info(response.message)
        return response

    def _restarted(self, reason):
        """The stream started a new run: forget what was published of the old one."""
        self._path.clear()
        self._previous = None
        self.diagnostics.count("resets")
        self.diagnostics.set_value("last reset", reason)

    # -------------------------------------------------------------- model (worker thread)

    def _work_loop(self):
        while True:
            with self._lock:
                while not self._stopping and not self.stream.full:
                    self._work.wait(timeout=0.5)
                if self._stopping:
                    return
                windows = self.stream.take()
                self._busy = True
            try:
                self._process(windows)
            except Exception as error:  # keep the node alive; report and go on
                self.diagnostics.error(f"window failed: {error}")
                self.get_logger().error(f"window failed: {type(error).__name__}: {error}")
            finally:
                with self._lock:
                    self._busy = False

    def _process(self, windows):
        start = time.perf_counter()
        estimates = self.stream.estimate(windows)
        latency = time.perf_counter() - start
        window, estimate = windows[-1], estimates[-1]
        consistency = None
        self._windows += 1
        if self.view_pipeline is not None and self._windows % self.consistency_every == 0:
            result = self.view_pipeline.closed_loop(window.frames[0], estimate.K, estimate.c2w)
            consistency = result.psnr
        height, width = window.frames.shape[1:3]
        with self._lock:
            fixed = self.stream.chain(windows, estimates)
            if fixed is None:
                self.diagnostics.count("windows discarded (reset)")
                return
            self._publish(fixed, estimate, window.K is None, width, height)
        self.diagnostics.latency("window", latency)
        age = self.get_clock().now().nanoseconds * 1e-9 - window.stamps[-1]
        if 0.0 <= age < 3600.0:  # meaningful only when stamps follow this node's clock
            self.diagnostics.latency("stamp to output", age)
        self.diagnostics.count("windows")
        if consistency is not None:
            self.diagnostics.set_value("closed-loop consistency (dB)", float(consistency))

    # -------------------------------------------------------------- output

    def child_poses(self, run_c2w):
        """Chained camera poses (n, 4, 4), optical axes, model units -> T_odom_child in
        metres (child = base_frame, or camera_frame when no base frame is set)."""
        poses = np.array(run_c2w, dtype=np.float64)
        poses[:, :3, 3] *= self.scale
        T_odom_camera = self.T_base_camera @ poses
        if self.child_frame == self.camera_frame:
            return T_odom_camera
        return T_odom_camera @ invert_pose(self.T_base_camera)

    def _publish(self, fixed, estimate, publish_info, width, height):
        """Odometry, TF and path of the newly fixed poses (``FixedPoses``: the stamps in
        seconds, the header stamps as tags), and the estimated intrinsics when no camera
        info came."""
        poses = self.child_poses(fixed.c2w)
        transforms = []
        R_odom_run = self.T_base_camera[:3, :3]
        covariance = fixed.covariance
        for i, (seconds, stamp, T) in enumerate(zip(fixed.stamps, fixed.tags, poses)):
            transforms.append(cv.matrix_to_transform(T, stamp, self.odom_frame,
                                                     self.child_frame))
            odometry = Odometry(child_frame_id=self.child_frame)
            odometry.header.stamp = stamp
            odometry.header.frame_id = self.odom_frame
            odometry.pose.pose = cv.matrix_to_pose(T)
            if covariance is not None:
                odometry.pose.covariance = messages.covariance_to_ros(
                    covariance[i], rotation=R_odom_run, scale=self.scale)
            if self._previous is not None:
                dt = seconds - self._previous[0]
                linear, angular = twist_between(self._previous[1], T, dt)
                odometry.twist.twist.linear.x, odometry.twist.twist.linear.y, \
                    odometry.twist.twist.linear.z = (float(v) for v in linear)
                odometry.twist.twist.angular.x, odometry.twist.twist.angular.y, \
                    odometry.twist.twist.angular.z = (float(v) for v in angular)
                if covariance is not None and dt > 0:
                    # Independent pose errors at both ends: var(twist) ~ 2 var(pose) / dt^2,
                    # in the child frame.
                    R_child = T[:3, :3].T @ R_odom_run
                    odometry.twist.covariance = messages.covariance_to_ros(
                        2.0 * covariance[i] / dt ** 2, rotation=R_child, scale=self.scale)
            self._previous = (seconds, T)
            self.odom_pub.publish(odometry)
            self._path.append(cv.matrix_to_pose_stamped(T, stamp, self.odom_frame))
            self.diagnostics.tick("output")
        if self.publish_tf:
            self.tf_pub.publish(TFMessage(transforms=transforms))
        path = Path(poses=list(self._path))
        path.header.frame_id = self.odom_frame
        path.header.stamp = fixed.tags[-1]
        self.path_pub.publish(path)
        if publish_info:
            self.info_pub.publish(cv.K_to_camera_info(estimate.K, width, height,
                                                      fixed.tags[-1], self.camera_frame))
        self.diagnostics.set_value("trajectory frames", int(self.stream.frames_fixed))

    def _publish_diagnostics(self):
        with self._lock:
            held = self.stream.buffered + (self.window_length if self._busy else 0)
        self.diagnostics.set_value("buffered frames", held)
        self.diagnostics.set_value("max buffered frames", self.max_buffered)
        self.diag_pub.publish(self.diagnostics.to_message(self.get_clock().now().to_msg()))

    # -------------------------------------------------------------- shutdown

    def destroy_node(self):
        with self._lock:
            self._stopping = True
            self._work.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=30.0)
        return super().destroy_node()


def main(args=None):
    """Console entry point: `trajectory_estimator --ros-args ...`."""
    return run_nodes([TrajectoryEstimator], args=args)


if __name__ == "__main__":
    sys.exit(main())
