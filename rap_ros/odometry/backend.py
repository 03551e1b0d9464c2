"""Back end: sliding-window bundle adjustment of keyframe poses and landmarks on GTSAM.

Conventions: poses are camera-to-world 4x4 with OpenCV camera axes, which is GTSAM's
``Pose3`` of a ``PinholeCamera`` (the camera's pose in the world, z forward, x right, y down),
so matrices pass to GTSAM unchanged. Measurements are pixels; K is ``Cal3_S2``.

Factors: ``GenericProjectionFactorCal3_S2`` per observation with a Huber-robust isotropic
pixel noise; the oldest ``fixed`` keyframes get a tight ``PriorFactorPose3`` (gauge and scale);
motion-prior factors are ``BetweenFactorPose3`` with a Huber-robust Gaussian noise.

Covariances returned are 6x6 in the keyframe's local tangent (right perturbation
``c2w * exp(xi)``), ordered translation then rotation (GTSAM orders rotation first; we swap).

Solvers: "lm" (Levenberg-Marquardt over the window graph, rebuilt per call) or "isam2" (the
same window graph handed to ``ISAM2`` in one update plus relinearising updates); see
benchmarks/eval_odometry.py for the measured comparison.
"""
import time
from dataclasses import dataclass, field

import gtsam
import numpy as np

X = gtsam.symbol_shorthand.X
L = gtsam.symbol_shorthand.L


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


class WindowBundleAdjuster:
    def __init__(self, pixel_sigma=1.0, huber=1.345, iterations=8, solver="lm",
                 prior_huber=1.345, covariance=True):
        if solver not in ("lm", "isam2"):
            raise ValueError(f"solver must be 'lm' or 'isam2', got {solver!r}")
        self.solver = solver
        self.iterations = int(iterations)
        self.covariance = covariance
        self.pixel_noise = gtsam.noiseModel.Robust.Create(
            gtsam.noiseModel.mEstimator.Huber.Create(huber),
            gtsam.noiseModel.Isotropic.Sigma(2, pixel_sigma))
        self.fixed_noise = gtsam.noiseModel.Isotropic.Sigma(6, 1e-5)
        self.prior_huber = prior_huber
        self.failures = 0  # windows the solver could not solve (left unchanged)

    def solve(self, p: BAProblem) -> BAResult:
        start = time.perf_counter()
        K = gtsam.Cal3_S2(p.K[0, 0], p.K[1, 1], 0.0, p.K[0, 2], p.K[1, 2])
        graph = gtsam.NonlinearFactorGraph()
        values = gtsam.Values()
        for k, c2w in p.poses.items():
            values.insert(X(k), gtsam.Pose3(c2w))
        # landmarks with at least two observations inside the window
        keep = np.isin(p.obs_kf, list(p.poses.keys()))
        lm_ids, counts = np.unique(p.obs_lm[keep], return_counts=True)
        used = set(lm_ids[counts >= 2].tolist()) & set(p.points.keys())
        for lid in used:
            values.insert(L(lid), np.asarray(p.points[lid], float))
        for k, lid, uv in zip(p.obs_kf[keep], p.obs_lm[keep], p.obs_uv[keep]):
            if lid in used:
                graph.add(gtsam.GenericProjectionFactorCal3_S2(
                    np.asarray(uv, float), self.pixel_noise, X(int(k)), L(int(lid)), K))
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
        if self.solver == "lm":
            params = gtsam.LevenbergMarquardtParams()
            params.setMaxIterations(self.iterations)
            params.setRelativeErrorTol(1e-4)
            result = gtsam.LevenbergMarquardtOptimizer(graph, values, params).optimize()
        else:
            try:
                isam = gtsam.ISAM2(gtsam.ISAM2Params())
                isam.update(graph, values)
                for _ in range(max(0, self.iterations // 2 - 1)):
                    isam.update()
                result = isam.calculateEstimate()
            except RuntimeError:  # Gauss-Newton without damping: ill-posed window
                self.failures += 1
                result = values
        error_after = graph.error(result)
        poses = {k: result.atPose3(X(k)).matrix() for k in p.poses}
        points = {lid: np.asarray(result.atPoint3(L(lid))) for lid in used}
        covariances = {}
        if self.covariance and free:
            try:
                marginals = gtsam.Marginals(graph, result)
                for k in free:
                    covariances[k] = to_rt_order(marginals.marginalCovariance(X(k)))
            except RuntimeError:
                pass
        return BAResult(poses, points, covariances, float(error_before), float(error_after),
                        time.perf_counter() - start, graph.size())
