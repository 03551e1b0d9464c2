"""Front end: image normalisation, Shi-Tomasi corners and pyramidal KLT tracking.

Pixels: (x, y) float32 with the origin at the centre of the top-left pixel (OpenCV).
Images: uint8 (H, W) grey or (H, W, 3) RGB in; uint8 (H, W) normalised grey out.
"""
import cv2
import numpy as np
from scipy.spatial import cKDTree


def normalise(gray, mean=128.0, std=48.0):
    """Affine grey-level normalisation to a fixed mean and standard deviation.

    KLT assumes brightness constancy; a single over- or under-exposed frame breaks it. Mapping
    every frame to the same mean and spread removes global gain and offset changes (which
    also stretches a bare wall's sensor noise: ``Tracker.detect`` judges corners on the
    image before this)."""
    m, s = cv2.meanStdDev(gray)
    gain = std / max(float(s[0, 0]), 1.0)
    return cv2.convertScaleAbs(gray, alpha=gain, beta=mean - gain * float(m[0, 0]))


# A second difference in both directions: zero on any plane of grey levels, so on an image
# of mostly smooth regions its responses are mostly the noise's (Immerkaer's noise estimator)
_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def noise_sigma(gray, floor=0.5):
    """Standard deviation of the sensor noise in ``gray`` (H, W), grey levels: the median
    absolute response of ``_NOISE_MASK`` over its value for unit Gaussian noise
    (6 x 0.6745), at least ``floor``. The median keeps edges and texture, which are a
    minority of pixels in most views, from counting as noise. The mask runs on the full
    image (on a subsampled one, texture aliases into the estimate: 2-3x too high on a
    160x120 drive); the median reads every second row and column of its response."""
    gray = np.asarray(gray)
    if gray.dtype == np.uint8:  # integer responses (|r| <= 16 x 255 fits int16): the same
        response = cv2.filter2D(gray, cv2.CV_16S, _NOISE_MASK)  # values as in float32, cheaper
    else:
        response = cv2.filter2D(np.asarray(gray, np.float32), -1, _NOISE_MASK)
    return max(float(np.median(np.abs(response[1:-1:2, 1:-1:2]))) / (6 * 0.6745), floor)


