"""Conversions between ROS 2 messages and the numpy arrays of the rap_ros core.

Pure functions: no node, no executor. Every function that reads a message validates it
and raises ``ValueError`` with a message naming what is wrong, so a node can log the
error, count it in its diagnostics and carry on.

Conventions
-----------
* Images at the core's edges are uint8 RGB (H, W, 3).
* Poses are 4x4 float64 homogeneous matrices ``T_parent_child`` mapping points in the child
  frame to the parent frame (so a camera-to-world pose is ``T_world_camera``); lengths in
  metres, quaternions (x, y, z, w) as ROS writes them.
* Camera frames: the core uses OpenCV optical axes (x right, y down, z forward), which are
  also the ROS ``*_optical_frame`` axes (REP-103). ROS body frames (``base_link``,
  ``camera_link``) have x forward, y left, z up. ``BODY_FROM_OPTICAL`` relates the two.
* Covariances: ROS ``PoseWithCovariance.covariance`` / ``TwistWithCovariance.covariance``
  are row-major 6x6 over (x, y, z, rotation about x, rotation about y, rotation about z),
  i.e. translation first, then rotation; see ``covariance_to_ros``.
"""
import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseStamped, Transform, TransformStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from rap_ros.geometry.rotations import matrix_from_quat, project_to_so3, quat_from_matrix
from rap_ros.io.images import decoded_to_rgb8

# encoding -> (channels, numpy dtype); channel order is the encoding's own.
IMAGE_ENCODINGS = {
    "rgb8": (3, np.uint8),
    "bgr8": (3, np.uint8),
    "rgba8": (4, np.uint8),
    "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8),
    "mono16": (1, np.uint16),
}

# Rotation taking optical-frame coordinates to body-frame coordinates: its columns are the
# optical x (right), y (down), z (forward) axes written in the body frame (x fwd, y left,
# z up). A static transform body -> optical has this rotation (rpy = (-pi/2, 0, -pi/2)).
BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0],
                              [-1.0, 0.0, 0.0],
                              [0.0, -1.0, 0.0]])
OPTICAL_FROM_BODY = BODY_FROM_OPTICAL.T

# A path longer than this is refused by default (see ``path_to_arrays``).
MAX_PATH_POSES = 10_000


# ------------------------------------------------------------------ time


def stamp_to_seconds(stamp) -> float:
    """builtin_interfaces/Time -> float seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def seconds_to_stamp(seconds: float) -> Time:
    """float seconds (>= 0) -> builtin_interfaces/Time, rounded to the nanosecond."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a stamp must be finite and non-negative, got {seconds}")
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


# ------------------------------------------------------------------ images


