"""The pose sources of ``rap-ros evaluate --method``, each a ``PoseStream``.

* ``rap`` (the default): the odometry core (``rap_ros.odometry.VisualOdometry``: KLT tracks,
  PnP against a local map, sliding-window bundle adjustment) with the joint model as its
  motion prior (``ModelPrior`` over a ``TrajectoryPipeline``: ``steps`` Euler steps, one
  sample, no flow refinement). Without intrinsics, the model's first window's K and a 60
  degree guess as two starts, self-calibrated (``OdometryConfig.model_intrinsics``,
  ``focal_start_guess``; off: the guess alone, as ``geometry``).
* ``geometry``: the same core without the prior (without intrinsics: a 60 degree guess).
* ``model``: the windowed model alone through ``WindowStream``, the code path of the
  trajectory_estimator node before the odometry core: windows of ``T =
  backend.config.frames`` frames every ``stride`` frames, ``batch`` windows per model call,
  chained, and a tail window for the frames after the last full window. Frames are taken as
  they come (``ordered=False``): offline, the input's order is the truth.
* ``opencv-vo``: the classical monocular baseline of ``rap_ros.evaluation.vo``.

``rap`` and ``geometry`` are one class, ``OdometryEstimator``; the prior is the only
difference. It gives each frame its pose as the frame comes (``push`` returns one pose) and,
at ``finish``, the core's bundle-adjusted ``trajectory()``; it keeps a per-frame log
(health, source, inliers, ...) from which ``tracking()`` marks the tracking-loss gaps.

``make_estimator(method, K, options)`` is the one dispatch; another method is one more entry
of ``ESTIMATORS``. Poses are camera-to-world (n, 4, 4), OpenCV axes, the first frame's camera
as world frame, arbitrary scale (the metrics align them to the ground truth).
"""
from dataclasses import dataclass
from functools import partial

import numpy as np

from rap_ros.backend.shared import get_backend
from rap_ros.evaluation.vo import MonocularVO
from rap_ros.io.errors import InputError
from rap_ros.odometry import OdometryConfig
from rap_ros.odometry.factory import make_odometry
from rap_ros.pipeline.streaming import FixedPoses, PoseStream, WindowStream
from rap_ros.pipeline.trajectory import TrajectoryPipeline
from rap_ros.pipeline.views import ViewPipeline

# Health states that count as tracked (the core's "initialising" and "lost" do not).
TRACKED = ("ok", "degraded")


class VOEstimator(PoseStream):
    """Frames in, poses out, with `opencv-vo` (every frame gets its pose as it comes)."""

    def __init__(self, K, options=None):
        if K is None:
            raise InputError("opencv-vo needs the camera intrinsics: the input has none; pass "
                             "--fx --fy --cx --cy or --intrinsics FILE")
        self.vo = MonocularVO(K)
        self.stamps = []

    def push(self, frame, stamp, tag=None):
        pose = self.vo.process(frame)
        self.stamps.append(float(stamp))
        return FixedPoses(first=len(self.stamps) - 1, stamps=np.array(self.stamps[-1:]),
                          c2w=np.asarray(pose)[None], tags=[tag])

    def finish(self):
        return self.partial()

    def partial(self):
        c2w = self.vo.trajectory()
        return FixedPoses(stamps=np.array(self.stamps[:len(c2w)]), c2w=c2w,
                          tags=[None] * len(c2w))

    def details(self):
        vo = self.vo
        return {"keyframes": vo.keyframes, "pnp_keyframes": vo.pnp_keyframes,
                "pnp_frames": vo.pnp_frames,
                "held_frames": vo.held_frames, "scale_fallbacks": vo.scale_fallbacks,
                "vo_working_width_scale": vo.scale_factor}


# ------------------------------------------------------------------ rap and geometry


