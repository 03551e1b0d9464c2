"""Raxels: a camera written as a per-pixel image of its rays ("rays as pixels").

Each pixel (u, v) of a pinhole camera sees along one ray. Storing that ray at
the pixel turns the camera into a 6-channel image with the same layout as the
video frames, so the video model (and a video codec) can carry it unchanged.

Encodings, channels first, (N, 6, H, W) float32, world frame:

* ``"raydir_origin"`` (default): channels 0:3 hold the unit ray direction
  d = R normalize(K^-1 [u, v, 1]), channels 3:6 the ray origin, i.e. the
  camera centre C (constant over the image).
* ``"plucker"``: channels 0:3 hold d, channels 3:6 the moment m = C x d.

Decoding inverts this for cameras whose raxels come back noisy from a network:
the centre is a weighted least-squares point, the rotation a weighted
Procrustes fit between camera-frame and world-frame directions, and unknown
intrinsics come from a Hartley-normalised DLT homography plus RQ. All
fits are batched over frames and refined by iteratively reweighted least
squares (Cauchy weights). docs/geometry.md has the derivations and figures.

Conventions are those of ``rap_ros.geometry.cameras``: OpenCV axes,
camera-to-world poses, integer pixel centres.
"""

from dataclasses import dataclass

import numpy as np

from rap_ros.geometry.cameras import camera_centres, pixel_grid, pose_from_rt
from rap_ros.geometry.rotations import project_to_so3

ENCODINGS = ("raydir_origin", "plucker")

# Cauchy tuning constant (95% efficiency under Gaussian noise) and the
# factor turning a median absolute residual into a standard deviation.
_CAUCHY_C = 2.3849
_MAD_TO_SIGMA = 1.4826
# Floor on the residual scale, so noise-free data gives finite weights.
_MIN_SCALE = 1e-12
# A DLT homography needs 4 rays; fewer valid samples in a frame is an error.
_MIN_RAYS = 4


@dataclass
class DecodedCameras:
    """Cameras recovered from raxels.

    c2w: (N, 4, 4) camera-to-world poses.
    K: (N, 3, 3) intrinsics in pixels of the full-resolution raxel image.
    residual_deg: (N,) mean angle between the decoded rays and the rays of
        the fitted camera, weighted by the final robust weights, in degrees.
    """

    c2w: np.ndarray
    K: np.ndarray
    residual_deg: np.ndarray


@dataclass
class _Rays:
    """Rays sampled from raxels: P pixels shared by N frames.

    pixels: (P, 2) pixel coordinates (u, v) in the full-resolution image.
    dirs: (N, P, 3) unit world-frame directions.
    points: (N, P, 3) one world point on each ray.
    valid: (N, P) float, 1 for finite samples and 0 for NaN/inf ones.
    """

    pixels: np.ndarray
    dirs: np.ndarray
    points: np.ndarray
    valid: np.ndarray


def encode_raxels(K, c2w, height, width, encoding="raydir_origin"):
    """Raxel images of N pinhole cameras.

    K: (3, 3) or (N, 3, 3) intrinsics; c2w: (N, 4, 4) camera-to-world poses.
    Returns (N, 6, height, width) float32 in the layout described above.
    """
    c2w = _check_poses(c2w)
    K = _batch_intrinsics(K, len(c2w))
    _check_encoding(encoding)
    pixels = pixel_grid(height, width).reshape(-1, 2)
    dirs = _world_directions(K, c2w[:, :3, :3], pixels)
    origins = np.broadcast_to(camera_centres(c2w)[:, None], dirs.shape)
    second = origins if encoding == "raydir_origin" else np.cross(origins, dirs)
    raxels = np.concatenate([dirs, second], axis=-1)
    return raxels.reshape(len(c2w), height, width, 6).transpose(0, 3, 1, 2).astype(np.float32)