def image_to_array(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> array in the message's own encoding and channel order.

    Returns (H, W, C) for colour encodings, (H, W) for mono8/mono16; uint8 or uint16 in
    native byte order. Honours ``step`` (row padding) and ``is_bigendian``.
    Raises ValueError on an unknown encoding, a zero-sized image, a step shorter than a
    row, or data shorter than height * step.
    """
    encoding = msg.encoding.lower()
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}; supported: "
                         f"{', '.join(IMAGE_ENCODINGS)}")
    channels, dtype = IMAGE_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ValueError(f"zero-sized image ({width}x{height})")
    item = np.dtype(dtype).itemsize
    row_bytes = width * channels * item
    if step < row_bytes:
        raise ValueError(f"step {step} is shorter than a row of {width} {encoding} pixels "
                         f"({row_bytes} bytes)")
    data = msg.data
    size = len(data)
    if size < height * step:
        raise ValueError(f"image data has {size} bytes, fewer than height * step = "
                         f"{height} * {step} = {height * step}")
    buffer = np.frombuffer(data, dtype=np.uint8, count=height * step)
    rows = buffer.reshape(height, step)[:, :row_bytes]
    order = ">" if msg.is_bigendian else "<"
    pixels = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order))
    pixels = pixels.reshape(height, width, channels).astype(dtype, copy=False)
    return pixels[..., 0] if channels == 1 else pixels


def image_to_rgb8(msg: Image) -> np.ndarray:
    """sensor_msgs/Image in any supported encoding -> uint8 RGB (H, W, 3).

    BGR is reordered, alpha dropped, mono replicated to three channels; mono16 keeps its
    8 most significant bits.
    """
    pixels = image_to_array(msg)
    return array_to_rgb8(pixels, msg.encoding.lower())


def array_to_rgb8(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """An array in ``encoding`` (see IMAGE_ENCODINGS) -> uint8 RGB (H, W, 3)."""
    if encoding == "mono16":
        pixels = (pixels >> 8).astype(np.uint8)
        encoding = "mono8"
    if encoding == "mono8":
        return np.repeat(pixels[..., None], 3, axis=-1)
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(pixels[..., 2::-1])
    if encoding in ("rgb8", "rgba8"):
        return np.ascontiguousarray(pixels[..., :3])
    raise ValueError(f"unsupported image encoding {encoding!r}")


def array_to_image(pixels: np.ndarray, encoding: str = "rgb8", stamp=None,
                   frame_id: str = "") -> Image:
    """numpy image -> sensor_msgs/Image (little-endian, rows unpadded).

    pixels: (H, W, C) uint8 for rgb8/bgr8/rgba8/bgra8, (H, W) uint8 for mono8, (H, W) uint16
    for mono16, already in ``encoding``'s channel order.
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


def compressed_to_rgb8(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png, ...) -> uint8 RGB (H, W, 3) via OpenCV."""
    import cv2

    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size == 0:
        raise ValueError("compressed image has no data")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ValueError(f"could not decode compressed image (format {msg.format!r}, "
                         f"{data.size} bytes)")
    return decoded_to_rgb8(image)


def rgb8_to_compressed(pixels: np.ndarray, fmt: str = "jpeg", stamp=None,
                       frame_id: str = "") -> CompressedImage:
    """uint8 RGB (H, W, 3) -> sensor_msgs/CompressedImage (``fmt`` "jpeg" or "png")."""
    import cv2

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


def resize_rgb8(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area/linear resize of uint8 RGB to (height, width, 3)."""
    import cv2

    if pixels.shape[:2] == (height, width):
        return pixels
    shrinking = height < pixels.shape[0] and width < pixels.shape[1]
    return cv2.resize(pixels, (width, height),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


# ------------------------------------------------------------------ cameras


def camera_info_to_K(msg: CameraInfo):
    """sensor_msgs/CameraInfo -> (K (3, 3) float64 in pixels, (width, height)).

    Uses ``k`` (the intrinsics of the raw image). Raises ValueError when the image size is
    zero, an entry is NaN/inf, or fx/fy is zero or negative (an uncalibrated camera
    publishes all zeros).
    """
    width, height = int(msg.width), int(msg.height)
    if width == 0 or height == 0:
        raise ValueError(f"camera info has a zero image size ({width}x{height})")
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(K).all():
        raise ValueError("camera info K has NaN or inf entries")
    fx, fy = K[0, 0], K[1, 1]
    if fx <= 0 or fy <= 0:
        raise ValueError(f"camera info has a non-positive focal length (fx={fx}, fy={fy}); "
                         "is the camera calibrated?")
    if abs(K[2, 2] - 1.0) > 1e-6 or abs(K[2, 0]) > 1e-9 or abs(K[2, 1]) > 1e-9:
        raise ValueError(f"camera info K has last row {K[2].tolist()}, expected [0, 0, 1]")
    return K, (width, height)


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


def K_from_fov(fov_deg: float, width: int, height: int) -> np.ndarray:
    """Pinhole K with horizontal field of view ``fov_deg``, square pixels, centred principal
    point ((W-1)/2, (H-1)/2)."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    fx = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return np.array([[fx, 0.0, (width - 1) / 2], [0.0, fx, (height - 1) / 2], [0.0, 0.0, 1.0]])


# ------------------------------------------------------------------ poses


def _matrix(rotation_xyzw, translation_xyz) -> np.ndarray:
    q = np.asarray(rotation_xyzw, dtype=np.float64)
    t = np.asarray(translation_xyz, dtype=np.float64)
    if not (np.isfinite(q).all() and np.isfinite(t).all()):
        raise ValueError("pose has NaN or inf values")
    norm = np.linalg.norm(q)
    if norm < 1e-6:
        raise ValueError("pose has a zero quaternion")
    T = np.eye(4)
    T[:3, :3] = matrix_from_quat(q / norm)
    T[:3, 3] = t
    return T


def _check_matrix(T) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"a pose must be 4x4, got {T.shape}")
    if not np.isfinite(T).all():
        raise ValueError("pose has NaN or inf values")
    return T


def _quaternion(R) -> np.ndarray:
    return quat_from_matrix(project_to_so3(R))


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4 (the quaternion is normalised; NaN/inf/zero: ValueError)."""
    o, p = pose.orientation, pose.position
    return _matrix((o.x, o.y, o.z, o.w), (p.x, p.y, p.z))


def matrix_to_pose(T) -> Pose:
    """4x4 -> geometry_msgs/Pose."""
    T = _check_matrix(T)
    q = _quaternion(T[:3, :3])
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in T[:3, 3])
    o = pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in q)
    return pose


