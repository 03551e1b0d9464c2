"""Evaluate trajectory estimators on recorded inputs, offline and as fast as possible.

Methods (``METHODS``):

* ``rap``: the model, through the same windowed code path as the ROS node: windows of
  ``T = backend.config.frames`` frames starting every ``stride`` frames go through
  ``TrajectoryPipeline.estimate_batch`` (several windows per model call) and are stitched by
  ``TrajectoryChainer``. Frames after the last full window come from one extra window over
  the last T frames, aligned on the frames it shares with the chain (``align_sim3``).
* ``opencv-vo``: the classical monocular baseline of ``rap_ros.evaluation.vo``.

``evaluate_input`` runs one input and writes its folder (see ``report``); ``evaluate_inputs``
runs several (in worker processes or as Ray tasks) and writes the summary. Poses are
camera-to-world in OpenCV camera axes; the estimate's world frame is its first camera and its
scale is arbitrary, so metrics align it to the ground truth first (Sim(3), and SE(3)).
"""
import os
import pathlib
import time
import traceback
from dataclasses import dataclass, replace

import numpy as np

from rap_ros.evaluation import report
from rap_ros.evaluation.inputs import (InputError, InputOptions, associate, describe_stamps,
                                       open_input)

METHODS = ("rap", "opencv-vo")


@dataclass
class RunOptions:
    """How to run a method.

    method: one of METHODS. steps: flow integration steps (rap). refine: refine the model's
    windows against optical flow, as the node does by default (rap; ``rap_ros.refine``).
    stride: frames between window starts (rap; None = half a window). batch: windows per model call (rap).
    backend: spec for ``rap_ros.backend.get_backend`` (None = the shipped default).
    max_frames: stop after this many frames (None = all). consistency_windows: windows on
    which the closed-loop consistency PSNR is measured (rap; 0 = off).
    progress: show a progress bar. command: the command line, recorded in the reports.
    """

    method: str = "opencv-vo"
    steps: int = 2
    refine: bool = True
    stride: int = None
    batch: int = 4
    backend: str = None
    max_frames: int = None
    consistency_windows: int = 2
    progress: bool = True
    command: str = None


# ------------------------------------------------------------------ estimators


class VOEstimator:
    """Frames in, poses out, with `opencv-vo`."""

    def __init__(self, K):
        from rap_ros.evaluation.vo import MonocularVO

        if K is None:
            raise InputError("opencv-vo needs the camera intrinsics: the input has none; pass "
                             "--fx --fy --cx --cy or --intrinsics FILE")
        self.vo = MonocularVO(K)

    def push(self, frame):
        self.vo.process(frame)

    def finish(self):
        return self.vo.trajectory()

    def partial(self):
        return self.vo.trajectory()

    def details(self):
        vo = self.vo
        return {"keyframes": vo.keyframes, "pnp_keyframes": vo.pnp_keyframes,
                "pnp_frames": vo.pnp_frames,
                "held_frames": vo.held_frames, "scale_fallbacks": vo.scale_fallbacks,
                "vo_working_width_scale": vo.scale_factor}


