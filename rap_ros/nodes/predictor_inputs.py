"""The view_predictor's inputs: the latest of each topic, decoded, under the node's lock.

``PredictorInputs`` keeps the source image of every prediction, admitted as the
trajectory_estimator admits its frames (``rap_ros.io.camera_frames.CameraFrames``: downscaled
to ``max_image_pixels`` on arrival, then undistorted with camera_info's K and D, or taken with
its P when ``rectified``). Images come at the camera's rate and only the latest is used when a
request comes: the undistortion is done when the source is read (``source``), once per image
and calibration, and gives the image and its own K together (a ``Source``). It keeps too the
intrinsics of camera_info and of the estimator's estimated_camera_info ((3, 3) K in pixels,
OpenCV camera axes, with the (width, height) they are for), the latest odometry (frame_id,
child_frame_id, 4x4 T_frame_child, metres) and the latest map_points (frame_id, stamp
seconds, (N, 3) points in metres, at most ``MAX_MAP_POINTS``). It decodes messages with
``rap_ros.io.messages`` (no rclpy); a message it cannot use goes to ``bad_input(text)`` and is
dropped, the state before it kept.
"""
from typing import NamedTuple

import numpy as np

from rap_ros.geometry.cameras import K_from_fov, scale_intrinsics
from rap_ros.io import messages
from rap_ros.io.camera_frames import CameraFrames
from rap_ros.io.images import limit_image_size

# Most map_points kept from one cloud (evenly thinned beyond): the estimator sends at most
# its map_points_max (2000 by default); a larger cloud from another source must not make the
# densification (a Delaunay triangulation per preview call) arbitrarily slow.
MAX_MAP_POINTS = 20000


class Source(NamedTuple):
    """The source image of the predictions: stamp ``seconds``, the ``stamp`` message, ``rgb``
    (H, W, 3) uint8 as admitted (downscaled, undistorted) and ``K``, its own (3, 3)
    intrinsics when camera_info undistorted it (or gave its P), else None."""

    seconds: float
    stamp: object
    rgb: np.ndarray
    K: np.ndarray


class _Received(NamedTuple):
    """An image as received: stamp, downscaled rgb, its recorded (width, height)."""

    seconds: float
    stamp: object
    rgb: np.ndarray
    recorded_size: tuple


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
        self.fov_deg = fov_deg
        self.camera = CameraFrames(max_image_pixels=max_image_pixels, rectified=rectified)
        self._received = None  # _Received: the latest image, not undistorted yet
        self._source = None  # (_Received, calibration, Source): its undistortion, once made
        self._camera_info = None  # (K, (width, height))
        self._estimated_info = None
        self._odometry = None  # (frame_id, child_frame_id, T_frame_child)
        self._map = None  # (frame_id, stamp seconds, points (N, 3) metres)
        self._warned_downscale = False

    def _latest(self, attribute):
        with self._lock:
            return getattr(self, attribute)

    @property
    def has_source(self):
        """Whether an image was received (without undistorting it)."""
        return self._latest("_received") is not None

    @property
    def source(self):
        """The ``Source`` of the latest image (undistorted now with the calibration in use,
        the first time it is read with it), or None."""
        with self._lock:
            received, cached = self._received, self._source
        if received is None:
            return None
        calibration = self.camera.calibration
        if cached is not None and cached[0] is received and cached[1] is calibration:
            return cached[2]
        rgb, K = self.camera.undistort(received.rgb, received.recorded_size)
        source = Source(received.seconds, received.stamp, rgb, K)
        with self._lock:
            if self._received is received:  # not replaced meanwhile: keep it for the next
                self._source = (received, calibration, source)
        return source

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
        """Take a sensor_msgs/Image as the source of the next predictions: downscaled now,
        undistorted when read (``source``)."""
        self.diagnostics.tick("input")
        rgb = self._decode(messages.image_to_rgb8, msg, "image dropped")
        if rgb is None:
            return
        received = _Received(messages.stamp_seconds(msg.header.stamp), msg.header.stamp,
                             self.limit_size(rgb, "image"), (rgb.shape[1], rgb.shape[0]))
        with self._lock:
            self._received = received

    def limit_size(self, rgb, what):
        """rgb within ``max_image_pixels`` (downscaled and counted when over it): images
        before their undistortion, goal images (a target to compare with, not a camera
        frame to undistort)."""
        height, width = rgb.shape[:2]
        resized, downscaled = limit_image_size(rgb, self.camera.max_image_pixels)
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
                f"{self.camera.max_image_pixels}: downscaled to {rgb.shape[1]}x{rgb.shape[0]} "
                f"(counted on /diagnostics; logged once)")

    def on_camera_info(self, msg):
        """Take the calibration of camera_info (sensor_msgs/CameraInfo): K and D, or P when
        rectified; the images read from now on are undistorted with it."""
        with self._lock:
            try:
                self.camera.calibrate_from_info(msg)
            except ValueError as error:
                error_text = str(error)
            else:
                calibration = self.camera.calibration
                self._camera_info = (calibration.K, calibration.size)
                return
        self.bad_input(f"camera info ignored: {error_text}")

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

    def intrinsics(self, width, height, own_K=None):
        """K (3, 3) for a source image of width x height and where it came from: ``own_K``,
        the source's own K (``Source.K``: camera_info undistorted it), when given, else
        camera_info's (or estimated_camera_info's) K scaled to the size, else a pinhole camera
        of ``fov_deg``."""
        if own_K is not None:
            return own_K, "camera_info"
        with self._lock:
            info, source = self._camera_info, "camera_info"
            if info is None:
                info, source = self._estimated_info, "estimated_camera_info"
        if info is None:
            return K_from_fov(self.fov_deg, width, height), "fov_deg"
        K, (info_width, info_height) = info
        if (info_width, info_height) != (width, height):
            K = scale_intrinsics(K, width / info_width, height / info_height)
        return K, source