def pose_stamped_to_matrix(msg: PoseStamped) -> np.ndarray:
    """geometry_msgs/PoseStamped -> 4x4 (the pose of the child in header.frame_id)."""
    return pose_to_matrix(msg.pose)


def matrix_to_pose_stamped(T, stamp=None, frame_id: str = "") -> PoseStamped:
    """4x4 -> geometry_msgs/PoseStamped in ``frame_id``."""
    msg = PoseStamped(pose=matrix_to_pose(T))
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def transform_to_matrix(transform) -> np.ndarray:
    """geometry_msgs/Transform or TransformStamped -> 4x4 T_parent_child."""
    if isinstance(transform, TransformStamped):
        transform = transform.transform
    r, t = transform.rotation, transform.translation
    return _matrix((r.x, r.y, r.z, r.w), (t.x, t.y, t.z))


def matrix_to_transform(T, stamp=None, parent: str = "", child: str = "") -> TransformStamped:
    """4x4 T_parent_child -> geometry_msgs/TransformStamped parent -> child."""
    T = _check_matrix(T)
    q = _quaternion(T[:3, :3])
    msg = TransformStamped(child_frame_id=child)
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = parent
    tr = msg.transform.translation
    tr.x, tr.y, tr.z = (float(v) for v in T[:3, 3])
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    return msg