@dataclass
class FrameLog:
    """One frame of an odometry run, as the core reported it when the frame was pushed.

    index: frame number in the run (0-based); stamp: seconds; health: "initialising", "ok",
    "degraded" or "lost"; recovered: the frame ends a loss; source: how it was placed
    ("init", "pnp", "prior", "fallback", "hold", "buffered"); keyframe: it became one;
    inliers: PnP inliers; tracks: live KLT tracks; disagreement_deg: model vs geometry
    rotation over the last model window; ms: time of the push, milliseconds.
    """

    index: int
    stamp: float
    health: str
    recovered: bool
    source: str
    keyframe: bool
    inliers: int
    tracks: int
    disagreement_deg: float
    ms: float


def loss_gaps(health):
    """[first, last] frame ranges (inclusive) of consecutive "lost" frames, oldest first."""
    gaps, start = [], None
    for i, state in enumerate(health):
        if state == "lost" and start is None:
            start = i
        elif state != "lost" and start is not None:
            gaps.append([start, i - 1])
            start = None
    if start is not None:
        gaps.append([start, len(health) - 1])
    return gaps


def tracking_summary(log, initialised=False):
    """What the report says of a run's tracking, from its per-frame ``FrameLog`` list:
    health counts, frames tracked, the loss gaps as frame ranges and stamps, the recoveries
    (frames that end a loss) and whether the run ended lost.

    Tracked: health ok or degraded; frames held for the model's K (source "buffered", health
    "initialising" when pushed) count too once the core has ``initialised`` (it places them
    when the model's K comes; ``benchmarks/eval_odometry.py`` counts the same way)."""
    health = [f.health for f in log]
    gaps = loss_gaps(health)
    stamps = [f.stamp for f in log]
    tracked = sum(h in TRACKED or (initialised and f.source == "buffered")
                  for h, f in zip(health, log))
    return {
        "frames_tracked": int(tracked),
        "health": {state: int(health.count(state))
                   for state in ("initialising", "ok", "degraded", "lost")},
        "lost_frames": gaps,
        "lost_stamps": [[stamps[a], stamps[b]] for a, b in gaps],
        "lost_frame_count": int(sum(b - a + 1 for a, b in gaps)),
        "recoveries": [f.index for f in log if f.recovered],
        "ended_lost": bool(health) and health[-1] == "lost",
    }


