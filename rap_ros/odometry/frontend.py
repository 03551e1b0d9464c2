"""Front end: image normalisation, Shi-Tomasi corners and pyramidal KLT tracking.

Pixels: (x, y) float32 with the origin at the centre of the top-left pixel (OpenCV).
Images: uint8 (H, W) grey or (H, W, 3) RGB in; uint8 (H, W) normalised grey out.
"""
import cv2
import numpy as np


def normalise(gray, mean=128.0, std=48.0):
    """Affine grey-level normalisation to a fixed mean and standard deviation.

    KLT assumes brightness constancy; a single over- or under-exposed frame breaks it. Mapping
    every frame to the same mean and spread removes global gain and offset changes."""
    m, s = cv2.meanStdDev(gray)
    gain = std / max(float(s[0, 0]), 1.0)
    return cv2.convertScaleAbs(gray, alpha=gain, beta=mean - gain * float(m[0, 0]))


class Tracker:
    """KLT tracker with a forward-backward check; corners from Shi-Tomasi."""

    def __init__(self, config, image_size):
        self.cfg = config
        width, height = image_size
        self.diagonal = float(np.hypot(width, height))
        self.min_distance = max(3, int(round(config.min_distance_frac * self.diagonal)))
        win = config.lk_window or (15 if width >= 320 else 21)
        self.lk = dict(winSize=(win, win), maxLevel=config.lk_levels,
                       criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))

    def track(self, prev, cur, pts):
        """Track pts (N, 2) float32 from grey image prev to cur.

        Returns (new_pts (N, 2) float32, ok (N,) bool): ok where both directions converged,
        the backward track returns within ``fb_threshold`` pixels and the point stays inside."""
        if len(pts) == 0:
            return pts.copy(), np.zeros(0, bool)
        p0 = pts.reshape(-1, 1, 2).astype(np.float32)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, **self.lk)
        p0r, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, **self.lk)
        fb = np.linalg.norm((p0 - p0r).reshape(-1, 2), axis=1)
        p1 = p1.reshape(-1, 2)
        h, w = cur.shape[:2]
        inside = (p1[:, 0] >= 0) & (p1[:, 1] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] <= h - 1)
        ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < self.cfg.fb_threshold) & inside
        return p1, ok

    def detect(self, gray, existing, count):
        """Up to ``count`` new corners (M, 2) float32 away from ``existing`` (N, 2)."""
        if count <= 0:
            return np.zeros((0, 2), np.float32)
        mask = np.full(gray.shape[:2], 255, np.uint8)
        for x, y in np.asarray(existing, np.float32).reshape(-1, 2):
            cv2.circle(mask, (int(x), int(y)), self.min_distance, 0, -1)
        corners = cv2.goodFeaturesToTrack(gray, maxCorners=int(count),
                                          qualityLevel=self.cfg.quality_level,
                                          minDistance=self.min_distance, mask=mask, blockSize=7)
        if corners is None:
            return np.zeros((0, 2), np.float32)
        return corners.reshape(-1, 2).astype(np.float32)
