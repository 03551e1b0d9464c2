"""The view_predictor's inputs: the latest of each topic, decoded, under the node's lock.

``PredictorInputs`` keeps the source image of every prediction (stamp in seconds, the stamp
message, (H, W, 3) uint8 rgb) admitted as the trajectory_estimator admits its frames
(``rap_ros.io.camera_frames.CameraFrames``: downscaled to ``max_image_pixels`` on arrival,
then undistorted with camera_info's K and D, or taken with its P when ``rectified``), the
intrinsics of camera_info and of the estimator's estimated_camera_info ((3, 3) K in pixels,
OpenCV camera axes, with the (width, height) they are for; the source's own K when it was
undistorted), the latest odometry (frame_id,
child_frame_id, 4x4 T_frame_child, metres) and the latest map_points (frame_id, stamp
seconds, (N, 3) points in metres, at most ``MAX_MAP_POINTS``). It decodes messages with
``rap_ros.io.messages`` (no rclpy); a message it cannot use goes to ``bad_input(text)`` and is
dropped, the state before it kept.
"""
import numpy as np

from rap_ros.geometry.cameras import K_from_fov, scale_intrinsics
from rap_ros.io import messages
from rap_ros.io.camera_frames import CameraFrames
from rap_ros.io.images import limit_image_size

# Most map_points kept from one cloud (evenly thinned beyond): the estimator sends at most
# its map_points_max (2000 by default); a larger cloud from another source must not make the
# densification (a Delaunay triangulation per preview call) arbitrarily slow.
MAX_MAP_POINTS = 20000