class OdometryEstimator(PoseStream):
    """Frames in, poses out, with the odometry core: method ``rap`` (``with_model``: the
    joint model as the core's motion prior) or ``geometry`` (the core alone).

    ``push`` returns the frame's pose as the core placed it then (one pose per push; frames
    held while the model's K is awaited get the start pose); ``finish`` returns the core's
    ``trajectory()``: keyframes as last bundle-adjusted, other frames relative to their
    keyframe. ``frame_log`` holds each frame's health; ``tracking()`` summarises it.
    """

    def __init__(self, K, options, with_model=True):
        self.K = None if K is None else np.asarray(K, np.float64)
        self.backend = get_backend(options.backend or "onnx") if with_model else None
        self.steps = int(options.steps)
        self.vo = make_odometry("rap" if with_model else "geometry", self.K,
                                backend=self.backend, config=OdometryConfig(), steps=self.steps)
        self.frame_log = []
        self._c2w, self._cov, self._tags = [], [], []
        self._closed = False

    @property
    def method(self):
        return self.vo.method

    def push(self, frame, stamp, tag=None):
        result = self.vo.push(frame, float(stamp))
        index = len(self.frame_log)
        self.frame_log.append(None)
        self._c2w.append(None)
        self._cov.append(None)
        self._tags.append(tag)
        # frames held for the model's K are answered again, tracked, with this push
        for earlier in result.earlier:
            self._record(earlier.index, earlier, self.frame_log[earlier.index].stamp)
        c2w, cov = self._record(index, result, float(stamp))
        return FixedPoses(first=index, stamps=np.array([float(stamp)]), c2w=c2w[None],
                          covariance=cov[None], tags=[tag])

    def _record(self, index, result, stamp):
        """Log frame ``index``'s result -> (c2w, covariance)."""
        self.frame_log[index] = FrameLog(
            index=index, stamp=stamp, health=result.health,
            recovered=bool(result.recovered), source=result.source,
            keyframe=bool(result.is_keyframe), inliers=int(result.inliers),
            tracks=int(result.tracks), disagreement_deg=float(result.disagreement_deg),
            ms=1e3 * float(result.timing.get("total", 0.0)))
        self._c2w[index] = np.asarray(result.c2w, np.float64)
        self._cov[index] = np.asarray(result.covariance, np.float64)
        return self._c2w[index], self._cov[index]

    def _stamps(self):
        return np.array([f.stamp for f in self.frame_log], np.float64)

    def finish(self):
        n = len(self.frame_log)
        if self._buffered():
            raise InputError(f"{self.method} without intrinsics takes K from the model's first "
                             f"window of {self.vo.prior.window} frames, but the input has "
                             f"{n}; pass --fx --fy --cx --cy or --intrinsics FILE")
        c2w = self.vo.trajectory()
        self._close()
        if len(c2w) != n:  # the core keeps every frame (history): a mismatch is a bug
            raise RuntimeError(f"the odometry core's trajectory has {len(c2w)} poses for "
                               f"{n} frames")
        return FixedPoses(stamps=self._stamps(), c2w=np.asarray(c2w, np.float64),
                          covariance=np.array(self._cov).reshape(n, 6, 6), tags=list(self._tags))

    def partial(self):
        """The poses as each frame got them when pushed (no later BA corrections); none
        while every frame still waits for the model's K."""
        n = len(self.frame_log)
        if self._buffered():
            return FixedPoses()
        return FixedPoses(stamps=self._stamps(), c2w=np.array(self._c2w).reshape(n, 4, 4),
                          covariance=np.array(self._cov).reshape(n, 6, 6), tags=list(self._tags))

    def _buffered(self):
        """Every frame so far still waits for the model's K (fewer than one window)."""
        return bool(self.frame_log) and all(f.source == "buffered" for f in self.frame_log)

    def _close(self):
        if not self._closed:
            self.vo.close()
            self._closed = True

    def tracking(self):
        return tracking_summary(self.frame_log, self.vo.stats.get("inits", 0) > 0)

    def details(self):
        vo, stats = self.vo, self.vo.stats
        ba_runs = int(stats.get("ba_runs", 0))
        info = {"method": self.method, "keyframes": int(stats.get("keyframes", 0)),
                "map": vo.map_size(),
                "ba_runs": ba_runs, "ba_seconds": float(stats.get("ba_seconds", 0.0)),
                "ba_ms_per_run": 1e3 * float(stats.get("ba_seconds", 0.0)) / max(ba_runs, 1),
                "ba_failures": int(getattr(vo.ba, "failures", 0)),
                "pnp_frames": int(stats.get("pnp", 0)),
                "fallback_frames": int(stats.get("fallback", 0)),
                "initialisations": int(stats.get("inits", 0)),
                "losses": int(stats.get("losses", 0)),
                "recoveries": int(stats.get("recoveries", 0))}
        if self.K is not None:
            info["intrinsics"] = "given"
        else:
            guess = f"a {vo.cfg.default_hfov_deg:g} degree horizontal field of view"
            starts = (f"the model's first window and {guess}"
                      if vo.prior is not None and vo.cfg.model_intrinsics else guess)
            refined = "self-calibrated" if vo.cfg.focal_refinements else "held"
            info["intrinsics"] = f"{refined}, started from {starts}"
        if vo.K is not None:
            info["K"] = np.asarray(vo.K).tolist()
        if vo.prior is not None:
            disagreement = [f.disagreement_deg for f in self.frame_log
                            if f.disagreement_deg > 0]
            info.update(backend=getattr(self.backend, "name", "?"), steps=self.steps,
                        model_window=int(vo.prior.window),
                        model_windows=int(stats.get("prior_windows", 0)),
                        model_factors=int(stats.get("prior_factors", 0)),
                        model_fallback_frames=int(stats.get("prior_fallback", 0)),
                        model_seconds=float(stats.get("prior_seconds", 0.0)),
                        disagreement_deg_mean=float(np.mean(disagreement)) if disagreement
                        else 0.0,
                        disagreement_deg_max=float(np.max(disagreement)) if disagreement
                        else 0.0)
        ms = [f.ms for f in self.frame_log]
        if ms:
            info.update(frame_ms_median=float(np.median(ms)),
                        frame_ms_p95=float(np.percentile(ms, 95)))
        return info


