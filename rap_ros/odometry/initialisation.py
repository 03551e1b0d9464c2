"""`MapInitialiser`: the odometry core's two-view initialisation of a map — at start and
again after tracking is lost — from a reference frame and the frames tracked since.

Conventions: poses are camera-to-world 4x4 float64 with OpenCV camera axes (x right, y down,
z forward); the first map's baseline has length 1 (monocular: arbitrary scale); after a loss
the speed before it times the frames elapsed, or (``loss_scale`` "depth") the length that
gives the new map the lost map's median landmark depth ("blend": halfway in log scale);
tracks are (N,) int64 ids and (N, 2) float32 pixels; K (3, 3) pixels; angles in degrees
where a name says so.
"""
import numpy as np

from rap_ros.geometry.cameras import invert_pose, pose_from_rt
from rap_ros.odometry.local_map import scaled
from rap_ros.odometry.twoview import (in_camera, pnp, relative_rotation,
                                      rotation_compensated_parallax, triangulate)

MAX_PENDING = 60  # frames waiting for a map before the reference frame is renewed


def two_view_rotation(cfg, K, p1, p2):
    """``relative_rotation`` of tracks p1 -> p2 (N, 2) pixels with the fit checks of
    ``cfg`` (``twoview_min_inlier_ratio``, ``twoview_min_inliers``): R, t direction, mask."""
    return relative_rotation(K, p1, p2, min_inlier_ratio=cfg.twoview_min_inlier_ratio,
                             min_inliers=cfg.twoview_min_inliers)


