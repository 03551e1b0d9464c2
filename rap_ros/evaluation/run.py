"""Evaluate trajectory estimators on recorded inputs, offline and as fast as possible.

Methods (``METHODS``, ``rap_ros.evaluation.estimators``): ``rap`` (the default: the odometry
core with the joint model as its motion prior), ``geometry`` (the core alone), ``model`` (the
windowed model through ``rap_ros.pipeline.streaming.WindowStream``) and ``opencv-vo`` (the
classical baseline); each is a ``PoseStream`` fed frame by frame. For ``rap`` and ``geometry``
the per-frame tracking health is written too (``tracking.csv``), and the report marks the
tracking-loss gaps (``lost_frames``) and the recoveries.

``evaluate_input`` runs one input and writes its folder (see ``report``); ``evaluate_inputs``
runs several (in worker processes or as Ray tasks) and writes the summary. Poses are
camera-to-world in OpenCV camera axes; the estimate's world frame is its first camera and its
scale is arbitrary, so metrics align it to the ground truth first (Sim(3), and SE(3)).
"""
import concurrent.futures
import multiprocessing
import os
import pathlib
import time
import traceback
from dataclasses import dataclass, replace

from tqdm import tqdm

from rap_ros.contract.files import ModelFileError
from rap_ros.evaluation import report
from rap_ros.evaluation.estimators import DEFAULT_METHOD, make_estimator
from rap_ros.evaluation.inputs import InputOptions, input_name, open_input
from rap_ros.io.errors import InputError
from rap_ros.io.stamped import associate, describe_stamps


@dataclass
class RunOptions:
    """How to run a method.

    method: one of METHODS (default ``DEFAULT_METHOD``, "rap"). steps: flow integration
    steps of the model (rap, model). refine: refine the model's windows against optical flow,
    as the windowed node did by default (model; ``rap_ros.pipeline.refine``: the odometry
    core's prior runs without it). stride: frames between window starts (model; None = half
    a window). batch: windows per model call (model). backend: spec for
    ``rap_ros.backend.get_backend`` (None = the shipped default; rap, model).
    max_frames: stop after this many frames (None = all). consistency_windows: windows on
    which the closed-loop consistency PSNR is measured (model; 0 = off).
    progress: show a progress bar. command: the command line, recorded in the reports.
    Options of other methods are accepted and ignored.
    """

    method: str = DEFAULT_METHOD
    steps: int = 2
    refine: bool = True
    stride: int = None
    batch: int = 4
    backend: str = None
    max_frames: int = None
    consistency_windows: int = 2
    progress: bool = True
    command: str = None


# ------------------------------------------------------------------ one input


def evaluate_input(path, out_dir, input_options=None, options=None, name=None):
    """Evaluate one input; write ``out_dir`` (created); return the metrics dict.

    The dict has ``status`` "ok", "partial" (a fault after some frames: the results cover
    the frames read before it) or "failed", and ``error`` with the reason. Whatever was
    computed before a fault is written.
    """
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
                estimator.push(frame, stamp)
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
        stamps, poses = poses.stamps, poses.c2w
        result.update(frames=int(len(poses)), image_size=list(size[::-1]) if size else None,
                      fps=len(poses) / compute if compute > 0 else None,
                      fps_wall=len(poses) / wall if wall > 0 else None,
                      estimator=estimator.details())
        if source.camera is not None:  # frames over max_image_pixels, as the node counts them
            result["images_downscaled"] = int(source.camera.downscaled)
        report.write_tum(out_dir / "estimate_tum.txt", stamps, poses)
        _record_tracking(result, estimator, out_dir)
        if fault:
            result["error"] = fault
            if not len(poses):
                raise InputError(fault)
        score(result, source, stamps, poses, input_options, out_dir)
        if hasattr(estimator, "consistency_psnr") and options.consistency_windows:
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


def _record_tracking(result, estimator, out_dir):
    """For estimators with a tracking health (rap, geometry): the per-frame log in
    ``tracking.csv`` and the summary (frames tracked, loss gaps, recoveries) in ``result``."""
    if not hasattr(estimator, "tracking"):
        return
    result.update(estimator.tracking())
    report.write_frame_log(out_dir / "tracking.csv", estimator.frame_log)


def _is_clean_error(error):
    """Errors whose message says it all (bad input, missing model file): no traceback."""
    return isinstance(error, (InputError, ModelFileError))


def score(result, source, stamps, poses, input_options, out_dir):
    """Associate the estimate (stamps (n,), poses (n, 4, 4)) with the input's ground truth,
    write the TUM files and plots into ``out_dir`` and the metrics into ``result``."""
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
    try:  # optional dependency: ray
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
