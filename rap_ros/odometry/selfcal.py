"""Focal length self-calibration: one bundle adjustment of a window with the focal free.

When no ``camera_info`` arrives, the core starts from a focal length it cannot check (the
model's estimate, or a field-of-view guess) and every rotation, triangulation and PnP pose
inherits its error. Once the local map has enough keyframes, the same window problem the
back end solves (``backend.BAProblem``: keyframe poses, landmarks, pixel observations) is
solved once more with the calibration as a variable: ``GeneralSFMFactor2Cal3f`` per
observation, one shared ``Cal3f`` (a single focal length f in pixels, principal point held
where K has it, square pixels, no skew).

Gauge: the first keyframe is held by a tight prior (rotation and position) and the scale
by a tight range factor keeping the first-to-last keyframe distance, so the map keeps its
units (and the focal's marginal, which no gauge choice changes, is computable); the other
keyframes get the back end's weak prior (sigma 100) so a keyframe without landmarks cannot
make the system singular. The focal is not held by a prior: its marginal standard deviation says
whether the window observes it (pure translation along the optical axis, for one, does
not), and ``refine_focal`` returns None when it is not observed to ``max_sigma_rel`` or the
solve fails; the caller then keeps its K.
"""
import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass

import gtsam
import numpy as np

from rap_ros.odometry.backend import BAProblem
from rap_ros.odometry.twoview import project

X = gtsam.symbol_shorthand.X
L = gtsam.symbol_shorthand.L
C = gtsam.symbol_shorthand.C


@dataclass
class FocalResult:
    """K (3, 3) with the refined focal; poses / points as in ``BAResult`` (keyframe id ->
    c2w (4, 4), landmark id -> (3,)), in the input's scale; dropped: ids of landmarks the
    solve put behind a camera or beyond ``max_depth`` (the caller removes them); focal_sigma:
    marginal standard deviation of f, pixels; error_before / error_after: the graph's
    error."""

    K: np.ndarray
    poses: dict
    points: dict
    dropped: set
    focal_sigma: float
    error_before: float
    error_after: float
    seconds: float


def refine_focal(problem: BAProblem, pixel_noise, iterations=8,
                 max_sigma_rel=0.05, min_landmarks=30, max_depth=40.0, max_landmarks=150,
                 starts=(1.0,)):
    """The window ``problem`` solved with the focal length free (see the module docstring);
    ``pixel_noise``: the reprojection noise model (the back end's,
    ``WindowBundleAdjuster.pixel_noise``).

    Only landmarks seen by at least 3 keyframes (the ``max_landmarks`` seen by most), in
    front of every keyframe that sees them and nearer than ``max_depth``
    times the first-to-last keyframe distance, enter: a far point says little about f and
    can cross to behind the camera while f changes (GTSAM then reports a cheirality error
    on stdout for every factor of it). Returns a ``FocalResult``, or None when fewer than
    ``min_landmarks`` such landmarks are seen twice, the solve fails or does not lower the
    error, or f's standard deviation exceeds ``max_sigma_rel`` of f.

    ``starts``: the solve starts from each of these multiples of the problem's focal (the
    poses and landmarks as given) and the accepted solve with the lowest error is returned;
    a start far from the truth can stall where a nearer one converges."""
    start = time.perf_counter()
    K = np.asarray(problem.K, float)
    if len(problem.poses) < 3:
        return None
    first, last = min(problem.poses), max(problem.poses)
    baseline = float(np.linalg.norm(problem.poses[last][:3, 3] - problem.poses[first][:3, 3]))
    if baseline < 1e-9:
        return None
    keep = np.isin(problem.obs_kf, list(problem.poses))
    keep &= _near_and_in_front(problem, max_depth * baseline)
    lm_ids, counts = np.unique(problem.obs_lm[keep], return_counts=True)
    # the longest-tracked landmarks, at most max_landmarks (the solve's time is theirs)
    order = np.argsort(-counts, kind="stable")[:max_landmarks]
    used = {i for i, n in zip(lm_ids[order].tolist(), counts[order].tolist())
            if n >= 3 and i in problem.points}
    if len(used) < min_landmarks:
        return None
    keep &= np.isin(problem.obs_lm, np.fromiter(used, np.int64, len(used)))

    graph = gtsam.NonlinearFactorGraph()
    values = gtsam.Values()
    f0 = 0.5 * (K[0, 0] + K[1, 1])
    for k, c2w in problem.poses.items():
        values.insert(X(k), gtsam.Pose3(c2w))
    for lid in used:
        values.insert(L(lid), np.asarray(problem.points[lid], float))
    for k, lid, uv in zip(problem.obs_kf[keep].tolist(), problem.obs_lm[keep].tolist(),
                          np.asarray(problem.obs_uv, float)[keep]):
        graph.add(gtsam.GeneralSFMFactor2Cal3f(uv, pixel_noise, X(k), L(lid), C(0)))
    graph.add(gtsam.PriorFactorPose3(X(first), gtsam.Pose3(problem.poses[first]),
                                     gtsam.noiseModel.Isotropic.Sigma(6, 1e-5)))
    graph.add(gtsam.RangeFactorPose3(X(first), X(last), baseline,
                                     gtsam.noiseModel.Isotropic.Sigma(1, 1e-4 * baseline)))
    weak = gtsam.noiseModel.Isotropic.Sigma(6, 1e2)
    for k, c2w in problem.poses.items():
        if k != first:
            graph.add(gtsam.PriorFactorPose3(X(k), gtsam.Pose3(c2w), weak))

    def start_at(factor):
        start_values = gtsam.Values(values)
        start_values.insert(C(0), gtsam.Cal3f(factor * f0, K[0, 2], K[1, 2]))
        return start_values

    with _quiet_cpp_stdout():
        error_before = graph.error(start_at(1.0))  # the window as it is
        best = None
        for factor in starts:
            solved = _solve_focal(graph, start_at(factor), iterations, max_sigma_rel,
                                  error_before)
            if solved is not None and (best is None or solved[3] < best[3]):
                best = solved
    if best is None:
        return None
    result, f, sigma, error_after = best

    poses = {k: result.atPose3(X(k)).matrix() for k in problem.poses}
    points = {lid: np.asarray(result.atPoint3(L(lid)), float) for lid in used}
    # a point the solve pushed behind a camera or beyond max_depth is not kept
    solved = BAProblem(K, poses, problem.fixed, points, problem.obs_kf, problem.obs_lm,
                       problem.obs_uv)
    good = set(problem.obs_lm[_near_and_in_front(solved, max_depth * baseline)].tolist())
    dropped = {lid for lid in used if lid not in good}
    points = {lid: p for lid, p in points.items() if lid not in dropped}
    K_new = K.copy()
    K_new[0, 0] = K_new[1, 1] = f
    return FocalResult(K_new, poses, points, dropped, sigma, float(error_before),
                       float(error_after), time.perf_counter() - start)


