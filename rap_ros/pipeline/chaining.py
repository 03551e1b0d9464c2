"""Overlapping window estimates -> one continuous trajectory.

Poses are camera-to-world 4x4 (OpenCV axes) at the contract's normalised scale per window;
the chained trajectory is in the run's frame: the first window's first camera, at the first
window's scale. Covariances are (6, 6) over (translation, rotation vector), world frame.
"""
from dataclasses import dataclass

import numpy as np

from rap_ros.geometry.poses import align_sim3, apply_sim3


@dataclass
class ChainedPoses:
    """Poses a chainer has fixed for good.

    first: index of the first of these frames in the whole run.
    c2w: (n, 4, 4) camera-to-world in the run's frame (the first window's first
        camera; scale of the first window).
    covariance: (n, 6, 6) in the same frame (translation, rotation vector), or None.
    """

    first: int
    c2w: np.ndarray
    covariance: np.ndarray = None


class TrajectoryChainer:
    """Stitch overlapping window estimates into one continuous trajectory.

    Windows hold ``window`` consecutive frames, each starting ``stride`` frames after
    the previous one (1 <= stride < window), so consecutive windows share
    ``overlap = window - stride`` frames. Each window comes in its own frame
    (relative to its first camera, normalised scale, as ``TrajectoryPipeline``
    returns it). It is mapped into the run's frame by the Sim(3) that best aligns
    its first ``overlap`` poses with the poses already fixed for those frames
    (``align_sim3``: rotation from the orientations, scale and translation from
    the camera centres). Poses of the overlap keep their earlier estimate; the
    window's last ``stride`` poses are new.

    Only the last ``overlap`` poses are kept, so each window costs the same however
    long the run. Windows are normalised one by one, so the scale between them comes
    from the overlap alone: use an overlap of at least 2 frames. When the overlap does
    not fix the scale (one shared frame, or a static camera) the previous window's
    scale is kept, which assumes the speed did not change much.
    """

    def __init__(self, window, stride, min_spread=1e-3):
        if not 1 <= stride < window:
            raise ValueError(f"need 1 <= stride < window, got window={window}, stride={stride}")
        self.window, self.stride = int(window), int(stride)
        self.overlap = self.window - self.stride
        self.min_spread = float(min_spread)
        self.reset()

    def reset(self):
        """Forget the run: the next window starts a new trajectory at frame 0."""
        self._tail = None  # (overlap, 4, 4) fixed poses of the latest overlap frames
        self._scale = 1.0  # scale of the latest window's map into the run's frame
        self.frames = 0  # frames fixed so far

    @property
    def scale(self):
        """Scale of the latest window's map into the run's frame (run units per window
        unit); the fallback scale for the next window, and for aligning a last partial
        window by hand with ``align_sim3``."""
        return self._scale

    def push(self, c2w, covariance=None):
        """Add the next window, c2w (window, 4, 4) and optional covariance (window, 6, 6).

        Returns ChainedPoses for the frames fixed by this window: all ``window`` frames
        for the first window, the last ``stride`` frames after that.
        """
        c2w = np.asarray(c2w, dtype=np.float64)
        if c2w.shape != (self.window, 4, 4):
            raise ValueError(f"expected c2w of shape ({self.window}, 4, 4), got {c2w.shape}")
        if covariance is not None:
            covariance = np.asarray(covariance, dtype=np.float64)
        if self._tail is None:
            scale, R, t = 1.0, np.eye(3), np.zeros(3)
            new = slice(0, self.window)
        else:
            scale, R, t = align_sim3(c2w[:self.overlap], self._tail, self._scale,
                                     self.min_spread)
            new = slice(self.overlap, self.window)
        self._scale = scale
        aligned = apply_sim3(c2w, scale, R, t)
        if self._tail is not None:
            aligned[:self.overlap] = self._tail
        self._tail = aligned[-self.overlap:].copy()
        first = self.frames
        self.frames += new.stop - new.start
        cov = None
        if covariance is not None:
            A = np.zeros((6, 6))
            A[:3, :3], A[3:, 3:] = scale * R, R
            cov = A @ covariance[new] @ A.T
        return ChainedPoses(first=first, c2w=aligned[new], covariance=cov)
