"""The one decoder of ROS messages: images, poses, transforms, camera info, paths, stamps,
point clouds (and the encoding of point clouds, into a message given by the caller).

Works on any object with the message's fields (duck typing): rclpy messages from a live
subscription and rosbags messages read from a bag alike, so a stream that evaluates offline
is also accepted by the nodes. Nothing here imports rclpy. Every function that reads a
message validates it and raises ``ValueError`` with a message naming what is wrong, so a
node can log it, count it in its diagnostics and carry on, and the evaluator can report it.
(Building rclpy messages is ``rap_ros.nodes.conversions``; bag messages, ``rap_ros.io.bag``.)

Conventions
-----------
* Images come out uint8 RGB (H, W, 3): BGR is reordered, alpha dropped, grey replicated,
  16-bit values keep their 8 most significant bits, Bayer patterns are demosaiced.
* Poses are 4x4 float64 ``T_parent_child`` (child-frame points to the parent frame; a
  camera-to-world pose is ``T_world_camera``); metres; quaternions (x, y, z, w) as ROS
  writes them, normalised on the way in.
* Stamps are float seconds (``stamp_seconds``).
* Point clouds (sensor_msgs/PointCloud2) come out and go in as (N, 3) float64 x, y, z in the
  message's header.frame_id, in metres (REP-103).
* Covariances: ROS ``PoseWithCovariance.covariance`` / ``TwistWithCovariance.covariance`` are
  row-major 6x6 over (x, y, z, rotation about x, y, z): translation first, then rotation.
"""
import cv2
import numpy as np

from rap_ros.geometry.rotations import matrix_from_quat
from rap_ros.io.images import decoded_to_rgb8

# encoding (lower case) -> (channels, numpy dtype); channel order is the encoding's own.
# 8UC3/8UC4 are taken as BGR(A), OpenCV's order, as cv_bridge does.
IMAGE_ENCODINGS = {
    "rgb8": (3, np.uint8),
    "bgr8": (3, np.uint8),
    "rgba8": (4, np.uint8),
    "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8),
    "mono16": (1, np.uint16),
    "8uc1": (1, np.uint8),
    "8uc3": (3, np.uint8),
    "8uc4": (4, np.uint8),
    "16uc1": (1, np.uint16),
    "bayer_rggb8": (1, np.uint8),
    "bayer_bggr8": (1, np.uint8),
    "bayer_gbrg8": (1, np.uint8),
    "bayer_grbg8": (1, np.uint8),
}
_BAYER = {"bayer_rggb8": cv2.COLOR_BayerRG2RGB, "bayer_bggr8": cv2.COLOR_BayerBG2RGB,
          "bayer_gbrg8": cv2.COLOR_BayerGB2RGB, "bayer_grbg8": cv2.COLOR_BayerGR2RGB}
_BGR = ("bgr8", "bgra8", "8uc3", "8uc4")

# A path longer than this is refused by default (see ``path_to_arrays``).
MAX_PATH_POSES = 10_000


def _rows(data, height, step, row_bytes, what, row_content):
    """The payload of an image or point cloud as (height, row_bytes) uint8 rows, checked:
    ``step`` (bytes from one row to the next) holds a row, the data holds ``height`` of
    them; ValueError naming ``what`` otherwise. Padding at the end of each row is cut off."""
    if step < row_bytes:
        raise ValueError(f"{what} row step {step} is shorter than a row of {row_content} "
                         f"({row_bytes} bytes)")
    data = _bytes(data)
    if data.size < height * step:
        raise ValueError(f"{what} data has {data.size} bytes, fewer than height * step = "
                         f"{height} * {step} = {height * step}")
    return data[:height * step].reshape(height, step)[:, :row_bytes]


def _bytes(data):
    """A message's uint8[] field (bytes, array.array or numpy array) -> flat uint8 array."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        return np.asarray(data, dtype=np.uint8).reshape(-1)


# ------------------------------------------------------------------ time


def stamp_seconds(stamp, fallback_ns=None):
    """builtin_interfaces/Time -> float seconds; a zero stamp falls back to ``fallback_ns``
    (e.g. a bag's receive time, integer nanoseconds) when given."""
    seconds = float(stamp.sec) + 1e-9 * float(stamp.nanosec)
    if seconds == 0.0 and fallback_ns is not None:
        return 1e-9 * fallback_ns
    return seconds


# ------------------------------------------------------------------ images


def image_to_array(msg):
    """sensor_msgs/Image -> array in the message's own encoding and channel order.

    Returns (H, W, C) for colour encodings, (H, W) for one-channel ones (mono, 16UC1, Bayer);
    uint8 or uint16 in native byte order. Honours ``step`` (row padding) and
    ``is_bigendian``. Raises ValueError on an unknown encoding, a zero-sized image, a step
    shorter than a row, or data shorter than height * step.
    """
    encoding = str(msg.encoding).lower()
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}; supported: "
                         f"{', '.join(IMAGE_ENCODINGS)}")
    channels, dtype = IMAGE_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ValueError(f"zero-sized image ({width}x{height})")
    row_bytes = width * channels * np.dtype(dtype).itemsize
    rows = _rows(msg.data, height, step, row_bytes, "image",
                 f"{width} {encoding} pixels")
    order = ">" if getattr(msg, "is_bigendian", 0) else "<"
    pixels = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order))
    pixels = pixels.reshape(height, width, channels).astype(dtype, copy=False)
    return pixels[..., 0] if channels == 1 else pixels


