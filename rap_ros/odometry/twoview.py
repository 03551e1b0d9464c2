"""Two-view and map geometry: essential matrix, triangulation with checks, PnP with a
covariance.

Conventions: poses are camera-to-world 4x4 (``c2w``) with OpenCV camera axes (x right, y down,
z forward); K (3, 3) in pixels; points (N, 2) pixels, (N, 3) world units; angles radians
unless the name says ``deg``.
"""
import cv2
import numpy as np

from rap_ros.geometry.cameras import invert_pose, pose_from_rt
from rap_ros.geometry.rotations import skew


def in_camera(c2w, X):
    """World points X (N, 3) in the frame of camera c2w (N, 3); column 2 is the depth."""
    w2c = invert_pose(c2w)
    return np.asarray(X) @ w2c[:3, :3].T + w2c[:3, 3]


def project(K, c2w, X):
    """Pixels (N, 2) and depths (N,) of world points X (N, 3) seen from camera c2w."""
    Xc = in_camera(c2w, X)
    z = Xc[:, 2]
    uv = (Xc[:, :2] / np.where(np.abs(z) < 1e-12, 1e-12, z)[:, None]) * [K[0, 0], K[1, 1]] \
        + [K[0, 2], K[1, 2]]
    return uv, z


def rotate_pixels(K, R_21, p1):
    """Where pixels p1 (N, 2) of camera 1 land in camera 2 under the rotation R_21 alone
    (x2 = R_21 x1: the homography at infinity K R_21 K^-1), (N, 2) float64."""
    q = np.c_[p1, np.ones(len(p1))] @ (K @ R_21 @ np.linalg.inv(K)).T
    return q[:, :2] / q[:, 2:3]


def rotation_compensated_parallax(K, R_21, p1, p2):
    """Median image motion (pixels) of p1 -> p2 once the rotation R_21 (camera 1 to camera 2,
    x2 = R_21 x1 + t) is removed: what translation alone moved the points."""
    if len(p1) == 0:
        return 0.0
    return float(np.median(np.linalg.norm(rotate_pixels(K, R_21, p1) - p2, axis=1)))


def relative_rotation(K, p1, p2, threshold=1.0, min_inlier_ratio=0.0, min_inliers=8):
    """Rotation R_21 (camera 1 -> 2) and unit translation direction t_21 from two-view tracks
    (essential matrix, 5-point RANSAC + cheirality); (None, None, None) when it fails, when
    fewer than ``min_inliers`` tracks or ``min_inlier_ratio`` of them fit it (tracks of
    sensor noise on a bare wall fit no motion: 15-25 % of them fit the best one, against 35-65 %
    of real tracks in the worst cases measured). Also returns the inlier mask as third value."""
    if len(p1) < 8:
        return None, None, None
    E, mask = cv2.findEssentialMat(p1, p2, K, method=cv2.RANSAC, prob=0.999, threshold=threshold)
    if E is None or E.shape != (3, 3):
        return None, None, None
    n, R, t, mask = cv2.recoverPose(E, p1, p2, K, mask=mask)
    if n < max(min_inliers, 8) or n < min_inlier_ratio * len(p1):
        return None, None, None
    return R, t.ravel(), mask.ravel() > 0


def triangulate(K, c2w_a, c2w_b, pa, pb, min_angle_deg=1.0, max_reprojection_px=2.0):
    """Points seen at pixels pa in camera a and pb in camera b.

    Returns (X (N, 3) world, good (N,) bool, angle_deg (N,)): good where the depth is positive
    in both cameras, the parallax angle exceeds ``min_angle_deg`` and both reprojection
    errors are below ``max_reprojection_px``."""
    n = len(pa)
    if n == 0:
        return np.zeros((0, 3)), np.zeros(0, bool), np.zeros(0)
    Pa = K @ invert_pose(c2w_a)[:3]
    Pb = K @ invert_pose(c2w_b)[:3]
    Xh = cv2.triangulatePoints(Pa, Pb, pa.T.astype(np.float64), pb.T.astype(np.float64))
    w = Xh[3]
    w = np.where(np.abs(w) < 1e-12, 1e-12, w)
    X = (Xh[:3] / w).T
    ua, za = project(K, c2w_a, X)
    ub, zb = project(K, c2w_b, X)
    ra = X - c2w_a[:3, 3]
    rb = X - c2w_b[:3, 3]
    cos = np.sum(ra * rb, axis=1) / np.maximum(np.linalg.norm(ra, axis=1)
                                                * np.linalg.norm(rb, axis=1), 1e-12)
    angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    err = np.maximum(np.linalg.norm(ua - pa, axis=1), np.linalg.norm(ub - pb, axis=1))
    good = (za > 0) & (zb > 0) & (angle > min_angle_deg) & (err < max_reprojection_px)
    good &= np.isfinite(X).all(axis=1)
    return X, good, angle


