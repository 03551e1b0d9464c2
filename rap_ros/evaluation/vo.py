"""`opencv-vo`: a classical monocular visual odometry baseline (OpenCV, CPU).

What it does, per frame:

1. Track corners (Shi-Tomasi ``goodFeaturesToTrack``) from the previous frame with pyramidal
   Lucas-Kanade, keeping tracks that pass a forward-backward check.
2. Compare the frame with the current *keyframe*. Once points have been triangulated, the
   frame is located against them: PnP with RANSAC (EPnP) refined by Levenberg-Marquardt,
   which fixes the pose and carries the scale. If the median image motion of the tracks since
   the keyframe exceeds ``min_parallax_px``, the frame becomes the next keyframe and the tracks
   are triangulated with that motion, giving the points for the frames that follow.
3. Without usable points (the start, or after tracking was lost) a keyframe comes from the
   essential matrix with RANSAC (``findEssentialMat``) and ``recoverPose`` (cheirality check).
   That gives a direction only: the first pair gets unit baseline; later ones take the median
   ratio of the depths of points seen in both pairs (or the previous baseline when too few
   are shared). A frame with too little parallax and no points keeps the keyframe's position
   and takes a rotation from a RANSAC homography (H = K R K^-1 for a pure rotation).

Frames and units: poses are camera-to-world 4x4 (``c2w``) in OpenCV camera axes (x right,
y down, z forward); the world frame is the first camera's frame (``c2w[0]`` is the identity);
translations are in units of the first keyframe baseline (monocular scale is unobservable:
compare with ground truth after a Sim(3) alignment). Intrinsics K are pixels, 3x3, of the
images passed in (no distortion).
"""
from dataclasses import dataclass

import cv2
import numpy as np

from rap_ros.geometry.cameras import pose_from_rt
from rap_ros.geometry.rotations import project_to_so3
from rap_ros.io.images import to_gray


@dataclass
class VOConfig:
    """Tuning of `MonocularVO`. Lengths in pixels of the (possibly downscaled) image."""

    max_features: int = 1500      # corners kept in the track set
    quality_level: float = 0.01   # goodFeaturesToTrack quality
    min_distance: int = 8         # minimum spacing of corners
    lk_window: int = 21           # Lucas-Kanade window side
    lk_levels: int = 3            # pyramid levels
    fb_threshold: float = 0.5     # forward-backward track error allowed
    min_parallax_px: float = 0.0  # 0: 1 % of the image diagonal
    ransac_threshold: float = 1.0  # epipolar RANSAC threshold
    ransac_prob: float = 0.999
    min_inliers: int = 15         # fewer: no keyframe (the frame holds the keyframe's position)
    min_tracks: int = 60          # fewer live tracks: detect more
    max_width: int = 1280         # wider images are downscaled first (K scaled alike)