def decode_raxels(raxels, K=None, encoding="raydir_origin", stride=4, robust=True,
                  iterations=3):
    """Fit one pinhole camera to each frame of a raxel image.

    raxels: (N, 6, H, W) float, as written by ``encode_raxels``; NaN/inf
        pixels are ignored.
    K: (3, 3) or (N, 3, 3) known intrinsics at H x W, or None to estimate
        fx, fy, cx, cy (zero skew) from the rays.
    stride: fit on every ``stride``-th row and column.
    robust: refine every fit ``iterations`` times with Cauchy weights on its
        residuals (IRLS); otherwise a single least-squares fit.

    The orientation (K and R) is fitted first; its final ray weights are the
    prior weights of the centre fit, since a pixel whose direction is wrong
    is one whose origin or moment is not to be trusted either.

    Returns DecodedCameras. Raises ValueError on malformed input, or when a
    frame has fewer than 4 finite rays at this stride.
    """
    rays = _sample_rays(raxels, encoding, stride)
    known_K = None if K is None else _batch_intrinsics(K, len(rays.dirs))
    rounds = iterations if robust else 0
    K, R = _irls(lambda w: _fit_orientation(rays, known_K, w),
                 lambda model: _angular_residuals(rays, *model),
                 rays.valid, rounds)
    residuals = _angular_residuals(rays, K, R)
    ray_weights = _robust_weights(residuals, rays.valid) if robust else rays.valid
    centres = _irls(lambda w: _fit_centre(rays, w, encoding),
                    lambda c: _centre_residuals(rays, c, encoding),
                    ray_weights, rounds)
    residual_deg = np.degrees(_weighted_mean(residuals, ray_weights))
    return DecodedCameras(c2w=pose_from_rt(R, centres), K=K, residual_deg=residual_deg)


# ---------------------------------------------------------------- rays


def _world_directions(K, R, pixels):
    """Unit world directions of pixels (P, 2) for K, R (N, 3, 3) -> (N, P, 3)."""
    homogeneous = np.concatenate([pixels, np.ones((len(pixels), 1))], axis=-1)
    dirs = homogeneous @ np.swapaxes(R @ np.linalg.inv(K), 1, 2)
    return dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)


def _camera_directions(K, pixels):
    """Unit camera-frame directions normalize(K^-1 [u, v, 1]) -> (N, P, 3)."""
    return _world_directions(K, np.broadcast_to(np.eye(3), K.shape), pixels)


