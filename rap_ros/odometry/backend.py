"""Back end: sliding-window bundle adjustment of keyframe poses and landmarks on GTSAM.

Conventions: poses are camera-to-world 4x4 with OpenCV camera axes, which is GTSAM's
``Pose3`` of a ``PinholeCamera`` (the camera's pose in the world, z forward, x right, y down),
so matrices pass to GTSAM unchanged. Measurements are pixels; K is ``Cal3_S2``.

Factors: ``GenericProjectionFactorCal3_S2`` per observation with a Huber-robust isotropic
pixel noise; the oldest ``fixed`` keyframes get a tight ``PriorFactorPose3`` (gauge and scale);
motion-prior factors are ``BetweenFactorPose3`` with a Huber-robust Gaussian noise.

Covariances returned (``covariance=True``: the newest free keyframe, which is what the
front end publishes; ``"all"``: every free keyframe) are 6x6 in the keyframe's local tangent
(right perturbation ``c2w * exp(xi)``), ordered translation then rotation (GTSAM orders
rotation first; we swap).

Solvers: "lm" (Levenberg-Marquardt over the window graph, rebuilt per call, at most
``iterations`` iterations) or "isam2" (the same window graph handed to a fresh ``ISAM2`` in one
batch update: one Gauss-Newton step from the front end's estimate; further ``update()`` calls
without new factors would not relinearise before ``relinearizeSkip`` (10) updates, so none
are made). ISAM2's Gauss-Newton is undamped, so a window that makes it throw or raises the
error is solved again (counted in ``fallbacks``) by ``fallback``: "lm" (Levenberg-Marquardt,
as above) or "dogleg" (one ISAM2 update with Powell's dogleg, a trust region, and LM only if
that fails too); see benchmarks/eval_odometry.py for the measured comparison.

Keys: keyframe poses are ``X(kid)`` symbols; landmarks are their plain integer ids (below any
symbol, so they order before the poses as ``L(lid)`` symbols would). The projection factors
(about 1,200 per window) are built in C++ by ``gtsam.utilities.insertProjectionFactors``, one
call per keyframe, which takes its landmark keys as a float64 vector: plain ids stay exact
up to 2^53 where a symbol's would not. Built in a Python loop they cost about 6 ms per
window, and cached across windows still about 3 ms.
"""
import time
from dataclasses import dataclass, field

import gtsam
import numpy as np

X = gtsam.symbol_shorthand.X


def to_rt_order(cov):
    """GTSAM (rotation, translation) 6x6 -> (translation, rotation)."""
    idx = [3, 4, 5, 0, 1, 2]
    return np.asarray(cov)[np.ix_(idx, idx)]


def to_gtsam_order(cov):
    """(translation, rotation) 6x6 -> GTSAM (rotation, translation)."""
    return to_rt_order(cov)  # the swap is its own inverse


@dataclass
class BAProblem:
    """One window. poses: keyframe id -> c2w; fixed: ids held fixed; points: landmark id ->
    (3,) world point; obs_kf, obs_lm (M,) int and obs_uv (M, 2) pixels; betweens: list of
    (kf_a, kf_b, T_ab = inv(c2w_a) c2w_b, cov (6, 6) translation then rotation)."""

    K: np.ndarray
    poses: dict
    fixed: set
    points: dict
    obs_kf: np.ndarray
    obs_lm: np.ndarray
    obs_uv: np.ndarray
    betweens: list = field(default_factory=list)


@dataclass
class BAResult:
    poses: dict
    points: dict
    covariances: dict
    error_before: float
    error_after: float
    seconds: float
    factors: int
    fallback: bool = False  # an isam2 window solved again by LM
    failed: bool = False    # no solver solved it (poses and points as given)