def epipolar_error(K, c2w_a, c2w_b, pa, pb):
    """Sampson distance (N,) in pixels (at the focal length fx) of each pixel pair pa in
    camera a, pb in camera b (N, 2) from the epipolar geometry of the two poses: about how
    far a point must move to be seen by both cameras as one static point. Zeros when the
    cameras share their centre (no epipolar geometry)."""
    rel = invert_pose(c2w_b) @ c2w_a  # camera a -> camera b: x_b = R x_a + t
    R, t = rel[:3, :3], rel[:3, 3]
    norm = np.linalg.norm(t)
    if norm < 1e-12 or len(pa) == 0:
        return np.zeros(len(pa))
    t = t / norm
    E = skew(t) @ R
    Ki = np.linalg.inv(K)
    xa = np.c_[pa, np.ones(len(pa))] @ Ki.T
    xb = np.c_[pb, np.ones(len(pb))] @ Ki.T
    Exa, Etxb = xa @ E.T, xb @ E
    residual = np.sum(xb * Exa, axis=1)
    gradient = Exa[:, 0] ** 2 + Exa[:, 1] ** 2 + Etxb[:, 0] ** 2 + Etxb[:, 1] ** 2
    return np.abs(residual) / np.sqrt(np.maximum(gradient, 1e-24)) * K[0, 0]


def pnp(K, X, uv, guess_c2w=None, threshold=2.0):
    """Camera c2w from world points X (N, 3) seen at pixels uv (N, 2): EPnP/iterative RANSAC,
    then Levenberg-Marquardt on the inliers.

    Returns (c2w or None, inlier mask (N,), rms reprojection error of the inliers, pixels)."""
    n = len(X)
    if n < 6:
        return None, np.zeros(n, bool), np.inf
    X = np.ascontiguousarray(X, np.float64)
    uv = np.ascontiguousarray(uv, np.float64)
    use_guess = guess_c2w is not None
    rvec = tvec = None
    if use_guess:
        w2c = invert_pose(guess_c2w)
        # OpenCV's own rvec at the PnP boundary (geometry.rotations' rotation vectors agree
        # to 1e-14 only, and the RANSAC paths change with the last bit)
        rvec = cv2.Rodrigues(w2c[:3, :3])[0]
        tvec = w2c[:3, 3].reshape(3, 1).copy()
    try:
        ok, rvec, tvec, inl = cv2.solvePnPRansac(
            X, uv, K, None, rvec=rvec, tvec=tvec, useExtrinsicGuess=use_guess,
            iterationsCount=100, reprojectionError=threshold, confidence=0.99,
            flags=cv2.SOLVEPNP_ITERATIVE if use_guess else cv2.SOLVEPNP_EPNP)
    except cv2.error:
        return None, np.zeros(n, bool), np.inf
    if not ok or inl is None or len(inl) < 6:
        return None, np.zeros(n, bool), np.inf
    mask = np.zeros(n, bool)
    mask[inl.ravel()] = True
    rvec, tvec = cv2.solvePnPRefineLM(X[mask], uv[mask], K, None, rvec, tvec)
    R = cv2.Rodrigues(rvec)[0]  # OpenCV's rvec convention at the PnP boundary (as above)
    c2w = invert_pose(pose_from_rt(R, tvec.ravel()))
    proj, z = project(K, c2w, X)
    err = np.linalg.norm(proj - uv, axis=1)
    mask = (err < threshold) & (z > 0)
    rms = float(np.sqrt(np.mean(err[mask] ** 2))) if mask.any() else np.inf
    return c2w, mask, rms


def pose_covariance_from_points(K, c2w, X, sigma_px=1.0):
    """6x6 covariance of the camera pose from the projections of X (N, 3), in the camera's
    local tangent (right perturbation c2w * exp(xi)), ordered translation then rotation:
    sigma^2 (J^T J)^-1 with J the projection Jacobian."""
    w2c = invert_pose(c2w)
    Xc = X @ w2c[:3, :3].T + w2c[:3, 3]
    x, y, z = Xc[:, 0], Xc[:, 1], np.maximum(Xc[:, 2], 1e-6)
    fx, fy = K[0, 0], K[1, 1]
    n = len(X)
    Jp = np.zeros((n, 2, 3))
    Jp[:, 0, 0] = fx / z
    Jp[:, 0, 2] = -fx * x / z ** 2
    Jp[:, 1, 1] = fy / z
    Jp[:, 1, 2] = -fy * y / z ** 2
    skew = np.zeros((n, 3, 3))
    skew[:, 0, 1], skew[:, 0, 2] = -Xc[:, 2], Xc[:, 1]
    skew[:, 1, 0], skew[:, 1, 2] = Xc[:, 2], -Xc[:, 0]
    skew[:, 2, 0], skew[:, 2, 1] = -Xc[:, 1], Xc[:, 0]
    # perturbed point in the camera: p - rho + [p]x phi  (exp(-xi) applied to p)
    J = np.concatenate([-Jp, Jp @ skew], axis=2).reshape(-1, 6)
    info = J.T @ J / sigma_px ** 2 + np.eye(6) * 1e-9
    return np.linalg.inv(info)
