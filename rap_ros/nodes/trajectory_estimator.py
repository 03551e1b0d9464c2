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

Images are taken at most every ``frame_interval`` seconds (header stamps), gathered into
sliding windows of the model's frame count T, one window every ``window_stride`` frames, and
estimated on a worker thread; the windows are chained by the pipeline's TrajectoryChainer.
Frames arriving while the next window is complete but the model is still busy are dropped
and counted, so at most T decoded frames wait at any time.
"""
import collections
import math
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from rap_ros.geometry import invert_pose, scale_intrinsics
from rap_ros.nodes import conversions as cv
from rap_ros.nodes.diagnostics import LogThrottle, NodeDiagnostics

# A header stamp this far behind the previous one is a jump back in time (a looping bag,
# a restarted simulation): the trajectory restarts. Smaller steps back are out-of-order
# frames and are dropped.
TIME_JUMP_S = 1.0


# ------------------------------------------------------------------ parameters


class ParameterError(ValueError):
    """A parameter value the node cannot run with."""


def declare(node, name, default, description, low=None, high=None, choices=None):
    """Declare parameter ``name`` (read-only after start) and return its validated value.

    low/high: inclusive numeric range, given to rclpy in the descriptor (so it refuses
    out-of-range overrides) and checked again here; choices: allowed strings.
    """
    descriptor = ParameterDescriptor(description=description, read_only=True)
    if choices:
        descriptor.additional_constraints = "one of: " + ", ".join(choices)
    if low is not None:
        if isinstance(default, int) and not isinstance(default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high),
                                                     step=0)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(low), to_value=float(high), step=0.0)]
    try:
        value = node.declare_parameter(name, default, descriptor).value
    except Exception as error:  # InvalidParameterValueException, type mismatch
        raise ParameterError(f"parameter '{name}': {error}") from error
    if choices and value not in choices:
        raise ParameterError(f"parameter '{name}' is {value!r}; expected one of {list(choices)}")
    if low is not None and not (low <= value <= high):
        raise ParameterError(f"parameter '{name}' is {value}; expected {low} <= value <= {high}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ParameterError(f"parameter '{name}' must be finite, got {value}")
    return value


def declare_vector(node, name, default, description):
    """Declare a read-only array of three finite doubles."""
    descriptor = ParameterDescriptor(description=description, read_only=True)
    try:
        value = node.declare_parameter(name, [float(v) for v in default], descriptor).value
    except Exception as error:
        raise ParameterError(f"parameter '{name}': {error}") from error
    value = [float(v) for v in value]
    if len(value) != 3 or not all(math.isfinite(v) for v in value):
        raise ParameterError(f"parameter '{name}' must be 3 finite numbers, got {value}")
    return value


def declare_model_parameters(node, job):
    """Parameters of the shared backend and the sampler of ``job`` ("estimate"/"predict")."""
    from rap_ros.pipeline import SAMPLERS

    estimate = job == "estimate"
    return dict(
        backend=declare(node, "backend", "onnx",
                        "Inference backend spec for rap_ros.backend.shared.get_backend: "
                        "'onnx' or 'torch' (shipped weights), or a model folder. One "
                        "backend is shared by all nodes of a process."),
        steps=declare(node, "steps", 2 if estimate else 1,
                      "Flow integration steps per model call (more: slower, smoother).",
                      1, 100),
        sampler=declare(node, "sampler", "euler",
                        "ODE sampler of the flow: euler (1 model call per step) or heun (2).",
                        choices=SAMPLERS),
        seed=declare(node, "seed", 0, "Seed of the sampling noise.", 0, 2 ** 31 - 1),
    )


def resolve_backend(backend, spec):
    """`backend` when given (tests, `rap-ros up` sharing one), else the process-wide backend
    for the `backend` parameter's spec; a malformed spec is a ParameterError (a missing or
    corrupt model file raises ModelFileError, naming the file)."""
    if backend is not None:
        return backend
    from rap_ros.backend.shared import get_backend

    try:
        return get_backend(spec)
    except ValueError as error:
        raise ParameterError(f"parameter 'backend': {error}") from error


def declare_mount_parameters(node):
    """camera_mount_xyz/rpy -> T_base_optical (4x4): the optical frame in the base frame."""
    xyz = declare_vector(node, "camera_mount_xyz", [0.0, 0.0, 0.0],
                         "Camera position in base_frame, metres (x forward, y left, z up).")
    rpy = declare_vector(node, "camera_mount_rpy", [0.0, 0.0, 0.0],
                         "Camera orientation in base_frame as roll, pitch, yaw (rad, fixed "
                         "axes) of the camera's body axes (x forward, z up); pitch > 0 looks "
                         "down. The optical rotation (x right, y down, z forward) is added.")
    return cv.body_to_optical(cv.matrix_from_xyz_rpy(xyz, rpy))


def reliability_qos(reliability, depth):
    """QoS for sensor streams: sensor-data (best effort, keep last) or reliable."""
    if reliability == "best_effort":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


# ------------------------------------------------------------------ frame buffering


@dataclass
class Frame:
    """One accepted camera frame: stamp (seconds and message), RGB uint8 (H, W, 3)."""

    seconds: float
    stamp: object
    rgb: np.ndarray


class WindowBuffer:
    """Accepted frames -> overlapping windows of ``window`` frames every ``stride`` frames.

    Not thread-safe (the node holds its lock). At most ``window`` frames are held: the
    latest window's last ``window - stride`` frames plus new ones. When the next window is
    complete but has not been taken (the model is busy), ``full`` is True and new frames
    must be dropped; windows therefore always advance by exactly ``stride`` frames, as
    the chainer requires.
    """

    def __init__(self, window, stride):
        self.window, self.stride = int(window), int(stride)
        self._frames = collections.deque(maxlen=self.window)
        self._new = 0
        self._taken = 0

    def __len__(self):
        return len(self._frames)

    @property
    def full(self):
        """A complete window waits to be taken."""
        if len(self._frames) < self.window:
            return False
        return self._taken == 0 or self._new >= self.stride

    def add(self, frame):
        if self.full:
            raise RuntimeError("window buffer is full: take() the window first")
        self._frames.append(frame)
        self._new += 1

    def take(self):
        """The complete window (list of Frames, oldest first); None if not complete."""
        if not self.full:
            return None
        self._taken += 1
        self._new = 0
        return list(self._frames)

    def clear(self):
        self._frames.clear()
        self._new = 0
        self._taken = 0

    @property
    def last(self):
        return self._frames[-1] if self._frames else None


# ------------------------------------------------------------------ node


class TrajectoryEstimator(Node):
    """ROS adapter over TrajectoryPipeline + TrajectoryChainer (see the module docstring)."""

    def __init__(self, backend=None, node_name="trajectory_estimator", **kwargs):
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        from rap_ros.pipeline import TrajectoryChainer, TrajectoryPipeline, ViewPipeline

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
        self.chainer = TrajectoryChainer(self.window_length, self.window_stride)
        self.buffer = WindowBuffer(self.window_length, self.window_stride)
        self.diagnostics = NodeDiagnostics(f"{self.get_name()}: trajectory",
                                           hardware_id=getattr(backend, "name", str(backend)))
        self.diagnostics.set_value("backend", getattr(backend, "name", str(backend)))

        self._lock = threading.Lock()
        self._log_throttle = LogThrottle(2.0)
        self._work = threading.Condition(self._lock)
        self._busy = False
        self._stopping = False
        self._epoch = 0  # bumped by every reset; results of older windows are discarded
        self._last_stamp = None  # seconds of the last received image
        self._next_accept = None  # earliest stamp (s) the next frame may have
        self._camera_K = None  # (K, (width, height)) from camera_info
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
        from diagnostic_msgs.msg import DiagnosticArray

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
                              "lengths (rap_ros.refine); false: the model's poses alone.")
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
        self.window_stride = declare(self, "window_stride", 4,
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
            K, size = cv.camera_info_to_K(msg)
        except ValueError as error:
            self._bad_input(f"camera_info ignored: {error}")
            return
        with self._lock:
            self._camera_K = (K, size)

    def _on_image(self, msg):
        self._on_frame(msg, cv.image_to_rgb8)

    def _on_compressed(self, msg):
        self._on_frame(msg, cv.compressed_to_rgb8)

    def _on_frame(self, msg, decode):
        """Admit, subsample, drop or buffer one frame (subscription thread)."""
        self.diagnostics.tick("input")
        seconds = cv.stamp_to_seconds(msg.header.stamp)
        if seconds == 0.0:  # an unstamped driver: use the arrival time
            now = self.get_clock().now()
            msg.header.stamp = now.to_msg()
            seconds = now.nanoseconds * 1e-9
        with self._lock:
            backwards = self._last_stamp is not None and seconds < self._last_stamp
            if not backwards:
                if self._next_accept is not None and seconds < self._next_accept:
                    self._last_stamp = seconds
                    self.diagnostics.count("skipped (frame_interval)")
                    return
                if self.buffer.full:
                    self._last_stamp = seconds
                    self.diagnostics.count("dropped (model busy)")
                    return
        try:
            rgb = decode(msg)  # only frames that may be used are decoded
        except ValueError as error:
            self._bad_input(f"image dropped: {error}")
            return
        with self._lock:
            if self._last_stamp is not None and seconds < self._last_stamp:
                if self._last_stamp - seconds > TIME_JUMP_S:
                    self.get_logger().warn(
                        f"time jumped back {self._last_stamp - seconds:.1f} s (looping bag or "
                        "restarted clock): resetting the trajectory")
                    self._reset_locked("time jumped back")
                else:
                    self.diagnostics.count("dropped (out of order)")
                    return
            self._last_stamp = seconds
            last = self.buffer.last
            if last is not None and last.rgb.shape != rgb.shape:
                self.get_logger().warn(f"image size changed {last.rgb.shape[:2]} -> "
                                       f"{rgb.shape[:2]}: resetting the trajectory")
                self._reset_locked("image size changed")
            if self.buffer.full:  # another frame got in first
                self.diagnostics.count("dropped (model busy)")
                return
            if self._next_accept is not None and seconds < self._next_accept:
                self.diagnostics.count("skipped (frame_interval)")
                return
            # Tolerance: accept frames up to 10 % early, so 30 Hz -> 10 Hz takes every third.
            self._next_accept = seconds + 0.9 * self.frame_interval
            self.buffer.add(Frame(seconds, msg.header.stamp, rgb))
            self.diagnostics.tick("accepted")
            held = len(self.buffer) + (self.window_length if self._busy else 0)
            self.max_buffered = max(self.max_buffered, held)
            if self.buffer.full:
                self._work.notify()

    def _bad_input(self, text):
        self.diagnostics.count("bad input")
        self.diagnostics.warn(text)
        if self._log_throttle.should_log(text):
            self.get_logger().warn(text)

    # -------------------------------------------------------------- reset

    def _on_reset(self, request, response):
        with self._lock:
            self._reset_locked("reset service")
        response.success = True
        response.message = "trajectory reset: the next frame starts a new odom origin"
        self.get_logger().info(response.message)
        return response

    def _reset_locked(self, reason):
        self.buffer.clear()
        self.chainer.reset()
        self._epoch += 1
        self._next_accept = None
        self._last_stamp = None
        self._path.clear()
        self._previous = None
        self.diagnostics.count("resets")
        self.diagnostics.set_value("last reset", reason)

    # -------------------------------------------------------------- model (worker thread)

    def _work_loop(self):
        while True:
            with self._lock:
                while not self._stopping and not self.buffer.full:
                    self._work.wait(timeout=0.5)
                if self._stopping:
                    return
                window = self.buffer.take()
                epoch = self._epoch
                self._busy = True
                camera = self._camera_K
            try:
                self._process(window, camera, epoch)
            except Exception as error:  # keep the node alive; report and go on
                self.diagnostics.error(f"window failed: {error}")
                self.get_logger().error(f"window failed: {type(error).__name__}: {error}")
            finally:
                with self._lock:
                    self._busy = False

    def _process(self, window, camera, epoch):
        frames = np.stack([f.rgb for f in window])
        height, width = frames.shape[1:3]
        K = None
        if camera is not None:
            K, (info_width, info_height) = camera
            if (info_width, info_height) != (width, height):
                K = scale_intrinsics(K, width / info_width, height / info_height)
        start = time.perf_counter()
        estimate = self.pipeline.estimate_window(frames, K)
        latency = time.perf_counter() - start
        consistency = None
        self._windows += 1
        if self.view_pipeline is not None and self._windows % self.consistency_every == 0:
            result = self.view_pipeline.closed_loop(frames[0], estimate.K, estimate.c2w)
            consistency = result.psnr
        with self._lock:
            if epoch != self._epoch:
                self.diagnostics.count("windows discarded (reset)")
                return
            chained = self.chainer.push(estimate.c2w, estimate.covariance)
            stamps = window[len(window) - len(chained.c2w):]
            self._publish(chained, stamps, estimate, camera is None, width, height)
        self.diagnostics.latency("window", latency)
        age = self.get_clock().now().nanoseconds * 1e-9 - window[-1].seconds
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

    def _publish(self, chained, frames, estimate, publish_info, width, height):
        poses = self.child_poses(chained.c2w)
        transforms = []
        R_odom_run = self.T_base_camera[:3, :3]
        for i, (frame, T) in enumerate(zip(frames, poses)):
            transforms.append(cv.matrix_to_transform(T, frame.stamp, self.odom_frame,
                                                     self.child_frame))
            odometry = Odometry(child_frame_id=self.child_frame)
            odometry.header.stamp = frame.stamp
            odometry.header.frame_id = self.odom_frame
            odometry.pose.pose = cv.matrix_to_pose(T)
            if chained.covariance is not None:
                odometry.pose.covariance = cv.covariance_to_ros(
                    chained.covariance[i], rotation=R_odom_run, scale=self.scale)
            if self._previous is not None:
                dt = frame.seconds - self._previous[0]
                linear, angular = cv.twist_between(self._previous[1], T, dt)
                odometry.twist.twist.linear.x, odometry.twist.twist.linear.y, \
                    odometry.twist.twist.linear.z = (float(v) for v in linear)
                odometry.twist.twist.angular.x, odometry.twist.twist.angular.y, \
                    odometry.twist.twist.angular.z = (float(v) for v in angular)
                if chained.covariance is not None and dt > 0:
                    # Independent pose errors at both ends: var(twist) ~ 2 var(pose) / dt^2,
                    # in the child frame.
                    R_child = T[:3, :3].T @ R_odom_run
                    odometry.twist.covariance = cv.covariance_to_ros(
                        2.0 * chained.covariance[i] / dt ** 2, rotation=R_child,
                        scale=self.scale)
            self._previous = (frame.seconds, T)
            self.odom_pub.publish(odometry)
            self._path.append(cv.matrix_to_pose_stamped(T, frame.stamp, self.odom_frame))
            self.diagnostics.tick("output")
        if self.publish_tf:
            self.tf_pub.publish(TFMessage(transforms=transforms))
        path = Path(poses=list(self._path))
        path.header.frame_id = self.odom_frame
        path.header.stamp = frames[-1].stamp
        self.path_pub.publish(path)
        if publish_info:
            self.info_pub.publish(cv.K_to_camera_info(estimate.K, width, height,
                                                      frames[-1].stamp, self.camera_frame))
        self.diagnostics.set_value("trajectory frames", int(self.chainer.frames))

    def _publish_diagnostics(self):
        with self._lock:
            held = len(self.buffer) + (self.window_length if self._busy else 0)
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


def run_nodes(factories, args=None):
    """Init rclpy (DDS on localhost unless the user says otherwise), build nodes with
    ``factories`` (callables returning Nodes) and spin them on one MultiThreadedExecutor
    until Ctrl-C. Returns a process exit code."""
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    from rap_ros.backend.base import ModelFileError
    from rap_ros.ros_env import prepare_ros_environment

    prepare_ros_environment()
    rclpy.init(args=args)
    nodes = []
    try:
        try:
            for factory in factories:
                nodes.append(factory())
        except (ParameterError, ModelFileError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        executor = MultiThreadedExecutor(num_threads=max(4, 2 * len(nodes) + 2))
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in reversed(nodes):
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(args=None):
    """Console entry point: `trajectory_estimator --ros-args ...`."""
    return run_nodes([TrajectoryEstimator], args=args)


if __name__ == "__main__":
    sys.exit(main())