def array_to_rgb8(pixels, encoding):
    """An array in ``encoding`` (see IMAGE_ENCODINGS, as ``image_to_array`` returns it) ->
    uint8 RGB (H, W, 3)."""
    encoding = encoding.lower()
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}")
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if encoding in _BAYER:
        return cv2.cvtColor(np.ascontiguousarray(pixels), _BAYER[encoding])
    if pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=-1)
    if encoding in _BGR:
        return np.ascontiguousarray(pixels[..., 2::-1])
    return np.ascontiguousarray(pixels[..., :3])


def image_to_rgb8(msg):
    """sensor_msgs/Image in any supported encoding -> uint8 RGB (H, W, 3)."""
    return array_to_rgb8(image_to_array(msg), str(msg.encoding))


def compressed_to_rgb8(msg):
    """sensor_msgs/CompressedImage (jpeg, png, ...) -> uint8 RGB (H, W, 3) via OpenCV."""
    data = _bytes(msg.data)
    if data.size == 0:
        raise ValueError("compressed image has no data")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ValueError(f"could not decode compressed image (format {msg.format!r}, "
                         f"{data.size} bytes)")
    return decoded_to_rgb8(image)


def any_image_to_rgb8(msg):
    """sensor_msgs/Image or CompressedImage (told apart by their fields) -> uint8 RGB."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_to_rgb8(msg)
    return image_to_rgb8(msg)


# ------------------------------------------------------------------ cameras


def camera_info_to_K(msg):
    """sensor_msgs/CameraInfo -> (K (3, 3) float64 in pixels, (width, height)).

    Uses ``k`` (the intrinsics of the raw image). Raises ValueError when the image size is
    zero, an entry is NaN/inf, fx/fy is zero or negative (an uncalibrated camera publishes
    all zeros), or the last row is not (0, 0, 1).
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


def camera_info_distortion(msg):
    """sensor_msgs/CameraInfo -> (distortion model name, coefficients d (n,) float64)."""
    return str(msg.distortion_model), np.asarray(msg.d, dtype=np.float64)


def camera_info_calibration(msg, rectified=False):
    """sensor_msgs/CameraInfo -> (K (3, 3), (width, height), distortion model, d).

    rectified=False: the images are raw: K is ``k`` and (model, d) say how to undistort them
    (``geometry.undistort``). rectified=True: the images are already rectified (an
    ``image_rect`` topic): K is the left 3x3 of the projection matrix ``p`` and there is no
    distortion to remove. Raises ValueError as ``camera_info_to_K`` does.
    """
    K, size = camera_info_to_K(msg)
    if not rectified:
        model, d = camera_info_distortion(msg)
        return K, size, model, d
    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    if not np.isfinite(P).all() or P[0, 0] <= 0 or P[1, 1] <= 0:
        raise ValueError("camera info P is not a valid projection matrix (rectified images "
                         "need it); is the camera rectified?")
    return P[:, :3].copy(), size, "", np.zeros(0)


# ------------------------------------------------------------------ poses


def _matrix(rotation_xyzw, translation_xyz):
    q = np.asarray(rotation_xyzw, dtype=np.float64)
    t = np.asarray(translation_xyz, dtype=np.float64)
    if not (np.isfinite(q).all() and np.isfinite(t).all()):
        raise ValueError("pose has NaN or inf values")
    if np.linalg.norm(q) < 1e-6:
        raise ValueError("pose has a zero quaternion")
    T = np.eye(4)
    T[:3, :3] = matrix_from_quat(q)
    T[:3, 3] = t
    return T


def pose_to_matrix(pose):
    """geometry_msgs/Pose -> 4x4 (the quaternion is normalised; NaN/inf/zero: ValueError)."""
    o, p = pose.orientation, pose.position
    return _matrix((o.x, o.y, o.z, o.w), (p.x, p.y, p.z))


def transform_to_matrix(transform):
    """geometry_msgs/Transform or TransformStamped -> 4x4 T_parent_child."""
    transform = getattr(transform, "transform", transform)
    r, t = transform.rotation, transform.translation
    return _matrix((r.x, r.y, r.z, r.w), (t.x, t.y, t.z))


