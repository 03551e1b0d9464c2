"""Pure geometry core: rotations, pinhole cameras and the raxel encoding.

numpy float64, batched over leading dimensions, no ROS imports. Conventions
(OpenCV camera axes, camera-to-world poses, (x, y, z, w) quaternions, integer
pixel centres) are stated in ``cameras`` and ``rotations``.
"""

from rap_ros.geometry.cameras import (
    apply_scale,
    camera_centres,
    intrinsics_matrix,
    invert_pose,
    pixel_grid,
    pose_from_rt,
    relative_to_first,
    scale_intrinsics,
)
from rap_ros.geometry.raxels import ENCODINGS, DecodedCameras, decode_raxels, encode_raxels
from rap_ros.geometry.rotations import (
    matrix_from_quat,
    project_to_so3,
    quat_from_matrix,
    random_rotation,
    rotation_angle_deg,
    rotation_from_axis_angle,
    skew,
)

__all__ = [
    "ENCODINGS",
    "DecodedCameras",
    "apply_scale",
    "camera_centres",
    "decode_raxels",
    "encode_raxels",
    "intrinsics_matrix",
    "invert_pose",
    "matrix_from_quat",
    "pixel_grid",
    "pose_from_rt",
    "project_to_so3",
    "quat_from_matrix",
    "random_rotation",
    "relative_to_first",
    "rotation_angle_deg",
    "rotation_from_axis_angle",
    "scale_intrinsics",
    "skew",
]