class WindowBundleAdjuster:
    def __init__(self, pixel_sigma=1.0, huber=1.345, iterations=8, solver="lm",
                 prior_huber=1.345, covariance=True, fallback="lm"):
        if solver not in ("lm", "isam2"):
            raise ValueError(f"solver must be 'lm' or 'isam2', got {solver!r}")
        if fallback not in ("lm", "dogleg"):
            raise ValueError(f"fallback must be 'lm' or 'dogleg', got {fallback!r}")
        self.solver = solver
        self.fallback = fallback
        self.iterations = int(iterations)
        self.covariance = covariance
        self.pixel_noise = gtsam.noiseModel.Robust.Create(
            gtsam.noiseModel.mEstimator.Huber.Create(huber),
            gtsam.noiseModel.Isotropic.Sigma(2, pixel_sigma))
        self.fixed_noise = gtsam.noiseModel.Isotropic.Sigma(6, 1e-5)
        self.prior_huber = prior_huber
        self.failures = 0   # windows no solver could solve (left unchanged)
        self.fallbacks = 0  # isam2 windows solved again by LM
        self._K = None  # (K's values, gtsam.Cal3_S2): built again only when K changes

    @staticmethod
    def _isam2(graph, values, error_before, dogleg=False):
        """One batch update of a fresh ISAM2: (estimate, the ISAM2, its error) or (None,
        None, None) where it throws or does not lower the error."""
        params = gtsam.ISAM2Params()
        if dogleg:
            params.setOptimizationParams(gtsam.ISAM2DoglegParams())
        try:
            isam = gtsam.ISAM2(params)
            isam.update(graph, values)  # the batch step (see the module docstring)
            result = isam.calculateEstimate()
        except RuntimeError:  # an ill-posed window
            return None, None, None
        error_after = graph.error(result)
        if not np.isfinite(error_after) or error_after > error_before:
            return None, None, None  # diverged: e.g. undamped steps, poorly constrained window
        return result, isam, error_after

    def _lm(self, graph, values):
        params = gtsam.LevenbergMarquardtParams()
        params.setMaxIterations(self.iterations)
        params.setRelativeErrorTol(1e-4)
        return gtsam.LevenbergMarquardtOptimizer(graph, values, params).optimize()

    def solve(self, p: BAProblem) -> BAResult:
        start = time.perf_counter()
        kt = tuple(np.round(np.asarray(p.K, float).ravel(), 9))
        if self._K is None or self._K[0] != kt:
            self._K = (kt, gtsam.Cal3_S2(p.K[0, 0], p.K[1, 1], 0.0, p.K[0, 2], p.K[1, 2]))
        graph = gtsam.NonlinearFactorGraph()
        values = gtsam.Values()
        for k, c2w in p.poses.items():
            values.insert(X(k), gtsam.Pose3(c2w))
        # landmarks with at least two observations inside the window
        keep = np.isin(p.obs_kf, list(p.poses.keys()))
        lm_ids, counts = np.unique(p.obs_lm[keep], return_counts=True)
        used = set(lm_ids[counts >= 2].tolist()) & set(p.points.keys())
        for lid in used:
            values.insert(lid, np.asarray(p.points[lid], float))
        keep &= np.isin(p.obs_lm, np.fromiter(used, np.int64, len(used)))
        obs_kf, obs_lm = p.obs_kf[keep], p.obs_lm[keep].astype(float)
        obs_uv = np.asarray(p.obs_uv, float)[keep]
        # one call per run of equal keyframe ids, so the factors keep the observations' order
        starts = np.flatnonzero(np.r_[True, obs_kf[1:] != obs_kf[:-1]])[:len(obs_kf)]
        for a, b in zip(starts, np.r_[starts[1:], len(obs_kf)]):
            gtsam.utilities.insertProjectionFactors(
                graph, X(int(obs_kf[a])), obs_lm[a:b], np.ascontiguousarray(obs_uv[a:b].T),
                self.pixel_noise, self._K[1])
        for k in p.fixed:
            if k in p.poses:
                graph.add(gtsam.PriorFactorPose3(X(k), gtsam.Pose3(p.poses[k]), self.fixed_noise))
        for a, b, T_ab, cov in p.betweens:
            if a in p.poses and b in p.poses:
                noise = gtsam.noiseModel.Robust.Create(
                    gtsam.noiseModel.mEstimator.Huber.Create(self.prior_huber),
                    gtsam.noiseModel.Gaussian.Covariance(to_gtsam_order(cov)))
                graph.add(gtsam.BetweenFactorPose3(X(a), X(b), gtsam.Pose3(T_ab), noise))
        # an unconstrained keyframe (no landmarks, no prior) would leave the system singular
        free = [k for k in p.poses if k not in p.fixed]
        weak = gtsam.noiseModel.Isotropic.Sigma(6, 1e2)
        for k in free:
            graph.add(gtsam.PriorFactorPose3(X(k), gtsam.Pose3(p.poses[k]), weak))
        error_before = graph.error(values)
        result, isam, error_after, fallback, failed = None, None, None, False, False
        if self.solver == "isam2":
            result, isam, error_after = self._isam2(graph, values, error_before)
            if result is None:
                self.fallbacks += 1
                fallback = True
                if self.fallback == "dogleg":
                    result, isam, error_after = self._isam2(graph, values, error_before,
                                                            dogleg=True)
        if result is None:
            try:
                result = self._lm(graph, values)
            except RuntimeError:
                self.failures += 1
                failed, result = True, values
            error_after = graph.error(result)
        poses = {k: result.atPose3(X(k)).matrix() for k in p.poses}
        # every Point3 of the values is a landmark, in key order (their ids)
        lids = sorted(used)
        points = dict(zip(lids, gtsam.utilities.extractPoint3(result).reshape(-1, 3)))
        covariances = {}
        if self.covariance and free:
            try:  # iSAM2's Bayes tree gives marginals without a new factorisation
                marginals = isam if isam is not None else gtsam.Marginals(graph, result)
                for k in (free if self.covariance == "all" else free[-1:]):
                    covariances[k] = to_rt_order(marginals.marginalCovariance(X(k)))
            except RuntimeError:
                pass
        return BAResult(poses, points, covariances, float(error_before), float(error_after),
                        time.perf_counter() - start, graph.size(), fallback, failed)
