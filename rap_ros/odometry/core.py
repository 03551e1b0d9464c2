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

Without K (no camera_info), the focal length the core starts from (a 60° field-of-view
guess; with a prior and ``model_intrinsics``, the default, the model's, the guess a second
start with ``focal_start_guess``) is refined: once the window is full, every
``focal_every`` keyframes the window is solved once more with the focal free
(``selfcal.refine_focal``), and the result is
kept only where the motion observes the focal (its marginal sigma at most
``focal_max_sigma`` of it; pure translation does not); at most ``focal_refinements``
accepted solves and ``focal_attempts`` tries (benchmarks/results/odometry_focal.md).

The prior (method "rap"), by default (``prior_factors="off"``): every
``prior_check_every`` frames the model/geometry rotation disagreement for the health signal,
and without K the model's first window's focal as a start (``model_intrinsics``; since
session 17's weights its focal beats a constant, and the focal the core ends with is 8.4 %
off against 14.2 % from the guess alone: benchmarks/results/odometry_no_camera_info_rap_
defaults.md). Optionally (``prior_factors="weak"``/``"always"``, ``prior_on_fallback``) its
relative motion between keyframes, scaled to the map on the frames its window shares with
the geometry, enters the BA as between-factors, and it places frames the map cannot;
measured on 9 synthetic drives, 2 real sequences and 6 degenerate scenarios both raised the
ATE more often than they lowered it (benchmarks/results/odometry.md), hence off by default.
Also optional (``prior_init_after`` > 0): after that many frames of too little parallax its
direction of travel initialises the map; on slow starts that began tracking 13 frames sooner
at 4.3x the ATE (benchmarks/results/model_init.md), hence off by default too.
"""
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from rap_ros.geometry.cameras import K_from_fov, invert_pose
from rap_ros.geometry.rotations import project_to_so3
from rap_ros.io.images import to_gray
from rap_ros.odometry.backend import WindowBundleAdjuster
from rap_ros.odometry.config import OdometryConfig
from rap_ros.odometry.focal_calibration import FocalCalibration
from rap_ros.odometry.frontend import Tracker, normalise
from rap_ros.odometry.health import HealthMonitor
from rap_ros.odometry.initialisation import MapInitialiser, two_view_rotation
from rap_ros.odometry.local_map import LocalMap, lookup, scaled
from rap_ros.odometry.prior import MotionPrior
from rap_ros.odometry.prior_fusion import PriorFusion, lower_thread_priority
from rap_ros.odometry.twoview import (epipolar_error, pnp, pose_covariance_from_points,
                                      project, rotate_pixels, rotation_compensated_parallax)

__all__ = ["FrameResult", "LOST_COVARIANCE", "VisualOdometry", "lower_thread_priority"]

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


class VisualOdometry:
    """Monocular VO core. ``K`` (3, 3) pixels or None (then a guess with
    ``config.default_hfov_deg``, self-calibrated; the prior's K with
    ``config.model_intrinsics``); ``prior``: a ``MotionPrior`` or None.

    Its parts (created by ``reset``): ``_map`` (``local_map.LocalMap``: window keyframes,
    landmarks, frame records), ``_init`` (``initialisation.MapInitialiser``), ``_fusion``
    (``prior_fusion.PriorFusion``), ``_focal`` (``focal_calibration.FocalCalibration``);
    the live KLT tracks (``_ids``, ``_pts``) and the motion model stay here."""

    def __init__(self, K=None, config=None, prior: MotionPrior = None):
        self.cfg = config or OdometryConfig()
        if self.cfg.klt_predict not in ("previous", "rotation", "map"):
            raise ValueError(f"klt_predict must be 'previous', 'rotation' or 'map', got "
                             f"{self.cfg.klt_predict!r}")
        if self.cfg.loss_scale not in ("speed", "depth", "blend"):
            raise ValueError(f"loss_scale must be 'speed', 'depth' or 'blend', got "
                             f"{self.cfg.loss_scale!r}")
        self.prior = prior
        self.K_given = None if K is None else np.asarray(K, float)
        self.ba = WindowBundleAdjuster(self.cfg.ba_pixel_sigma, self.cfg.ba_huber,
                                       self.cfg.ba_iterations, self.cfg.ba_solver,
                                       self.cfg.prior_huber, self.cfg.ba_covariance,
                                       self.cfg.ba_fallback)
        self._prior_executor = ThreadPoolExecutor(
            1, thread_name_prefix="rap_prior", initializer=lower_thread_priority,
            initargs=(self.cfg.prior_nice,)) if self.cfg.prior_async else None
        self._fusion = None
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
        self._last_pose = self._start_pose.copy()
        self._velocity = np.eye(4)
        self._velocity_from = None  # the pose the velocity was measured from
        self._last_cov = np.eye(6) * 1e-4
        self._mode = "init"
        self._health = HealthMonitor(self.cfg.degraded_inliers, self.cfg.lost_after,
                                     self.cfg.disagreement_deg)
        self._ba_due = 0            # keyframes whose BA waits for optimise() (push(optimise=False))
        self._defer_ba = False
        self._ba_last = None
        self._tracked_prev = None
        self._moving_pts = np.zeros((0, 2), np.float32)  # tracks just dropped as moving
        self._placed = deque(maxlen=64)   # recent frames placed by the map (PnP / init)
        self._inliers = {}                # recent frame -> PnP inliers
        self.stats = dict(frames=0, keyframes=0, pnp=0, fallback=0, prior_fallback=0,
                          prior_windows=0, prior_factors=0, ba_runs=0, ba_seconds=0.0,
                          prior_seconds=0.0, losses=0, recoveries=0, inits=0, model_inits=0,
                          focal_refinements=0, focal_seconds=0.0, ba_fallbacks=0,
                          ba_failures=0, ba_max_seconds=0.0, moving_tracks=0)
        if self._fusion is not None:
            self._fusion.cancel()
        self._map = LocalMap(self.stats)
        self._fusion = PriorFusion(self.prior, self.cfg, self._prior_executor, self.stats,
                                   self._map, self._placed, self._inliers)
        self._init = MapInitialiser(self.cfg, self.stats, self._map, self._fusion,
                                    self._placed)
        self._focal = FocalCalibration(self.cfg, self.stats)

    def push(self, image, stamp=None, optimise=True) -> FrameResult:
        """Process one frame (uint8 (H, W) grey or (H, W, 3) RGB) and return its result.

        ``optimise=False``: a keyframe's bundle adjustment is left due instead of run before
        returning, so a caller can publish the frame's pose first and then call
        ``optimise()`` when it has time (a node's latency: when no frame waits); the frames
        that waited for a new map are placed on it then too (``MapInitialiser.place_waiting``,
        up to 60 PnPs). Until then the next frames are tracked on the map as it is, and a
        new keyframe's BA joins the due one (one BA over the window then); once
        ``max_deferred_keyframes`` keyframes wait, the next push runs it first. Anything
        reading the map (``keyframes``, ``map_points``, ``set_scale``) runs it first, and
        ``trajectory`` places the waiting frames too. The frame's returned pose is its
        tracked pose, not the adjusted one (``trajectory()`` has the adjusted one)."""
        t0 = time.perf_counter()
        image = np.asarray(image)
        self._defer_ba = not optimise
        if self.K is None and self.K_given is None and self.prior is not None \
                and self.cfg.model_intrinsics:
            return self._push_without_k(image, stamp, t0)
        return self._push(image, stamp, t0)

    def optimise(self, place_limit=None):
        """Place the frames that waited for a new map (at most ``place_limit`` of them now;
        None: all), then run the bundle adjustment a keyframe of ``push(...,
        optimise=False)`` left due. Returns True if a BA ran. ``trajectory`` calls it
        first; ``keyframes``, ``map_points``, ``set_scale`` and ``push`` (once
        ``max_deferred_keyframes`` keyframes wait) run the due BA, so a caller that never
        calls it loses no keyframe's BA (they join) and no frame's placement."""
        self._init.place_waiting(self.K, place_limit)  # before the BA, as push() would
        return self._run_due_ba()

    def _run_due_ba(self):
        """The BA left due by ``push(optimise=False)``, if any; True if one ran."""
        if not self._ba_due:
            return False
        self._ba_due = 0
        self._run_ba()
        if self._velocity_from is not None:  # as if the BA had run inside push()
            self._velocity = self._bounded_step(invert_pose(self._velocity_from) @ self._last_pose)
        return True

    def trajectory(self):
        """(N, 4, 4) c2w of every frame so far (with ``history``; else the retained ones):
        keyframes as last bundle-adjusted, other frames relative to their keyframe."""
        self.optimise()
        frames = sorted(self._map.records)
        return np.array([self._map.pose_of(f) for f in frames]) if frames else \
            np.zeros((0, 4, 4))

    def keyframes(self):
        """Dict frame index -> c2w of the keyframes of the current window (BA-corrected)."""
        self._run_due_ba()
        return {kf.frame: kf.c2w.copy() for kf in self._map.window}

    def set_scale(self, factor):
        """Multiply every length (map, keyframes, trajectory, motion model) by ``factor``
        about the world origin, e.g. once wheel odometry gives the metric scale."""
        f = float(factor)
        self._run_due_ba()
        self._map.scale(f)
        self._last_pose, self._velocity = scaled(self._last_pose, f), scaled(self._velocity, f)
        self._init.scale(f)
        self._fusion.scale(f)

    def map_points(self):
        """(N, 3) float64 world positions of the local map's landmarks (same frame and units
        as the poses; empty before initialisation), e.g. for the depth of a preview warp."""
        self._run_due_ba()
        if not self._map.landmarks:
            return np.zeros((0, 3))
        return np.array(list(self._map.landmarks.values()), float)

    def map_size(self):
        """Sizes of the retained state: landmarks, window keyframes, live tracks, prior
        factors, frame records (the latter grows only with ``history``)."""
        m = self._map
        return dict(landmarks=len(m.landmarks), keyframes=len(m.window), tracks=len(self._ids),
                    betweens=len(m.betweens), records=len(m.records), kf_poses=len(m.kf_pose))

    def close(self):
        if self._prior_executor is not None:
            self._prior_executor.shutdown(wait=True)

    # ------------------------------------------------------------------ frame handling
    def _push_without_k(self, image, stamp, t0):
        """Hold frames until the prior's window is full, take K from the model, replay."""
        held = self._fusion.held
        held.append((image, stamp))
        index = self._index + len(held)
        if len(held) < self.prior.window:
            return FrameResult(index, stamp, self._start_pose.copy(),
                               np.eye(6) * LOST_COVARIANCE, "initialising", source="buffered",
                               timing=dict(total=time.perf_counter() - t0))
        self.K, held = self._fusion.intrinsics()
        if self.cfg.focal_start_guess:  # the model's focal is one start, the guess another
            h, w = np.asarray(held[0][0]).shape[:2]
            self._focal.also_from = K_from_fov(self.cfg.default_hfov_deg, w, h)[0, 0]
        results = [self._push(im, st, time.perf_counter()) for im, st in held]
        result = results[-1]
        result.earlier = results[:-1]
        result.timing["total"] = time.perf_counter() - t0
        return result

    def _push(self, image, stamp, t0):
        cfg = self.cfg
        if not self._defer_ba or self._ba_due >= cfg.max_deferred_keyframes:
            self._run_due_ba()
        self._index += 1
        index = self._index
        self.stats["frames"] += 1
        stamp = float(index if stamp is None else stamp)
        self._map.stamps[index] = stamp
        if self.prior is not None:
            self._fusion.add(index, image)
        self._raw_gray = to_gray(image)  # the current frame before normalisation
        gray = normalise(self._raw_gray, cfg.normalise_mean, cfg.normalise_std)
        if self._tracker is None:
            h, w = gray.shape
            self._tracker = Tracker(cfg, (w, h))
            self._diag = self._tracker.diagonal
            if self.K is None:
                self.K = K_from_fov(cfg.default_hfov_deg, w, h)
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
            self._velocity = self._bounded_step(invert_pose(prev_pose) @ result.c2w)
            self._velocity_from = prev_pose
        self._last_pose = result.c2w.copy()
        if len(self._ids) < cfg.min_features:
            self._top_up(gray)
        self._prev_gray = gray
        result.tracks = len(self._ids)
        if not cfg.history:
            self._map.trim(self._index, cfg.retained_frames)
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
        m, Xm = lookup(self._map.table(), self._ids) if how == "map" else (None, None)
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
        # frame (``invert_pose`` transposes); projected only once it is measurably off, so that
        # tracking which never drifts is not perturbed at the rounding level (RANSAC's
        # sampling then differs and single sequences move by chance)
        if np.abs(R.T @ R - np.eye(3)).max() > 1e-9:
            step = step.copy()
            step[:3, :3] = project_to_so3(R)
        return step

    def _top_up(self, gray):
        new = self._tracker.detect(gray, self._pts, self.cfg.max_features - len(self._pts),
                                   raw=self._raw_gray, spread=self._mode == "track",
                                   avoid=self._moving_pts)
        self._moving_pts = np.zeros((0, 2), np.float32)
        if len(new):
            self._pts = np.vstack([self._pts, new]).astype(np.float32)
            self._ids = np.concatenate([self._ids, self._next_id + np.arange(len(new))])
            self._next_id += len(new)

    # ------------------------------------------------------------------ initialisation
    def _start_init(self, index, c2w, gray):
        if len(self._ids) < self.cfg.min_features:
            self._top_up(gray)
        self._init.start(index, c2w, self._ids, self._pts)

    def _step_init(self, index, stamp, gray, timing):
        t = time.perf_counter()
        if self._init.ref is None:
            c2w = self._start_pose.copy() if index == 0 else self._last_pose.copy()
            self._start_init(index, c2w, gray)
            self._map.records[index] = (None, c2w.copy())
            timing["pose"] = time.perf_counter() - t
            return FrameResult(index, stamp, c2w, self._held_cov(), self._init_state(),
                               source="hold")
        c2w, done, restart = self._init.attempt(index, self.K, self._ids, self._pts,
                                                self._last_pose @ self._velocity, self._diag)
        if restart:
            self._start_init(index, c2w, gray)
        if not done:
            if self._init.wait(index, self._ids, self._pts):
                self._start_init(index, c2w, gray)
            timing["pose"] = time.perf_counter() - t
            return FrameResult(index, stamp, c2w, self._held_cov(), self._init_state(),
                               source="hold", tracks=len(self._ids))
        self._mode = "track"
        timing["pose"] = time.perf_counter() - t
        kf = self._map.window[-1]
        state, recovered = self._health.update(True, len(self._map.landmarks))
        if not self._defer_ba:  # else optimise() places them, after the frame's pose is out
            self._init.place_waiting(self.K)
        t = time.perf_counter()
        self._keyframe_ba()
        timing["ba"] = time.perf_counter() - t
        return FrameResult(index, stamp, self._map.pose_of(index), self._frame_cov(kf.cov),
                           state, is_keyframe=True, recovered=recovered, source="init",
                           inliers=len(self._map.landmarks))

    def _init_state(self):
        return "lost" if self._health.lost else "initialising"

    # ------------------------------------------------------------------ tracking
    def _step_track(self, index, stamp, gray, timing):
        cfg, K, landmarks = self.cfg, self.K, self._map.landmarks
        t = time.perf_counter()
        guess = self._last_pose @ self._velocity
        has = np.fromiter((i in landmarks for i in self._ids.tolist()), bool, len(self._ids))
        c2w, inliers, rms, source = None, 0, np.inf, "pnp"
        if has.sum() >= cfg.min_pnp_points:
            Xm = np.array([landmarks[int(i)] for i in self._ids[has]])
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
                if cfg.epipolar_px and (self.K_given is not None or self._focal.refinements):
                    self._drop_moving_tracks(c2w, has)
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
        kf = self._map.window[-1]
        self._map.records[index] = (kf.kid, invert_pose(kf.c2w) @ c2w)
        # the prior's regular window
        t = time.perf_counter()
        if self.prior is not None:
            self._fusion.step(index, self.K)
        timing["prior"] = time.perf_counter() - t
        disagreement = self._fusion.disagreement
        state, recovered = self._health.update(placed, inliers, disagreement)
        if state == "lost":
            # start again from here, keeping the trajectory continuous
            self._mode = "init"
            self._init.after_loss(np.linalg.norm(self._velocity[:3, 3]),
                                  None if cfg.loss_scale == "speed" else self._map.median_depth())
            self._map.freeze_window()
            self._map.records[index] = (None, c2w.copy())
            self._start_init(index, c2w, gray)
            cov = np.eye(6) * LOST_COVARIANCE
            return FrameResult(index, stamp, c2w, cov, "lost", source=source, inliers=inliers,
                               disagreement_deg=disagreement)
        # keyframe?
        t = time.perf_counter()
        is_kf = self._need_keyframe(index, c2w, inliers, placed)
        if is_kf:
            new = self._map.add_keyframe(index, c2w, self._ids.copy(), self._pts.copy(),
                                         inliers)
            new.cov = cov
            self._map.records[index] = (new.kid, np.eye(4))
            weak = cfg.tri_min_angle_weak_deg and inliers < cfg.kf_min_tracked
            self._map.triangulate_new(
                self.K, new, cfg.tri_min_angle_weak_deg if weak else cfg.tri_min_angle_deg,
                cfg.tri_max_reprojection_px)
            self._map.slide(cfg.window_keyframes, self._ids)
            timing["keyframe"] = time.perf_counter() - t
            t = time.perf_counter()
            self._keyframe_ba()
            timing["ba"] = time.perf_counter() - t
            if new.cov is not None:
                cov = new.cov
        self._last_cov = cov
        return FrameResult(index, stamp, self._map.pose_of(index), self._frame_cov(cov), state,
                           is_keyframe=is_kf, recovered=recovered, source=source,
                           inliers=inliers, disagreement_deg=disagreement)

    def _drop_moving_tracks(self, c2w, has):
        """Drop the tracks without a landmark (``has`` False) that have left the epipolar
        line of where the last keyframe saw them, given this frame's PnP pose, by more than
        ``epipolar_px``: they are on something moving on its own. Left in, they become
        landmarks once they fit some static point between two keyframes, and an object
        that fills part of the view then takes over PnP and the BA (a box crossing a street
        view: 5.9 % ATE without this check, 0.4 % with it, three starts each;
        benchmarks/results/odometry_frontend_robustness_camera_effects.md).
        Only with a K to trust (camera_info, or a focal the self-calibration accepted): the
        epipolar lines of a guessed focal are off by pixels for static points too, and the
        check then starves the self-calibration of the tracks it needs."""
        kf = self._map.window[-1]
        new = np.flatnonzero(~has)
        _, ia, ib = np.intersect1d(kf.ids, self._ids[new], return_indices=True)
        error = epipolar_error(self.K, kf.c2w, c2w, kf.pts[ia], self._pts[new[ib]])
        moving = new[ib[error > self.cfg.epipolar_px]]
        if len(moving):
            keep = np.ones(len(self._ids), bool)
            keep[moving] = False
            self._moving_pts = self._pts[moving]
            self._pts, self._ids = self._pts[keep], self._ids[keep]
            self.stats["moving_tracks"] += len(moving)

    def _fallback_pose(self, index, guess):
        """Pose of a frame the map cannot place: the model's motion, else two-view rotation
        from the previous frame with a constant-velocity step."""
        rel = self._fusion.fallback_motion(index, self.K)
        if rel is not None:
            return self._last_pose @ rel, "prior"
        step = self._velocity.copy()
        prev_pts = self._tracked_prev
        if prev_pts is not None and len(prev_pts) == len(self._pts) and len(prev_pts) >= 8:
            R, tdir, mask = two_view_rotation(self.cfg, self.K, prev_pts, self._pts)
            if R is not None:
                speed = np.linalg.norm(step[:3, 3])
                step[:3, :3] = R.T
                if rotation_compensated_parallax(self.K, R, prev_pts[mask],
                                                 self._pts[mask]) > 1.0:
                    step[:3, 3] = -R.T @ tdir * speed
        return self._last_pose @ step, "fallback"

    def _need_keyframe(self, index, c2w, inliers, placed):
        cfg = self.cfg
        kf = self._map.window[-1]
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

    # ------------------------------------------------------------------ bundle adjustment
    def _keyframe_ba(self):
        """The BA a new keyframe asks for: now, or left due for ``optimise()``."""
        if self._defer_ba:
            self._ba_due += 1
        else:
            self._run_ba()

    def _run_ba(self):
        if not self.cfg.ba or len(self._map.window) < 2:
            return
        result = self.ba.solve(self._map.ba_problem(self.K, self.cfg.ba_fixed))
        self.stats["ba_runs"] += 1
        self.stats["ba_seconds"] += result.seconds
        self.stats["ba_max_seconds"] = max(self.stats["ba_max_seconds"], result.seconds)
        self.stats["ba_fallbacks"] += result.fallback
        self.stats["ba_failures"] += result.failed
        self._ba_last = result
        self._map.apply(result.poses, result.points, result.covariances)
        if self.K_given is None:  # focal self-calibration (``focal_calibration``)
            K = self._focal.refine(self._map, self.K, self.ba.pixel_noise)
            self.K = self.K if K is None else K
        self._map.cull(self.K, self.cfg.max_reprojection_px)
        records = self._map.records
        if self._index in records and records[self._index][0] is not None:
            self._last_pose = self._map.pose_of(self._index)

    # ------------------------------------------------------------------ bookkeeping
    def _held_cov(self):
        return np.eye(6) * (LOST_COVARIANCE if self._health.lost else 1.0)

    def _frame_cov(self, cov):
        cov = np.asarray(cov if cov is not None else self._last_cov, float)
        if not np.any(cov):
            cov = np.eye(6) * 1e-6
        return cov