def corner_strength(gray, pts, half=3):
    """Smallest eigenvalue of the mean gradient structure tensor over the (2 half + 1)^2
    window around each point: (N,) in (grey levels per pixel)^2, from central differences of
    ``gray`` (H, W) as given (not normalised). Sensor noise of standard deviation s alone
    gives about s^2 / 2; Shi and Tomasi's score, but absolute, where goodFeaturesToTrack's
    quality is relative to the image's best corner (which on a bare wall is noise).

    Written here rather than read from ``cv2.cornerMinEigenVal``: that computes the whole
    image (4.4 ms at 640x480, against 0.5 ms for 300 points here) in an undocumented scale."""
    g = np.asarray(gray, np.float32)
    h, w = g.shape
    r = half + 1
    xy = np.rint(np.asarray(pts, np.float32).reshape(-1, 2)).astype(int)
    x = np.clip(xy[:, 0], r, w - 1 - r)
    y = np.clip(xy[:, 1], r, h - 1 - r)
    offsets = np.arange(-r, r + 1)
    patches = g[y[:, None, None] + offsets[None, :, None],
                x[:, None, None] + offsets[None, None, :]]  # (N, 2 r + 1, 2 r + 1)
    gx = (patches[:, 1:-1, 2:] - patches[:, 1:-1, :-2]) / 2  # (N, 2 half + 1, 2 half + 1)
    gy = (patches[:, 2:, 1:-1] - patches[:, :-2, 1:-1]) / 2
    a, b, c = (gx * gx).mean((1, 2)), (gx * gy).mean((1, 2)), (gy * gy).mean((1, 2))
    return (a + c) / 2 - np.sqrt(((a - c) / 2) ** 2 + b * b)


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

    def track(self, prev, cur, pts, guess=None):
        """Track pts (N, 2) float32 from grey image prev to cur; ``guess`` (N, 2): where each
        point is expected in cur (e.g. the motion model's prediction).

        With a guess the forward track starts there and the backward track from where it
        ended moved back by the guessed motion. On periodic texture (tiles, brick, fences)
        KLT locks onto the copy nearest its start: started where the point was, it lands
        whole periods behind under fast motion and the backward track agrees. (Tracking the
        points a guided pass loses again from where they were brought those wrong copies
        back: not done.)

        Returns (new_pts (N, 2) float32, ok (N,) bool): ok where both directions converged,
        the backward track returns within ``fb_threshold`` pixels and the point stays inside.
        Only points whose forward track converged inside the image are tracked back (KLT
        tracks every point on its own, so the others' backward tracks could not change
        anything)."""
        if len(pts) == 0:
            return pts.copy(), np.zeros(0, bool)
        p0 = pts.reshape(-1, 1, 2).astype(np.float32)
        start = None if guess is None else \
            np.ascontiguousarray(guess, np.float32).reshape(-1, 1, 2)
        p1, st1, _ = self._lk(prev, cur, p0, start)
        p1 = p1.reshape(-1, 2)
        h, w = cur.shape[:2]
        inside = (p1[:, 0] >= 0) & (p1[:, 1] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] <= h - 1)
        ok = (st1.ravel() == 1) & inside
        idx = np.flatnonzero(ok)
        if len(idx):
            back = p1[idx].reshape(-1, 1, 2)
            p0r, st2, _ = self._lk(cur, prev, back,
                                   None if start is None else back - (start[idx] - p0[idx]))
            fb = np.linalg.norm((p0[idx] - p0r).reshape(-1, 2), axis=1)
            ok[idx] = (st2.ravel() == 1) & (fb < self.cfg.fb_threshold)
        return p1, ok

    def _lk(self, a, b, pts, start=None):
        """Pyramidal KLT of pts (N, 1, 2) from image a to b, from ``start`` (N, 1, 2) if given:
        (positions, status, error) as OpenCV returns them."""
        if start is None:
            return cv2.calcOpticalFlowPyrLK(a, b, pts, None, **self.lk)
        return cv2.calcOpticalFlowPyrLK(a, b, pts, np.ascontiguousarray(start, np.float32),
                                        flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **self.lk)

    def detect(self, gray, existing, count, raw=None, spread=True, avoid=None):
        """Up to ``count`` new corners (M, 2) float32 away from ``existing`` (N, 2), found in
        the normalised ``gray``; with ``raw`` (the image before normalisation) only corners
        whose ``corner_strength`` there is at least ``corner_noise_ratio`` times the noise
        variance (``noise_sigma`` squared): noise alone scores about 0.6 times it. With
        ``spread`` and ``grid_cells``, spread over the image (``_spread``); else the
        strongest."""
        if count <= 0:
            return np.zeros((0, 2), np.float32)
        existing = np.asarray(existing, np.float32).reshape(-1, 2)
        mask = np.full(gray.shape[:2], 255, np.uint8)
        for x, y in existing:
            cv2.circle(mask, (int(x), int(y)), self.min_distance, 0, -1)
        if avoid is not None and self.cfg.moving_mask_frac > 0:
            radius = int(round(self.cfg.moving_mask_frac * self.diagonal))
            avoid = clustered(np.asarray(avoid, np.float32).reshape(-1, 2), radius,
                              self.cfg.moving_mask_cluster)
            for x, y in avoid:
                cv2.circle(mask, (int(x), int(y)), radius, 0, -1)
        spread = spread and self.cfg.grid_cells > 0
        # spreading needs every candidate (the strongest few may all lie on one object)
        corners = cv2.goodFeaturesToTrack(gray, maxCorners=0 if spread else int(count),
                                          qualityLevel=self.cfg.quality_level,
                                          minDistance=self.min_distance, mask=mask, blockSize=7)
        if corners is None:
            return np.zeros((0, 2), np.float32)
        corners = corners.reshape(-1, 2).astype(np.float32)
        if spread:  # the noise check on the first few of the spread order only (its cost)
            corners = self._spread(corners, existing, gray.shape[:2])[:3 * int(count)]
        if raw is not None and self.cfg.corner_noise_ratio > 0:
            floor = self.cfg.corner_noise_ratio * noise_sigma(raw) ** 2
            corners = corners[corner_strength(raw, corners) >= floor]
        return corners[:int(count)]

    def _spread(self, corners, existing, shape):
        """``corners`` (strongest first) reordered so that new tracks go round the cells of a
        grid of about ``grid_cells`` cells (square-ish: columns : rows as width : height):
        each cell's strongest corner first, beginning with the cells that hold the fewest
        ``existing`` tracks, then each cell's second, and so on; the caller keeps the first
        ones it needs. Without it the strongest texture takes every new track: a textured
        object crossing the view got most of them and PnP followed the object (ORB-SLAM and
        SVO spread their features over the image for the same reason). Cells without
        texture do not cap the total: where few cells have corners, they give more."""
        h, w = shape
        cols = max(1, int(round(np.sqrt(self.cfg.grid_cells * w / h))))
        rows = max(1, int(round(self.cfg.grid_cells / cols)))

        def cell(p):
            cx = np.clip((p[:, 0] * cols / w).astype(int), 0, cols - 1)
            cy = np.clip((p[:, 1] * rows / h).astype(int), 0, rows - 1)
            return cy * cols + cx

        held = np.bincount(cell(existing), minlength=rows * cols)
        c = cell(corners)
        order = np.argsort(c, kind="stable")  # within a cell, strongest first
        rank = np.empty(len(c), int)
        starts = np.searchsorted(c[order], np.arange(rows * cols))
        rank[order] = np.arange(len(c)) - starts[c[order]]
        return corners[np.argsort(held[c] + rank, kind="stable")]


def clustered(points, radius, count):
    """The points (N, 2) with at least ``count`` of the points (themselves included) within
    ``radius`` pixels; all of them when ``count`` <= 1."""
    if count <= 1 or len(points) == 0:
        return points
    neighbours = cKDTree(points).query_ball_point(points, radius, return_length=True)
    return points[np.asarray(neighbours) >= count]
