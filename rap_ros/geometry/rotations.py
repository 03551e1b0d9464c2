"""Rotations in 3D: matrices, quaternions, rotation vectors, angles.

One implementation: scipy's ``Rotation``. The functions here only adapt it to the arrays the
rest of rap_ros passes around (matrices of any batch shape, (x, y, z, w) quaternions), plus
the two pieces of linear algebra scipy has no name for (``project_to_so3``, ``skew``).
Measured on this machine (2 CPU cores) against the hand-written versions they replace, one
matrix at a time: quaternion from a matrix 36 us (was 91), matrix from a quaternion 16 us
(was 65), angle 18 us (was 18); a thousand matrices: 0.5 ms or less. No caller is near
these costs (a window of the model takes ~100 ms), so nothing keeps a second implementation.

Conventions
-----------
* Rotation matrices are float64 arrays of shape (..., 3, 3); every function is batched over
  the leading dimensions. Inputs are rotations (orthonormal up to rounding): they are not
  re-orthogonalised (``project_to_so3`` does that).
* Quaternions are (x, y, z, w) as in ROS ``geometry_msgs/Quaternion`` and the TUM trajectory
  format; any non-zero norm is accepted; ``quat_from_matrix`` returns the representative
  with w >= 0.
* Angles are in radians, except in names ending ``_deg``. Rotation vectors are axis times
  angle (radians), angle in [0, pi].
"""

import numpy as np
from scipy.spatial.transform import Rotation


def _batched(array, tail):
    """array (..., *tail) -> (flat (n, *tail), leading shape)."""
    array = np.asarray(array, dtype=np.float64)
    lead = array.shape[:array.ndim - len(tail)]
    return array.reshape((-1,) + tail), lead


def _rotations(R):
    flat, lead = _batched(R, (3, 3))
    return Rotation.from_matrix(flat, assume_valid=True), lead


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
    flat, lead = _batched(q, (4,))
    return Rotation.from_quat(flat).as_matrix().reshape(lead + (3, 3))


def quat_from_matrix(R):
    """Quaternion (x, y, z, w) with w >= 0 from a rotation matrix.

    R: (..., 3, 3) -> q: (..., 4), unit norm.
    """
    rotations, lead = _rotations(R)
    return rotations.as_quat(canonical=True).reshape(lead + (4,))


def rotation_vector(R):
    """Rotation vector (axis times angle, radians) of rotations R (..., 3, 3) -> (..., 3).

    Accurate near 0 and near pi (scipy computes it from the unit quaternion).
    """
    rotations, lead = _rotations(R)
    return rotations.as_rotvec().reshape(lead + (3,))


def matrix_from_rotation_vector(v):
    """Rotation matrices (..., 3, 3) from rotation vectors (..., 3) (axis times angle)."""
    flat, lead = _batched(v, (3,))
    return Rotation.from_rotvec(flat).as_matrix().reshape(lead + (3, 3))


def rotation_angle_deg(R):
    """Angle of the rotation R in degrees, in [0, 180].

    R: (..., 3, 3) -> (...). Accurate near 0 and near 180 degrees.
    """
    rotations, lead = _rotations(R)
    return np.degrees(rotations.magnitude()).reshape(lead)


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
    """Rotation by ``angle_rad`` about ``axis`` (right-handed).

    axis: (..., 3), any non-zero norm; angle_rad: (...) -> R: (..., 3, 3).
    """
    axis = np.asarray(axis, dtype=np.float64)
    unit = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.asarray(angle_rad, dtype=np.float64)[..., None]
    return matrix_from_rotation_vector(unit * angle)


def slerp_rotations(R0, R1, weights):
    """Rotations a fraction ``weights`` (n,) of the way from R0[i] to R1[i] (n, 3, 3) along
    the shortest arc (weights 0 give R0, 1 give R1)."""
    R0 = np.asarray(R0, dtype=np.float64)
    relative = rotation_vector(np.swapaxes(R0, -1, -2) @ R1)
    return R0 @ matrix_from_rotation_vector(relative * np.asarray(weights)[:, None])