class MapInitialiser:
    """The initialisation state: the reference frame (``ref``: frame, c2w, ids, pts), the
    frames tracked since (``pending``: frame, ids, pts), the speed before a loss
    (``speed_hint``, map units per frame), the lost map's median landmark depth
    (``depth_hint``, map units) and the frame of the last model attempt.

    ``stats``: the core's counters dict; ``local_map``: its ``LocalMap`` (rebuilt here on
    success); ``fusion``: its ``PriorFusion`` (the model's direction of travel, with
    ``prior_init_after``); ``placed``: the core's recent frames placed by the map."""

    def __init__(self, cfg, stats, local_map, fusion, placed):
        self.cfg, self.stats, self.map, self.fusion, self.placed = \
            cfg, stats, local_map, fusion, placed
        self.ref = None
        self.pending = []
        self.speed_hint = None
        self.depth_hint = None
        self.last_model_try = -10**9
        self.waiting = []           # (frame, ids, pts) waiting to be placed on the new map
        self.waiting_between = None  # its first two keyframes

    def start(self, index, c2w, ids, pts):
        """Frame ``index`` at ``c2w`` with tracks ``ids``, ``pts`` becomes the reference."""
        self.ref = dict(frame=index, c2w=c2w.copy(), ids=ids.copy(), pts=pts.copy())
        self.pending = []

    def after_loss(self, speed, depth=None):
        """Tracking was lost while moving ``speed`` per frame with the map's landmarks at a
        median ``depth`` (None: unknown): the next map's scale follows one of them
        (``loss_scale``; the first loss's are kept until a map is made)."""
        if self.speed_hint is None:
            self.speed_hint = max(float(speed), 1e-6)
            self.depth_hint = depth

    def scale(self, f):
        """Multiply the reference pose and the speed by ``f`` (``set_scale``)."""
        if self.ref is not None:
            self.ref["c2w"] = scaled(self.ref["c2w"], f)
        if self.speed_hint is not None:
            self.speed_hint *= f
        if self.depth_hint is not None:
            self.depth_hint *= f

    def _baseline(self, frames):
        if self.speed_hint:
            return max(self.speed_hint * frames, 1e-6)
        return 1.0

    def attempt(self, index, K, ids, pts, guess, diag):
        """Try to make a map from the reference and frame ``index`` (tracks ``ids``, ``pts``;
        ``guess``: its constant-velocity c2w; ``diag``: the image diagonal, pixels).
        Returns (c2w of the frame, map made, the reference should be renewed here); a frame
        without a map is recorded as pending."""
        cfg, ref = self.cfg, self.ref
        common, ia, ib = np.intersect1d(ref["ids"], ids, return_indices=True)
        p_ref, p_cur = ref["pts"][ia], pts[ib]
        R, tdir, mask = two_view_rotation(cfg, K, p_ref, p_cur)
        # pose of the waiting frame: rotation from two views, position by constant velocity
        # after a loss (speed hint) or held at the reference
        c2w = guess if self.speed_hint else ref["c2w"].copy()
        if R is not None:
            c2w[:3, :3] = ref["c2w"][:3, :3] @ R.T
        self.map.records[index] = (None, c2w.copy())
        done = restart = False
        if R is not None and len(common) >= cfg.init_min_points:
            parallax = rotation_compensated_parallax(K, R, p_ref[mask], p_cur[mask])
            baseline = self._baseline(index - ref["frame"])
            prior = self.fusion.prior
            if parallax >= cfg.init_parallax_frac * diag:
                T_21 = pose_from_rt(R, tdir * baseline)
                done = self._make_map(index, K, ids, pts, common, p_ref, p_cur, mask,
                                      ref["c2w"] @ invert_pose(T_21), cfg.init_min_angle_deg)
            elif prior is not None and cfg.prior_init_after > 0 \
                    and index - ref["frame"] >= cfg.prior_init_after \
                    and index - self.last_model_try >= cfg.prior_init_after \
                    and index - ref["frame"] < prior.window:
                # at most one model attempt every prior_init_after frames (a standing robot
                # must not cost a model call per frame), and only with the reference frame
                # inside the model's window (the buffer)
                self.last_model_try = index
                # the model's direction of travel (no scale needed: the baseline sets the
                # length) with the geometry's rotation
                rel = self.fusion.relative(ref["frame"], index, K, to_map=False)
                length = np.inf if rel is None else np.linalg.norm(rel[:3, 3])
                if np.isfinite(length) and length > 1e-9:
                    rel = pose_from_rt(R.T, rel[:3, 3] / length * baseline)
                    done = self._make_map(index, K, ids, pts, common, p_ref, p_cur, mask,
                                          ref["c2w"] @ rel, 0.5 * cfg.init_min_angle_deg)
                    self.stats["model_inits"] += done
        elif len(common) < cfg.init_min_points:
            restart = True
        if not done and len(common) < cfg.init_renew_ratio * len(ids):
            restart = True  # most live tracks are newer than the reference: renew it
        return c2w, done, restart

    def wait(self, index, ids, pts):
        """Record frame ``index`` as waiting for a map; True when too many wait (the
        reference should be renewed)."""
        self.pending.append((index, ids.copy(), pts.copy()))
        return len(self.pending) > MAX_PENDING

    def _make_map(self, index, K, ids, pts, common, p_ref, p_cur, mask, c2w_cur, min_angle):
        """Triangulate the reference's and frame ``index``'s common tracks; enough points
        with a wide enough median angle become the map of two keyframes, and the pending
        frames wait to be placed on it (``place_waiting``). Returns whether it did."""
        cfg, ref, local_map = self.cfg, self.ref, self.map
        X, good, angle = triangulate(K, ref["c2w"], c2w_cur, p_ref, p_cur, min_angle,
                                     cfg.tri_max_reprojection_px)
        good &= mask
        if good.sum() < cfg.init_min_points or np.median(angle[good]) < min_angle:
            return False
        self.place_waiting(K)  # any left from the map this one replaces, before it goes
        if cfg.loss_scale in ("depth", "blend") and self.depth_hint:
            X, c2w_cur = self._to_lost_depth(X, good, c2w_cur,
                                             1.0 if cfg.loss_scale == "depth" else 0.5)
        # the map: two keyframes and their landmarks
        local_map.restart(zip(common[good], X[good]))
        k0 = local_map.add_keyframe(ref["frame"], ref["c2w"], ref["ids"], ref["pts"],
                                    good.sum())
        local_map.records[ref["frame"]] = (k0.kid, np.eye(4))
        k1 = local_map.add_keyframe(index, c2w_cur, ids.copy(), pts.copy(), good.sum())
        local_map.records[index] = (k1.kid, np.eye(4))
        k0.cov = k1.cov = np.eye(6) * 1e-4
        self.stats["inits"] += 1
        self.placed.extend([ref["frame"], index])
        # the frames that waited are placed on the new map by ``place_waiting``
        self.waiting = [w for w in self.pending if w[0] not in (ref["frame"], index)]
        self.waiting_between = (k0, k1)
        self.pending = []
        self.ref = None
        self.speed_hint = self.depth_hint = None
        return True

    def place_waiting(self, K, limit=None):
        """Place the frames that waited for the last map (``waiting``, oldest first; at most
        ``limit`` of them now, None: all) on it: by PnP against its landmarks where enough
        are in view, else at the position interpolated between its first two keyframes with
        their two-view rotation. The core calls this right after the map is made, or
        (``push(optimise=False)``) from ``optimise()``: up to ``MAX_PENDING`` PnPs, about
        1.5-2.5 ms each at 640x480 here, so a node publishes the initialising frame's pose
        first and places the rest a few at a time between frames. Frames no longer
        recorded are skipped; if the map's keyframes are gone, the frames keep their
        provisional poses."""
        if not self.waiting:
            return
        count = len(self.waiting) if limit is None else max(int(limit), 0)
        waiting, self.waiting = self.waiting[:count], self.waiting[count:]
        cfg, local_map = self.cfg, self.map
        k0, k1 = self.waiting_between
        if k0.kid not in local_map.kf_pose or k1.kid not in local_map.kf_pose:
            return
        c2w0, c2w1 = local_map.kf_pose[k0.kid], local_map.kf_pose[k1.kid]
        for f, f_ids, f_pts in waiting:
            if f not in local_map.records:
                continue
            m = np.array([i in local_map.landmarks for i in f_ids.tolist()], bool)
            c2w = None
            if m.sum() >= cfg.min_pnp_points:
                Xm = np.array([local_map.landmarks[int(i)] for i in f_ids[m]])
                c2w, inl, _ = pnp(K, Xm, f_pts[m], c2w0, cfg.pnp_reprojection_px)
                if c2w is not None and inl.sum() < cfg.min_pnp_points:
                    c2w = None
            if c2w is None:  # interpolate the position between the two keyframes
                a = (f - k0.frame) / max(k1.frame - k0.frame, 1)
                c2w = local_map.pose_of(f)
                c2w[:3, 3] = (1 - a) * c2w0[:3, 3] + a * c2w1[:3, 3]
            local_map.records[f] = (k0.kid, invert_pose(c2w0) @ c2w)

    def _to_lost_depth(self, X, good, c2w_cur, power=1.0):
        """The new map (points X (N, 3), the frame's c2w) scaled about the reference camera
        so that its median depth there (over ``good``) is the lost map's (``power`` 1; 0.5:
        halfway in log scale between that and the speed's baseline)."""
        depth = np.median(in_camera(self.ref["c2w"], X[good])[:, 2])
        if not depth > 0:
            return X, c2w_cur
        s, centre = (self.depth_hint / depth) ** power, self.ref["c2w"][:3, 3]
        c2w_cur = c2w_cur.copy()
        c2w_cur[:3, 3] = centre + s * (c2w_cur[:3, 3] - centre)
        return centre + s * (X - centre), c2w_cur
