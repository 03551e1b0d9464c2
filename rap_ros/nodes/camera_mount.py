"""The trajectory_estimator's frames: where the camera sits on the robot, and where its poses
are published.

Frames and units (REP-103, REP-105)
  camera optical frame: OpenCV axes (x right, y down, z forward). The odometry core's and
      the model's camera poses ``T_world_camera`` are in these axes, in odometry units; their
      world is the camera at the first frame.
  base_frame: body axes (x forward, y left, z up). The mount ``T_base_camera`` places the
      camera's optical frame in it: from /tf_static (``mount_source`` "tf": the robot's URDF
      through robot_state_publisher) for the images' header.frame_id, or from the
      camera_mount_xyz/rpy parameters (``mount_source`` "parameters", or when no mount
      arrives within ``mount_timeout`` seconds of frames).
  odom_frame: where base_frame was at the first frame; ``T_odom_start`` (identity, or the pose
      given to ~/reset_to_pose) is that base pose in odom_frame.
  child frame: base_frame, published as odom_frame -> base_frame; without a base_frame the
      camera frame itself, with the parameters mount still turning the odometry's optical
      world into odom's body axes.
  The ``ScaleAnchor`` maps odometry units to metres before any of this; lengths out are
  metres.
"""
import numpy as np

from rap_ros.geometry.cameras import invert_pose
from rap_ros.geometry.transform_tree import frame_name
from rap_ros.nodes import conversions as cv
from rap_ros.nodes.diagnostics import LogThrottle


class CameraMount:
    """The camera mount and the transform of the published poses (see the module docstring).

    ``tf_topics``: the node's ``TfTopics`` (mounts, and who parents which frame);
    ``diagnostics`` and ``logger``: where waits, fallbacks and TF conflicts are reported;
    ``anchor``: the node's ``ScaleAnchor``; ``T_base_camera_parameters``: the mount of the
    camera_mount_xyz/rpy parameters. Not thread-safe: the node calls it under its lock.
    """

    def __init__(self, tf_topics, diagnostics, logger, anchor, T_base_camera_parameters, *,
                 odom_frame, base_frame, camera_frame, mount_source, mount_timeout):
        self.tf_topics = tf_topics
        self.diagnostics = diagnostics
        self.logger = logger
        self.anchor = anchor
        self.T_base_camera_parameters = T_base_camera_parameters
        self.odom_frame = odom_frame
        self.base_frame = base_frame
        self.camera_frame = camera_frame
        self.mount_source = mount_source
        self.mount_timeout = mount_timeout
        self.T_odom_start = np.eye(4)   # base pose at the first frame (reset_to_pose)
        self.tf_conflict = None         # the ERROR while odom -> child is not published
        self._mount = None              # T_base_camera from /tf, once known
        self._wait_start = None         # seconds of the first frame that waited for it
        self._log_throttle = LogThrottle(2.0)

    def camera_frame_of(self, frame_id):
        """The camera frame of an image's header.frame_id (``camera_frame`` overrides it)."""
        return self.camera_frame or frame_name(frame_id or '') or "camera_optical_frame"

    def child_frame(self, camera_frame):
        """The published child: base_frame, or the camera frame without one."""
        return self.base_frame or camera_frame

    def lookup(self, camera_frame, now):
        """T_base_camera (4x4) of ``camera_frame`` at the frame stamped ``now`` (s), or None
        while waiting for it on /tf_static (at most mount_timeout seconds of frames)."""
        if not self.base_frame:  # a virtual base at the camera: odom gets body axes
            return self.T_base_camera_parameters
        if self.base_frame == camera_frame:
            return np.eye(4)
        if self.mount_source == "tf":
            T = self.tf_topics.lookup(self.base_frame, camera_frame)
            if T is not None:
                if self._mount is None:
                    self.logger.info(f"camera mount {self.base_frame} -> {camera_frame} "
                                     f"from {self.tf_topics.backend}")
                    self.diagnostics.set_value("camera mount", f"tf ({camera_frame})")
                self._mount = T
                return T
            if self._mount is not None:
                return self._mount
            if self._wait_start is None:
                self._wait_start = now
            if now - self._wait_start < self.mount_timeout:
                return None
            text = (f"no transform {self.base_frame} -> {camera_frame} on /tf_static after "
                    f"{self.mount_timeout} s: using the camera_mount_xyz/rpy parameters")
            self.diagnostics.warn(text)
            self.diagnostics.set_value("camera mount", "parameters (no tf)")
            if self._log_throttle.should_log(text):
                self.logger.warn(text)
        return self.T_base_camera_parameters

    def tf_allowed(self, child):
        """False (with an ERROR) when ``child`` already has a parent other than odom."""
        parent = self.tf_topics.parent(child)
        if parent is None or parent == self.odom_frame:
            self.tf_conflict = None
            return True
        text = (f"not publishing {self.odom_frame} -> {child} on /tf: {child} already has "
                f"the parent {parent} (set base_frame to the root of the robot's tree)")
        self.tf_conflict = text
        self.diagnostics.error(text)
        if self._log_throttle.should_log(text):
            self.logger.error(text)
        return False

    def static_transform(self, stamp):
        """base_frame -> camera_frame of the mount parameters (for /tf_static)."""
        return cv.matrix_to_transform(self.T_base_camera_parameters, stamp, self.base_frame,
                                      self.camera_frame)

    def odom_rotation(self, T_base_camera):
        """Rotation (3, 3) of the odometry's world (the camera at the start) in odom_frame."""
        return (self.T_odom_start @ T_base_camera)[:3, :3]

    def child_pose(self, T_world_camera, T_base_camera):
        """Odometry camera pose (optical axes, odometry units) -> T_odom_child (metres),
        child = base_frame (or the camera frame without one)."""
        T_odom_camera = self.T_odom_start @ T_base_camera @ self.anchor.apply(T_world_camera)
        if not self.base_frame:
            return T_odom_camera
        return T_odom_camera @ invert_pose(T_base_camera)

    def odom_points(self, points, T_base_camera):
        """Landmarks (N, 3) in the odometry's world (its units) -> odom_frame (metres), by
        the transform of the published poses (``child_pose``): the scale anchor, then
        the odom origin and the mount. The anchor is affine on positions, so four
        positions give it exactly."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        probes = np.tile(np.eye(4), (4, 1, 1))
        probes[1:, :3, 3] = np.eye(3)
        mapped = np.stack([self.anchor.apply(T)[:3, 3] for T in probes])
        linear, offset = (mapped[1:] - mapped[0]).T, mapped[0]
        T_odom_world = self.T_odom_start @ T_base_camera
        world = points @ linear.T + offset
        return world @ T_odom_world[:3, :3].T + T_odom_world[:3, 3]
