"""Statistics and maps of camera poses: means, covariances, similarity alignment, twists.

Poses are camera-to-world 4x4 float64 (``geometry.cameras``), batched over leading axes.
Rotations go through ``geometry.rotations`` (scipy). The tangent vector of a pose offset is
(translation, rotation vector) in the world frame, the ROS covariance order.
"""
import numpy as np

from rap_ros.geometry.cameras import pose_from_rt
from rap_ros.geometry.rotations import project_to_so3, rotation_vector


def mean_pose(c2w):
    """Mean of poses c2w (N, ..., 4, 4) over the first axis.

    Translation: arithmetic mean. Rotation: chordal L2 mean (the rotation nearest to
    the mean rotation matrix). Returns (..., 4, 4).
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    return pose_from_rt(project_to_so3(c2w[..., :3, :3].mean(axis=0)), c2w[..., :3, 3].mean(axis=0))


def pose_covariance(c2w, mean=None):
    """Sample covariance of poses c2w (N, T, 4, 4) around ``mean`` (T, 4, 4).

    The tangent vector of sample i at frame j is (C_ij - C_j, log(R_ij R_j^T)): the
    translation offset, then the rotation vector of the world-frame (left) rotation
    offset, both in the world frame. Returns (T, 6, 6); zeros for N = 1.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    n, frames = c2w.shape[:2]
    if mean is None:
        mean = mean_pose(c2w)
    if n < 2:
        return np.zeros((frames, 6, 6))
    d_translation = c2w[..., :3, 3] - mean[None, :, :3, 3]
    d_rotation = rotation_vector(c2w[..., :3, :3] @ np.swapaxes(mean[None, :, :3, :3], -1, -2))
    tangent = np.concatenate([d_translation, d_rotation], axis=-1)  # (N, T, 6)
    return np.einsum("ntj,ntk->tjk", tangent, tangent) / (n - 1)


def apply_sim3(c2w, scale, R, t):
    """Map poses c2w (..., 4, 4) by the similarity x -> scale R x + t.

    Orientations become R R_i and centres scale R C_i + t.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    out = np.array(c2w)
    out[..., :3, :3] = R @ c2w[..., :3, :3]
    out[..., :3, 3] = scale * np.einsum("ij,...j->...i", R, c2w[..., :3, 3]) + t
    return out


def align_sim3(source, target, fallback_scale=1.0, min_spread=1e-6):
    """Similarity (scale, R, t) taking poses ``source`` (N, 4, 4) onto ``target`` (N, 4, 4).

    The rotation comes from the orientations, R = argmin sum_i ||R Rs_i - Rt_i||_F
    (chordal mean of Rt_i Rs_i^T), so it is defined even for one frame or collinear
    centres, where Umeyama's rotation from centres alone is not. Given R, scale and
    translation are the least-squares fit of the centres (Umeyama with R fixed):
    scale = sum <dt_i, R ds_i> / sum |ds_i|^2 over centred centres. When the source
    centres spread less than ``min_spread`` (RMS) or the fit is not positive, the
    scale is ``fallback_scale``.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    R = project_to_so3(np.einsum("nij,nkj->ik", target[:, :3, :3], source[:, :3, :3]))
    cs, ct = source[:, :3, 3], target[:, :3, 3]
    ds, dt = cs - cs.mean(axis=0), ct - ct.mean(axis=0)
    spread = float((ds ** 2).sum())
    scale = fallback_scale
    if spread > len(ds) * min_spread ** 2:
        fitted = float((dt * (ds @ R.T)).sum()) / spread
        if fitted > 0:
            scale = fitted
    t = ct.mean(axis=0) - scale * R @ cs.mean(axis=0)
    return scale, R, t


def twist_between(T_a, T_b, dt):
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
    # The rotation vector of R_rel is in frame a's axes; rotate it into frame b's.
    angular = R_rel.T @ rotation_vector(R_rel) / dt
    return linear, angular
