"""`VisualOdometry`: monocular odometry on a local map with sliding-window BA, and optionally
the joint model as a motion prior (method "rap"; without a prior, method "geometry").

Conventions: poses are camera-to-world 4x4 float64 (``c2w``) with OpenCV camera axes (x right,
y down, z forward); the world is the first camera's frame; translations are in units of the
first initialisation baseline (monocular: arbitrary scale) until ``set_scale`` fixes them.
K (3, 3) pixels of the images passed in (no distortion). Covariances are 6x6 in the pose's
local tangent (right perturbation), translation then rotation (radians). Times are seconds.

Per frame (``push``): normalise the image, track corners by KLT (forward-backward checked,
each track started where the constant-velocity pose puts it: ``klt_predict``; new corners
only where they beat the frame's noise, ``frontend.Tracker.detect``), locate the
frame by PnP RANSAC + LM against the map's landmarks (initial guess: constant velocity). If
the map cannot place it: the model's motion over the last window (with a prior), else the
rotation from the essential matrix against the previous frame (when enough tracks fit one)
with a constant-velocity step. Keyframes by rotation-compensated parallax and track survival; at a
keyframe new landmarks are triangulated (angle, depth, reprojection checks) against the
window's keyframes and the window (``window_keyframes``) is bundle-adjusted on GTSAM
(iSAM2 by default, LM where iSAM2 cannot solve a window). Non-keyframes are stored relative
to their keyframe, so ``trajectory()`` follows the BA's corrections.

Without K (no camera_info), the focal length the core starts from (the model's, or a 60°
field-of-view guess) is refined: once the window is full, every ``focal_every`` keyframes the
window is solved once more with the focal free (``selfcal.refine_focal``), and the result is
kept only where the motion observes the focal (its marginal sigma at most
``focal_max_sigma`` of it; pure translation does not); at most ``focal_refinements``
accepted solves and ``focal_attempts`` tries (benchmarks/results/odometry_focal.md).

The prior (method "rap"), by default (``prior_factors="off"``): gives K when none is passed,
and every ``prior_check_every`` frames the model/geometry rotation disagreement for the
health signal. Optionally (``prior_factors="weak"``/``"always"``, ``prior_on_fallback``) its
relative motion between keyframes, scaled to the map on the frames its window shares with
the geometry, enters the BA as between-factors, and it places frames the map cannot;
measured on 9 synthetic drives, 2 real sequences and 6 degenerate scenarios both raised the
ATE more often than they lowered it (benchmarks/results/odometry.md), hence off by default.
Also optional (``prior_init_after`` > 0): after that many frames of too little parallax its
direction of travel initialises the map; on slow starts that began tracking 13 frames sooner
at 4.3x the ATE (benchmarks/results/model_init.md), hence off by default too.
"""
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from rap_ros.geometry.rotations import project_to_so3
from rap_ros.io.images import to_gray
from rap_ros.odometry.backend import BAProblem, WindowBundleAdjuster
from rap_ros.odometry.config import OdometryConfig
from rap_ros.odometry.frontend import Tracker, normalise
from rap_ros.odometry.health import HealthMonitor
from rap_ros.odometry.prior import MotionPrior, relative_factor, window_scale
from rap_ros.odometry.selfcal import refine_focal
from rap_ros.odometry.twoview import (invert, pnp, pose, pose_covariance_from_points, project,
                                      relative_rotation, rotate_pixels, rotation_angle,
                                      rotation_compensated_parallax, triangulate)

LOST_COVARIANCE = 9999.0  # diagonal of a lost frame's covariance (rtabmap's convention)


@dataclass
class FrameResult:
    """One frame's output.

    index: frame number (0-based, in push order); stamp: as passed (seconds).
    c2w: (4, 4) pose at the time of the push (later BA corrections: ``trajectory()``).
    covariance: (6, 6) translation then rotation, local tangent; never all zeros.
    health: "initialising", "ok", "degraded" or "lost"; recovered: this frame ends a loss.
    is_keyframe: the frame became a keyframe. source: "init", "pnp", "prior", "fallback",
    "hold" (before a map exists) or "buffered" (waiting for the model's K).
    inliers: PnP inliers (0 if not placed by PnP); tracks: live KLT tracks.
    disagreement_deg: model vs geometry rotation over the last prior window (0 without).
    timing: seconds per stage (track, pose, keyframe, ba, prior, total).
    earlier: results of the frames held for the model's K and tracked in this push (oldest
    first; they were answered "buffered"), so a caller can publish every frame.
    """

    index: int
    stamp: float
    c2w: np.ndarray
    covariance: np.ndarray
    health: str
    is_keyframe: bool = False
    recovered: bool = False
    source: str = "pnp"
    inliers: int = 0
    tracks: int = 0
    disagreement_deg: float = 0.0
    timing: dict = field(default_factory=dict)
    earlier: list = field(default_factory=list)


@dataclass
class _Keyframe:
    kid: int
    frame: int
    c2w: np.ndarray
    ids: np.ndarray
    pts: np.ndarray
    tracked: int
    cov: np.ndarray = None


