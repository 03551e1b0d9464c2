"""`LocalMap`: the odometry core's map state — the sliding window of keyframes, their
landmarks, the prior's between-factors, and every frame's pose record.

Conventions: poses are camera-to-world 4x4 float64 (``c2w``) with OpenCV camera axes (x right,
y down, z forward); landmarks are world points (3,) float64 keyed by their KLT track id;
image points and thresholds are pixels; K (3, 3) pixels. Covariances are 6x6, translation
then rotation, in the pose's local tangent.

A frame's record is ``(keyframe id, pose relative to that keyframe)`` or ``(None, c2w)`` for
a frame not tied to a keyframe (while initialising, or the frame tracking was lost at), so
``pose_of`` follows the bundle adjustment's corrections of the keyframes.
"""
from dataclasses import dataclass

import numpy as np

from rap_ros.odometry.backend import BAProblem
from rap_ros.odometry.twoview import in_camera, project, triangulate


@dataclass
class Keyframe:
    """kid: keyframe id; frame: its frame index; c2w (4, 4); ids (N,) int64 track ids and
    pts (N, 2) float32 pixels of its tracks; tracked: map points it tracked when made;
    cov (6, 6) or None: its marginal covariance from the last BA."""
    kid: int
    frame: int
    c2w: np.ndarray
    ids: np.ndarray
    pts: np.ndarray
    tracked: int
    cov: np.ndarray = None


