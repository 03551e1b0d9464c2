"""The joint model as a motion prior.

A ``MotionPrior`` turns a window of frames into relative camera motion:
``estimate(frames, K) -> PriorWindow`` with frames uint8 (T, H, W, 3) RGB (T = ``window``),
K (3, 3) pixels or None. ``PriorWindow.c2w`` (T, 4, 4) are camera-to-world poses relative to
the first frame (c2w[0] = I, OpenCV camera axes) at an arbitrary scale; ``covariance``
(T, 6, 6) is translation then rotation vector (radians), in the model's normalised units;
``K`` (3, 3) the intrinsics it used or estimated.

``ModelPrior`` wraps an *injected* estimator (today's ``TrajectoryPipeline``: anything with
``estimate_window(frames, K)`` returning an object with ``.c2w``, ``.covariance``,
``.samples``, ``.K``); this module imports nothing of the model.

With one diffusion sample the model's covariance is zero: a floor is applied when the window
becomes between-factors (``OdometryConfig.prior_rot_floor_deg``, ``prior_trans_floor``:
the rotation sigma is at least 2 degrees and the translation sigma at least 20 % of the
step by default), so a single sample never gets infinite weight.
"""
import abc
import time
from dataclasses import dataclass

import numpy as np

from rap_ros.geometry.cameras import invert_pose


@dataclass
class PriorWindow:
    c2w: np.ndarray
    covariance: np.ndarray
    K: np.ndarray = None
    seconds: float = 0.0


class MotionPrior(abc.ABC):
    """Relative motion of a window of frames (see the module docstring)."""

    window: int = 9

    @abc.abstractmethod
    def estimate(self, frames, K=None) -> PriorWindow:
        ...


class ModelPrior(MotionPrior):
    """The joint video/camera model as a ``MotionPrior``.

    estimator: object with ``estimate_window(frames, K)`` (e.g. ``TrajectoryPipeline``).
    window: frames per window; default ``estimator.config.frames`` (9 for the shipped model).
    """

    def __init__(self, estimator, window=None):
        self.estimator = estimator
        if window is None:
            window = int(getattr(getattr(estimator, "config", None), "frames", 9))
        self.window = int(window)

    def estimate(self, frames, K=None) -> PriorWindow:
        start = time.perf_counter()
        est = self.estimator.estimate_window(np.asarray(frames), K)
        c2w = np.asarray(est.c2w, float)
        c2w = invert_pose(c2w[0])[None] @ c2w  # relative to the first frame
        cov = np.asarray(getattr(est, "covariance", None) if getattr(est, "covariance", None)
                         is not None else np.zeros((len(c2w), 6, 6)), float)
        return PriorWindow(c2w=c2w, covariance=cov, K=np.asarray(est.K, float),
                           seconds=time.perf_counter() - start)


def window_scale(model_c2w, geo_c2w, valid):
    """Scale s that maps the model's translations onto the geometry's over one window.

    model_c2w, geo_c2w: (T, 4, 4); valid (T,) bool: frames whose geometric pose is trusted.
    Both are expressed relative to their first valid frame; s = <g, m> / <m, m> over the
    other valid frames. Returns None when the model's motion is too small to tell."""
    idx = np.flatnonzero(valid)
    if len(idx) < 2:
        return None
    ref = idx[0]
    m = np.stack([(invert_pose(model_c2w[ref]) @ model_c2w[i])[:3, 3] for i in idx[1:]])
    g = np.stack([(invert_pose(geo_c2w[ref]) @ geo_c2w[i])[:3, 3] for i in idx[1:]])
    mm = float(np.sum(m * m))
    if mm < 1e-10:
        return None
    return max(float(np.sum(g * m)) / mm, 0.0)


def relative_factor(prior: PriorWindow, i, j, scale, rot_floor_rad, trans_floor, min_trans):
    """Between-factor (T_ij (4, 4), cov (6, 6) translation then rotation) from window frame i
    to j, translation scaled by ``scale``; covariance = scaled sum of the two frames'
    covariances, floored."""
    T = invert_pose(prior.c2w[i]) @ prior.c2w[j]
    T[:3, 3] *= scale
    cov = np.zeros((6, 6))
    if prior.covariance is not None and len(prior.covariance) > max(i, j):
        cov = prior.covariance[i] + prior.covariance[j]
        cov[:3, :3] *= scale ** 2
        cov[:3, 3:] *= scale
        cov[3:, :3] *= scale
    step = float(np.linalg.norm(T[:3, 3]))
    t_floor = max(trans_floor * step, min_trans) ** 2
    r_floor = rot_floor_rad ** 2
    cov[:3, :3] += np.eye(3) * t_floor
    cov[3:, 3:] += np.eye(3) * r_floor
    return T, cov