class VisualOdometry:
    """Monocular VO core. ``K`` (3, 3) pixels or None (then the prior's K, or a guess with
    ``config.default_hfov_deg``); ``prior``: a ``MotionPrior`` or None."""

    def __init__(self, K=None, config=None, prior: MotionPrior = None):
        self.cfg = config or OdometryConfig()
        if self.cfg.klt_predict not in ("previous", "rotation", "map"):
            raise ValueError(f"klt_predict must be 'previous', 'rotation' or 'map', got "
                             f"{self.cfg.klt_predict!r}")
        self.prior = prior
        self.K_given = None if K is None else np.asarray(K, float)
        self.ba = WindowBundleAdjuster(self.cfg.ba_pixel_sigma, self.cfg.ba_huber,
                                       self.cfg.ba_iterations, self.cfg.ba_solver,
                                       self.cfg.prior_huber, self.cfg.ba_covariance,
                                       self.cfg.ba_fallback)
        self._prior_executor = ThreadPoolExecutor(
            1, thread_name_prefix="rap_prior", initializer=lower_thread_priority,
            initargs=(self.cfg.prior_nice,)) if self.cfg.prior_async else None
        self._prior_future = None
        self.reset()

    @property
    def method(self):
        return "geometry" if self.prior is None else "rap"

    # ------------------------------------------------------------------ public API
    def reset(self, pose=None):
        """Forget the map, tracks and history; the next frame starts at ``pose`` (default I)."""
        self.K = self.K_given
        self._tracker = None
        self._start_pose = np.eye(4) if pose is None else np.asarray(pose, float)
        self._index = -1
        self._prev_gray = None
        self._pts = np.zeros((0, 2), np.float32)
        self._ids = np.zeros(0, np.int64)
        self._next_id = 0
        self._landmarks = {}
        self._window = []
        self._kf_pose = {}          # keyframe id -> c2w (every keyframe, for trajectory())
        self._kf_cov = {}
        self._next_kid = 0
        self._records = {}          # frame -> (keyframe id or None, rel or absolute pose)
        self._stamps = {}
        self._last_pose = self._start_pose.copy()
        self._velocity = np.eye(4)
        self._velocity_from = None  # the pose the velocity was measured from
        self._last_cov = np.eye(6) * 1e-4
        self._mode = "init"
        self._init_ref = None
        self._pending = []
        self._speed_hint = None
        self._health = HealthMonitor(self.cfg.degraded_inliers, self.cfg.lost_after,
                                     self.cfg.disagreement_deg)
        self._buffer = deque(maxlen=self.prior.window if self.prior else 1)
        self._buffered_k = []       # frames held while waiting for the model's K
        self._betweens = []
        self._prior_scale = None
        self._last_prior_frame = -10**9
        self._last_prior_init = -10**9
        self._last_prior_check = 0
        self._disagreement = 0.0
        self._ba_due = 0            # keyframes whose BA waits for optimise() (push(optimise=False))
        self._defer_ba = False
        self._ba_last = None
        self._focal_refinements = 0       # focal self-calibrations accepted since reset()
        self._focal_tried_at = -10**9     # keyframe id of the last attempt
        self._focal_attempts = 0
        if getattr(self, "_prior_future", None) is not None:
            self._prior_future[1].cancel()
            self._prior_future = None
        self._tracked_prev = None
        self._placed = deque(maxlen=64)   # recent frames placed by the map (PnP / init)
        self._inliers = {}                # recent frame -> PnP inliers
        self.stats = dict(frames=0, keyframes=0, pnp=0, fallback=0, prior_fallback=0,
                          prior_windows=0, prior_factors=0, ba_runs=0, ba_seconds=0.0,
                          prior_seconds=0.0, losses=0, recoveries=0, inits=0, model_inits=0,
                          focal_refinements=0, focal_seconds=0.0, ba_fallbacks=0,
                          ba_failures=0, ba_max_seconds=0.0)

    def push(self, image, stamp=None, optimise=True) -> FrameResult:
        """Process one frame (uint8 (H, W) grey or (H, W, 3) RGB) and return its result.

        ``optimise=False``: a keyframe's bundle adjustment is left due instead of run before
        returning, so a caller can publish the frame's pose first and then call
        ``optimise()`` when it has time (a node's latency: when no frame waits). Until then
        the next frames are tracked on the map as it is, and a new keyframe's BA joins the
        due one (one BA over the window then); once ``max_deferred_keyframes`` keyframes
        wait, the next push runs it first. Anything reading the map (``trajectory``,
        ``keyframes``, ``map_points``, ``set_scale``) runs it first. The frame's returned
        pose is its tracked pose, not the adjusted one (``trajectory()`` has the adjusted
        one)."""
        t0 = time.perf_counter()
        image = np.asarray(image)
        self._defer_ba = not optimise
        if self.K is None and self.prior is not None and self.K_given is None:
            return self._push_without_k(image, stamp, t0)
        return self._push(image, stamp, t0)

    def optimise(self):
        """Run the bundle adjustment a keyframe of ``push(..., optimise=False)`` left due.
        Returns True if one ran. ``trajectory``, ``keyframes``, ``map_points`` and
        ``set_scale`` call it first, and ``push`` once ``max_deferred_keyframes`` keyframes
        wait, so a caller that never does loses no keyframe's BA (they join)."""
        if not self._ba_due:
            return False
        self._ba_due = 0
        self._run_ba()
        if self._velocity_from is not None:  # as if the BA had run inside push()
            self._velocity = self._bounded_step(invert(self._velocity_from) @ self._last_pose)
        return True

    def trajectory(self):
        """(N, 4, 4) c2w of every frame so far (with ``history``; else the retained ones):
        keyframes as last bundle-adjusted, other frames relative to their keyframe."""
        self.optimise()
        frames = sorted(self._records)
        return np.array([self._pose_of(f) for f in frames]) if frames else np.zeros((0, 4, 4))

    def keyframes(self):
        """Dict frame index -> c2w of the keyframes of the current window (BA-corrected)."""
        self.optimise()
        return {kf.frame: kf.c2w.copy() for kf in self._window}

    def set_scale(self, factor):
        """Multiply every length (map, keyframes, trajectory, motion model) by ``factor``
        about the world origin, e.g. once wheel odometry gives the metric scale."""
        f = float(factor)
        self.optimise()

        def scaled(T):
            T = T.copy()
            T[:3, 3] *= f
            return T
        for kf in self._window:
            kf.c2w = scaled(kf.c2w)
        self._kf_pose = {k: scaled(T) for k, T in self._kf_pose.items()}
        self._landmarks = {i: p * f for i, p in self._landmarks.items()}
        self._records = {i: (k, scaled(T)) for i, (k, T) in self._records.items()}
        self._last_pose, self._velocity = scaled(self._last_pose), scaled(self._velocity)
        self._betweens = [(a, b, scaled(T), c) for a, b, T, c in self._betweens]
        if self._init_ref is not None:
            self._init_ref["c2w"] = scaled(self._init_ref["c2w"])
        if self._speed_hint is not None:
            self._speed_hint *= f
        if self._prior_scale is not None:
            self._prior_scale *= f

    def map_points(self):
        """(N, 3) float64 world positions of the local map's landmarks (same frame and units
        as the poses; empty before initialisation), e.g. for the depth of a preview warp."""
        self.optimise()
        if not self._landmarks:
            return np.zeros((0, 3))
        return np.array(list(self._landmarks.values()), float)

    def map_size(self):
        """Sizes of the retained state: landmarks, window keyframes, live tracks, prior
        factors, frame records (the latter grows only with ``history``)."""
        return dict(landmarks=len(self._landmarks), keyframes=len(self._window),
                    tracks=len(self._ids), betweens=len(self._betweens),
                    records=len(self._records), kf_poses=len(self._kf_pose))

    def close(self):
        if self._prior_executor is not None:
            self._prior_executor.shutdown(wait=True)

    # ------------------------------------------------------------------ frame handling
    def _push_without_k(self, image, stamp, t0):
        """Hold frames until the prior's window is full, take K from the model, replay."""
        self._buffered_k.append((image, stamp))
        index = self._index + len(self._buffered_k)
        if len(self._buffered_k) < self.prior.window:
            return FrameResult(index, stamp, self._start_pose.copy(),
                               np.eye(6) * LOST_COVARIANCE, "initialising", source="buffered",
                               timing=dict(total=time.perf_counter() - t0))
        frames = np.stack([_rgb(im) for im, _ in self._buffered_k])
        t = time.perf_counter()
        window = self.prior.estimate(frames, None)
        self.stats["prior_seconds"] += time.perf_counter() - t
        self.K = np.asarray(window.K, float)
        held, self._buffered_k = self._buffered_k, []
        results = [self._push(im, st, time.perf_counter()) for im, st in held]
        result = results[-1]
        result.earlier = results[:-1]
        result.timing["total"] = time.perf_counter() - t0
        return result

    def _push(self, image, stamp, t0):
        cfg = self.cfg
        if not self._defer_ba or self._ba_due >= cfg.max_deferred_keyframes:
            self.optimise()
        self._index += 1
        index = self._index
        self.stats["frames"] += 1
        stamp = float(index if stamp is None else stamp)
        self._stamps[index] = stamp
        if self.prior is not None:
            self._buffer.append((index, _rgb(image)))
        self._raw_gray = to_gray(image)  # the current frame before normalisation
        gray = normalise(self._raw_gray, cfg.normalise_mean, cfg.normalise_std)
        if self._tracker is None:
            h, w = gray.shape
            self._tracker = Tracker(cfg, (w, h))
            self._diag = self._tracker.diagonal
            if self.K is None:
                f = 0.5 * w / np.tan(np.radians(cfg.default_hfov_deg) / 2)
                self.K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
        timing = {}
        t = time.perf_counter()
        if self._prev_gray is not None and len(self._pts):
            pts, ok = self._tracker.track(self._prev_gray, gray, self._pts,
                                          self._predicted_pts(cfg.klt_predict))
            self._tracked_prev = self._pts[ok]
            self._pts, self._ids = pts[ok], self._ids[ok]
        else:
            self._tracked_prev = None
        timing["track"] = time.perf_counter() - t
        prev_pose = self._last_pose
        if self._mode == "init":
            result = self._step_init(index, stamp, gray, timing)
        else:
            result = self._step_track(index, stamp, gray, timing)
        # motion model
        if index > 0 and result.source != "buffered":
            self._velocity = self._bounded_step(invert(prev_pose) @ result.c2w)
            self._velocity_from = prev_pose
        self._last_pose = result.c2w.copy()
        if len(self._ids) < cfg.min_features:
            self._top_up(gray)
        self._prev_gray = gray
        result.tracks = len(self._ids)
        if not cfg.history:
            self._trim_history()
        timing["total"] = time.perf_counter() - t0
        result.timing = timing
        self.stats["losses"], self.stats["recoveries"] = self._health.losses, \
            self._health.recoveries
        return result

    def _predicted_pts(self, how):
        """Where the live tracks should be in the new frame under the constant-velocity pose
        (N, 2) float32 (``OdometryConfig.klt_predict``): moved by the predicted rotation alone
        (the homography at infinity), and with "map" a map point's landmark projected. None
        when ``how`` is "previous" or before tracking."""
        if how == "previous" or self._mode != "track" or not len(self._pts):
            return None
        guess = self._last_pose @ self._velocity
        R_21 = guess[:3, :3].T @ self._last_pose[:3, :3]  # last camera -> predicted camera
        out = rotate_pixels(self.K, R_21, self._pts).astype(np.float32)
        m, Xm = _lookup(self._landmark_table(), self._ids) if how == "map" else (None, None)
        if m is not None and m.any():
            uv, z = project(self.K, guess, Xm)
            front = z > 0
            idx = np.flatnonzero(m)[front]
            out[idx] = uv[front]
        # a guess off the charts (a motion model gone wild after a loss): start where it was
        h, w = self._prev_gray.shape[:2]
        far = (np.abs(out - self._pts) > 0.25 * (h + w)).any(axis=1)
        bad = ~np.isfinite(out).all(axis=1) | far
        out[bad] = self._pts[bad]
        return out

    def _bounded_step(self, step):
        """The constant-velocity step (4x4) with its rotation block projected onto SO(3); a
        non-finite step becomes identity. A guard: while tracking was lost on a stream played
        back and forth (eval_odometry's memory run, 10,000 frames), steps derived from
        extrapolated poses drifted off SO(3), grew about 100x per frame and overflowed, and
        the core never recovered."""
        if not np.all(np.isfinite(step)):
            return np.eye(4)
        R = step[:3, :3]
        # a rotation block off SO(3) grows when the step is chained and inverted frame after
        # frame (``invert`` transposes); projected only once it is measurably off, so that
        # tracking which never drifts is not perturbed at the rounding level (RANSAC's
        # sampling then differs and single sequences move by chance)
        if np.abs(R.T @ R - np.eye(3)).max() > 1e-9:
            step = step.copy()
            step[:3, :3] = project_to_so3(R)
        return step

    def _top_up(self, gray):
        new = self._tracker.detect(gray, self._pts, self.cfg.max_features - len(self._pts),
                                   raw=self._raw_gray)
        if len(new):
            self._pts = np.vstack([self._pts, new]).astype(np.float32)
            self._ids = np.concatenate([self._ids, self._next_id + np.arange(len(new))])
            self._next_id += len(new)

    # ------------------------------------------------------------------ initialisation
    def _start_init(self, index, c2w, gray):
        if len(self._ids) < self.cfg.min_features:
            self._top_up(gray)
        self._init_ref = dict(frame=index, c2w=c2w.copy(), ids=self._ids.copy(),
                              pts=self._pts.copy())
        self._pending = []

    def _step_init(self, index, stamp, gray, timing):
        cfg, K = self.cfg, self.K
        t = time.perf_counter()
        if self._init_ref is None:
            c2w = self._start_pose.copy() if index == 0 else self._last_pose.copy()
            self._start_init(index, c2w, gray)
            self._records[index] = (None, c2w.copy())
            timing["pose"] = time.perf_counter() - t
            return FrameResult(index, stamp, c2w, self._held_cov(), self._init_state(),
                               source="hold")
        ref = self._init_ref
        common, ia, ib = np.intersect1d(ref["ids"], self._ids, return_indices=True)
        p_ref, p_cur = ref["pts"][ia], self._pts[ib]
        R, tdir, mask = self._two_view(p_ref, p_cur)
        # pose of the waiting frame: rotation from two views, position by constant velocity
        # after a loss (speed hint) or held at the reference
        c2w = self._last_pose @ self._velocity if self._speed_hint else ref["c2w"].copy()
        if R is not None:
            c2w[:3, :3] = ref["c2w"][:3, :3] @ R.T
        self._records[index] = (None, c2w.copy())
        done = False
        if R is not None and len(common) >= cfg.init_min_points:
            parallax = rotation_compensated_parallax(K, R, p_ref[mask], p_cur[mask])
            baseline = self._init_baseline(index - ref["frame"])
            if parallax >= cfg.init_parallax_frac * self._diag:
                T_21 = pose(R, tdir * baseline)
                done = self._try_init(index, ref, common, p_ref, p_cur, mask,
                                      ref["c2w"] @ invert(T_21), cfg.init_min_angle_deg)
            elif self.prior is not None and cfg.prior_init_after > 0 \
                    and index - ref["frame"] >= cfg.prior_init_after \
                    and index - self._last_prior_init >= cfg.prior_init_after \
                    and index - ref["frame"] < self.prior.window:
                # at most one model attempt every prior_init_after frames (a standing robot
                # must not cost a model call per frame), and only with the reference frame
                # inside the model's window (the buffer)
                self._last_prior_init = index
                # the model's direction of travel (no scale needed: the baseline sets the
                # length) with the geometry's rotation
                rel = self._prior_relative(ref["frame"], index, to_map=False)
                length = np.inf if rel is None else np.linalg.norm(rel[:3, 3])
                if np.isfinite(length) and length > 1e-9:
                    rel = pose(R.T, rel[:3, 3] / length * baseline)
                    done = self._try_init(index, ref, common, p_ref, p_cur, mask,
                                          ref["c2w"] @ rel, 0.5 * cfg.init_min_angle_deg)
                    self.stats["model_inits"] += done
        elif len(common) < cfg.init_min_points:
            self._start_init(index, c2w, gray)
        if not done:
            self._pending.append((index, self._ids.copy(), self._pts.copy()))
            if len(self._pending) > 60:
                self._start_init(index, c2w, gray)
            timing["pose"] = time.perf_counter() - t
            return FrameResult(index, stamp, c2w, self._held_cov(), self._init_state(),
                               source="hold", tracks=len(self._ids))
        timing["pose"] = time.perf_counter() - t
        kf = self._window[-1]
        state, recovered = self._health.update(True, len(self._landmarks))
        t = time.perf_counter()
        self._keyframe_ba()
        timing["ba"] = time.perf_counter() - t
        return FrameResult(index, stamp, self._pose_of(index), self._frame_cov(kf.cov),
                           state, is_keyframe=True, recovered=recovered, source="init",
                           inliers=len(self._landmarks))

    def _two_view(self, p1, p2):
        """``relative_rotation`` of tracks p1 -> p2 with the configured fit checks."""
        return relative_rotation(self.K, p1, p2,
                                 min_inlier_ratio=self.cfg.twoview_min_inlier_ratio,
                                 min_inliers=self.cfg.twoview_min_inliers)

    def _init_state(self):
        return "lost" if self._health.lost else "initialising"

    def _init_baseline(self, frames):
        if self._speed_hint:
            return max(self._speed_hint * frames, 1e-6)
        return 1.0

    def _try_init(self, index, ref, common, p_ref, p_cur, mask, c2w_cur, min_angle):
        cfg = self.cfg
        X, good, angle = triangulate(self.K, ref["c2w"], c2w_cur, p_ref, p_cur, min_angle,
                                     cfg.tri_max_reprojection_px)
        good &= mask
        if good.sum() < cfg.init_min_points or np.median(angle[good]) < min_angle:
            return False
        # the map: two keyframes and their landmarks
        if self._window:
            for kf in self._window:
                self._kf_pose[kf.kid] = kf.c2w.copy()
        self._window, self._landmarks, self._betweens = [], {}, []
        for i, p in zip(common[good], X[good]):
            self._landmarks[int(i)] = p
        k0 = self._add_keyframe(ref["frame"], ref["c2w"], ref["ids"], ref["pts"], good.sum())
        self._records[ref["frame"]] = (k0.kid, np.eye(4))
        k1 = self._add_keyframe(index, c2w_cur, self._ids.copy(), self._pts.copy(), good.sum())
        self._records[index] = (k1.kid, np.eye(4))
        k0.cov = k1.cov = np.eye(6) * 1e-4
        self._mode = "track"
        self.stats["inits"] += 1
        self._placed.extend([ref["frame"], index])
        # frames that waited: located against the new map where possible
        for f, ids, pts in self._pending:
            if f in (ref["frame"], index):
                continue
            m = np.array([i in self._landmarks for i in ids.tolist()], bool)
            c2w = None
            if m.sum() >= cfg.min_pnp_points:
                Xm = np.array([self._landmarks[int(i)] for i in ids[m]])
                c2w, inl, _ = pnp(self.K, Xm, pts[m], ref["c2w"], cfg.pnp_reprojection_px)
                if c2w is not None and inl.sum() < cfg.min_pnp_points:
                    c2w = None
            if c2w is None:  # interpolate the position between the two keyframes
                a = (f - ref["frame"]) / max(index - ref["frame"], 1)
                c2w = self._records[f][1].copy()
                c2w[:3, 3] = (1 - a) * ref["c2w"][:3, 3] + a * c2w_cur[:3, 3]
            self._records[f] = (k0.kid, invert(ref["c2w"]) @ c2w)
        self._pending = []
        self._init_ref = None
        self._speed_hint = None
        return True

    # ------------------------------------------------------------------ tracking
    def _step_track(self, index, stamp, gray, timing):
        cfg, K = self.cfg, self.K
        t = time.perf_counter()
        guess = self._last_pose @ self._velocity
        has = np.fromiter((i in self._landmarks for i in self._ids.tolist()), bool,
                          len(self._ids))
        c2w, inliers, rms, source = None, 0, np.inf, "pnp"
        if has.sum() >= cfg.min_pnp_points:
            Xm = np.array([self._landmarks[int(i)] for i in self._ids[has]])
            c2w, inl, rms = pnp(K, Xm, self._pts[has], guess, cfg.pnp_reprojection_px)
            inliers = int(inl.sum())
            if c2w is not None and (inliers < cfg.min_pnp_points
                                    or inliers < cfg.pnp_min_inlier_ratio * has.sum()):
                c2w = None
            if c2w is not None:
                # drop tracks whose landmark disagrees
                bad = np.flatnonzero(has)[~inl]
                keep = np.ones(len(self._ids), bool)
                keep[bad] = False
                self._pts, self._ids, has = self._pts[keep], self._ids[keep], has[keep]
                cov = pose_covariance_from_points(K, c2w, Xm[inl], max(rms, 0.5))
        timing["pose"] = time.perf_counter() - t
        placed = c2w is not None
        t = time.perf_counter()
        if not placed:
            inliers = 0
            c2w, source = self._fallback_pose(index, guess)
            cov = self._last_cov + np.diag([1e-2] * 3 + [1e-3] * 3) * (1 + self._health.failures)
            self.stats["fallback"] += 1
        else:
            self.stats["pnp"] += 1
            self._placed.append(index)
            self._inliers[index] = inliers
            self._inliers.pop(index - 64, None)
        timing["fallback"] = time.perf_counter() - t
        kf = self._window[-1]
        self._records[index] = (kf.kid, invert(kf.c2w) @ c2w)
        # the prior's regular window
        t = time.perf_counter()
        if self.prior is not None:
            self._collect_prior()
            stride = cfg.prior_stride or (self.prior.window - 1)
            if index - self._last_prior_frame >= stride and \
                    len(self._buffer) == self.prior.window and self._prior_due(index):
                self._prior_window()
        timing["prior"] = time.perf_counter() - t
        state, recovered = self._health.update(placed, inliers, self._disagreement)
        if state == "lost":
            # start again from here, keeping the trajectory continuous
            self._mode = "init"
            steps = [np.linalg.norm(self._velocity[:3, 3])]
            self._speed_hint = max(float(np.median(steps)), 1e-6) if self._speed_hint is None \
                else self._speed_hint
            for k in self._window:
                self._kf_pose[k.kid] = k.c2w.copy()
            self._records[index] = (None, c2w.copy())
            self._start_init(index, c2w, gray)
            cov = np.eye(6) * LOST_COVARIANCE
            return FrameResult(index, stamp, c2w, cov, "lost", source=source, inliers=inliers,
                               disagreement_deg=self._disagreement)
        # keyframe?
        t = time.perf_counter()
        is_kf = self._need_keyframe(index, c2w, inliers, placed)
        if is_kf:
            new = self._add_keyframe(index, c2w, self._ids.copy(), self._pts.copy(), inliers)
            new.cov = cov
            self._records[index] = (new.kid, np.eye(4))
            self._triangulate_new(new)
            self._slide_window()
            timing["keyframe"] = time.perf_counter() - t
            t = time.perf_counter()
            self._keyframe_ba()
            timing["ba"] = time.perf_counter() - t
            if new.cov is not None:
                cov = new.cov
        self._last_cov = cov
        return FrameResult(index, stamp, self._pose_of(index), self._frame_cov(cov), state,
                           is_keyframe=is_kf, recovered=recovered, source=source,
                           inliers=inliers, disagreement_deg=self._disagreement)

    def _fallback_pose(self, index, guess):
        """Pose of a frame the map cannot place: the model's motion, else two-view rotation
        from the previous frame with a constant-velocity step."""
        cfg = self.cfg
        if self.prior is not None and cfg.prior_on_fallback and \
                len(self._buffer) == self.prior.window and index - self._last_prior_frame > 1:
            rel = self._prior_relative(index - 1, index)
            if rel is not None:
                self.stats["prior_fallback"] += 1
                return self._last_pose @ rel, "prior"
        step = self._velocity.copy()
        prev_pts = self._tracked_prev
        if prev_pts is not None and len(prev_pts) == len(self._pts) and len(prev_pts) >= 8:
            R, tdir, mask = self._two_view(prev_pts, self._pts)
            if R is not None:
                speed = np.linalg.norm(step[:3, 3])
                step[:3, :3] = R.T
                if rotation_compensated_parallax(self.K, R, prev_pts[mask],
                                                 self._pts[mask]) > 1.0:
                    step[:3, 3] = -R.T @ tdir * speed
        return self._last_pose @ step, "fallback"

    def _need_keyframe(self, index, c2w, inliers, placed):
        cfg = self.cfg
        kf = self._window[-1]
        if index - kf.frame >= cfg.kf_max_gap:
            return True
        common, ia, ib = np.intersect1d(kf.ids, self._ids, return_indices=True)
        if len(common) < 8:
            return True
        R_21 = c2w[:3, :3].T @ kf.c2w[:3, :3]
        parallax = rotation_compensated_parallax(self.K, R_21, kf.pts[ia], self._pts[ib])
        threshold = cfg.kf_parallax_frac * self._diag
        if parallax >= threshold:
            return True
        weak = inliers < cfg.kf_min_tracked or inliers < cfg.kf_min_survival * kf.tracked
        return (weak or not placed) and parallax >= 0.5 * threshold

    def _add_keyframe(self, frame, c2w, ids, pts, tracked):
        kf = _Keyframe(self._next_kid, frame, c2w.copy(), ids, pts, int(tracked))
        self._next_kid += 1
        self._window.append(kf)
        self._kf_pose[kf.kid] = kf.c2w
        self.stats["keyframes"] += 1
        return kf

    def _triangulate_new(self, new):
        cfg = self.cfg
        todo = np.array([i not in self._landmarks for i in new.ids.tolist()], bool)
        for kf in self._window[:-1]:  # oldest first: the widest baseline
            if not todo.any():
                break
            common, ia, ib = np.intersect1d(kf.ids, new.ids[todo], return_indices=True)
            if len(common) == 0:
                continue
            ib = np.flatnonzero(todo)[ib]
            X, good, _ = triangulate(self.K, kf.c2w, new.c2w, kf.pts[ia], new.pts[ib],
                                     cfg.tri_min_angle_deg, cfg.tri_max_reprojection_px)
            for i, p in zip(common[good], X[good]):
                self._landmarks[int(i)] = p
            todo[ib[good]] = False

    def _slide_window(self):
        cfg = self.cfg
        while len(self._window) > cfg.window_keyframes:
            old = self._window.pop(0)
            self._kf_pose[old.kid] = old.c2w.copy()
        alive = set(self._ids.tolist())
        for kf in self._window:
            alive.update(kf.ids.tolist())
        self._landmarks = {i: p for i, p in self._landmarks.items() if i in alive}
        kids = {kf.kid for kf in self._window}
        self._betweens = [b for b in self._betweens if b[0] in kids and b[1] in kids]

    # ------------------------------------------------------------------ bundle adjustment
    def _ba_problem(self):
        cfg = self.cfg
        kfs = self._window
        poses = {kf.kid: kf.c2w.copy() for kf in kfs}
        fixed = {kf.kid for kf in kfs[:max(cfg.ba_fixed, 1)]}
        obs_kf, obs_lm, obs_uv = [], [], []
        table = self._landmark_table()
        for kf in kfs:
            m, _ = _lookup(table, kf.ids)
            obs_kf.append(np.full(m.sum(), kf.kid))
            obs_lm.append(kf.ids[m])
            obs_uv.append(kf.pts[m])
        return BAProblem(self.K.copy(), poses, fixed, dict(self._landmarks),
                         np.concatenate(obs_kf), np.concatenate(obs_lm),
                         np.concatenate(obs_uv).astype(float), list(self._betweens))

    def _keyframe_ba(self):
        """The BA a new keyframe asks for: now, or left due for ``optimise()``."""
        if self._defer_ba:
            self._ba_due += 1
        else:
            self._run_ba()

    def _run_ba(self):
        if not self.cfg.ba or len(self._window) < 2:
            return
        self._apply_ba(self.ba.solve(self._ba_problem()))

    def _apply_ba(self, result):
        self.stats["ba_runs"] += 1
        self.stats["ba_seconds"] += result.seconds
        self.stats["ba_max_seconds"] = max(self.stats["ba_max_seconds"], result.seconds)
        self.stats["ba_fallbacks"] += result.fallback
        self.stats["ba_failures"] += result.failed
        self._ba_last = result
        for kf in self._window:
            if kf.kid in result.poses:
                kf.c2w = result.poses[kf.kid]
                self._kf_pose[kf.kid] = kf.c2w
            if kf.kid in result.covariances:
                kf.cov = result.covariances[kf.kid]
                self._kf_cov[kf.kid] = kf.cov
        for i, p in result.points.items():
            if i in self._landmarks:
                self._landmarks[i] = p
        self._refine_focal()
        self._cull_landmarks()
        if self._index in self._records and self._records[self._index][0] is not None:
            self._last_pose = self._pose_of(self._index)

    def _refine_focal(self):
        """Without given intrinsics, solve the window once more with the focal length free
        (``selfcal.refine_focal``) when it is full, every ``focal_every`` keyframes, until
        ``focal_refinements`` have been accepted or ``focal_attempts`` made; an accepted
        solve replaces K, the window's keyframes and its landmarks (landmarks it did not
        solve are then culled by their reprojection error under the new K)."""
        cfg = self.cfg
        if self.K_given is not None or self._focal_refinements >= cfg.focal_refinements or \
                self._focal_attempts >= cfg.focal_attempts or \
                len(self._window) < cfg.window_keyframes:
            return
        newest = self._window[-1].kid
        if newest - self._focal_tried_at < cfg.focal_every:
            return
        self._focal_tried_at = newest
        self._focal_attempts += 1
        start = time.perf_counter()
        result = refine_focal(self._ba_problem(), self.ba.pixel_noise,
                              max_sigma_rel=cfg.focal_max_sigma, starts=cfg.focal_starts)
        self.stats["focal_seconds"] += time.perf_counter() - start
        if result is None:
            return
        self._focal_refinements += 1
        self.stats["focal_refinements"] += 1
        self.K = result.K
        for kf in self._window:
            kf.c2w = result.poses[kf.kid]
            self._kf_pose[kf.kid] = kf.c2w
        self._landmarks.update((i, p) for i, p in result.points.items() if i in self._landmarks)
        for i in result.dropped:
            self._landmarks.pop(i, None)

    def _landmark_table(self):
        """The landmarks as arrays for vectorised look-ups (``_lookup``): ids (L,) int64
        sorted, world points (L, 3) float64 in the same order."""
        ids = np.fromiter(self._landmarks.keys(), np.int64, len(self._landmarks))
        points = np.array(list(self._landmarks.values()), float).reshape(-1, 3)
        order = np.argsort(ids)
        return ids[order], points[order]

    def _cull_landmarks(self):
        """Remove landmarks that reproject badly (or behind) in a window keyframe."""
        bad = set()
        table = self._landmark_table()
        for kf in self._window:
            m, Xm = _lookup(table, kf.ids)
            if not m.any():
                continue
            ids = kf.ids[m]
            uv, z = project(self.K, kf.c2w, Xm)
            err = np.linalg.norm(uv - kf.pts[m], axis=1)
            bad.update(ids[(err > self.cfg.max_reprojection_px) | (z <= 0)].tolist())
        for i in bad:
            self._landmarks.pop(i, None)

    # ------------------------------------------------------------------ motion prior
    def _window_frames(self):
        frames = [f for f, _ in self._buffer]
        images = np.stack([im for _, im in self._buffer])
        return frames, images

    def _prior_estimate(self):
        frames, images = self._window_frames()
        t = time.perf_counter()
        window = self.prior.estimate(images, self.K)
        self.stats["prior_seconds"] += time.perf_counter() - t
        self.stats["prior_windows"] += 1
        self._last_prior_frame = frames[-1]
        return frames, window

    def _geo_poses(self, frames):
        poses, valid = [], []
        for f in frames:
            rec = self._records.get(f)
            ok = rec is not None and rec[0] is not None and (rec[0] in self._kf_pose) \
                and f in self._placed
            poses.append(self._pose_of(f) if rec is not None else np.eye(4))
            valid.append(ok)
        return np.array(poses), np.array(valid)

    def _prior_relative(self, a, b, to_map=True):
        """The model's relative pose from frame a to frame b (both in the buffer), scaled to
        the map (last known window scale; ``to_map=False``: in the model's own scale), or
        None."""
        frames, window = self._prior_estimate()
        if a not in frames or b not in frames:
            return None
        rel = invert(window.c2w[frames.index(a)]) @ window.c2w[frames.index(b)]
        if not to_map:
            return rel
        geo, valid = self._geo_poses(frames)
        valid[frames.index(b)] = False
        s = window_scale(window.c2w, geo, valid)
        if s is None or s <= 0:
            s = self._prior_scale
        if s is None:
            return None
        rel[:3, 3] *= s
        return rel

    def _geometry_weak(self, frames):
        """A window is weak when one of its frames was not placed by the map or had fewer than
        2 x ``degraded_inliers`` PnP inliers."""
        placed = set(self._placed)
        return any(f not in placed for f in frames) or \
            min(self._inliers.get(f, 0) for f in frames) < 2 * self.cfg.degraded_inliers

    def _prior_due(self, index):
        cfg = self.cfg
        if cfg.prior_schedule == "always":
            return True
        if cfg.prior_check_every and index - self._last_prior_check >= cfg.prior_check_every:
            self._last_prior_check = index
            return True
        if cfg.prior_factors == "off":
            return False  # nothing to feed: the model runs only for health, init, fallback
        return self._geometry_weak([f for f, _ in self._buffer])

    def _prior_window(self):
        """Run the model on the buffered window, now or (``prior_async``) on a worker thread
        whose result is used at a later frame; see ``_use_prior_window``."""
        if not self.cfg.prior_async:
            self._use_prior_window(*self._prior_estimate())
            return
        if self._prior_future is not None:
            return  # one window in flight at a time
        frames, images = self._window_frames()
        self._last_prior_frame = frames[-1]
        # ONNX Runtime releases the GIL while it runs: the model overlaps the tracking.
        self._prior_future = (frames, self._prior_executor.submit(self._timed_prior, images,
                                                                    self.K))

    def _timed_prior(self, images, K):
        t = time.perf_counter()
        return self.prior.estimate(images, K), time.perf_counter() - t

    def _collect_prior(self, wait=False):
        """Use the worker's model window once it is done (or wait for it)."""
        if self._prior_future is None or not (wait or self._prior_future[1].done()):
            return
        frames, future = self._prior_future
        self._prior_future = None
        window, seconds = future.result()
        self.stats["prior_seconds"] += seconds
        self.stats["prior_windows"] += 1
        self._use_prior_window(frames, window)

    def _use_prior_window(self, frames, window):
        """Scale a model window to the map; add between-factors between consecutive keyframes
        inside it (as ``prior_factors`` says); update the disagreement signal."""
        cfg = self.cfg
        geo, valid = self._geo_poses(frames)
        s = window_scale(window.c2w, geo, valid)
        if s is not None and s > 0:
            self._prior_scale = s if self._prior_scale is None else \
                0.5 * self._prior_scale + 0.5 * s
        s = s if s else self._prior_scale
        idx = np.flatnonzero(valid)
        if len(idx) >= 2:
            a, b = idx[0], idx[-1]
            R_geo = (invert(geo[a]) @ geo[b])[:3, :3]
            R_mod = (invert(window.c2w[a]) @ window.c2w[b])[:3, :3]
            self._disagreement = float(np.degrees(rotation_angle(R_geo.T @ R_mod)))
        if s is None:
            return
        weak = (~valid).any() or self._geometry_weak(frames)
        if cfg.prior_factors == "off" or (cfg.prior_factors == "weak" and not weak):
            return
        by_frame = {kf.frame: kf for kf in self._window}
        kfs = [by_frame[f] for f in frames if f in by_frame]
        for ka, kb in zip(kfs[:-1], kfs[1:]):
            i, j = frames.index(ka.frame), frames.index(kb.frame)
            T, cov = relative_factor(window, i, j, s, np.radians(cfg.prior_rot_floor_deg),
                                     cfg.prior_trans_floor, 1e-3 * s)
            self._betweens.append((ka.kid, kb.kid, T, cov))
            self.stats["prior_factors"] += 1

    # ------------------------------------------------------------------ bookkeeping
    def _pose_of(self, frame):
        kid, T = self._records[frame]
        if kid is None:
            return T.copy()
        return self._kf_pose[kid] @ T

    def _held_cov(self):
        return np.eye(6) * (LOST_COVARIANCE if self._health.lost else 1.0)

    def _frame_cov(self, cov):
        cov = np.asarray(cov if cov is not None else self._last_cov, float)
        if not np.any(cov):
            cov = np.eye(6) * 1e-6
        return cov

    def _trim_history(self):
        """Without history keep only records of frames that are keyframes in the window or
        newer than the window's first keyframe, and none older than ``retained_frames``
        frames (while tracking is lost the window stays where it was lost)."""
        if not self._window:
            return
        keyframes = {kf.frame for kf in self._window}
        first = max(self._window[0].frame, self._index - self.cfg.retained_frames)
        for f in [f for f in self._records if f < first and f not in keyframes]:
            self._records.pop(f)
            self._stamps.pop(f, None)
        kids = {kf.kid for kf in self._window}
        for k in [k for k in self._kf_pose if k not in kids]:
            self._kf_pose.pop(k)
            self._kf_cov.pop(k, None)


def lower_thread_priority(increment):
    """Add ``increment`` to the calling thread's niceness (Linux keeps one per thread; a
    thread ONNX Runtime runs a single-threaded session on is the caller). A no-op where the
    platform has no per-thread priorities or refuses the change."""
    if increment <= 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
    except (AttributeError, OSError):
        pass


def _lookup(table, ids):
    """Which of ``ids`` (N,) int are landmarks of ``table`` (``_landmark_table``): mask (N,)
    bool and their world points (M, 3), in the order of ``ids``."""
    lm_ids, points = table
    if len(lm_ids) == 0:
        return np.zeros(len(ids), bool), np.zeros((0, 3))
    idx = np.minimum(np.searchsorted(lm_ids, ids), len(lm_ids) - 1)
    m = lm_ids[idx] == ids
    return m, points[idx[m]]


def _rgb(image):
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]