def _sample_rays(raxels, encoding, stride):
    """Subsample raxels and split them into directions and points on rays.

    For Plücker raxels (d, m) the point is d x m with d normalised (and m
    divided by the same norm), the foot of the perpendicular from the origin.
    """
    _check_encoding(encoding)
    raxels = np.asarray(raxels)
    if raxels.ndim != 4 or raxels.shape[1] != 6:
        raise ValueError(f"raxels must have shape (N, 6, H, W), got {raxels.shape}")
    n, _, height, width = raxels.shape
    samples = raxels[:, :, ::stride, ::stride].astype(np.float64)
    samples = samples.reshape(n, 6, -1).transpose(0, 2, 1)
    valid = np.isfinite(samples).all(axis=-1) & samples[..., :3].any(axis=-1)
    # Invalid samples become a harmless ray (+z through the origin) of weight 0.
    samples = np.where(valid[..., None], samples, [0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    lengths = np.linalg.norm(samples[..., :3], axis=-1, keepdims=True)
    dirs = samples[..., :3] / lengths
    if encoding == "raydir_origin":
        points = samples[..., 3:]
    else:
        points = np.cross(dirs, samples[..., 3:] / lengths)
    too_few = np.flatnonzero(valid.sum(axis=1) < _MIN_RAYS)
    if len(too_few):
        raise ValueError(f"frames {too_few.tolist()} have fewer than {_MIN_RAYS} "
                         f"finite rays at stride {stride}")
    pixels = pixel_grid(height, width, stride).reshape(-1, 2)
    return _Rays(pixels, dirs, points, valid.astype(np.float64))


# ---------------------------------------------------------------- fits


def _fit_centre(rays, weights, encoding):
    """Weighted least-squares camera centres, (N, 3).

    raydir_origin stores the centre itself at every pixel, so the estimate is
    the weighted mean of the origins. Plücker raxels only give lines, so the
    estimate is the point nearest to all lines:
    argmin_c sum_i w_i ||(I - d_i d_i^T)(c - p_i)||^2.
    """
    if encoding == "raydir_origin":
        return _weighted_mean(rays.points, weights[..., None], axis=1)
    weighted_dirs = weights[..., None] * rays.dirs
    lhs = weights.sum(axis=1)[:, None, None] * np.eye(3) - _outer_sum(weighted_dirs, rays.dirs)
    along = (rays.dirs * rays.points).sum(axis=-1, keepdims=True)
    rhs = (weights[..., None] * rays.points - weighted_dirs * along).sum(axis=1)
    return np.linalg.solve(lhs, rhs[..., None])[..., 0]


def _centre_residuals(rays, centres, encoding):
    """Distance (N, P) of each ray's origin (raydir_origin) or line (Plücker)
    from the centres, in world units."""
    offsets = centres[:, None] - rays.points
    if encoding == "raydir_origin":
        return np.linalg.norm(offsets, axis=-1)
    return np.linalg.norm(np.cross(offsets, rays.dirs), axis=-1)


def _fit_rotation(rays, K, weights):
    """Weighted Procrustes (Kabsch) rotation R taking camera directions to
    world directions: argmin_R sum_i w_i ||d_i - R b_i||^2, (N, 3, 3)."""
    cam = _camera_directions(K, rays.pixels)
    return project_to_so3(_outer_sum(weights[..., None] * rays.dirs, cam))


def _fit_orientation(rays, K, weights):
    """Intrinsics and rotation (K, R), both (N, 3, 3), of weighted rays.

    With K None, K is estimated first: the pixel x_i and world direction d_i
    of a ray satisfy x_i ~ K R^T d_i, a homography. It is fitted by DLT and
    split by RQ into upper-triangular K and orthogonal R^T. R is in both cases
    the Procrustes fit for K.
    """
    if K is None:
        K = _rq_intrinsics(_fit_homography(rays.dirs, rays.pixels, weights))
    return K, _fit_rotation(rays, K, weights)


def _fit_homography(dirs, pixels, weights):
    """Weighted DLT homography H (N, 3, 3) with pixels (P, 2) ~ H dirs.

    Both sides are conditioned first (Hartley normalisation, see the two
    helpers below), and each normalised direction is rescaled to unit norm,
    which leaves its projective point unchanged but bounds the influence of
    outlying rays. Each ray gives the two rows of x_i cross (H a_i) = 0; H is
    the eigenvector of the smallest eigenvalue of the weighted normal
    equations, mapped back through the normalisations.
    """
    to_pixels = _normalising_transform_2d(pixels)
    to_dirs = _normalising_transform_sphere(dirs, weights)
    x = pixels @ to_pixels[:2, :2].T + to_pixels[:2, 2]
    a = dirs @ np.swapaxes(to_dirs, 1, 2)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    u, v, zero = x[:, :1], x[:, 1:], np.zeros_like(a)
    rows = np.concatenate([
        np.concatenate([zero, -a, v * a], axis=-1),
        np.concatenate([a, zero, -u * a], axis=-1),
    ], axis=1)
    rows = rows * np.sqrt(np.concatenate([weights, weights], axis=1))[..., None]
    _, eigenvectors = np.linalg.eigh(np.swapaxes(rows, 1, 2) @ rows)
    H = eigenvectors[..., 0].reshape(-1, 3, 3)
    return np.linalg.inv(to_pixels) @ H @ to_dirs


def _normalising_transform_2d(points):
    """Similarity T (3, 3) moving points (P, 2) to centroid 0, mean norm sqrt(2)."""
    centroid = points.mean(axis=0)
    scale = np.sqrt(2) / np.linalg.norm(points - centroid, axis=-1).mean()
    return np.array([[scale, 0, -scale * centroid[0]],
                     [0, scale, -scale * centroid[1]],
                     [0, 0, 1]])


def _normalising_transform_sphere(dirs, weights):
    """Conditioning T (N, 3, 3) for unit directions (N, P, 3), the analogue of
    Hartley's for homogeneous points: a Householder reflection takes the
    weighted mean direction onto the z axis, then x and y are scaled so that
    their weighted mean norm is sqrt(2)."""
    mean = _weighted_mean(dirs, weights[..., None], axis=1)
    mean /= np.linalg.norm(mean, axis=-1, keepdims=True)
    v = mean + np.where(mean[:, 2:] < 0, -1.0, 1.0) * np.array([0.0, 0.0, 1.0])
    reflect = np.eye(3) - 2 * v[:, :, None] * v[:, None, :] / (v * v).sum(-1)[:, None, None]
    spread = _weighted_mean(np.linalg.norm((dirs @ reflect)[..., :2], axis=-1), weights, axis=1)
    scale = np.stack([np.sqrt(2) / spread, np.sqrt(2) / spread, np.ones_like(spread)], axis=-1)
    return scale[:, :, None] * reflect


def _rq_intrinsics(H):
    """Intrinsics (N, 3, 3) from H = lambda K R^T by RQ decomposition.

    RQ comes from QR of the row-flipped transpose. The diagonal of K is made
    positive, K is scaled to K[2, 2] = 1 and its skew set to zero; the sign of
    lambda only flips the orthogonal factor, whose rotation is refitted anyway.
    """
    flip = np.eye(3)[::-1]
    _, upper = np.linalg.qr(np.swapaxes(flip @ H, 1, 2))
    K = flip @ np.swapaxes(upper, 1, 2) @ flip
    K = K * np.sign(np.diagonal(K, axis1=1, axis2=2))[:, None, :]
    K = K / K[:, 2:, 2:]
    K[:, 0, 1] = 0.0
    return K


# ---------------------------------------------------------------- robust weights


def _angular_residuals(rays, K, R):
    """Angle (N, P) in radians between decoded directions and those of (K, R)."""
    predicted = _world_directions(K, R, rays.pixels)
    sin = np.linalg.norm(np.cross(predicted, rays.dirs), axis=-1)
    cos = (predicted * rays.dirs).sum(axis=-1)
    return np.arctan2(sin, cos)


def _irls(fit, residuals, prior, rounds):
    """Fit with the prior weights (N, P), then refit ``rounds`` times with
    the prior times Cauchy weights on the residuals of the previous fit."""
    model = fit(prior)
    for _ in range(rounds):
        model = fit(_robust_weights(residuals(model), prior))
    return model


def _robust_weights(residuals, prior):
    """Cauchy weights 1 / (1 + (r / c)^2) times the prior weights, (N, P).

    c = 2.3849 sigma with sigma = 1.4826 median(|r|) over each frame's samples
    of non-zero prior weight, a scale estimate that ignores up to half of them
    as outliers.
    """
    sigma = _MAD_TO_SIGMA * _masked_median(residuals, prior > 0)
    c = _CAUCHY_C * np.maximum(sigma, _MIN_SCALE)
    return prior / (1 + (residuals / c[:, None]) ** 2)


def _masked_median(values, mask):
    """Lower median of each row of values (N, P) over entries where mask."""
    ordered = np.sort(np.where(mask, values, np.inf), axis=1)
    middle = (mask.sum(axis=1) - 1) // 2
    return np.take_along_axis(ordered, middle[:, None], axis=1)[:, 0]


def _outer_sum(a, b):
    """sum_p a_p b_p^T for a, b (N, P, 3) -> (N, 3, 3)."""
    return np.swapaxes(a, 1, 2) @ b


def _weighted_mean(values, weights, axis=-1):
    """sum(w x) / sum(w) along axis; weights broadcast against values."""
    return (weights * values).sum(axis=axis) / weights.sum(axis=axis)


# ---------------------------------------------------------------- checks


def _check_encoding(encoding):
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")


def _check_poses(c2w):
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise ValueError(f"c2w must have shape (N, 4, 4), got {c2w.shape}")
    return c2w


def _batch_intrinsics(K, n):
    """K (3, 3) or (n, 3, 3) -> (n, 3, 3) float64."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape not in ((3, 3), (n, 3, 3)):
        raise ValueError(f"K must have shape (3, 3) or ({n}, 3, 3), got {K.shape}")
    return np.broadcast_to(K, (n, 3, 3)).copy()
