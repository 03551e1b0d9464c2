"""Pure geometry core: rotations, pinhole cameras, the raxel encoding, pose statistics,
ROS axes conventions and lens undistortion.

numpy float64, batched over leading dimensions; scipy for rotations, OpenCV for
undistortion; no ROS, no torch. Conventions (OpenCV camera axes, camera-to-world poses,
(x, y, z, w) quaternions, integer pixel centres) are stated in ``cameras``, ``rotations``
and ``frames``.
"""

from rap_ros.geometry.cameras import (
    K_from_fov,
    apply_scale,
    camera_centres,
    intrinsics_matrix,
    invert_pose,
    pixel_grid,
    pose_from_rt,
    relative_to_first,
    scale_intrinsics,
)
from rap_ros.geometry.frames import (
    BODY_FROM_OPTICAL,
    OPTICAL_FROM_BODY,
    body_to_optical,
    matrix_from_xyz_rpy,
    optical_to_body,
    translation_quaternion,
)
from rap_ros.geometry.poses import (
    align_sim3,
    apply_sim3,
    mean_pose,
    pose_covariance,
    twist_between,
)
from rap_ros.geometry.raxels import ENCODINGS, DecodedCameras, decode_raxels, encode_raxels
from rap_ros.geometry.rotations import (
    matrix_from_quat,
    matrix_from_rotation_vector,
    project_to_so3,
    quat_from_matrix,
    random_rotation,
    rotation_angle_deg,
    rotation_from_axis_angle,
    rotation_vector,
    skew,
    slerp_rotations,
)

__all__ = [
    "BODY_FROM_OPTICAL",
    "ENCODINGS",
    "DecodedCameras",
    "K_from_fov",
    "OPTICAL_FROM_BODY",
    "align_sim3",
    "apply_scale",
    "apply_sim3",
    "body_to_optical",
    "camera_centres",
    "decode_raxels",
    "encode_raxels",
    "intrinsics_matrix",
    "invert_pose",
    "matrix_from_quat",
    "matrix_from_rotation_vector",
    "matrix_from_xyz_rpy",
    "mean_pose",
    "optical_to_body",
    "pixel_grid",
    "pose_covariance",
    "pose_from_rt",
    "project_to_so3",
    "quat_from_matrix",
    "random_rotation",
    "relative_to_first",
    "rotation_angle_deg",
    "rotation_from_axis_angle",
    "rotation_vector",
    "scale_intrinsics",
    "skew",
    "slerp_rotations",
    "translation_quaternion",
    "twist_between",
]