# ------------------------------------------------------------------ model


class ModelEstimator(PoseStream):
    """Frames in, poses out, with the model alone: a ``WindowStream`` plus what the report
    says of it (windows, intrinsics estimates, raxel residuals, closed-loop consistency)."""

    def __init__(self, K, options):
        self.backend = get_backend(options.backend or "onnx")
        self.pipeline = TrajectoryPipeline(self.backend, steps=options.steps, samples=1,
                                           refine=options.refine)
        window = int(self.backend.config.frames)
        stride = int(options.stride or max(1, window // 2))
        if not 1 <= stride < window:
            raise InputError(f"--stride must be in [1, {window - 1}] for windows of "
                             f"{window} frames, got {stride}")
        self.K = None if K is None else np.asarray(K, np.float64)
        self.stream = WindowStream(self.pipeline, stride=stride, batch=options.batch, K=self.K,
                                   ordered=False, on_window=self._record)
        self.K_estimates = []
        self.residual_deg = []
        self.keep_for_consistency = max(0, int(options.consistency_windows))
        self.consistency_every = 1
        self.kept = []          # (frames window, c2w, K) for the consistency test

    def plan(self, total_frames):
        """Spread the consistency windows over a run of ``total_frames`` frames."""
        if total_frames and self.keep_for_consistency:
            windows = max(1, (total_frames - self.stream.window) // self.stream.stride + 1)
            self.consistency_every = max(1, windows // self.keep_for_consistency)

    def _record(self, window, estimate):
        if window.tail:
            return
        self.K_estimates.append(estimate.K)
        if estimate.residual_deg is not None:
            self.residual_deg.append(float(np.mean(estimate.residual_deg)))
        index = self.stream.windows - 1
        if (self.keep_for_consistency and index % self.consistency_every == 0
                and len(self.kept) < self.keep_for_consistency):
            self.kept.append((window.frames, estimate.c2w, estimate.K))

    def push(self, frame, stamp, tag=None):
        return self.stream.push(frame, stamp, tag)

    def finish(self):
        poses = self.stream.finish()
        if not len(poses):
            raise InputError(f"model needs at least {self.stream.window} frames (one window), "
                             f"got {self.stream.frames}")
        return poses

    def partial(self):
        return self.stream.partial()

    def consistency_psnr(self):
        """Closed-loop consistency (dB), as the trajectory node reports it: on the kept windows,
        ``ViewPipeline.closed_loop(first frame, K, estimated poses)`` predicts frames along
        the estimated path, re-estimates their poses, regenerates and compares (mean PSNR)."""
        if not self.kept:
            return None
        view = ViewPipeline(self.backend, steps=self.pipeline.steps,
                            sampler=self.pipeline.sampler, estimator=self.pipeline)
        scores = [view.closed_loop(frames[0], K, c2w).psnr for frames, c2w, K in self.kept]
        return float(np.mean(scores))

    def details(self):
        info = {"window": self.stream.window, "stride": self.stream.stride,
                "windows": self.stream.windows, "steps": self.pipeline.steps,
                "backend": getattr(self.backend, "name", "?"),
                "intrinsics_estimated": self.K is None}
        if self.K is None and self.K_estimates:
            info["K_estimated_median"] = np.median(np.array(self.K_estimates), axis=0).tolist()
        if self.residual_deg:
            info["raxel_residual_deg_mean"] = float(np.mean(self.residual_deg))
        return info


ESTIMATORS = {"rap": partial(OdometryEstimator, with_model=True),
              "geometry": partial(OdometryEstimator, with_model=False),
              "model": ModelEstimator,
              "opencv-vo": VOEstimator}
METHODS = tuple(ESTIMATORS)
DEFAULT_METHOD = "rap"


def make_estimator(method, K, options):
    """The PoseStream of ``method`` for frames with intrinsics K (or None)."""
    if method not in ESTIMATORS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return ESTIMATORS[method](K, options)