def pose_message_to_matrix(msg):
    """The pose a message carries -> 4x4: Pose, PoseStamped, PoseWithCovariance(Stamped),
    Odometry (its pose, of child_frame_id in header.frame_id), Transform, TransformStamped.
    Raises ValueError for anything else."""
    if hasattr(msg, "transform") or hasattr(msg, "translation"):
        return transform_to_matrix(msg)
    while hasattr(msg, "pose"):  # PoseStamped.pose, Odometry.pose.pose, ...
        msg = msg.pose
    if hasattr(msg, "position") and hasattr(msg, "orientation"):
        return pose_to_matrix(msg)
    raise ValueError(f"{type(msg).__name__} carries no pose")


def path_to_arrays(msg, max_poses=MAX_PATH_POSES):
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
        stamps[i] = stamp_seconds(pose_stamped.header.stamp)
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
    poses[:, :3, :3] = matrix_from_quat(values[:, 3:])
    poses[:, :3, 3] = values[:, :3]
    return stamps, poses


# ------------------------------------------------------------------ covariance


def covariance_to_ros(covariance, order="trans_rot", rotation=None, scale=1.0):
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


def covariance_from_ros(values):
    """The 36-float ROS covariance -> (6, 6) over (x, y, z, rx, ry, rz)."""
    C = np.asarray(values, dtype=np.float64)
    if C.size != 36:
        raise ValueError(f"a ROS covariance has 36 entries, got {C.size}")
    return C.reshape(6, 6)


# ------------------------------------------------------------------ point clouds

# sensor_msgs/PointField datatype -> numpy type
POINT_FIELD_TYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.uint16, 5: np.int32,
                     6: np.uint32, 7: np.float32, 8: np.float64}
POINT_FIELD_FLOAT32 = 7
MAX_CLOUD_POINTS = 10_000_000  # a cloud claiming more points than this is refused


def pointcloud2_to_xyz(msg, max_points=MAX_CLOUD_POINTS):
    """sensor_msgs/PointCloud2 -> (N, 3) float64 x, y, z of its points, in
    ``msg.header.frame_id``; points with a NaN or inf coordinate (no return) are left out.

    Any layout: the x, y, z fields of any numeric datatype at any offsets, extra fields,
    padded points (``point_step``) and rows (``row_step``), organised clouds (height > 1),
    either byte order. Raises ValueError when a field is missing or repeated, a field does
    not fit in a point, the data is shorter than height * row_step, or the cloud has more
    than ``max_points`` points.
    """
    height, width = int(msg.height), int(msg.width)
    count = height * width
    if count == 0:
        return np.zeros((0, 3))
    if count > max_points:
        raise ValueError(f"point cloud has {count} points, more than the limit of {max_points}")
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    order = ">" if getattr(msg, "is_bigendian", False) else "<"
    fields = {}
    for field in msg.fields:
        if field.name in ("x", "y", "z"):
            if field.name in fields:
                raise ValueError(f"point cloud has two '{field.name}' fields")
            if int(field.datatype) not in POINT_FIELD_TYPES:
                raise ValueError(f"point cloud field '{field.name}' has unknown datatype "
                                 f"{field.datatype}")
            dtype = np.dtype(POINT_FIELD_TYPES[int(field.datatype)]).newbyteorder(order)
            if int(field.offset) + dtype.itemsize > point_step:
                raise ValueError(f"point cloud field '{field.name}' (offset {field.offset}) "
                                 f"does not fit in point_step {point_step}")
            fields[field.name] = (int(field.offset), dtype)
    missing = [name for name in ("x", "y", "z") if name not in fields]
    if missing:
        raise ValueError(f"point cloud has no {', '.join(missing)} field(s)")
    rows = _rows(msg.data, height, row_step, width * point_step, "point cloud",
                 f"{width} points of {point_step} bytes")
    points = np.ascontiguousarray(rows).reshape(count, point_step)
    xyz = np.empty((count, 3))
    for column, name in enumerate("xyz"):
        offset, dtype = fields[name]
        xyz[:, column] = np.ascontiguousarray(
            points[:, offset:offset + dtype.itemsize]).view(dtype)[:, 0]
    return xyz[np.isfinite(xyz).all(axis=1)]


def fill_pointcloud2(msg, points, point_field):
    """Write ``points`` (N, 3) into the sensor_msgs/PointCloud2 ``msg`` (header untouched):
    an unordered cloud (height 1) of x, y, z float32, little-endian, 12 bytes a point,
    is_dense (NaN/inf points are left out). ``point_field``: the PointField message class
    (rclpy's, or a bag library's), called with name, offset, datatype, count. Returns msg.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)].astype("<f4")
    msg.height, msg.width = 1, int(len(points))
    msg.fields = [point_field(name=name, offset=4 * i, datatype=POINT_FIELD_FLOAT32, count=1)
                  for i, name in enumerate("xyz")]
    msg.is_bigendian = False
    msg.point_step = 12
    msg.row_step = 12 * int(len(points))
    msg.data = np.ascontiguousarray(points).tobytes()
    msg.is_dense = True
    return msg
