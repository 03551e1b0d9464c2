"""Trajectory and image metrics for the evaluator.

Trajectory metrics follow the definitions of the ``evo`` package (Grupp,
github.com/MichaelGrupp/evo) so numbers can be compared with it:

* ``ate`` is evo's APE on the translation part after Umeyama alignment of
  the positions (``evo_ape --align --correct_scale`` for mode "sim3").
* ``rpe`` is evo's RPE with delta in frames, on the translation part and the
  rotation angle in degrees.

Poses are camera-to-world (N, 4, 4) float64 in metres, as in
``rap_ros.geometry``; images are float arrays (..., H, W, C).
"""

import numpy as np
from skimage.metrics import structural_similarity

from rap_ros.geometry.cameras import apply_scale, camera_centres, invert_pose, pose_from_rt
from rap_ros.geometry.rotations import rotation_angle_deg

ALIGNMENT_MODES = ("sim3", "se3", "none")


# ---------------------------------------------------------------- trajectories


def umeyama_alignment(src, dst, with_scale=True):
    """Similarity (s, R, t) minimising sum_i ||dst_i - (s R src_i + t)||^2.

    src, dst: (N, 3) corresponding points. Returns scale s (float, 1 when
    ``with_scale`` is False), rotation R (3, 3) and translation t (3,)
    (Umeyama 1991). Raises ValueError when the points are too degenerate to
    fix a rotation (covariance rank < 2), as evo does.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 3 or src.shape != dst.shape:
        raise ValueError(f"src and dst must both be (N, 3), got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    covariance = dst_centred.T @ src_centred / len(src)
    U, D, Vt = np.linalg.svd(covariance)
    if np.count_nonzero(D > np.finfo(np.float64).eps) < 2:
        raise ValueError("degenerate point sets: Umeyama alignment needs covariance rank >= 2")
    signs = np.array([1.0, 1.0, np.sign(np.linalg.det(U) * np.linalg.det(Vt))])
    R = (U * signs) @ Vt
    s = (D * signs).sum() / (src_centred ** 2).sum(axis=1).mean() if with_scale else 1.0
    t = dst_mean - s * R @ src_mean
    return float(s), R, t


def align_trajectory(est_c2w, gt_c2w, mode="sim3"):
    """The estimate moved onto the ground truth, (N, 4, 4).

    mode "sim3" (rotation, translation, scale) or "se3" (no scale) fits
    Umeyama on the camera centres and applies it to the full poses:
    aligned_i = [R | t] @ est_i with est_i's translation scaled by s first,
    so orientations are premultiplied by R. Mode "none" returns a copy.
    """
    if mode not in ALIGNMENT_MODES:
        raise ValueError(f"mode must be one of {ALIGNMENT_MODES}, got {mode!r}")
    est_c2w = _check_trajectories(est_c2w, gt_c2w)
    if mode == "none":
        return est_c2w.copy()
    s, R, t = umeyama_alignment(camera_centres(est_c2w), camera_centres(gt_c2w),
                                with_scale=mode == "sim3")
    return pose_from_rt(R, t) @ apply_scale(est_c2w, s)


def ate(est_c2w, gt_c2w, mode="sim3"):
    """Absolute trajectory error: evo's APE, translation part.

    Errors are ||C_est_i - C_gt_i|| after ``align_trajectory(mode)``, in the
    ground truth's units. Returns dict with rmse, mean, median, std, min, max
    (floats) and errors (N,).
    """
    aligned = align_trajectory(est_c2w, gt_c2w, mode)
    errors = np.linalg.norm(camera_centres(aligned) - camera_centres(gt_c2w), axis=-1)
    return dict(_statistics(errors), errors=errors)


def rpe(est_c2w, gt_c2w, delta=1, all_pairs=False):
    """Relative pose error over pairs (i, i + delta), evo's definition.

    E_i = (Q_i^-1 Q_{i+delta})^-1 (P_i^-1 P_{i+delta}) with Q the ground truth
    and P the estimate; the translation error is ||t(E_i)|| and the rotation
    error the angle of R(E_i) in degrees. Pairs start at 0, delta, 2 delta, ...
    as in evo's default; ``all_pairs`` uses every i. The estimate is compared
    as given: callers align or scale it first (e.g. ``align_trajectory``).

    Returns dict with trans_rmse, rot_deg_rmse (floats), trans_errors and
    rot_deg_errors (one per pair).
    """
    est_c2w = _check_trajectories(est_c2w, gt_c2w)
    gt_c2w = np.asarray(gt_c2w, dtype=np.float64)
    if not 1 <= delta < len(gt_c2w):
        raise ValueError(f"delta must be in [1, {len(gt_c2w) - 1}], got {delta}")
    first = np.arange(0, len(gt_c2w) - delta, 1 if all_pairs else delta)
    gt_motion = invert_pose(gt_c2w[first]) @ gt_c2w[first + delta]
    est_motion = invert_pose(est_c2w[first]) @ est_c2w[first + delta]
    error = invert_pose(gt_motion) @ est_motion
    trans_errors = np.linalg.norm(error[:, :3, 3], axis=-1)
    rot_deg_errors = rotation_angle_deg(error[:, :3, :3])
    return dict(trans_rmse=_rmse(trans_errors), rot_deg_rmse=_rmse(rot_deg_errors),
                trans_errors=trans_errors, rot_deg_errors=rot_deg_errors)


def path_length(c2w):
    """Length of the polyline through the camera centres, (N, 4, 4) -> float."""
    steps = np.diff(camera_centres(c2w), axis=0)
    return float(np.linalg.norm(steps, axis=-1).sum())


def _check_trajectories(est_c2w, gt_c2w):
    est_c2w = np.asarray(est_c2w, dtype=np.float64)
    gt_shape = np.shape(gt_c2w)
    if est_c2w.ndim != 3 or est_c2w.shape[1:] != (4, 4) or est_c2w.shape != gt_shape:
        raise ValueError(f"est_c2w and gt_c2w must both be (N, 4, 4), "
                         f"got {est_c2w.shape} and {gt_shape}")
    return est_c2w


def _rmse(errors):
    return float(np.sqrt(np.mean(errors ** 2)))


def _statistics(errors):
    return dict(rmse=_rmse(errors), mean=float(np.mean(errors)),
                median=float(np.median(errors)), std=float(np.std(errors)),
                min=float(np.min(errors)), max=float(np.max(errors)))


# ---------------------------------------------------------------- images

# skimage's Gaussian SSIM window: sigma 1.5, truncated at 3.5 sigma (11 taps).
_SSIM_SIGMA = 1.5
_SSIM_MARGIN = int(3.5 * _SSIM_SIGMA + 0.5)


def psnr(a, b, data_range=1.0):
    """Peak signal-to-noise ratio in dB of each image, shape (...).

    a, b: (..., H, W, C) float images with values in [0, data_range]. The MSE
    is taken per image; average the result for a batch figure. Identical
    images give inf.
    """
    a, b = _check_images(a, b)
    mse = np.mean((a - b) ** 2, axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        return 10 * np.log10(data_range ** 2 / mse)


def ssim(a, b, data_range=1.0):
    """Structural similarity of each image, shape (...), averaged over channels.

    a, b: (..., H, W, C) float images, H, W >= 11. scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    channel_axis=-1)``: a Gaussian window (11 taps, reflected at the borders), the population
    covariance, K1 = 0.01, K2 = 0.03 (Wang et al. 2004), the SSIM map averaged without its
    5-pixel border; one call per image of the batch.
    """
    a, b = _check_images(a, b)
    if min(a.shape[-3:-1]) < 2 * _SSIM_MARGIN + 1:
        raise ValueError(f"ssim needs images of at least {2 * _SSIM_MARGIN + 1} pixels a side, "
                         f"got {a.shape[-3:-1]}")
    lead = a.shape[:-3]
    flat_a, flat_b = a.reshape((-1,) + a.shape[-3:]), b.reshape((-1,) + b.shape[-3:])
    values = [structural_similarity(x, y, gaussian_weights=True, sigma=_SSIM_SIGMA,
                                    use_sample_covariance=False, channel_axis=-1,
                                    data_range=data_range)
              for x, y in zip(flat_a, flat_b)]
    return np.array(values, dtype=np.float64).reshape(lead)


def _check_images(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim < 3 or a.shape != b.shape:
        raise ValueError(f"images must both be (..., H, W, C), got {a.shape} and {b.shape}")
    return a, b
