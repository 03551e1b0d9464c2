"""Axes conventions of ROS frames: body axes (REP-103) and optical axes (OpenCV).

* Optical frames (``*_optical_frame``, and every camera pose of rap_ros): x right, y down,
  z forward.
* Body frames (``base_link``, ``camera_link``): x forward, y left, z up.

``BODY_FROM_OPTICAL`` relates the two; mounts are written as URDF and tf2 write them: a
translation (m) and fixed-axis roll, pitch, yaw (rad). Poses are 4x4 ``T_parent_child``
float64, batched over leading axes where stated.
"""
import numpy as np
from scipy.spatial.transform import Rotation

from rap_ros.geometry.rotations import project_to_so3, quat_from_matrix

# Rotation taking optical-frame coordinates to body-frame coordinates: its columns are the
# optical x (right), y (down), z (forward) axes written in the body frame (x fwd, y left,
# z up). A static transform body -> optical has this rotation (rpy = (-pi/2, 0, -pi/2)).
BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0],
                              [-1.0, 0.0, 0.0],
                              [0.0, -1.0, 0.0]])
OPTICAL_FROM_BODY = BODY_FROM_OPTICAL.T


def matrix_from_xyz_rpy(xyz, rpy):
    """4x4 from a translation (m) and fixed-axis roll, pitch, yaw (rad), as URDF and
    tf2 write them: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", [float(v) for v in rpy]).as_matrix()
    T[:3, 3] = [float(v) for v in xyz]
    return T


def body_to_optical(T_world_body):
    """Pose of a body-axes frame (x fwd, y left, z up) -> pose of the optical frame
    (x right, y down, z forward) at the same place. Works on (..., 4, 4)."""
    T = np.array(T_world_body, dtype=np.float64)
    T[..., :3, :3] = T[..., :3, :3] @ BODY_FROM_OPTICAL
    return T


def optical_to_body(T_world_optical):
    """Inverse of ``body_to_optical``: optical-frame pose -> body-axes pose. (..., 4, 4)."""
    T = np.array(T_world_optical, dtype=np.float64)
    T[..., :3, :3] = T[..., :3, :3] @ OPTICAL_FROM_BODY
    return T


def translation_quaternion(T):
    """4x4 pose ``T_parent_child`` -> (translation (3,), quaternion (x, y, z, w) with w >= 0),
    the two halves of a ROS Pose or Transform message. The rotation block is projected onto
    SO(3) first (poses chained in float64 drift off it). ValueError for a shape other than
    4x4 or NaN/inf values."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"a pose must be 4x4, got {T.shape}")
    if not np.isfinite(T).all():
        raise ValueError("pose has NaN or inf values")
    return T[:3, 3].copy(), quat_from_matrix(project_to_so3(T[:3, :3]))
