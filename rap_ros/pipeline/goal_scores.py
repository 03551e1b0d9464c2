"""How much a preview looks like a goal image, for planners ranking candidate paths
(``preview_paths``; Navigation World Models' use of a world model): SSIM, and two distances
that a change of exposure between the source and the goal does not move (gradient
correlation, census).

Images: uint8 (h, w, 3) RGB in, both framed alike (``ViewPipeline.goal_view``); scores are
computed with the longer side downscaled to at most ``GOAL_SCORE_SIDE`` pixels.
"""
import cv2
import numpy as np

from rap_ros.metrics import ssim

GOAL_SCORE_SIDE = 128  # goal scores are computed with the longer side downscaled to this


def _score_size(image):
    """uint8 (h, w, 3) -> float32 RGB in [0, 1] with the longer side at most
    GOAL_SCORE_SIDE (area interpolation)."""
    h, w = image.shape[:2]
    scale = GOAL_SCORE_SIDE / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
    return image.astype(np.float32) / 255.0


def _grey(image):
    return cv2.cvtColor(np.asarray(image, np.float32), cv2.COLOR_RGB2GRAY)


def gradient_correlation(a, b):
    """Zero-mean normalised cross-correlation in [-1, 1] of the image gradients (Sobel, on
    grey images blurred with sigma 1) of two float images (h, w, 3): 1 for the same
    structure at any gain and offset of the exposure."""
    ga, gb = (cv2.GaussianBlur(_grey(x), (0, 0), 1.0) for x in (a, b))
    va = np.concatenate([cv2.Sobel(ga, cv2.CV_32F, 1, 0).ravel(),
                         cv2.Sobel(ga, cv2.CV_32F, 0, 1).ravel()])
    vb = np.concatenate([cv2.Sobel(gb, cv2.CV_32F, 1, 0).ravel(),
                         cv2.Sobel(gb, cv2.CV_32F, 0, 1).ravel()])
    va, vb = va - va.mean(), vb - vb.mean()
    norm = float(np.sqrt(np.dot(va, va) * np.dot(vb, vb)))
    return float(np.dot(va, vb) / norm) if norm > 0 else 0.0


def census_distance(a, b, radius=2):
    """Mean Hamming distance in [0, 1] between the census transforms (each pixel's
    comparisons with its (2r+1)^2 - 1 neighbours, grey, blurred with sigma 0.5) of two
    float images (h, w, 3); invariant to any monotonic change of exposure."""
    ga, gb = (cv2.GaussianBlur(_grey(x), (0, 0), 0.5) for x in (a, b))
    h, w = ga.shape
    r = radius
    if h <= 2 * r or w <= 2 * r:
        return float(np.mean(np.abs(ga - gb)))
    centre_a, centre_b = ga[r:h - r, r:w - r], gb[r:h - r, r:w - r]
    differ, count = 0.0, 0
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dx == 0 and dy == 0:
                continue
            na = ga[r + dy:h - r + dy, r + dx:w - r + dx]
            nb = gb[r + dy:h - r + dy, r + dx:w - r + dx]
            differ += float(np.mean((na > centre_a) != (nb > centre_b)))
            count += 1
    return differ / count


def goal_scores(last_frames, goal_view):
    """How much each preview's last frame looks like the goal, for ranking paths.

    last_frames: (P, h, w, 3) uint8; goal_view: (h, w, 3) uint8 framed like them
    (``ViewPipeline.goal_view``). Both are downscaled to a longer side of at most
    GOAL_SCORE_SIDE. Returns a dict of (P,) float arrays: ``ssim`` (higher is more alike),
    ``gradient_distance`` = 1 - ``gradient_correlation`` in [0, 2] and ``census_distance``
    in [0, 1] (lower is more alike; both robust to the exposure).
    """
    goal = _score_size(np.asarray(goal_view))
    frames = [_score_size(f) for f in np.asarray(last_frames)]
    return {
        "ssim": np.array([float(ssim(f.astype(np.float64), goal.astype(np.float64)))
                          if min(goal.shape[:2]) >= 11 else np.nan for f in frames]),
        "gradient_distance": np.array([1.0 - gradient_correlation(f, goal) for f in frames]),
        "census_distance": np.array([census_distance(f, goal) for f in frames]),
    }
