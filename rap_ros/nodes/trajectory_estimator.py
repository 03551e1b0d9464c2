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
  /tf (tf2_msgs/TFMessage): odom_frame -> base_frame (REP-105), never when base_frame
      already has another parent (an ERROR on /diagnostics says so)
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
  gives one. Lengths are metres once scaled, angles radians, stamps seconds. The mount and
  these transforms: ``rap_ros.nodes.camera_mount``; the messages built from the poses:
  ``rap_ros.nodes.trajectory_output``; the model's windows: ``rap_ros.nodes.model_windows``.

Frames are processed on a worker thread; a frame arriving while the worker is busy waits in
a queue of ``queue_size`` frames, the oldest is dropped (and counted) when the queue is full.
A jump back in time larger than 1 s (a looping bag, a restarted simulation) restarts the
trajectory; smaller steps back are dropped; a zero stamp (an unstamped driver) is stamped
with the node's clock and never taken for a jump.
"""
import collections
import sys
import threading
import time
from typing import NamedTuple

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
from rap_ros.geometry.undistort import SUPPORTED_MODELS, Undistorter
from rap_ros.io import messages
from rap_ros.io.images import limit_image_size
from rap_ros.nodes import conversions as cv
from rap_ros.nodes.camera_mount import CameraMount
from rap_ros.nodes.diagnostics import LogThrottle, NodeDiagnostics, resident_memory_mb
from rap_ros.nodes.model_windows import ModelWindows
from rap_ros.nodes.params import (ParameterError, declare, declare_model_parameters,
                                  declare_mount_parameters, reliability_qos, resolve_backend)
from rap_ros.nodes.runner import run_nodes
from rap_ros.nodes.tf_listener import TfTopics
from rap_ros.nodes.trajectory_output import TrajectoryOutput
from rap_ros.odometry import OdometryConfig
from rap_ros.odometry.factory import make_odometry
from rap_ros.odometry.metric_scale import ScaleAnchor, WheelScale
from rap_ros.pipeline.streaming import DEFAULT_STRIDE, TIME_JUMP_S
from rap_ros_msgs.srv import ResetToPose

METHODS = ("rap", "geometry", "model")


class QueuedFrame(NamedTuple):
    """A frame between the subscription and the odometry worker (rap, geometry)."""
    seconds: float          # header stamp (s); the node's clock for an unstamped frame
    stamp: object           # builtin_interfaces/Time for the published messages
    frame_id: str           # the image's header.frame_id
    rgb: np.ndarray         # (H, W, 3) uint8, downscaled to max_image_pixels, undistorted if K
    recorded_size: tuple    # (width, height) as recorded, for a camera_info arriving late
    K: object               # (3, 3) intrinsics of ``rgb`` or None (no camera_info yet)
    arrival: float          # time.perf_counter() at arrival, for the latency figures


class TrajectoryEstimator(Node):
    """ROS adapter over the odometry core (rap, geometry) or a WindowStream of model windows
    (model); see the module docstring."""

    short_callbacks = True  # callbacks queue frames for the worker thread (nodes.runner)

    def __init__(self, backend=None, node_name="trajectory_estimator", **kwargs):
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        self.backend = None
        if self.method != "geometry" or self.consistency_every:
            self.backend = resolve_backend(backend, self.model["backend"])
        backend_name = getattr(self.backend, "name", "none (geometry)")
        self.diagnostics = NodeDiagnostics(f"{self.get_name()}: trajectory",
                                           hardware_id=backend_name)
        self.diagnostics.set_value("backend", backend_name)
        self.diagnostics.set_value("method", self.method)

        self._lock = threading.Lock()          # input state, queue, published trajectory
        self._work = threading.Condition(self._lock)
        self._log_throttle = LogThrottle(2.0)
        self._stopping = False
        self._busy = False
        self._last_stamp = None                # seconds of the last stamped frame taken
        self._undistorter = None               # geometry.undistort.Undistorter of camera_info
        self._last_camera_pose = None          # latest odometry camera pose (run-time scale)
        self._reset_pending = False            # the worker resets the core before its next frame
        self._drop_held = False                # the worker forgets its held frames (a reset)
        self.anchor = ScaleAnchor(self.scale)
        self.wheel = WheelScale()
        self.max_buffered = 0                  # most frames ever held (diagnostics)

        if self.method == "model":
            self.windows = ModelWindows(self.backend, self.model, samples=self.samples,
                                        refine=self.refine, stride=self.window_stride,
                                        frame_interval=self.frame_interval,
                                        consistency_every=self.consistency_every)
        else:
            self._queue = collections.deque()       # QueuedFrame, subscription -> worker
            self._held = collections.deque()        # QueuedFrame waiting for camera_info/mount
            self._odometry_lock = threading.Lock()   # the odometry core, used by one thread
            self.odometry = None                     # built at the first frame (needs K)
            self._ba_runs_published = 0              # odometry.stats["ba_runs"] at the last
            #                                          path correction and map_points
            self._odometry_key = None
            self._awaiting_intrinsics = []           # (seconds, stamp) the core holds for K
            self._lost_since = None
            self._info_wait_start = None
            self._frame_stamps = BoundedDict(1000)  # frame index -> stamp (s), for the scale

        # One callback group per input, so no input waits for another's callback.
        qos = reliability_qos(self.qos_reliability, self.qos_depth)
        # camera_info is always best effort (it matches reliable publishers too). A driver
        # publishes it with every image, and one is enough. Reliable, it came 1.5-1.9 s late
        # behind 640x480 rgb8 images (issue 11). With Fast DDS's default shared-memory
        # transport (512 KB segment per participant), a 0.9 MB image overflows the
        # publisher's segment and small camera_info samples of the same participant are lost
        # in transit. A reliable reader then delivers nothing after the gap until the
        # writer's periodic heartbeat brings a repair. Images do not wait like that: their
        # large writes carry heartbeats. Measured two-process at 30 Hz: reliable camera_info
        # latency median 672 ms, max 1.58 s; best effort 1 ms median, first one received.
        info_qos = reliability_qos("best_effort", self.qos_depth)
        if self.image_transport == "compressed":
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
                                 self.anchor, self.T_base_camera_parameters,
                                 odom_frame=self.odom_frame, base_frame=self.base_frame,
                                 camera_frame=self.camera_frame,
                                 mount_source=self.mount_source,
                                 mount_timeout=self.mount_timeout)
        self.tf_pub = self.create_publisher(TFMessage, "/tf", 100)
        self.path_pub = self.create_publisher(Path, "path", 10)
        self.odom_pub = self.create_publisher(Odometry, "odometry", 50)
        self.info_pub = self.create_publisher(CameraInfo, "estimated_camera_info", 10)
        self.map_pub = (self.create_publisher(PointCloud2, "map_points", 2)
                        if self.publish_map_points and self.method != "model" else None)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.output = TrajectoryOutput(self.mount, self.diagnostics, odom_pub=self.odom_pub,
                                       tf_pub=self.tf_pub, path_pub=self.path_pub,
                                       map_pub=self.map_pub, publish_tf=self.publish_tf,
                                       max_path_length=self.max_path_length,
                                       map_points_max=self.map_points_max)
        if self.publish_mount_tf:  # the parameters mount, for a robot without a URDF
            qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
            self.static_pub = self.create_publisher(TFMessage, "/tf_static", qos)
            self.static_pub.publish(TFMessage(transforms=[
                self.mount.static_transform(self.get_clock().now().to_msg())]))
        services = MutuallyExclusiveCallbackGroup()
        self.reset_srv = self.create_service(Trigger, "~/reset", self._on_reset,
                                             callback_group=services)
        self.reset_pose_srv = self.create_service(ResetToPose, "~/reset_to_pose",
                                                  self._on_reset_to_pose,
                                                  callback_group=services)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.diag_timer = self.create_timer(self.diagnostics_period, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work_loop, name="rap_ros_estimator",
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"trajectory_estimator ready: method {self.method}, backend {backend_name}, "
            f"{self.odom_frame} -> {self.base_frame or '<camera frame>'}, mount from "
            f"{self.mount_source}, tf via {self.tf_topics.backend}")

    # -------------------------------------------------------------- parameters

    def _declare_parameters(self):
        self.method = declare(self, "method", "rap",
                              "rap: odometry core + the model as motion prior; geometry: "
                              "the core alone; model: the model's windowed poses.",
                              choices=METHODS)
        self.model = declare_model_parameters(self, "estimate")
        self.samples = declare(self, "samples", 1,
                               "Diffusion samples per model window; their spread weighs the "
                               "model's factors (rap) or gives the covariance (model).", 1, 32)
        self.refine = declare(self, "refine", True,
                              "model: refine each window's rotations and directions of travel "
                              "against optical flow (rap_ros.pipeline.refine).")
        self.ba_fallback = declare(self, "ba_fallback", OdometryConfig.ba_fallback,
                                   "rap, geometry: how a keyframe's bundle adjustment solves a "
                                   "window iSAM2's Gauss-Newton step cannot: lm (Levenberg-"
                                   "Marquardt: more accurate, up to ~0.1-0.3 s) or dogleg "
                                   "(a trust region: 3-4x shorter; benchmarks/results/"
                                   "odometry_ba_fallback.md).", choices=("lm", "dogleg"))
        self.klt_predict = declare(self, "klt_predict", OdometryConfig.klt_predict,
                                   "rap, geometry: where each KLT track starts: map (where the "
                                   "motion model projects its landmark: the more accurate, "
                                   "more keyframes), rotation, or previous (where it was: fewer "
                                   "keyframes, lower latency; docs/evaluation.md).",
                                   choices=("map", "rotation", "previous"))
        self.image_transport = declare(self, "image_transport", "raw",
                                       "raw: subscribe 'image' (sensor_msgs/Image); "
                                       "compressed: 'image/compressed' (CompressedImage).",
                                       choices=("raw", "compressed"))
        self.qos_reliability = declare(self, "qos_reliability", "best_effort",
                                       "Reliability of the image subscription "
                                       "(best_effort = sensor-data QoS; camera_info is "
                                       "always best effort).",
                                       choices=("best_effort", "reliable"))
        self.qos_depth = declare(self, "qos_depth", 5, "Queue depth of the image subscription "
                                 "(keep last).", 1, 100)
        self.queue_size = declare(self, "queue_size", 2,
                                  "rap, geometry: decoded frames waiting for the tracker; "
                                  "when full the oldest is dropped and counted.", 1, 100)
        self.frame_interval = declare(self, "frame_interval", -1.0,
                                      "Take at most one frame every frame_interval seconds "
                                      "(header stamps); 0 takes every frame; negative: the "
                                      "method's default (rap, geometry 0; model 0.1, its "
                                      "training rate).", -1.0, 10.0)
        if self.frame_interval < 0:
            self.frame_interval = 0.1 if self.method == "model" else 0.0
        self.window_stride = declare(self, "window_stride", DEFAULT_STRIDE,
                                     "model: frames between the starts of consecutive windows "
                                     "(1 .. T-1, T the model's window length).", 1, 1000)
        self.camera_info_timeout = declare(self, "camera_info_timeout", 1.0,
                                           "rap, geometry: seconds of frames to wait for "
                                           "camera_info at start before going on without "
                                           "(rap: the model's intrinsics; geometry: a 60 deg "
                                           "field of view).", 0.0, 3600.0)
        self.rectified = declare(self, "rectified", False,
                                 "The images are rectified (image_rect): use camera_info P "
                                 "and no undistortion; false: K and D of camera_info.")
        self.max_image_pixels = declare(self, "max_image_pixels", 1280 * 1024,
                                        "Larger images are downscaled on arrival (counted), "
                                        "intrinsics with them.", 64 * 64, 100_000_000)
        self.odom_frame = declare(self, "odom_frame", "odom",
                                  "Fixed frame of the estimate (REP-105 odom).")
        self.base_frame = declare(self, "base_frame", "base_link",
                                  "Robot base frame: the node publishes odom -> base_frame. "
                                  "Empty: odom -> the camera frame itself.")
        self.camera_frame = declare(self, "camera_frame", "",
                                    "Camera optical frame (x right, y down, z forward); "
                                    "empty: the images' header.frame_id.")
        self.mount_source = declare(self, "mount_source", "tf",
                                    "tf: the base -> camera mount from /tf_static and /tf "
                                    "(URDF); parameters: camera_mount_xyz/rpy.",
                                    choices=("tf", "parameters"))
        self.mount_timeout = declare(self, "mount_timeout", 2.0,
                                     "Seconds of frames to wait for the mount on /tf before "
                                     "using the mount parameters (with a warning).", 0.0, 3600.0)
        self.T_base_camera_parameters = declare_mount_parameters(self)
        self.publish_mount_tf = declare(self, "publish_mount_tf", False,
                                        "Publish base_frame -> camera_frame from the mount "
                                        "parameters on /tf_static (only without a URDF).")
        self.scale = declare(self, "scale", 1.0,
                             "Metres per odometry unit until wheel odometry gives the scale "
                             "(settable at run time). Monocular units: the first "
                             "initialisation baseline (rap, geometry), the first window's "
                             "mean camera displacement (model).", 1e-6, 1e6, read_only=False)
        self.publish_tf = declare(self, "publish_tf", True, "Publish the pose on /tf.")
        self.publish_map_points = declare(self, "publish_map_points", True,
                                          "rap, geometry: publish the local map's landmarks "
                                          "on map_points (PointCloud2, odom_frame, metres) "
                                          "after each keyframe.")
        self.map_points_max = declare(self, "map_points_max", 2000,
                                      "Most landmarks per map_points message (evenly "
                                      "thinned beyond).", 1, 1000000)
        self.max_path_length = declare(self, "max_path_length", 10000,
                                       "Poses kept in the published path (the latest).",
                                       1, 1000000)
        self.consistency_every = declare(self, "consistency_every", 0,
                                         "model: closed-loop consistency check on every N-th "
                                         "window (3 extra model jobs); 0 disables.", 0, 100000)
        self.diagnostics_period = declare(self, "diagnostics_period", 1.0,
                                          "Seconds between /diagnostics messages.", 0.05, 60.0)
        if not self.odom_frame:
            raise ParameterError("parameter 'odom_frame' must not be empty")
        if self.odom_frame in (self.base_frame, self.camera_frame):
            raise ParameterError(f"odom_frame '{self.odom_frame}' is also the published child")
        if self.publish_mount_tf and not (self.base_frame and self.camera_frame):
            raise ParameterError("publish_mount_tf needs base_frame and camera_frame set")

    def _on_set_parameters(self, parameters):
        for parameter in parameters:
            if parameter.name == "scale":
                value = float(parameter.value)
                if not 1e-6 <= value <= 1e6:
                    return SetParametersResult(successful=False,
                                               reason="scale must be in [1e-6, 1e6]")
                with self._lock:
                    self.scale = value
                    self.anchor.set_scale(value, self._last_odometry_pose())
                self.get_logger().info(f"scale set to {value} m per odometry unit")
        return SetParametersResult(successful=True)

    # -------------------------------------------------------------- input

    def _on_camera_info(self, msg):
        try:
            K, size, model, d = messages.camera_info_calibration(msg, self.rectified)
        except ValueError as error:
            self._bad_input(f"camera_info ignored: {error}")
            return
        with self._lock:
            if self._undistorter is not None and self._undistorter.matches(K, size, model, d):
                return
            self._undistorter = Undistorter(K, size, model, d)
            if self._undistorter.note and model not in SUPPORTED_MODELS:
                self.diagnostics.warn(self._undistorter.note)
            if self.method == "model":
                self.windows.stream.set_intrinsics(K, size)

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
        self._on_frame(msg, messages.image_to_rgb8)

    def _on_compressed(self, msg):
        self._on_frame(msg, messages.compressed_to_rgb8)

    def _admit(self, seconds):
        """Stamp checks of the odometry methods -> (take it, reset reason or None).
        Caller holds the lock; ``seconds`` None is an unstamped frame."""
        if seconds is None:
            return True, None
        last = self._last_stamp
        if last is not None and seconds < last:
            if last - seconds <= TIME_JUMP_S:
                self.diagnostics.count("out of order")
                return False, None
            self._last_stamp = seconds
            return True, f"time jumped back {last - seconds:.1f} s"
        if last is not None and self.frame_interval > 0 and seconds < last + self.frame_interval:
            self.diagnostics.count("skipped (frame_interval)")
            return False, None
        self._last_stamp = seconds
        return True, None

    def _on_frame(self, msg, decode):
        """Admit, decode, undistort and queue one frame (subscription thread)."""
        arrival = time.perf_counter()
        self.diagnostics.tick("input")
        seconds = messages.stamp_seconds(msg.header.stamp)
        unstamped = seconds == 0.0
        if unstamped:  # an unstamped driver: the node's clock, never taken for a time jump
            now = self.get_clock().now()
            msg.header.stamp = now.to_msg()
            self.diagnostics.count("unstamped frames")
        if self.method == "model":
            if unstamped:
                seconds = self.get_clock().now().nanoseconds * 1e-9
            with self._lock:
                refused = self.windows.stream.screen(seconds)
            if refused:
                self.diagnostics.count(refused)
                return
        else:
            with self._lock:
                take, reset = self._admit(None if unstamped else seconds)
                if reset:
                    self.get_logger().warn(f"{reset}: resetting the trajectory")
                    self._queue.clear()
                    self._request_reset(reset)
            if not take:
                return
            if unstamped:
                seconds = self.get_clock().now().nanoseconds * 1e-9
        try:
            rgb = decode(msg)  # only frames that may be used are decoded
        except ValueError as error:
            self._bad_input(f"image dropped: {error}")
            return
        recorded_size = rgb.shape[1::-1]
        rgb, downscaled = limit_image_size(rgb, self.max_image_pixels)
        if downscaled:
            self.diagnostics.count("images downscaled (max_image_pixels)")
        rgb, K = self._undistort(rgb, recorded_size)
        with self._lock:
            if self.method == "model":
                self._add_to_stream(rgb, seconds, msg.header.stamp)
                return
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.diagnostics.count("dropped (tracker busy)")
            self._queue.append(QueuedFrame(seconds, msg.header.stamp, msg.header.frame_id, rgb,
                                           recorded_size, K, arrival))
            self.diagnostics.tick("accepted")
            self.max_buffered = max(self.max_buffered, len(self._queue) + int(self._busy))
            self._work.notify()

    def _undistort(self, rgb, recorded_size):
        """Remove lens distortion with the latest camera_info -> (rgb, K or None); K is None
        without camera_info or when it is for another image size."""
        with self._lock:
            undistorter = self._undistorter
        if undistorter is None:
            return rgb, None
        rgb, K = undistorter(rgb, recorded_size)
        if K is None:
            self.diagnostics.warn(f"camera_info is for {undistorter.size[0]}x"
                                  f"{undistorter.size[1]} images, the images are "
                                  f"{recorded_size[0]}x{recorded_size[1]}: intrinsics not used")
        return rgb, K

    def _bad_input(self, text):
        self.diagnostics.count("bad input")
        self.diagnostics.warn(text)
        if self._log_throttle.should_log(text):
            self.get_logger().warn(text)

    # -------------------------------------------------------------- reset

    def _on_reset(self, request, response):
        self._reset(np.eye(4), "reset service")
        response.success = True
        response.message = "trajectory reset: the next frame starts at the odom origin"
        self.get_logger().info(response.message)
        return response

    def _on_reset_to_pose(self, request, response):
        frame = frame_name(request.pose.header.frame_id or '')
        if frame and frame != self.odom_frame:
            response.success = False
            response.message = (f"the pose must be given in {self.odom_frame}, not {frame}")
            return response
        try:
            T = messages.pose_to_matrix(request.pose.pose)
        except ValueError as error:
            response.success, response.message = False, f"pose refused: {error}"
            return response
        self._reset(T, "reset_to_pose service")
        response.success = True
        response.message = (f"trajectory reset: the next frame starts at "
                            f"{np.round(T[:3, 3], 3).tolist()} in {self.odom_frame}")
        self.get_logger().info(response.message)
        return response

    def _reset(self, T_odom_start, reason):
        with self._lock:
            self.mount.T_odom_start = np.array(T_odom_start, dtype=np.float64)
            self._last_stamp = None
            if self.method == "model":
                self.windows.stream.reset()
            else:
                self._queue.clear()
            self._request_reset(reason)

    def _request_reset(self, reason):
        """Forget the published run (caller holds the lock); the odometry core is reset by
        the worker before its next frame."""
        self.output.clear(self.get_clock().now().to_msg())
        self.anchor.reset()
        self.wheel.reset()
        self._reset_pending = True
        self._drop_held = True
        self.diagnostics.count("resets")
        self.diagnostics.set_value("last reset", reason)

    # -------------------------------------------------------------- worker thread

    def _work_loop(self):
        while True:
            with self._lock:
                while not self._stopping and not self._has_work():
                    self._work.wait(timeout=0.5)
                if self._stopping:
                    return
                job = self._take_work()
                self._busy = True
            try:
                if self.method == "model":
                    self._process_windows(job)
                else:
                    self._process_frame(job)
            except Exception as error:  # keep the node alive; report and go on
                self.diagnostics.error(f"frame failed: {type(error).__name__}: {error}")
                self.get_logger().error(f"frame failed: {type(error).__name__}: {error}")
            finally:
                with self._lock:
                    self._busy = False

    def _has_work(self):
        return self.windows.stream.full if self.method == "model" else bool(self._queue)

    def _take_work(self):
        if self.method == "model":
            return self.windows.stream.take()
        return self._queue.popleft()

    # -------------------------------------------------------------- odometry (rap, geometry)

    def _odometry_for(self, K, size):
        """The odometry core for frames of ``size`` with intrinsics K, rebuilt when either
        changes or a reset was asked for."""
        key = (size, None if K is None else tuple(np.round(K, 6).ravel()))
        with self._lock:
            pending, self._reset_pending = self._reset_pending, False
        if self.odometry is None or key != self._odometry_key:
            if self.odometry is not None:
                self.odometry.close()
                with self._lock:
                    self._request_reset("camera changed")
                    self._reset_pending = False
            self.odometry = make_odometry(self.method, K, backend=self.backend,
                                          config=OdometryConfig(history=False, prior_async=True,
                                                                ba_fallback=self.ba_fallback,
                                                                klt_predict=self.klt_predict),
                                          samples=self.samples, steps=self.model["steps"],
                                          seed=self.model["seed"])
            self._odometry_key = key
            self._awaiting_intrinsics.clear()
        elif pending:
            self.odometry.reset()
            self._awaiting_intrinsics.clear()
        return self.odometry

    def _last_odometry_pose(self):
        return np.eye(4) if self._last_camera_pose is None else self._last_camera_pose

    def _waiting_for_camera_info(self, K, seconds):
        """True while the first frames wait (at most camera_info_timeout seconds of stamps)
        for intrinsics, so the trajectory does not restart when they arrive."""
        if K is not None or self.camera_info_timeout <= 0:
            return False
        if self._info_wait_start is None:
            self._info_wait_start = seconds
        if seconds - self._info_wait_start < self.camera_info_timeout:
            return True
        if self.odometry is None:
            text = (f"no camera_info after {self.camera_info_timeout} s: intrinsics from "
                    + ("the model" if self.method == "rap" else "a field-of-view guess"))
            self.diagnostics.warn(text)
            self.get_logger().warn(text)
        self.camera_info_timeout = 0.0  # decided once per run of the node
        return False

    def _process_frame(self, frame):
        """Track one frame; frames that arrive before camera_info (up to camera_info_timeout)
        or before the camera mount (up to mount_timeout) are held, at most queue_size of
        them, and tracked in order once it is known, so none is lost."""
        with self._lock:
            if self._drop_held:
                self._held.clear()
                self._drop_held = False
        waiting = self._waiting_for(frame)
        if waiting:
            if len(self._held) >= self.queue_size:
                self._held.popleft()
                self.diagnostics.count(f"dropped (waiting for {waiting})")
            self._held.append(frame)
            self.diagnostics.count(f"frames held for {waiting}")
            return
        while self._held:
            early = self._held.popleft()
            if early.K is None and frame.K is not None:
                rgb, K = self._undistort(early.rgb, early.recorded_size)
                early = early._replace(rgb=rgb, K=K)
            self._track(early)
        self._track(frame)

    def _waiting_for(self, frame):
        """What ``frame`` must wait for ("camera_info", "the camera mount") or None."""
        if self._waiting_for_camera_info(frame.K, frame.seconds):
            return "camera_info"
        with self._lock:
            camera_frame = self.mount.camera_frame_of(frame.frame_id)
            mount = self.mount.lookup(camera_frame, frame.seconds)
        if mount is None:
            self.diagnostics.warn(f"waiting for {self.base_frame} -> {camera_frame} on "
                                  "/tf_static")
            return "the camera mount"
        return None

    def _track(self, frame):
        seconds, stamp, frame_id, rgb, _, K, arrival = frame
        camera_frame = self.mount.camera_frame_of(frame_id)
        with self._odometry_lock:
            odometry = self._odometry_for(K, rgb.shape[1::-1])
            # a new keyframe's bundle adjustment waits until the pose is out (below)
            result = odometry.push(rgb, seconds, optimise=False)
        self.diagnostics.latency("tracking", result.timing.get("total", 0.0))
        if result.source == "buffered":      # waiting for the model's intrinsics
            self.diagnostics.count("frames buffered for intrinsics")
            self._awaiting_intrinsics.append((seconds, stamp))
            return
        # Frames the core held for the model's K come back with this one: publish each.
        replayed = list(zip(result.earlier, self._awaiting_intrinsics))
        self._awaiting_intrinsics.clear()
        with self._lock:
            T_base_camera = self.mount.lookup(camera_frame, seconds)
            for earlier, (earlier_seconds, earlier_stamp) in replayed:
                self._publish_frame(earlier, earlier_stamp, earlier_seconds, camera_frame,
                                    T_base_camera)
                self._frame_stamps[earlier.index] = earlier_seconds
            self._publish_frame(result, stamp, seconds, camera_frame, T_base_camera)
            self._frame_stamps[result.index] = seconds
        self.diagnostics.latency("arrival to odometry", time.perf_counter() - arrival)
        # A keyframe's bundle adjustment (and the corrected path and map, which read it) runs
        # when no frame waits; while frames wait they are tracked first, and the core runs
        # the BA itself once max_deferred_keyframes keyframes wait for it.
        keyframes = landmarks = None
        with self._odometry_lock:
            if not self._queue:  # a deque's truth is atomic: no need for self._lock
                started = time.perf_counter()
                if odometry.optimise():
                    self.diagnostics.latency("bundle adjustment",
                                             time.perf_counter() - started)
                if odometry.stats["ba_runs"] != self._ba_runs_published:  # here or in push
                    self._ba_runs_published = odometry.stats["ba_runs"]
                    keyframes = odometry.keyframes()
                    landmarks = (odometry.map_points() if self.map_pub is not None
                                 else None)
        with self._lock:
            if keyframes:
                self.output.correct_path(keyframes, T_base_camera)
                self._update_scale(keyframes, keyframes.get(result.index, result.c2w))
            if landmarks is not None and result.health != "lost":
                self.output.map_points(landmarks, stamp, T_base_camera)
        if K is None and odometry.K is not None and (result.earlier or result.index % 30 == 0):
            self.info_pub.publish(cv.K_to_camera_info(odometry.K, rgb.shape[1], rgb.shape[0],
                                                      stamp, camera_frame))

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

    def _update_scale(self, keyframes, c2w):
        """A keyframe: wheel odometry's distance between the window's keyframes may fix the
        scale (re-anchored at the current pose ``c2w``, so the output stays continuous)."""
        window = [(self._frame_stamps[i], T[:3, 3]) for i, T in sorted(keyframes.items())
                  if i in self._frame_stamps]
        scale = self.wheel.estimate(window)
        if scale is not None and abs(scale / self.anchor.scale - 1.0) > 0.01:
            self.anchor.set_scale(scale, c2w)
            self.diagnostics.set_value("scale (m per unit, wheel odometry)", float(scale))

    # -------------------------------------------------------------- model windows

    def _add_to_stream(self, rgb, seconds, stamp):
        """Caller holds the lock."""
        admission = self.windows.stream.add(rgb, seconds, stamp)
        if admission.reset:
            self.get_logger().warn(f"{admission.detail}: resetting the trajectory")
            self._request_reset(admission.reset)
        if not admission.taken:
            self.diagnostics.count(admission.reason)
            return
        self.diagnostics.tick("accepted")
        self.max_buffered = max(self.max_buffered, self.windows.held(self._busy))
        if self.windows.stream.full:
            self._work.notify()

    def _process_windows(self, windows):
        start = time.perf_counter()
        estimates = self.windows.stream.estimate(windows)
        latency = time.perf_counter() - start
        window, estimate = windows[-1], estimates[-1]
        consistency = self.windows.consistency(window, estimate)
        height, width = window.frames.shape[1:3]
        with self._lock:
            fixed = self.windows.stream.chain(windows, estimates)
            if fixed is None:
                self.diagnostics.count("windows discarded (reset)")
                return
            camera_frame = self.mount.camera_frame_of("")
            T_base_camera = self.mount.lookup(camera_frame, float(window.stamps[-1]))
            if T_base_camera is None:
                T_base_camera = self.T_base_camera_parameters
            self.output.windows(fixed, self.mount.child_frame(camera_frame), T_base_camera)
            self.diagnostics.set_value("trajectory frames",
                                       int(self.windows.stream.frames_fixed))
            if window.K is None:
                self.info_pub.publish(cv.K_to_camera_info(estimate.K, width, height,
                                                          fixed.tags[-1], camera_frame))
        self.diagnostics.latency("window", latency)
        self.diagnostics.count("windows")
        if consistency is not None:
            self.diagnostics.set_value("closed-loop consistency (dB)", float(consistency))

    # -------------------------------------------------------------- diagnostics, shutdown

    def _publish_diagnostics(self):
        with self._lock:
            if self.method == "model":
                held = self.windows.held(self._busy)
            else:
                held = len(self._queue) + int(self._busy)
            if self.mount.tf_conflict:
                self.diagnostics.error(self.mount.tf_conflict)
        self.diagnostics.set_value("buffered frames", held)
        self.diagnostics.set_value("max buffered frames", self.max_buffered)
        self.diagnostics.set_value("resident memory (MB)", float(resident_memory_mb()))
        if self.method != "model" and self.odometry is not None:
            for key, value in self.odometry.map_size().items():
                self.diagnostics.set_value(f"map {key}", int(value))
        self.diag_pub.publish(self.diagnostics.to_message(self.get_clock().now().to_msg()))

    def destroy_node(self):
        with self._lock:
            self._stopping = True
            self._work.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=30.0)
        if self.method != "model" and self.odometry is not None:
            self.odometry.close()
        return super().destroy_node()


class BoundedDict(collections.OrderedDict):
    """A dict that forgets its oldest entries beyond ``size`` (memory flat on long runs)."""

    def __init__(self, size):
        super().__init__()
        self.size = int(size)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        while len(self) > self.size:
            self.popitem(last=False)


def main(args=None):
    """Console entry point: `trajectory_estimator --ros-args ...`."""
    return run_nodes([TrajectoryEstimator], args=args)


if __name__ == "__main__":
    sys.exit(main())
