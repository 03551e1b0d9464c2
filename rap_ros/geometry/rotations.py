"""Rotations in 3D: matrices, quaternions, angles.

Conventions
-----------
* Rotation matrices are float64 arrays of shape (..., 3, 3); every function
  is batched over the leading dimensions.
* Quaternions are (x, y, z, w) as in ROS ``geometry_msgs/Quaternion`` and
  the TUM trajectory format. ``quat_from_matrix`` returns the representative
  with w >= 0.
* Angles are in radians, except in names ending ``_deg``.
"""

import numpy as np


def skew(v):
    """Cross-product matrix: ``skew(v) @ x == np.cross(v, x)``.

    v: (..., 3) -> (..., 3, 3).
    """
    v = np.asarray(v, dtype=np.float64)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = np.zeros_like(x)
    rows = [
        np.stack([zero, -z, y], axis=-1),
        np.stack([z, zero, -x], axis=-1),
        np.stack([-y, x, zero], axis=-1),
    ]
    return np.stack(rows, axis=-2)


def matrix_from_quat(q):
    """Rotation matrix from a quaternion (x, y, z, w).

    q: (..., 4), any non-zero norm (it is normalised) -> R: (..., 3, 3).
    """
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def quat_from_matrix(R):
    """Quaternion (x, y, z, w) with w >= 0 from a rotation matrix.

    R: (..., 3, 3) -> q: (..., 4), unit norm.

    Every row of the symmetric matrix 4 q q^T can be read off R; the row with
    the largest diagonal entry is the best conditioned one, so it is the one
    normalised (Shepperd's method, without branches).
    """
    R = np.asarray(R, dtype=np.float64)
    (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = (
        [R[..., i, j] for j in range(3)] for i in range(3))
    trace = r00 + r11 + r22
    outer = np.stack([
        np.stack([1 + 2 * r00 - trace, r01 + r10, r02 + r20, r21 - r12], -1),
        np.stack([r01 + r10, 1 + 2 * r11 - trace, r12 + r21, r02 - r20], -1),
        np.stack([r02 + r20, r12 + r21, 1 + 2 * r22 - trace, r10 - r01], -1),
        np.stack([r21 - r12, r02 - r20, r10 - r01, 1 + trace], -1),
    ], axis=-2)
    best = np.argmax(np.diagonal(outer, axis1=-2, axis2=-1), axis=-1)
    q = np.take_along_axis(outer, best[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., 3:] < 0, -q, q)


def rotation_angle_deg(R):
    """Angle of the rotation R in degrees, in [0, 180].

    R: (..., 3, 3) -> (...). Computed as atan2(sin, cos) from the skew and the
    trace parts of R, which stays accurate near 0 and near 180 degrees where
    arccos of the trace alone loses half the digits.
    """
    R = np.asarray(R, dtype=np.float64)
    axis_sin = np.stack([
        R[..., 2, 1] - R[..., 1, 2],
        R[..., 0, 2] - R[..., 2, 0],
        R[..., 1, 0] - R[..., 0, 1],
    ], axis=-1)
    sin = 0.5 * np.linalg.norm(axis_sin, axis=-1)
    cos = 0.5 * (np.trace(R, axis1=-2, axis2=-1) - 1)
    return np.degrees(np.arctan2(sin, cos))


def project_to_so3(M):
    """Nearest rotation to M in the Frobenius norm (SVD, det fixed to +1).

    M: (..., 3, 3) -> R: (..., 3, 3). With M a cross-covariance
    sum_i a_i b_i^T this is the Kabsch/Procrustes rotation taking b to a.
    """
    U, _, Vt = np.linalg.svd(np.asarray(M, dtype=np.float64))
    sign = np.sign(np.linalg.det(U @ Vt))
    U = U.copy()
    U[..., :, 2] *= sign[..., None]
    return U @ Vt


def random_rotation(rng, n):
    """n rotations drawn uniformly (Haar measure) from SO(3).

    rng: numpy Generator; returns (n, 3, 3). A normalised 4D Gaussian is a
    uniform unit quaternion, hence a uniform rotation.
    """
    return matrix_from_quat(rng.standard_normal((n, 4)))


def rotation_from_axis_angle(axis, angle_rad):
    """Rotation by ``angle_rad`` about ``axis`` (right-handed, Rodrigues).

    axis: (..., 3), any non-zero norm; angle_rad: (...) -> R: (..., 3, 3).
    """
    axis = np.asarray(axis, dtype=np.float64)
    angle = np.asarray(angle_rad, dtype=np.float64)[..., None, None]
    k = skew(axis / np.linalg.norm(axis, axis=-1, keepdims=True))
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