class PredictorInputs:
    """The latest inputs. ``lock``: the node's lock, under which they are replaced and read;
    ``diagnostics``: where thinned clouds and downscaled images are counted; ``logger``:
    warns (once) of a downscaled image; ``bad_input(text)``: reports an unusable message;
    ``fov_deg``: the pinhole camera assumed without intrinsics; ``rectified``: the images are
    rectified (camera_info's P, no undistortion)."""

    def __init__(self, lock, diagnostics, logger, bad_input, *, max_image_pixels, fov_deg,
                 rectified=False):
        self._lock = lock
        self.diagnostics, self.logger, self.bad_input = diagnostics, logger, bad_input
        self.max_image_pixels, self.fov_deg = max_image_pixels, fov_deg
        self.camera = CameraFrames(max_image_pixels=max_image_pixels, rectified=rectified)
        self._source = None  # (seconds, stamp msg, rgb (H, W, 3))
        self._source_K = None  # ((width, height), K) of the source when camera_info gave it
        self._camera_info = None  # (K, (width, height))
        self._estimated_info = None
        self._odometry = None  # (frame_id, child_frame_id, T_frame_child)
        self._map = None  # (frame_id, stamp seconds, points (N, 3) metres)
        self._warned_downscale = False

    def _latest(self, attribute):
        with self._lock:
            return getattr(self, attribute)

    @property
    def source(self):
        """(seconds, stamp msg, rgb) of the latest image, or None."""
        return self._latest("_source")

    @property
    def odometry(self):
        """(frame_id, child_frame_id, T_frame_child) of the latest odometry, or None."""
        return self._latest("_odometry")

    @property
    def map(self):
        """(frame_id, stamp seconds, points (N, 3) metres) of the latest map_points, or None."""
        return self._latest("_map")

    def _decode(self, decode, msg, dropped):
        """decode(msg), or None after reporting "{dropped}: {the ValueError}"."""
        try:
            return decode(msg)
        except ValueError as error:
            self.bad_input(f"{dropped}: {error}")
            return None

    def on_image(self, msg):
        """Take a sensor_msgs/Image as the source of the next predictions."""
        self.diagnostics.tick("input")
        rgb = self._decode(messages.image_to_rgb8, msg, "image dropped")
        if rgb is None:
            return
        frame = self.camera.admit(rgb)  # downscaled, undistorted: as the estimator's frames
        if frame.downscaled:
            self._downscaled("image", frame.recorded_size, frame.rgb)
        source_K = None if frame.K is None else (frame.rgb.shape[1::-1], frame.K)
        seconds = messages.stamp_seconds(msg.header.stamp)
        with self._lock:
            self._source = (seconds, msg.header.stamp, frame.rgb)
            self._source_K = source_K

    def limit_size(self, rgb, what):
        """rgb within ``max_image_pixels`` (downscaled and counted when over it); goal images
        (a target to compare with, not a camera frame to undistort)."""
        height, width = rgb.shape[:2]
        resized, downscaled = limit_image_size(rgb, self.max_image_pixels)
        if downscaled:
            self._downscaled(what, (width, height), resized)
        return resized

    def _downscaled(self, what, size, rgb):
        """Count (and log once) an image of ``size`` (width, height) downscaled to rgb."""
        width, height = size
        self.diagnostics.count("images downscaled")
        self.diagnostics.set_value("last downscaled image",
                                   f"{what} {width}x{height} -> "
                                   f"{rgb.shape[1]}x{rgb.shape[0]}")
        if not self._warned_downscale:
            self._warned_downscale = True
            self.logger.warn(
                f"{what} of {width}x{height} pixels is over max_image_pixels="
                f"{self.max_image_pixels}: downscaled to {rgb.shape[1]}x{rgb.shape[0]} "
                f"(counted on /diagnostics; logged once)")

    def on_camera_info(self, msg):
        """Take the calibration of camera_info (sensor_msgs/CameraInfo): K and D, or P when
        rectified; the next images are undistorted with it."""
        calibration = self._decode(
            lambda msg: messages.camera_info_calibration(msg, self.camera.rectified), msg,
            "camera info ignored")
        if calibration is None:
            return
        with self._lock:
            self.camera.calibrate(*calibration)
            self._camera_info = calibration[:2]

    def on_estimated_info(self, msg):
        """Take the estimator's estimated_camera_info, used only without camera_info."""
        self._store_info(msg, "_estimated_info")

    def _store_info(self, msg, attribute):
        info = self._decode(messages.camera_info_to_K, msg, "camera info ignored")
        if info is None:
            return
        with self._lock:
            setattr(self, attribute, info)

    def on_odometry(self, msg):
        """Take the pose of a nav_msgs/Odometry."""
        T = self._decode(lambda msg: messages.pose_to_matrix(msg.pose.pose), msg,
                         "odometry ignored")
        if T is None:
            return
        with self._lock:
            self._odometry = (msg.header.frame_id, msg.child_frame_id, T)

    def on_map_points(self, msg):
        """Take the points of a sensor_msgs/PointCloud2 (evenly thinned to MAX_MAP_POINTS)."""
        points = self._decode(messages.pointcloud2_to_xyz, msg, "map_points ignored")
        if points is None:
            return
        if len(points) > MAX_MAP_POINTS:  # bounded densification time whatever is sent
            keep = np.linspace(0, len(points) - 1, MAX_MAP_POINTS).round().astype(int)
            points = points[keep]
            self.diagnostics.count("map_points thinned")
        seconds = messages.stamp_seconds(msg.header.stamp)
        with self._lock:
            self._map = (msg.header.frame_id, seconds, points)

    def intrinsics(self, width, height):
        """K (3, 3) for a source image of width x height and where it came from: the latest
        source's own K when camera_info undistorted it (and it is that size), else camera_info's
        (or estimated_camera_info's) K scaled to the size (a source that arrived before
        camera_info stays as recorded)."""
        with self._lock:
            info, source = self._camera_info, "camera_info"
            own = self._source_K
            if info is None:
                info, source = self._estimated_info, "estimated_camera_info"
        if info is not None and source == "camera_info" and own is not None \
                and tuple(own[0]) == (width, height):
            return own[1], source
        if info is None:
            return K_from_fov(self.fov_deg, width, height), "fov_deg"
        K, (info_width, info_height) = info
        if (info_width, info_height) != (width, height):
            K = scale_intrinsics(K, width / info_width, height / info_height)
        return K, source