class RapEstimator:
    """Frames in, poses out, with the model: TrajectoryPipeline windows + TrajectoryChainer."""

    def __init__(self, K, options):
        from rap_ros.backend import get_backend
        from rap_ros.pipeline import TrajectoryChainer, TrajectoryPipeline

        self.backend = get_backend(options.backend or "onnx")
        self.pipeline = TrajectoryPipeline(self.backend, steps=options.steps, samples=1,
                                           refine=options.refine)
        self.window = int(self.backend.config.frames)
        self.stride = int(options.stride or max(1, self.window // 2))
        if not 1 <= self.stride < self.window:
            raise InputError(f"--stride must be in [1, {self.window - 1}] for windows of "
                             f"{self.window} frames, got {self.stride}")
        self.chainer = TrajectoryChainer(self.window, self.stride)
        self.batch = max(1, int(options.batch))
        self.K = None if K is None else np.asarray(K, np.float64)
        self.frames = []        # buffered frames, the first at index self.offset
        self.offset = 0
        self.next_start = 0     # first frame of the next window
        self.poses = []         # fixed poses, in order
        self.windows = 0
        self.K_estimates = []
        self.keep_for_consistency = max(0, int(options.consistency_windows))
        self.consistency_every = 1
        self.kept = []          # (frames window, c2w, K) for the consistency test
        self.residual_deg = []

    def plan(self, total_frames):
        """Spread the consistency windows over a run of ``total_frames`` frames."""
        if total_frames and self.keep_for_consistency:
            windows = max(1, (total_frames - self.window) // self.stride + 1)
            self.consistency_every = max(1, windows // self.keep_for_consistency)

    def push(self, frame):
        self.frames.append(frame)
        self._run_ready(final=False)

    def _run_ready(self, final):
        while True:
            available = self.offset + len(self.frames)
            starts = []
            start = self.next_start
            while start + self.window <= available and len(starts) < self.batch:
                starts.append(start)
                start += self.stride
            if not starts or (len(starts) < self.batch and not final):
                return
            self._run_windows(starts)
            self.next_start = starts[-1] + self.stride
            # Keep the frames of the next window, and the last T frames for a tail window.
            drop = min(self.next_start - self.offset, len(self.frames) - self.window)
            if drop > 0:
                del self.frames[:drop]
                self.offset += drop

    def _window_frames(self, start):
        i = start - self.offset
        return np.stack(self.frames[i:i + self.window])

    def _run_windows(self, starts):
        windows = np.stack([self._window_frames(s) for s in starts])
        estimates = self.pipeline.estimate_batch(windows, self.K)
        for start, window, estimate in zip(starts, windows, estimates):
            fixed = self.chainer.push(estimate.c2w)
            self.poses.extend(fixed.c2w)
            self.K_estimates.append(estimate.K)
            if estimate.residual_deg is not None:
                self.residual_deg.append(float(np.mean(estimate.residual_deg)))
            if (self.keep_for_consistency and self.windows % self.consistency_every == 0
                    and len(self.kept) < self.keep_for_consistency):
                self.kept.append((window, estimate.c2w, estimate.K))
            self.windows += 1

    def finish(self):
        """Run what is left; frames after the last full window get a final window."""
        from rap_ros.pipeline import align_sim3, apply_sim3

        self._run_ready(final=True)
        total = self.offset + len(self.frames)
        if total < self.window and not self.poses:
            raise InputError(f"rap needs at least {self.window} frames (one window), got {total}")
        if len(self.poses) < total:
            start = total - self.window
            frames = np.stack(self.frames[start - self.offset:])
            estimate = self.pipeline.estimate_batch(frames[None], self.K)[0]
            shared = len(self.poses) - start
            target = np.array(self.poses[start:])
            scale, R, t = align_sim3(estimate.c2w[:shared], target,
                                     fallback_scale=getattr(self.chainer, "_scale", 1.0))
            aligned = apply_sim3(estimate.c2w, scale, R, t)
            self.poses.extend(aligned[shared:])
            self.windows += 1
        return np.array(self.poses)

    def partial(self):
        """The poses fixed so far, (n, 4, 4)."""
        return np.array(self.poses).reshape(-1, 4, 4)

    def consistency_psnr(self):
        """Closed-loop consistency (dB), as the trajectory node reports it: on the kept windows,
        ``ViewPipeline.closed_loop(first frame, K, estimated poses)`` predicts frames along
        the estimated path, re-estimates their poses, regenerates and compares (mean PSNR)."""
        if not self.kept:
            return None
        from rap_ros.pipeline import ViewPipeline

        view = ViewPipeline(self.backend, steps=self.pipeline.steps,
                            sampler=self.pipeline.sampler, estimator=self.pipeline)
        scores = [view.closed_loop(frames[0], K, c2w).psnr for frames, c2w, K in self.kept]
        return float(np.mean(scores))

    def details(self):
        info = {"window": self.window, "stride": self.stride, "windows": self.windows,
                "steps": self.pipeline.steps, "backend": getattr(self.backend, "name", "?"),
                "intrinsics_estimated": self.K is None}
        if self.K is None and self.K_estimates:
            K = np.median(np.array(self.K_estimates), axis=0)
            info["K_estimated_median"] = K.tolist()
        if self.residual_deg:
            info["raxel_residual_deg_mean"] = float(np.mean(self.residual_deg))
        return info


def make_estimator(method, K, options):
    if method == "opencv-vo":
        return VOEstimator(K)
    if method == "rap":
        return RapEstimator(K, options)
    raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


# ------------------------------------------------------------------ one input


def evaluate_input(path, out_dir, input_options=None, options=None, name=None):
    """Evaluate one input; write ``out_dir`` (created); return the metrics dict.

    The dict has ``status`` "ok", "partial" (a fault after some frames: the results cover
    the frames read before it) or "failed", and ``error`` with the reason. Whatever was
    computed before a fault is written.
    """
    from tqdm import tqdm

    input_options = input_options or InputOptions()
    options = options or RunOptions()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"name": name or pathlib.Path(path).name, "input": str(path),
              "method": options.method, "status": "failed", "error": None,
              "command": options.command}
    stamps, poses = [], None
    source = None
    wall = time.perf_counter()
    try:
        source = open_input(path, input_options)
        result.update(name=name or source.name, kind=source.kind, input_info=source.info)
        if source.groundtruth is None:
            raise InputError(f"{path}: no ground truth (give --gt-topic, --gt-frames or --gt-tum)")
        estimator = make_estimator(options.method, source.K, options)
        total = source.frame_count
        if options.max_frames:
            total = min(total or options.max_frames, options.max_frames)
        if hasattr(estimator, "plan"):
            estimator.plan(total)
        compute = 0.0
        bar = tqdm(total=total, desc=result["name"], unit="frame", disable=not options.progress,
                   leave=False, dynamic_ncols=True)
        fault = None
        size = None
        try:
            for stamp, frame in source.frames():
                if options.max_frames and len(stamps) >= options.max_frames:
                    break
                if size is None:
                    size = frame.shape[:2]
                elif frame.shape[:2] != size:
                    raise InputError(f"frame {len(stamps)} is {frame.shape[1]}x{frame.shape[0]}, "
                                     f"the first was {size[1]}x{size[0]}")
                mark = time.perf_counter()
                estimator.push(frame)
                compute += time.perf_counter() - mark
                stamps.append(stamp)
                bar.update()
        except InputError as error:
            fault = str(error)
        except Exception as error:  # the estimator failed on a frame: keep what it had
            fault = f"estimation stopped at frame {len(stamps)}: {type(error).__name__}: {error}"
        finally:
            bar.close()
        mark = time.perf_counter()
        try:
            poses = estimator.finish()
        except Exception as error:
            poses = estimator.partial()
            if not len(poses):
                raise
            fault = (f"{fault}; " if fault else "") + \
                f"finishing the estimate failed ({type(error).__name__}: {error})"
        compute += time.perf_counter() - mark
        wall = time.perf_counter() - wall
        stamps = np.array(stamps[:len(poses)])
        result.update(frames=int(len(poses)), image_size=list(size[::-1]) if size else None,
                      fps=len(poses) / compute if compute > 0 else None,
                      fps_wall=len(poses) / wall if wall > 0 else None,
                      estimator=estimator.details())
        report.write_tum(out_dir / "estimate_tum.txt", stamps, poses)
        if fault:
            result["error"] = fault
            if not len(poses):
                raise InputError(fault)
        _score(result, source, stamps, poses, input_options, out_dir)
        if options.method == "rap" and options.consistency_windows:
            mark = time.perf_counter()
            result["consistency_psnr"] = estimator.consistency_psnr()
            result["consistency_seconds"] = time.perf_counter() - mark
        result["status"] = "partial" if fault else "ok"
    except Exception as error:  # every fault ends in the report, not in a traceback
        clean = _is_clean_error(error)
        message = str(error) if isinstance(error, InputError) else \
            f"{type(error).__name__}: {error}"
        if result.get("error") and result["error"] != message:
            message = f"{result['error']}; then: {message}"
        result["error"] = message
        result["status"] = "failed"
        if not clean:
            result["traceback"] = traceback.format_exc(limit=6)
    plots = result.pop("_plots", [])
    report.write_json(out_dir / "metrics.json", result)
    report.write_report(out_dir, result, plots)
    return result


def _is_clean_error(error):
    """Errors whose message says it all (bad input, missing model file): no traceback."""
    if isinstance(error, InputError):
        return True
    try:
        from rap_ros.backend.base import ModelFileError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(error, ModelFileError)


def _score(result, source, stamps, poses, input_options, out_dir):
    gt = source.groundtruth
    max_diff = input_options.max_time_diff
    i_est, i_gt = associate(stamps, gt.stamps, max_diff)
    result["max_time_diff"] = max_diff
    if not len(i_est):
        raise InputError(f"no overlapping timestamps between the images ({describe_stamps(stamps)}) "
                         f"and the ground truth ({describe_stamps(gt.stamps)}) within "
                         f"{max_diff} s")
    gt_stamps, gt_c2w = gt.stamps[i_gt], gt.c2w[i_gt]
    report.write_tum(out_dir / "groundtruth_tum.txt", gt_stamps, gt_c2w)
    metrics, extras = report.compute_metrics(poses[i_est], gt_c2w)
    result.update(metrics)
    if len(i_est) < len(stamps):
        result["unassociated_frames"] = int(len(stamps) - len(i_est))
    if "aligned" in extras:
        report.write_tum(out_dir / "estimate_aligned_tum.txt", stamps[i_est], extras["aligned"])
        result["_plots"] = report.write_plots(out_dir, gt_stamps, gt_c2w, extras, result["name"])
    if result.get("metrics_error"):
        raise InputError(result["metrics_error"])


# ------------------------------------------------------------------ several inputs


def unique_names(paths):
    """Output folder names for the inputs: their own names, numbered when they clash."""
    from rap_ros.evaluation.inputs import input_name

    names, seen = [], {}
    for path in paths:
        base = input_name(path)
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def _worker(args):
    path, out_dir, input_options, options, name = args
    return evaluate_input(path, out_dir, input_options, options, name)


def evaluate_inputs(paths, out_dir, input_options=None, options=None, workers=1, use_ray=False):
    """Evaluate several inputs; write ``out_dir/<name>/`` each and a summary when there are
    several. workers > 1 runs them in processes; use_ray runs them as Ray tasks.
    Returns the list of result dicts, in the order of ``paths``."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = options or RunOptions()
    names = unique_names(paths)
    parallel = use_ray or (workers and workers > 1 and len(paths) > 1)
    if parallel:
        options = replace(options, progress=False)
    jobs = [(str(p), str(out_dir / n), input_options, options, n) for p, n in zip(paths, names)]
    if use_ray:
        results = _run_ray(jobs)
    elif parallel:
        import concurrent.futures
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                                                    mp_context=context) as pool:
            results = list(pool.map(_worker, jobs))
    else:
        results = [_worker(job) for job in jobs]
    if len(paths) > 1:
        report.write_summary(out_dir, results, options.command)
    return results


def _run_ray(jobs):
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray needs the `ray` package, which is not installed here "
                           "(pip install 'ray[default]'), or drop --ray / use --workers N") from None
    started = False
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True,
                 log_to_driver=False)
        started = True
    try:
        task = ray.remote(_worker)
        return ray.get([task.remote(job) for job in jobs])
    finally:
        if started:
            ray.shutdown()
