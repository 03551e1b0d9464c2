"""The pose sources of ``rap-ros evaluate --method``, each a ``PoseStream``.

* ``rap``: the model through ``WindowStream``, the code path of the trajectory_estimator
  node: windows of ``T = backend.config.frames`` frames every ``stride`` frames, ``batch``
  windows per model call, chained, and a tail window for the frames after the last full
  window. Frames are taken as they come (``ordered=False``): offline, the input's order is
  the truth.
* ``opencv-vo``: the classical monocular baseline of ``rap_ros.evaluation.vo``.

``make_estimator(method, K, options)`` is the one dispatch; another method is one more entry
of ``ESTIMATORS``. Poses are camera-to-world (n, 4, 4), OpenCV axes, the first frame's camera
as world frame, arbitrary scale (the metrics align them to the ground truth).
"""
import numpy as np

from rap_ros.backend.shared import get_backend
from rap_ros.evaluation.vo import MonocularVO
from rap_ros.io.errors import InputError
from rap_ros.pipeline.streaming import FixedPoses, PoseStream, WindowStream
from rap_ros.pipeline.trajectory import TrajectoryPipeline
from rap_ros.pipeline.views import ViewPipeline


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


class RapEstimator(PoseStream):
    """Frames in, poses out, with the model: a ``WindowStream`` plus what the report says of
    it (windows, intrinsics estimates, raxel residuals, closed-loop consistency)."""

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
            raise InputError(f"rap needs at least {self.stream.window} frames (one window), "
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


ESTIMATORS = {"rap": RapEstimator, "opencv-vo": VOEstimator}
METHODS = tuple(ESTIMATORS)


def make_estimator(method, K, options):
    """The PoseStream of ``method`` for frames with intrinsics K (or None)."""
    if method not in ESTIMATORS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return ESTIMATORS[method](K, options)
