"""What the trajectory_estimator publishes of its trajectory: odometry, /tf, path, map_points.

``TrajectoryOutput`` turns camera poses of the odometry core or of the model's windows
(OpenCV optical axes, odometry units) into messages in odom_frame and metres, through the
node's ``CameraMount`` (``rap_ros.nodes.camera_mount``: the frames, the mount, the scale):

* odometry (nav_msgs/Odometry): the child frame's pose, its covariance rotated into odom and
  scaled to metres, the twist from the previous pose; while tracking is lost a null pose with
  covariance LOST_COVARIANCE (rtabmap's convention);
* odom_frame -> child on /tf (``publish_tf``), unless the child already has another parent;
* path (nav_msgs/Path): the latest ``max_path_length`` poses, published at the first pose,
  after each batch of windows (model; beyond PATH_POSES_PER_PERIOD poses at most every
  ``path_period``) and, with keyframes replaced by their bundle-adjusted values, after
  bundle adjustments at most every ``path_period`` (rap, geometry);
* map_points (sensor_msgs/PointCloud2): the local map, at most ``map_points_max`` landmarks.

It remembers the published run (the path, the previous pose) until ``clear``. Not
thread-safe: the node calls it under its lock.
"""
import collections
import time

import numpy as np
from nav_msgs.msg import Path
from tf2_msgs.msg import TFMessage

from rap_ros.geometry.poses import twist_between
from rap_ros.io import messages
from rap_ros.nodes import conversions as cv
from rap_ros.odometry import LOST_COVARIANCE

PATH_PERIOD_S = 0.5  # the path is republished at most this often, up to:
PATH_POSES_PER_PERIOD = 1000  # poses; a longer path proportionally less often (path_period)


