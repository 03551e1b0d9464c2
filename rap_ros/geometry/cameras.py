"""Pinhole cameras: intrinsics, pixel grids and camera-to-world poses.

Conventions
-----------
* Camera axes are OpenCV's: x right, y down, z forward.
* A pose is camera-to-world (``c2w``): a 4x4 matrix mapping camera-frame
  points to world-frame points, [R | C] with R the camera's orientation in
  the world and C its centre. Batches have shape (N, 4, 4).
* Intrinsics K are (3, 3) or (N, 3, 3), zero skew,
  K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels.
* Pixel centres sit at integer coordinates: pixel (u, v) is column u, row v,
  the image spans [-0.5, W - 0.5] x [-0.5, H - 0.5], and a centred principal
  point is cx = (W - 1) / 2, cy = (H - 1) / 2.
* Lengths are in metres (or the scene's unit), all arrays float64.
"""

import numpy as np


def intrinsics_matrix(fx, fy, cx, cy):
    """K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels.

    Scalars give (3, 3); arrays broadcast to (..., 3, 3).
    """
    fx, fy, cx, cy = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64)
                                           for a in (fx, fy, cx, cy)))
    K = np.zeros(fx.shape + (3, 3))
    K[..., 0, 0], K[..., 0, 2] = fx, cx
    K[..., 1, 1], K[..., 1, 2] = fy, cy
    K[..., 2, 2] = 1.0
    return K


def scale_intrinsics(K, sx, sy):
    """Intrinsics of the image resized by factors sx (width) and sy (height).

    K: (..., 3, 3). Resizing maps the pixel edge -0.5 to -0.5, so a point at
    column u moves to sx * (u + 0.5) - 0.5: focal lengths scale by sx, sy and
    the principal point by the same affine map.
    """
    K = np.array(K, dtype=np.float64)
    K[..., 0, :] *= sx
    K[..., 1, :] *= sy
    K[..., 0, 2] += 0.5 * (sx - 1)
    K[..., 1, 2] += 0.5 * (sy - 1)
    return K


def pixel_grid(height, width, stride=1):
    """Pixel-centre coordinates (u, v) of every ``stride``-th row and column.

    Returns (h, w, 2) float64 with h = ceil(height / stride) and
    w = ceil(width / stride); entry [i, j] = (stride * j, stride * i), which
    matches ``image[::stride, ::stride]``.
    """
    u = np.arange(0, width, stride, dtype=np.float64)
    v = np.arange(0, height, stride, dtype=np.float64)
    return np.stack(np.meshgrid(u, v, indexing="xy"), axis=-1)


def pose_from_rt(R, t):
    """4x4 pose [R | t] from R (..., 3, 3) and t (..., 3) -> (..., 4, 4)."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    shape = np.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    pose = np.zeros(shape + (4, 4))
    pose[..., :3, :3] = R
    pose[..., :3, 3] = t
    pose[..., 3, 3] = 1.0
    return pose


def invert_pose(c2w):
    """Inverse of rigid poses (e.g. camera-to-world -> world-to-camera).

    c2w: (..., 4, 4) with an orthonormal rotation block -> (..., 4, 4).
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    R_inv = np.swapaxes(c2w[..., :3, :3], -1, -2)
    # matmul, not einsum: bit for bit the inverse the odometry core always used (its RANSAC
    # paths change with the last bit of a pose)
    return pose_from_rt(R_inv, -(R_inv @ c2w[..., :3, 3, None])[..., 0])


def camera_centres(c2w):
    """World-frame camera centres, (..., 4, 4) -> (..., 3)."""
    return np.asarray(c2w, dtype=np.float64)[..., :3, 3]


def apply_scale(c2w, s):
    """Poses with translations multiplied by s (rotations unchanged).

    c2w: (..., 4, 4); s: scalar or broadcastable to (...).
    """
    scaled = np.array(c2w, dtype=np.float64)
    scaled[..., :3, 3] *= np.asarray(s, dtype=np.float64)[..., None]
    return scaled


def relative_to_first(c2w, eps=1e-6):
    """Express a trajectory in its first camera's frame at unit mean distance.

    c2w: (N, 4, 4) camera-to-world. Returns ``(rel_c2w, scale)``:

    * ``rel_c2w[i] = inv(c2w[0]) @ c2w[i]`` with its translation divided by
      ``scale``, so ``rel_c2w[0]`` is the identity and the world frame is
      camera 0's frame (x right, y down, z forward).
    * ``scale = mean_{i=1..N-1} ||C_i - C_0||``, the mean distance of the
      camera centres from the first centre, in world units. It is set to 1
      when it is below ``eps`` (a static camera, or N = 1), so a static
      trajectory is returned unscaled.

    The original poses are ``c2w[0] @ apply_scale(rel_c2w, scale)``.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    rel = invert_pose(c2w[0]) @ c2w
    centres = camera_centres(c2w)
    distances = np.linalg.norm(centres[1:] - centres[0], axis=-1)
    scale = float(distances.mean()) if len(distances) else 0.0
    if scale < eps:
        scale = 1.0
    return apply_scale(rel, 1.0 / scale), scale


def K_from_fov(fov_deg, width, height):
    """Pinhole K with horizontal field of view ``fov_deg``, square pixels, centred principal
    point ((W-1)/2, (H-1)/2)."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    fx = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    return np.array([[fx, 0.0, (width - 1) / 2], [0.0, fx, (height - 1) / 2], [0.0, 0.0, 1.0]])