class LocalMap:
    """The window's keyframes (``window``, oldest first), their landmarks (``landmarks``:
    track id -> world point), between-factors (``betweens``: (kid a, kid b, T_ab, cov)),
    the pose of every keyframe ever made (``kf_pose``, ``kf_cov``: kid -> c2w / cov; window
    keyframes share their arrays) and every frame's record (``records``, ``stamps``).
    ``stats``: the core's counters dict (keyframes are counted here)."""

    def __init__(self, stats):
        self.stats = stats
        self.landmarks = {}
        self.window = []
        self.betweens = []
        self.kf_pose = {}           # keyframe id -> c2w (every keyframe, for trajectory())
        self.kf_cov = {}
        self.next_kid = 0
        self.records = {}           # frame -> (keyframe id or None, rel or absolute pose)
        self.stamps = {}

    # ------------------------------------------------------------------ frame records
    def pose_of(self, frame):
        """c2w (4, 4) of a recorded frame, through its keyframe's current pose."""
        kid, T = self.records[frame]
        if kid is None:
            return T.copy()
        return self.kf_pose[kid] @ T

    def trim(self, index, retained_frames):
        """Keep only records of frames that are keyframes in the window or newer than the
        window's first keyframe, and none older than ``retained_frames`` frames before
        ``index`` (while tracking is lost the window stays where it was lost); keep only the
        window's keyframe poses."""
        if not self.window:
            return
        keyframes = {kf.frame for kf in self.window}
        first = max(self.window[0].frame, index - retained_frames)
        for f in [f for f in self.records if f < first and f not in keyframes]:
            self.records.pop(f)
            self.stamps.pop(f, None)
        kids = {kf.kid for kf in self.window}
        for k in [k for k in self.kf_pose if k not in kids]:
            self.kf_pose.pop(k)
            self.kf_cov.pop(k, None)

    # ------------------------------------------------------------------ keyframes
    def add_keyframe(self, frame, c2w, ids, pts, tracked):
        kf = Keyframe(self.next_kid, frame, c2w.copy(), ids, pts, int(tracked))
        self.next_kid += 1
        self.window.append(kf)
        self.kf_pose[kf.kid] = kf.c2w
        self.stats["keyframes"] += 1
        return kf

    def freeze_window(self):
        """Keep the window keyframes' current poses in ``kf_pose`` as they are (copies), e.g.
        before the window is abandoned (tracking lost, a new initialisation)."""
        for kf in self.window:
            self.kf_pose[kf.kid] = kf.c2w.copy()

    def median_depth(self):
        """Median depth (z in the camera, map units) of the landmarks the window's keyframes
        observe, over all of them; None without any in front of a keyframe."""
        depths = []
        for kf in self.window:
            X = [self.landmarks[i] for i in kf.ids.tolist() if i in self.landmarks]
            if X:
                z = in_camera(kf.c2w, X)[:, 2]
                depths.append(z[z > 0])
        depths = np.concatenate(depths) if depths else np.zeros(0)
        return float(np.median(depths)) if len(depths) else None

    def restart(self, landmarks):
        """Drop the window, its landmarks and factors (the keyframes' poses stay in
        ``kf_pose``) and start from ``landmarks`` (pairs of track id, world point)."""
        if self.window:
            self.freeze_window()
        self.window, self.landmarks, self.betweens = [], {}, []
        for i, p in landmarks:
            self.landmarks[int(i)] = p

    def triangulate_new(self, K, new, min_angle_deg, max_reprojection_px):
        """Landmarks for the tracks of keyframe ``new`` that have none, triangulated against
        the window's older keyframes (oldest first: the widest baseline)."""
        todo = np.array([i not in self.landmarks for i in new.ids.tolist()], bool)
        for kf in self.window[:-1]:
            if not todo.any():
                break
            common, ia, ib = np.intersect1d(kf.ids, new.ids[todo], return_indices=True)
            if len(common) == 0:
                continue
            ib = np.flatnonzero(todo)[ib]
            X, good, _ = triangulate(K, kf.c2w, new.c2w, kf.pts[ia], new.pts[ib],
                                     min_angle_deg, max_reprojection_px)
            for i, p in zip(common[good], X[good]):
                self.landmarks[int(i)] = p
            todo[ib[good]] = False

    def slide(self, window_keyframes, live_ids):
        """Drop the oldest keyframes beyond ``window_keyframes``, the landmarks neither a
        window keyframe nor a live track (``live_ids`` (N,)) sees, and factors that leave
        the window."""
        while len(self.window) > window_keyframes:
            old = self.window.pop(0)
            self.kf_pose[old.kid] = old.c2w.copy()
        alive = set(live_ids.tolist())
        for kf in self.window:
            alive.update(kf.ids.tolist())
        self.landmarks = {i: p for i, p in self.landmarks.items() if i in alive}
        kids = {kf.kid for kf in self.window}
        self.betweens = [b for b in self.betweens if b[0] in kids and b[1] in kids]

    # ------------------------------------------------------------------ landmarks
    def table(self):
        """The landmarks as arrays for vectorised look-ups (``lookup``): ids (L,) int64
        sorted, world points (L, 3) float64 in the same order."""
        ids = np.fromiter(self.landmarks.keys(), np.int64, len(self.landmarks))
        points = np.array(list(self.landmarks.values()), float).reshape(-1, 3)
        order = np.argsort(ids)
        return ids[order], points[order]

    def cull(self, K, max_reprojection_px):
        """Remove landmarks that reproject badly (or behind) in a window keyframe."""
        bad = set()
        table = self.table()
        for kf in self.window:
            m, Xm = lookup(table, kf.ids)
            if not m.any():
                continue
            ids = kf.ids[m]
            uv, z = project(K, kf.c2w, Xm)
            err = np.linalg.norm(uv - kf.pts[m], axis=1)
            bad.update(ids[(err > max_reprojection_px) | (z <= 0)].tolist())
        for i in bad:
            self.landmarks.pop(i, None)

    # ------------------------------------------------------------------ bundle adjustment
    def ba_problem(self, K, ba_fixed):
        """The window as a ``BAProblem``; its ``ba_fixed`` oldest keyframes (at least one)
        held fixed."""
        kfs = self.window
        poses = {kf.kid: kf.c2w.copy() for kf in kfs}
        fixed = {kf.kid for kf in kfs[:max(ba_fixed, 1)]}
        obs_kf, obs_lm, obs_uv = [], [], []
        table = self.table()
        for kf in kfs:
            m, _ = lookup(table, kf.ids)
            obs_kf.append(np.full(m.sum(), kf.kid))
            obs_lm.append(kf.ids[m])
            obs_uv.append(kf.pts[m])
        return BAProblem(K.copy(), poses, fixed, dict(self.landmarks),
                         np.concatenate(obs_kf), np.concatenate(obs_lm),
                         np.concatenate(obs_uv).astype(float), list(self.betweens))

    def apply(self, poses, points, covariances=None):
        """Take a solve's keyframe poses (kid -> c2w), covariances (kid -> 6x6) and the
        points (track id -> world point) of landmarks still in the map."""
        for kf in self.window:
            if kf.kid in poses:
                kf.c2w = poses[kf.kid]
                self.kf_pose[kf.kid] = kf.c2w
            if covariances is not None and kf.kid in covariances:
                kf.cov = covariances[kf.kid]
                self.kf_cov[kf.kid] = kf.cov
        for i, p in points.items():
            if i in self.landmarks:
                self.landmarks[i] = p

    # ------------------------------------------------------------------ scale
    def scale(self, f):
        """Multiply every length (keyframes, landmarks, records, factors) by ``f``."""
        for kf in self.window:
            kf.c2w = scaled(kf.c2w, f)
        self.kf_pose = {k: scaled(T, f) for k, T in self.kf_pose.items()}
        self.landmarks = {i: p * f for i, p in self.landmarks.items()}
        self.records = {i: (k, scaled(T, f)) for i, (k, T) in self.records.items()}
        self.betweens = [(a, b, scaled(T, f), c) for a, b, T, c in self.betweens]


def scaled(T, f):
    """A copy of the 4x4 pose ``T`` with its translation multiplied by ``f``."""
    T = T.copy()
    T[:3, 3] *= f
    return T


def lookup(table, ids):
    """Which of ``ids`` (N,) int are landmarks of ``table`` (``LocalMap.table``): mask (N,)
    bool and their world points (M, 3), in the order of ``ids``."""
    lm_ids, points = table
    if len(lm_ids) == 0:
        return np.zeros(len(ids), bool), np.zeros((0, 3))
    idx = np.minimum(np.searchsorted(lm_ids, ids), len(lm_ids) - 1)
    m = lm_ids[idx] == ids
    return m, points[idx[m]]