class TrajectoryOutput:
    """The published trajectory (see the module docstring); the node's publishers, a None
    ``map_pub`` when map_points is not published."""

    def __init__(self, mount, diagnostics, *, odom_pub, tf_pub, path_pub, map_pub,
                 publish_tf, max_path_length, map_points_max):
        self.mount = mount
        self.diagnostics = diagnostics
        self.odom_pub, self.tf_pub, self.path_pub, self.map_pub = (odom_pub, tf_pub, path_pub,
                                                                   map_pub)
        self.odom_frame = mount.odom_frame
        self.publish_tf = publish_tf
        self.map_points_max = map_points_max
        self._path = collections.deque(maxlen=max_path_length)  # (frame key, PoseStamped)
        self._previous = None                    # (seconds, T_odom_child) of the last pose
        self._last_path_publish = -float("inf")  # monotonic s of the last path message

    def clear(self, stamp):
        """Forget the published run; an empty map_points, the old map being no longer in
        odom."""
        self._path.clear()
        self._previous = None
        if self.map_pub is not None:
            self.map_pub.publish(cv.points_to_pointcloud2(np.zeros((0, 3)), stamp,
                                                          self.odom_frame))

    def lost(self, stamp, child):
        """The null pose of a frame tracked while lost."""
        self.odom_pub.publish(cv.null_odometry(stamp, self.odom_frame, child, LOST_COVARIANCE))

    def frame(self, key, c2w, covariance, stamp, seconds, child, T_base_camera,
              relative_sigma=0.0):
        """One tracked frame (rap, geometry): ``c2w`` the core's camera pose, ``covariance``
        (6, 6) its covariance (translation, rotation; camera axes, odometry units), ``key``
        its frame index (for ``correct_path``). ``relative_sigma``: the scale's relative
        uncertainty, added on the distance travelled from the odom origin."""
        T = self.mount.child_pose(c2w, T_base_camera)
        R_odom_camera = self.mount.odom_rotation(T_base_camera) @ c2w[:3, :3]
        odometry = cv.matrix_to_odometry(T, stamp, self.odom_frame, child)
        pose_covariance = np.array(messages.covariance_to_ros(
            np.asarray(covariance, dtype=np.float64), rotation=R_odom_camera,
            scale=self.mount.anchor.scale)).reshape(6, 6)
        if relative_sigma:  # the scale's own uncertainty, on the distance so far
            travelled = np.linalg.norm(T[:3, 3] - self.mount.T_odom_start[:3, 3])
            pose_covariance[:3, :3] += np.eye(3) * (relative_sigma * travelled) ** 2
        odometry.pose.covariance = [float(v) for v in pose_covariance.ravel()]
        if self._previous is not None and seconds > self._previous[0]:
            dt = seconds - self._previous[0]
            cv.set_twist(odometry, *twist_between(self._previous[1], T, dt))
            odometry.twist.covariance = [float(v) for v in
                                         (2.0 * pose_covariance / dt ** 2).ravel()]
        self._previous = (seconds, T)
        self.odom_pub.publish(odometry)
        self.diagnostics.tick("output")
        if self.publish_tf and self.mount.tf_allowed(child):
            self.tf_pub.publish(TFMessage(transforms=[cv.matrix_to_transform(
                T, stamp, self.odom_frame, child)]))
        self._path.append((key, cv.matrix_to_pose_stamped(T, stamp, self.odom_frame)))
        if len(self._path) == 1:
            self._publish_path(stamp)

    def path_period(self):
        """Seconds between path messages: PATH_PERIOD_S up to PATH_POSES_PER_PERIOD poses,
        proportionally longer beyond. rclpy converts a path at about 5 ms per 1,000 poses on
        the node's thread (50 ms at 10,000: a frame held up that long at every message) and a
        Python subscriber deserialises it at about 21-25 ms per 1,000
        (benchmarks/results/path_message.md), so a long path is sent as rarely as its size
        makes it cost: about 1 % of a core for the node, 5 % for a Python subscriber."""
        return PATH_PERIOD_S * max(1.0, len(self._path) / PATH_POSES_PER_PERIOD)

    def _path_due(self):
        return time.monotonic() - self._last_path_publish >= self.path_period()

    def windows(self, fixed, child, T_base_camera):
        """Newly chained window poses (model; ``FixedPoses`` tagged with their stamps): their
        odometry, one /tf message and the path."""
        transforms = []
        for i, (seconds, stamp, c2w) in enumerate(zip(fixed.stamps, fixed.tags, fixed.c2w)):
            T = self.mount.child_pose(c2w, T_base_camera)
            odometry = cv.matrix_to_odometry(T, stamp, self.odom_frame, child)
            if fixed.covariance is not None:
                odometry.pose.covariance = messages.covariance_to_ros(
                    fixed.covariance[i], rotation=self.mount.odom_rotation(T_base_camera),
                    scale=self.mount.anchor.scale)
            if self._previous is not None and seconds > self._previous[0]:
                cv.set_twist(odometry, *twist_between(self._previous[1], T,
                                                      seconds - self._previous[0]))
            self._previous = (seconds, T)
            self.odom_pub.publish(odometry)
            transforms.append(cv.matrix_to_transform(T, stamp, self.odom_frame, child))
            self._path.append((None, cv.matrix_to_pose_stamped(T, stamp, self.odom_frame)))
            self.diagnostics.tick("output")
        if self.publish_tf and self.mount.tf_allowed(child):
            self.tf_pub.publish(TFMessage(transforms=transforms))
        if len(self._path) <= PATH_POSES_PER_PERIOD or self._path_due():
            self._publish_path(fixed.tags[-1])  # every batch while the path is short

    def correct_path(self, keyframes, T_base_camera):
        """Replace the path's keyframe poses by their bundle-adjusted values (``keyframes``:
        frame index -> camera pose) and republish it when due (``path_period``). The
        window's keyframes are recent: the
        search walks back from the newest entry only as far as the oldest of them, so the
        cost stays that of the window."""
        oldest = min(keyframes)
        for i in range(len(self._path) - 1, -1, -1):
            key, pose = self._path[i]
            if key is None or key < oldest:
                break
            if key in keyframes:
                corrected = cv.matrix_to_pose_stamped(
                    self.mount.child_pose(keyframes[key], T_base_camera), pose.header.stamp,
                    self.odom_frame)
                self._path[i] = (key, corrected)
        if self._path and self._path_due():
            self._publish_path(self._path[-1][1].header.stamp)

    def map_points(self, landmarks, stamp, T_base_camera):
        """The local map (landmarks (N, 3) in the odometry's world) on map_points, at most
        map_points_max landmarks (evenly thinned)."""
        if len(landmarks) > self.map_points_max:
            keep = np.linspace(0, len(landmarks) - 1, self.map_points_max).round().astype(int)
            landmarks = landmarks[keep]
        self.map_pub.publish(cv.points_to_pointcloud2(
            self.mount.odom_points(landmarks, T_base_camera), stamp, self.odom_frame))
        self.diagnostics.set_value("map points published", int(len(landmarks)))

    def _publish_path(self, stamp):
        self._last_path_publish = time.monotonic()
        path = Path(poses=[pose for _, pose in self._path])
        path.header.frame_id = self.odom_frame
        path.header.stamp = stamp
        self.path_pub.publish(path)