def _solve_focal(graph, values, iterations, max_sigma_rel, error_limit):
    """LM on the focal graph from ``values``: (result, f, sigma, error after), or None where
    it fails, ends at an error not below ``error_limit`` or leaves f's sigma above
    ``max_sigma_rel`` of f."""
    params = gtsam.LevenbergMarquardtParams()
    params.setMaxIterations(iterations)
    # start damped: the window is already a bundle-adjusted optimum for the old f, and a
    # first step at GTSAM's default lambda (1e-5) threw points behind the cameras on one
    # measured window (cost x 6,500; 933 cheirality lines on stdout); 1e-3 and 1e-2 did not
    # and converged as fast on the tests' windows, 1 and more needed twice the iterations
    params.setlambdaInitial(1e-2)
    params.setRelativeErrorTol(1e-5)
    try:
        result = gtsam.LevenbergMarquardtOptimizer(graph, values, params).optimize()
        sigma = float(np.sqrt(gtsam.Marginals(graph, result).marginalCovariance(C(0))[0, 0]))
    except RuntimeError:  # indeterminant system: the window does not constrain it
        return None
    error_after = graph.error(result)
    f = float(result.atCal3f(C(0)).fx())
    if not (np.isfinite(error_after) and error_after < error_limit and f > 0
            and sigma <= max_sigma_rel * f):
        return None
    return result, f, sigma, error_after


_QUIET = threading.Lock()
_quiet_depth = 0  # solves inside _quiet_cpp_stdout now (fd 1 is /dev/null while > 0)
_saved_stdout = None


@contextlib.contextmanager
def _quiet_cpp_stdout():
    """File descriptor 1 points at /dev/null inside the block.

    GTSAM's ``GeneralSFMFactor2`` writes a line to std::cout for every landmark a solve step
    moves behind a camera, and has no switch for it (the projection factors with a
    calibration variable that have one, ``ProjectionFactorPPPC``, are not in the Python
    wrapper). Such landmarks are handled here (dropped after the solve), so the lines only
    flood a node's console. Python's ``sys.stdout`` is flushed first so nothing written
    before is lost; a print from another thread during the solve would be (ROS logging goes
    to stderr). Blocks may overlap across threads: the first one in redirects, the last one
    out restores."""
    global _quiet_depth, _saved_stdout
    with _QUIET:
        if _quiet_depth == 0:
            sys.stdout.flush()
            _saved_stdout = os.dup(1)
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 1)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _QUIET:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                os.dup2(_saved_stdout, 1)
                os.close(_saved_stdout)


def _near_and_in_front(problem, max_depth):
    """(M,) bool over the observations: the landmark lies at a depth in (0, max_depth] in
    every keyframe of the problem that observes it."""
    bad = set()
    for k, c2w in problem.poses.items():
        mine = np.flatnonzero(problem.obs_kf == k)
        ids = [i for i in problem.obs_lm[mine].tolist() if i in problem.points]
        if not ids:
            continue
        _, z = project(problem.K, c2w, np.array([problem.points[i] for i in ids]))
        bad.update(np.asarray(ids)[(z <= 0) | (z > max_depth)].tolist())
    return ~np.isin(problem.obs_lm, np.fromiter(bad, np.int64, len(bad)))