def matrix_from_xyz_rpy(xyz, rpy) -> np.ndarray:
    """4x4 from a translation (m) and fixed-axis roll, pitch, yaw (rad), as URDF and
    tf2 write them: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    x, y, z = (float(v) for v in xyz)
    roll, pitch, yaw = (float(v) for v in rpy)
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = (np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
                 @ np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
                 @ np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]]))
    T[:3, 3] = (x, y, z)
    return T


def body_to_optical(T_world_body) -> np.ndarray:
    """Pose of a body-axes frame (x fwd, y left, z up) -> pose of the optical frame
    (x right, y down, z forward) at the same place. Works on (..., 4, 4)."""
    T = np.array(T_world_body, dtype=np.float64)
    T[..., :3, :3] = T[..., :3, :3] @ BODY_FROM_OPTICAL
    return T


def optical_to_body(T_world_optical) -> np.ndarray:
    """Inverse of ``body_to_optical``: optical-frame pose -> body-axes pose. (..., 4, 4)."""
    T = np.array(T_world_optical, dtype=np.float64)
    T[..., :3, :3] = T[..., :3, :3] @ OPTICAL_FROM_BODY
    return T


# ------------------------------------------------------------------ paths


def path_to_arrays(msg, max_poses: int = MAX_PATH_POSES):
    """nav_msgs/Path -> (stamps (N,) float64 seconds, poses (N, 4, 4) float64).

    poses[i] is the pose of ``msg.poses[i]`` in ``msg.header.frame_id`` (each PoseStamped's
    own frame_id must be empty or the same). Stamps are the poses' header stamps; a path
    whose poses are all unstamped (zero) gets all-zero stamps, which callers treat as
    "no timing".

    Raises ValueError for an empty path, more than ``max_poses`` poses, NaN/inf or
    zero-quaternion poses, poses in another frame, or stamps that go backwards.
    """
    count = len(msg.poses)
    if count == 0:
        raise ValueError("path is empty")
    if count > max_poses:
        raise ValueError(f"path has {count} poses, more than the limit of {max_poses}")
    frame = msg.header.frame_id
    stamps = np.empty(count)
    values = np.empty((count, 7))
    for i, pose_stamped in enumerate(msg.poses):
        own = pose_stamped.header.frame_id
        if own and frame and own != frame:
            raise ValueError(f"path pose {i} is in frame {own!r}, the path in {frame!r}")
        stamps[i] = stamp_to_seconds(pose_stamped.header.stamp)
        p, o = pose_stamped.pose.position, pose_stamped.pose.orientation
        values[i] = (p.x, p.y, p.z, o.x, o.y, o.z, o.w)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        raise ValueError(f"path has NaN or inf in {len(bad)} poses (first: pose {bad[0]})")
    norms = np.linalg.norm(values[:, 3:], axis=1)
    if (norms < 1e-6).any():
        raise ValueError(f"path pose {int(np.argmax(norms < 1e-6))} has a zero quaternion")
    backwards = np.flatnonzero(np.diff(stamps) < 0)
    if len(backwards):
        i = int(backwards[0])
        raise ValueError(f"path stamps go backwards at pose {i + 1} "
                         f"({stamps[i + 1]:.3f} s after {stamps[i]:.3f} s)")
    poses = np.tile(np.eye(4), (count, 1, 1))
    poses[:, :3, :3] = matrix_from_quat(values[:, 3:] / norms[:, None])
    poses[:, :3, 3] = values[:, :3]
    return stamps, poses


def poses_to_path(poses, stamps, frame_id: str, header_stamp=None):
    """(N, 4, 4) poses and (N,) seconds -> nav_msgs/Path in ``frame_id``."""
    from nav_msgs.msg import Path

    msg = Path()
    msg.header.frame_id = frame_id
    if header_stamp is not None:
        msg.header.stamp = header_stamp
    msg.poses = [matrix_to_pose_stamped(T, seconds_to_stamp(s), frame_id)
                 for T, s in zip(poses, stamps)]
    return msg


# ------------------------------------------------------------------ covariance


def covariance_to_ros(covariance, order: str = "trans_rot", rotation=None,
                      scale: float = 1.0) -> list:
    """6x6 pose/twist covariance -> the 36-float row-major list ROS expects.

    covariance: (6, 6) over a translation vector and a small rotation vector (rad).
    order: "trans_rot" if the input is (x, y, z, rx, ry, rz) like ROS, "rot_trans" if the
        rotation block comes first (the usual se(3) tangent order); ROS always wants
        translation first.
    rotation: optional (3, 3) rotation taking the covariance's frame to the message's frame
        (e.g. camera optical -> odom); applied as J C J^T with J = diag(scale R, R).
    scale: factor on lengths (e.g. metres per model unit): translation variances are
        multiplied by scale**2, translation-rotation covariances by scale.
    The result is symmetrised; NaN/inf raise ValueError.
    """
    C = np.asarray(covariance, dtype=np.float64)
    if C.shape != (6, 6):
        raise ValueError(f"covariance must be 6x6, got {C.shape}")
    if not np.isfinite(C).all():
        raise ValueError("covariance has NaN or inf entries")
    if order == "rot_trans":
        permutation = [3, 4, 5, 0, 1, 2]
        C = C[np.ix_(permutation, permutation)]
    elif order != "trans_rot":
        raise ValueError(f"order must be 'trans_rot' or 'rot_trans', got {order!r}")
    R = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    J = np.zeros((6, 6))
    J[:3, :3], J[3:, 3:] = float(scale) * R, R
    C = J @ C @ J.T
    C = 0.5 * (C + C.T)
    return [float(v) for v in C.reshape(-1)]


def covariance_from_ros(values) -> np.ndarray:
    """The 36-float ROS covariance -> (6, 6) over (x, y, z, rx, ry, rz)."""
    C = np.asarray(values, dtype=np.float64)
    if C.size != 36:
        raise ValueError(f"a ROS covariance has 36 entries, got {C.size}")
    return C.reshape(6, 6)


# ------------------------------------------------------------------ motion


def twist_between(T_a, T_b, dt: float):
    """Body-frame twist that moves pose T_a (4x4, parent <- body) to T_b in dt seconds.

    Returns (linear (3,) m/s, angular (3,) rad/s) expressed in the body frame at T_b, as
    nav_msgs/Odometry's twist (child frame) wants them. dt <= 0 gives zeros.
    """
    if not dt > 0:
        return np.zeros(3), np.zeros(3)
    T_a, T_b = np.asarray(T_a, dtype=np.float64), np.asarray(T_b, dtype=np.float64)
    R_b = T_b[:3, :3]
    linear = R_b.T @ (T_b[:3, 3] - T_a[:3, 3]) / dt
    R_rel = T_a[:3, :3].T @ R_b
    angle = math.acos(max(-1.0, min(1.0, (np.trace(R_rel) - 1) / 2)))
    if angle < 1e-9:
        axis_angle = np.zeros(3)
    else:
        w = np.array([R_rel[2, 1] - R_rel[1, 2], R_rel[0, 2] - R_rel[2, 0],
                      R_rel[1, 0] - R_rel[0, 1]])
        sin = math.sin(angle)
        if sin < 1e-6:  # near pi: take the axis from the symmetric part
            axis = np.sqrt(np.maximum((np.diag(R_rel) + 1) / 2, 0))
            axis_angle = angle * axis
        else:
            axis_angle = angle * w / (2 * sin)
    # axis_angle is in frame a's axes == frame b's axes up to R_rel; rotate into b.
    angular = R_rel.T @ axis_angle / dt
    return linear, angular