class MonocularVO:
    """Incremental monocular VO. Feed frames in order with `process`; read `poses`.

    K: (3, 3) intrinsics in pixels of the frames that will be passed.
    """

    def __init__(self, K, config=None):
        self.config = config or VOConfig()
        self.K_input = np.asarray(K, dtype=np.float64)
        self.K = None          # intrinsics of the working resolution, set on the first frame
        self.scale_factor = 1.0
        self.poses = []        # c2w per processed frame
        self.keyframes = 0
        self.held_frames = 0   # frames that kept the keyframe position (nothing to locate them)
        self.scale_fallbacks = 0
        self._prev_gray = None
        self._pts = np.zeros((0, 2), np.float32)   # live track positions in the previous frame
        self._ids = np.zeros(0, np.int64)
        self._kf_pts = np.zeros((0, 2), np.float32)  # the same tracks in the keyframe
        self._next_id = 0
        self._kf_pose = np.eye(4)
        self._kf_depth = {}    # track id -> depth in the keyframe camera (current scale)
        self._kf_points = {}   # track id -> 3D point in the keyframe camera (current scale)
        self.pnp_frames = 0    # frames between keyframes located by PnP
        self.pnp_keyframes = 0  # keyframes located by PnP (the others: essential matrix)
        self._baseline = 1.0   # length of the last keyframe-to-keyframe translation

    # -- public -------------------------------------------------------------------------
    def process(self, image):
        """Add one frame (uint8 grey or RGB) and return its c2w (4, 4)."""
        gray = self._prepare(image)
        if self._prev_gray is None:
            self._prev_gray = gray
            self._detect(gray)
            self._kf_pts = self._pts.copy()
            self.poses.append(np.eye(4))
            self.keyframes = 1
            return self.poses[-1]
        self._track(gray)
        pose = self._estimate(gray)
        self.poses.append(pose)
        self._prev_gray = gray
        if len(self._pts) < self.config.min_tracks:
            self._detect(gray, keep=True)
        return pose

    def trajectory(self):
        """(N, 4, 4) c2w of the frames processed so far."""
        return np.array(self.poses) if self.poses else np.zeros((0, 4, 4))

    # -- steps --------------------------------------------------------------------------
    def _prepare(self, image):
        gray = to_gray(image)
        if self.K is None:
            width = gray.shape[1]
            if width > self.config.max_width:
                self.scale_factor = self.config.max_width / width
            s = self.scale_factor
            K = self.K_input.copy()
            if s != 1.0:  # pixel centres at integer coordinates: u' = s (u + 0.5) - 0.5
                K[0, :] *= s
                K[1, :] *= s
                K[0, 2] += 0.5 * (s - 1)
                K[1, 2] += 0.5 * (s - 1)
            self.K = K
            diag = np.hypot(*gray.shape) * s
            self._min_parallax = self.config.min_parallax_px or 0.01 * diag
        if self.scale_factor != 1.0:
            size = (round(gray.shape[1] * self.scale_factor), round(gray.shape[0] * self.scale_factor))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return gray

    def _detect(self, gray, keep=False):
        """Add corners away from the live tracks (also to the keyframe's point set)."""
        c = self.config
        mask = np.full(gray.shape, 255, np.uint8)
        for x, y in self._pts if keep else []:
            cv2.circle(mask, (int(x), int(y)), c.min_distance, 0, -1)
        wanted = c.max_features - (len(self._pts) if keep else 0)
        if wanted <= 0:
            return
        corners = cv2.goodFeaturesToTrack(gray, wanted, c.quality_level, c.min_distance, mask=mask)
        corners = np.zeros((0, 2), np.float32) if corners is None else corners.reshape(-1, 2)
        ids = np.arange(self._next_id, self._next_id + len(corners))
        self._next_id += len(corners)
        if keep:
            self._pts = np.vstack([self._pts, corners]).astype(np.float32)
            self._ids = np.concatenate([self._ids, ids])
            # New corners have no keyframe position: their keyframe point is set to where they
            # are now, marked invalid with NaN so they do not count for this keyframe's motion.
            self._kf_pts = np.vstack([self._kf_pts, np.full_like(corners, np.nan)]).astype(np.float32)
        else:
            self._pts, self._ids = corners.astype(np.float32), ids

    def _track(self, gray):
        if not len(self._pts):
            return
        c = self.config
        params = dict(winSize=(c.lk_window, c.lk_window), maxLevel=c.lk_levels,
                      criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
        p0 = self._pts.reshape(-1, 1, 2)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(self._prev_gray, gray, p0, None, **params)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(gray, self._prev_gray, p1, None, **params)
        fb = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
        h, w = gray.shape
        p1 = p1.reshape(-1, 2)
        good = ((st1.ravel() == 1) & (st2.ravel() == 1) & (fb < c.fb_threshold)
                & (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1))
        self._pts, self._ids, self._kf_pts = p1[good], self._ids[good], self._kf_pts[good]

    def _estimate(self, gray):
        c = self.config
        valid = ~np.isnan(self._kf_pts[:, 0])
        kf, cur, ids = self._kf_pts[valid], self._pts[valid], self._ids[valid]
        if len(kf) < max(8, c.min_inliers):
            return self._restart_keyframe(self._kf_pose)
        parallax = float(np.median(np.linalg.norm(cur - kf, axis=1)))
        if parallax >= self._min_parallax:
            located = self._pnp(cur, ids)
            if located is not None:  # the map fixes the pose and its scale
                R, t = located
                return self._keyframe_from_pose(R, t, kf, cur, ids)
            E, mask = cv2.findEssentialMat(kf, cur, self.K, method=cv2.RANSAC,
                                           prob=c.ransac_prob, threshold=c.ransac_threshold)
            if E is not None and E.shape == (3, 3) and mask is not None and mask.sum() >= c.min_inliers:
                n, R, t, mask = cv2.recoverPose(E, kf, cur, self.K, mask=mask.copy())
                inl = mask.ravel() > 0
                if n >= c.min_inliers:
                    return self._new_keyframe(R, t.ravel(), kf[inl], cur[inl], ids[inl])
        return self._hold(kf, cur, ids)

    def _pnp(self, cur, ids):
        """Pose of the current frame relative to the keyframe, (R, t) with x_cur = R x_kf + t,
        from the points the last keyframe pair triangulated (PnP, RANSAC, LM refinement);
        None when too few of them are tracked or the fit fails."""
        c = self.config
        known = [k for k, i in enumerate(ids) if int(i) in self._kf_points]
        if len(known) < max(c.min_inliers, 8):
            return None
        X = np.array([self._kf_points[int(ids[k])] for k in known])
        x = cur[known].astype(np.float64)
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            X, x, self.K, None, iterationsCount=100, reprojectionError=2.0 * c.ransac_threshold,
            confidence=c.ransac_prob, flags=cv2.SOLVEPNP_EPNP)
        if not ok or inliers is None or len(inliers) < c.min_inliers:
            return None
        inl = inliers.ravel()
        rvec, tvec = cv2.solvePnPRefineLM(X[inl], x[inl], self.K, None, rvec, tvec)
        return cv2.Rodrigues(rvec)[0], tvec.ravel()  # OpenCV's own rvec at the PnP boundary

    def _hold(self, kf, cur, ids):
        """Little parallax: no new keyframe. The frame is located against the points the last
        keyframe pair triangulated (PnP); without enough of them it keeps the keyframe's
        position and takes a rotation from a homography (if one fits)."""
        pose = self._kf_pose.copy()
        located = self._pnp(cur, ids)
        if located is not None:
            self.pnp_frames += 1
            return self._kf_pose @ np.linalg.inv(pose_from_rt(located[0], np.ravel(located[1])))
        self.held_frames += 1
        if len(kf) >= 8:
            H, mask = cv2.findHomography(kf, cur, cv2.RANSAC, 2.0 * self.config.ransac_threshold)
            if H is not None and mask is not None and mask.sum() >= self.config.min_inliers:
                M = np.linalg.inv(self.K) @ H @ self.K
                M /= np.cbrt(np.linalg.det(M)) if np.linalg.det(M) > 0 else 1.0
                R = project_to_so3(M)            # x_cur = R x_kf (rotation only)
                pose = self._kf_pose @ np.linalg.inv(pose_from_rt(R, np.zeros(3)))
        return pose

    def _triangulate(self, R, t, kf, cur):
        """Points in the keyframe camera from a unit-baseline pair; returns (N,3), ok mask."""
        P0 = self.K @ np.hstack([np.eye(3), np.zeros((3, 1))])
        P1 = self.K @ np.hstack([R, t.reshape(3, 1)])
        Xh = cv2.triangulatePoints(P0, P1, kf.T.astype(np.float64), cur.T.astype(np.float64))
        w = Xh[3]
        ok = np.abs(w) > 1e-12
        X = np.full((len(kf), 3), np.nan)
        X[ok] = (Xh[:3, ok] / w[ok]).T
        z0 = X[:, 2]
        z1 = (X @ R.T + t)[:, 2]
        ok &= (z0 > 0) & (z1 > 0) & np.isfinite(z0)
        return X, ok

    def _new_keyframe(self, R, t, kf, cur, ids):
        t = t / max(np.linalg.norm(t), 1e-12)
        X, ok = self._triangulate(R, t, kf, cur)
        depth_new = {int(i): float(z) for i, z, o in zip(ids, X[:, 2], ok) if o}
        scale = self._baseline
        if self._kf_depth:
            common = [i for i in depth_new if i in self._kf_depth]
            if len(common) >= 8:
                ratios = np.array([self._kf_depth[i] / depth_new[i] for i in common])
                ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
                if len(ratios) >= 8:
                    scale = float(np.median(ratios))
                else:
                    self.scale_fallbacks += 1
            else:
                self.scale_fallbacks += 1
        elif self.keyframes > 1:
            self.scale_fallbacks += 1
        self._baseline = scale
        T_cur_kf = pose_from_rt(R, np.ravel(scale * t))
        pose = self._kf_pose @ np.linalg.inv(T_cur_kf)
        # Depths of the triangulated points in the new keyframe (the current camera).
        Xc = (X[ok] * scale) @ R.T + scale * t
        self._kf_depth = {int(i): float(z) for i, z in zip(ids[ok], Xc[:, 2])}
        self._kf_points = {int(i): x for i, x in zip(ids[ok], Xc)}
        return self._restart_keyframe(pose)

    def _keyframe_from_pose(self, R, t, kf, cur, ids):
        """A keyframe located by PnP: triangulate the tracks with the known (scaled) motion."""
        baseline = float(np.linalg.norm(t))
        if baseline < 1e-12:
            return self._restart_keyframe(self._kf_pose)
        X, ok = self._triangulate(R, t / baseline, kf, cur)
        X = X * baseline
        Xc = X[ok] @ R.T + t
        self._baseline = baseline
        self._kf_depth = {int(i): float(z) for i, z in zip(ids[ok], Xc[:, 2])}
        self._kf_points = {int(i): x for i, x in zip(ids[ok], Xc)}
        self.pnp_keyframes += 1
        return self._restart_keyframe(self._kf_pose @ np.linalg.inv(pose_from_rt(R, np.ravel(t))))

    def _restart_keyframe(self, pose):
        """The current frame becomes the keyframe (tracks continue)."""
        if len(self._kf_pts) and not np.array_equal(pose, self._kf_pose):
            self.keyframes += 1
        elif not len(self._kf_pts):
            self._kf_depth, self._kf_points = {}, {}
        self._kf_pose = pose
        self._kf_pts = self._pts.copy()
        return pose


def estimate_trajectory(frames, K, config=None, progress=None):
    """Run `MonocularVO` over an iterable of uint8 frames.

    frames: iterable of (H, W) or (H, W, 3) uint8 RGB images; K: (3, 3) pixels.
    progress: optional callable called once per frame.
    Returns (N, 4, 4) c2w, OpenCV camera axes, first pose identity, arbitrary scale.
    """
    vo = MonocularVO(K, config)
    for frame in frames:
        vo.process(frame)
        if progress is not None:
            progress()
    return vo.trajectory()
