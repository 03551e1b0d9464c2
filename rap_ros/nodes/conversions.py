"""numpy arrays of the rap_ros core -> rclpy messages (what the nodes publish).

Pure functions: no node, no executor. Decoding messages (images of every encoding, poses,
transforms, camera info, paths, point clouds) is ``rap_ros.io.messages``, shared with the bag
readers; this module builds the rclpy messages and needs rclpy's message types.

Conventions (as ``rap_ros.io.messages``): images uint8 RGB (H, W, 3) at the core's edges;
poses 4x4 float64 ``T_parent_child``, metres, quaternions (x, y, z, w) with w >= 0; camera
poses in OpenCV optical axes, the ROS ``*_optical_frame`` axes (``rap_ros.geometry.frames``).
"""
import math

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseStamped, TransformStamped
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from rap_ros.geometry.frames import translation_quaternion
from rap_ros.io.messages import IMAGE_ENCODINGS, fill_pointcloud2


def seconds_to_stamp(seconds: float) -> Time:
    """float seconds (>= 0) -> builtin_interfaces/Time, rounded to the nanosecond."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a stamp must be finite and non-negative, got {seconds}")
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def array_to_image(pixels: np.ndarray, encoding: str = "rgb8", stamp=None,
                   frame_id: str = "") -> Image:
    """numpy image -> sensor_msgs/Image (little-endian, rows unpadded).

    pixels: (H, W, C) for colour encodings, (H, W) for one-channel ones (mono8/16, 8UC1,
    16UC1, Bayer), of the encoding's dtype (``IMAGE_ENCODINGS``) and channel order.
    """
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}")
    channels, dtype = IMAGE_ENCODINGS[encoding]
    pixels = np.asarray(pixels)
    if pixels.dtype != dtype:
        raise ValueError(f"{encoding} needs {np.dtype(dtype).name} pixels, got {pixels.dtype}")
    expected_ndim = 2 if channels == 1 else 3
    if pixels.ndim != expected_ndim or (channels > 1 and pixels.shape[2] != channels):
        raise ValueError(f"{encoding} needs shape (H, W{'' if channels == 1 else f', {channels}'}),"
                         f" got {pixels.shape}")
    height, width = pixels.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"zero-sized image ({width}x{height})")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width, msg.encoding = int(height), int(width), encoding
    msg.is_bigendian = 0
    msg.step = int(width * channels * np.dtype(dtype).itemsize)
    msg.data = np.ascontiguousarray(pixels, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    return msg


def rgb8_to_compressed(pixels: np.ndarray, fmt: str = "jpeg", stamp=None,
                       frame_id: str = "") -> CompressedImage:
    """uint8 RGB (H, W, 3) -> sensor_msgs/CompressedImage (``fmt`` "jpeg" or "png")."""
    extension = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt)
    if extension is None:
        raise ValueError(f"unsupported compressed format {fmt!r}")
    ok, encoded = cv2.imencode(extension, np.ascontiguousarray(pixels[..., ::-1]))
    if not ok:
        raise ValueError("OpenCV could not encode the image")
    msg = CompressedImage(format="jpeg" if extension == ".jpg" else "png",
                          data=encoded.tobytes())
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def K_to_camera_info(K: np.ndarray, width: int, height: int, stamp=None,
                     frame_id: str = "") -> CameraInfo:
    """K (3, 3) at width x height -> sensor_msgs/CameraInfo (no distortion, P = [K | 0])."""
    K = np.asarray(K, dtype=np.float64)
    msg = CameraInfo(width=int(width), height=int(height), distortion_model="plumb_bob")
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.d = [0.0] * 5
    msg.k = K.reshape(-1).tolist()
    msg.r = np.eye(3).reshape(-1).tolist()
    msg.p = np.concatenate([K, np.zeros((3, 1))], axis=1).reshape(-1).tolist()
    return msg


def matrix_to_pose(T) -> Pose:
    """4x4 -> geometry_msgs/Pose."""
    t, q = translation_quaternion(T)
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in t)
    o = pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in q)
    return pose


def matrix_to_pose_stamped(T, stamp=None, frame_id: str = "") -> PoseStamped:
    """4x4 -> geometry_msgs/PoseStamped in ``frame_id``."""
    msg = PoseStamped(pose=matrix_to_pose(T))
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def matrix_to_transform(T, stamp=None, parent: str = "", child: str = "") -> TransformStamped:
    """4x4 T_parent_child -> geometry_msgs/TransformStamped parent -> child."""
    t, q = translation_quaternion(T)
    msg = TransformStamped(child_frame_id=child)
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = parent
    tr = msg.transform.translation
    tr.x, tr.y, tr.z = (float(v) for v in t)
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    return msg


def matrix_to_odometry(T, stamp=None, frame_id: str = "", child: str = "") -> Odometry:
    """4x4 T_frame_child -> nav_msgs/Odometry with that pose (covariance and twist zero)."""
    msg = Odometry(child_frame_id=child)
    msg.pose.pose = matrix_to_pose(T)
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def null_odometry(stamp, frame_id: str, child: str, variance: float) -> Odometry:
    """rtabmap's "tracking lost" message: a null pose (zeros, including the quaternion) and
    ``variance`` (its 9999) on the covariances' diagonals, so fusion (robot_localization)
    ignores it."""
    msg = Odometry(child_frame_id=child)
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.pose.pose.orientation.w = 0.0
    msg.pose.covariance = [float(v) for v in (np.eye(6) * variance).ravel()]
    msg.twist.covariance = [float(v) for v in (np.eye(6) * variance).ravel()]
    return msg


def set_twist(odometry: Odometry, linear, angular) -> None:
    """Fill an Odometry's twist (child frame, m/s and rad/s)."""
    twist = odometry.twist.twist
    twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in linear)
    twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in angular)


def poses_to_path(poses, stamps, frame_id: str, header_stamp=None):
    """(N, 4, 4) poses and (N,) seconds -> nav_msgs/Path in ``frame_id``."""
    msg = Path()
    msg.header.frame_id = frame_id
    if header_stamp is not None:
        msg.header.stamp = header_stamp
    msg.poses = [matrix_to_pose_stamped(T, seconds_to_stamp(s), frame_id)
                 for T, s in zip(poses, stamps)]
    return msg


def points_to_pointcloud2(points, stamp=None, frame_id: str = "") -> PointCloud2:
    """(N, 3) points (metres, in ``frame_id``) -> sensor_msgs/PointCloud2: unordered, x, y,
    z float32 (the layout of ``rap_ros.io.messages.fill_pointcloud2``)."""
    msg = PointCloud2()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return fill_pointcloud2(msg, points, PointField)
