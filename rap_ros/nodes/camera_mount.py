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
      arrives within ``mount_timeout`` seconds of frames). With ``publish_mount_tf`` the
      parameters mount goes out on /tf_static only once mount_timeout seconds of frames have
      passed with the camera frame still without a parent (never over a URDF's camera).
  odom_frame: where base_frame was at the first frame; ``T_odom_start`` (identity, or the pose
      given to ~/reset_to_pose) is that base pose in odom_frame.
  child frame: base_frame, published as odom_frame -> base_frame; without a base_frame the
      camera frame itself, with the parameters mount still turning the odometry's optical
      world into odom's body axes.
  TF conflicts: the node publishes odom_frame -> child on /tf only while no other node
      publishes an edge into the child (another parent on /tf or /tf_static, or odom_frame ->
      child from someone else, e.g. a diff_drive_controller); ``TfTopics`` tells its own
      transforms coming back from others'. A conflict is latched: the transform is not
      published again for the life of the node (ERROR on /diagnostics every period, logged
      once); restart the node once the other publisher is gone.
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
    camera_mount_xyz/rpy parameters; ``publish_static``: called as ``publish_static()`` to
    put the parameters mount on /tf_static (``publish_mount_tf``), None not to. Not
    thread-safe: the node calls it under its lock.
    """

    def __init__(self, tf_topics, diagnostics, logger, anchor, T_base_camera_parameters, *,
                 odom_frame, base_frame, camera_frame, mount_source, mount_timeout,
                 publish_static=None):
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
        self.tf_conflict = None         # the latest TF conflict's text (latched)
        self._mount = None              # T_base_camera from /tf, once known
        self._wait_start = None         # seconds of the first frame that waited for it
        self._log_throttle = LogThrottle(2.0)
        self.publish_static = publish_static
        self._static_wait_start = None  # seconds of the first frame (publish_mount_tf)
        self._static_published = False  # the parameters mount went out on /tf_static
        self._logged_conflicts = set()  # children whose TF conflict was logged
        self._logged_unwatched = False  # a child that could not be watched was logged

    def camera_frame_of(self, frame_id):
        """The camera frame of an image's header.frame_id (``camera_frame`` overrides it)."""
        return self.camera_frame or frame_name(frame_id or '') or "camera_optical_frame"

    def child_frame(self, camera_frame):
        """The published child: base_frame, or the camera frame without one."""
        return self.base_frame or camera_frame

    def lookup(self, camera_frame, now):
        """T_base_camera (4x4) of ``camera_frame`` at the frame stamped ``now`` (s), or None
        while waiting for it on /tf_static (at most mount_timeout seconds of frames)."""
        if self.publish_static is not None:
            self._offer_static_mount(now)
        if not self.base_frame:  # a virtual base at the camera: odom gets body axes
            return self.T_base_camera_parameters
        if self.base_frame == camera_frame:
            return np.eye(4)
        if self.mount_source == "tf" and not self._static_published:
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

    def _offer_static_mount(self, now):
        """publish_mount_tf: once mount_timeout seconds of frames (from the frame stamped
        ``now``) have passed with the camera frame still without a parent, publish the
        parameters mount on /tf_static, once; a camera frame that gets a parent before (a
        URDF's) is left alone, with a warning."""
        if self._static_wait_start is None:
            self._static_wait_start = now
        parent = self.tf_topics.parent(self.camera_frame)
        if parent is not None:
            text = (f"publish_mount_tf: not publishing {self.base_frame} -> "
                    f"{self.camera_frame} on /tf_static: {self.camera_frame} already has the "
                    f"parent {parent}")
            self.diagnostics.warn(text)
            self.diagnostics.set_value("mount tf", "not published (camera frame has a parent)")
            self.logger.warn(text)
            self.publish_static = None  # decided for the life of the node
            return
        if now - self._static_wait_start < self.mount_timeout:
            return
        self.publish_static()
        self.publish_static = None
        self._static_published = True
        self.diagnostics.set_value("mount tf", f"published on /tf_static ({self.base_frame} -> "
                                   f"{self.camera_frame})")
        self.logger.info(f"no parent of {self.camera_frame} after {self.mount_timeout} s: "
                         f"publishing the parameters mount {self.base_frame} -> "
                         f"{self.camera_frame} on /tf_static")

    def tf_allowed(self, child):
        """False (with an ERROR) when another node publishes an edge into ``child`` (see the
        module docstring: latched), or when ``child`` cannot be watched for such edges
        (``TfTopics.watch``: too many children); the first call for a child declares the
        edge odom_frame -> child this node publishes on /tf."""
        if not self.tf_topics.watch(self.odom_frame, child):
            text = (f"not publishing {self.odom_frame} -> {child} on /tf: too many child "
                    f"frames published to watch {child} for other parents")
            self.diagnostics.error(text)
            if not self._logged_unwatched:
                self._logged_unwatched = True
                self.logger.error(f"{text} (logged once)")
            return False
        return self.check_tf_conflict(child) is None

    def check_tf_conflicts(self):
        """Raise the conflicts over the children published so far (the diagnostics timer:
        a conflict shows even while no frame comes)."""
        for child in self.tf_topics.watched():
            self.check_tf_conflict(child)

    def check_tf_conflict(self, child):
        """The conflict text over ``child``, raised as an ERROR on the diagnostics (logged
        once), or None."""
        conflict = self.tf_topics.conflict(child)
        if conflict is None:
            return None
        if conflict.same_parent:
            text = (f"not publishing {self.odom_frame} -> {child} on /tf: another node also "
                    f"publishes {conflict.parent} -> {child} on {conflict.topic} (set "
                    f"publish_tf false here, or stop the other publisher, then restart)")
        else:
            text = (f"not publishing {self.odom_frame} -> {child} on /tf: {child} already has "
                    f"the parent {conflict.parent} ({conflict.parent} -> {child} on "
                    f"{conflict.topic}; set base_frame to the root of the robot's tree)")
        self.tf_conflict = text
        self.diagnostics.error(text)
        if child not in self._logged_conflicts:
            self._logged_conflicts.add(child)
            self.logger.error(text)
        return text

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
