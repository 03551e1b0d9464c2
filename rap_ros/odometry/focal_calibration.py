"""`FocalCalibration`: when the odometry core runs without given intrinsics (no
camera_info), it decides when to solve the window once more with the focal length free
(``selfcal.refine_focal``) and applies an accepted solve to the local map.

Conventions: K (3, 3) pixels; poses camera-to-world 4x4 with OpenCV camera axes (see
``local_map``); times in seconds.
"""
import time

from rap_ros.odometry.selfcal import refine_focal


class FocalCalibration:
    """Attempts from a full window on (``window_keyframes``), every ``focal_every`` keyframes,
    until ``focal_refinements`` solves have been accepted or ``focal_attempts`` made (fields
    of ``OdometryConfig``). ``stats``: the core's counters dict (``focal_refinements``,
    ``focal_seconds`` are counted here)."""

    def __init__(self, cfg, stats):
        self.cfg = cfg
        self.stats = stats
        self.refinements = 0        # solves accepted
        self.tried_at = -10**9      # keyframe id of the last attempt
        self.attempts = 0
        self.also_from = None       # a focal (px) every solve also starts from (see refine)

    def _due(self, local_map):
        cfg = self.cfg
        if self.refinements >= cfg.focal_refinements or self.attempts >= cfg.focal_attempts \
                or len(local_map.window) < cfg.window_keyframes:
            return False
        return local_map.window[-1].kid - self.tried_at >= cfg.focal_every

    def refine(self, local_map, K, pixel_noise):
        """Solve the window of ``local_map`` with the focal free when due; an accepted solve
        replaces the window's keyframes and its landmarks (those it dropped are removed) and
        its K (3, 3) is returned. None when not due or not accepted (the map is unchanged)."""
        if not self._due(local_map):
            return None
        cfg = self.cfg
        self.tried_at = local_map.window[-1].kid
        self.attempts += 1
        start = time.perf_counter()
        starts = tuple(cfg.focal_starts)
        if self.also_from is not None:  # a second hypothesis: the lowest error wins
            starts += (self.also_from / K[0, 0],)
        result = refine_focal(local_map.ba_problem(K, cfg.ba_fixed), pixel_noise,
                              max_sigma_rel=cfg.focal_max_sigma, starts=starts)
        self.stats["focal_seconds"] += time.perf_counter() - start
        if result is None:
            return None
        self.refinements += 1
        self.stats["focal_refinements"] += 1
        local_map.apply(result.poses, result.points)
        for i in result.dropped:
            local_map.landmarks.pop(i, None)
        return result.K
