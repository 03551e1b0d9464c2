"""Outputs of the evaluator: metrics, TUM files, plots and Markdown reports.

Per input folder ``DIR/<name>/``:

* ``metrics.json``: the numbers (see ``compute_metrics``) and what produced them.
* ``estimate_tum.txt``: every estimated pose, camera-to-world, at the image stamps, in the
  estimate's own frame and scale (OpenCV camera axes, world = first camera).
* ``groundtruth_tum.txt``: the ground-truth pose associated with each estimated frame that
  has one (camera-to-world, ground-truth stamps and units).
* ``estimate_aligned_tum.txt``: the associated estimate after the Sim(3) alignment.
* ``trajectory_top.png``, ``trajectory_xyz.png``, ``errors.png``; ``report.md``.
* ``tracking.csv`` (methods with a tracking health: ``rap``, ``geometry``): one row per frame
  with its health (initialising, ok, degraded, lost), whether it ends a loss, how it was
  placed, keyframe, PnP inliers, live tracks, model/geometry disagreement and time.
  ``metrics.json`` and ``report.md`` then say ``frames_tracked``, the health counts, the
  tracking-loss gaps ``lost_frames`` ([first, last] frame indices, inclusive; ``lost_stamps``
  the same in seconds) and the ``recoveries`` (frames that end a loss).

For several inputs ``DIR/summary.md`` and ``DIR/summary.json`` hold one row per input.
TUM lines are ``timestamp tx ty tz qx qy qz qw``.
"""
import json
import math
import pathlib

import numpy as np

from rap_ros import metrics
from rap_ros.io.tum import write_tum as io_write_tum


METRIC_NOTES = {
    "ate_rmse": "RMS of camera-centre errors after Sim(3) Umeyama alignment (GT units)",
    "ate_rmse_pct": "ate_rmse as a percentage of the ground-truth path length",
    "ate_se3_rmse": "RMS of camera-centre errors after SE(3) Umeyama alignment (no scale)",
    "rpe_trans_rmse": "RMS relative translation error, delta 1 frame, estimate Sim(3)-aligned "
                      "(scale corrected) first (GT units)",
    "rpe_rot_deg_rmse": "RMS relative rotation error in degrees, delta 1 frame",
    "path_length": "length of the associated ground-truth path (GT units)",
    "fps": "frames per second of the estimator alone (wall clock, input decoding excluded)",
    "fps_wall": "frames per second end to end: opening and decoding the input, loading the "
                "model, estimating",
    "frames_tracked": "frames placed with health ok or degraded (not initialising, not lost; "
                      "frames held for the model's K count once it came)",
    "lost_frame_count": "frames in tracking-loss gaps (health lost)",
    "consistency_psnr": "closed-loop consistency in dB (as the trajectory node reports it): "
                        "frames predicted along a window's estimated path vs frames regenerated "
                        "from the poses re-estimated on them; mean over the sampled windows",
}


def write_tum(path, stamps, c2w):
    """Write poses (N, 4, 4) camera-to-world at stamps (N,) s as a TUM file (rap_ros.io.tum)."""
    stamps = np.asarray(stamps, dtype=np.float64)
    io_write_tum(path, stamps, np.asarray(c2w, dtype=np.float64).reshape(len(stamps), 4, 4))
    return pathlib.Path(path)


FRAME_LOG_FIELDS = ("index", "stamp", "health", "recovered", "source", "keyframe", "inliers",
                    "tracks", "disagreement_deg", "ms")


def write_frame_log(path, log):
    """Write the per-frame log of an odometry run (a list of ``FrameLog``) as CSV."""
    lines = [",".join(FRAME_LOG_FIELDS)]
    for f in log:
        lines.append(f"{f.index},{f.stamp:.9f},{f.health},{int(f.recovered)},{f.source},"
                     f"{int(f.keyframe)},{f.inliers},{f.tracks},{f.disagreement_deg:.3f},"
                     f"{f.ms:.3f}")
    pathlib.Path(path).write_text("\n".join(lines) + "\n")
    return pathlib.Path(path)


def compute_metrics(est_c2w, gt_c2w):
    """Trajectory metrics of associated poses (same length, (N, 4, 4) camera-to-world).

    Returns (metrics dict, extras) where extras holds per-frame arrays for plots: the
    Sim(3)-aligned estimate, ATE errors per frame, RPE errors per pair, and the alignment.
    Uses ``rap_ros.metrics`` (evo's definitions).
    """
    est_c2w = np.asarray(est_c2w, dtype=np.float64)
    gt_c2w = np.asarray(gt_c2w, dtype=np.float64)
    out = {"associated_frames": int(len(gt_c2w))}
    extras = {}
    length = metrics.path_length(gt_c2w)
    out["path_length"] = length
    if len(gt_c2w) < 3:
        out["metrics_error"] = f"only {len(gt_c2w)} associated poses: need at least 3"
        return out, extras
    try:
        s, R, t = metrics.umeyama_alignment(est_c2w[:, :3, 3], gt_c2w[:, :3, 3], with_scale=True)
        sim3 = metrics.ate(est_c2w, gt_c2w, mode="sim3")
        se3 = metrics.ate(est_c2w, gt_c2w, mode="se3")
    except ValueError as error:
        out["metrics_error"] = f"alignment failed: {error}"
        return out, extras
    aligned = metrics.align_trajectory(est_c2w, gt_c2w, mode="sim3")
    rel = metrics.rpe(aligned, gt_c2w, delta=1)
    out.update({
        "ate_rmse": sim3["rmse"],
        "ate_rmse_pct": 100.0 * sim3["rmse"] / length if length > 0 else None,
        "ate_mean": sim3["mean"], "ate_median": sim3["median"], "ate_max": sim3["max"],
        "ate_se3_rmse": se3["rmse"],
        "rpe_trans_rmse": rel["trans_rmse"],
        "rpe_rot_deg_rmse": rel["rot_deg_rmse"],
        "rpe_delta_frames": 1,
        "sim3_scale": s,
    })
    extras.update(aligned=aligned, ate_errors=sim3["errors"], rpe_trans=rel["trans_errors"],
                  rpe_rot=rel["rot_deg_errors"], sim3=(s, R, t))
    return out, extras


def _clean(value):
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path, data):
    pathlib.Path(path).write_text(json.dumps(_clean(data), indent=2) + "\n")


def write_benchmark(prefix, report, text):
    """A benchmark's results: ``<prefix>.json`` (the figures) and ``<prefix>.md`` (its
    tables, ``text``), which are also printed."""
    write_json(f"{prefix}.json", report)
    pathlib.Path(f"{prefix}.md").write_text(text)
    print(text)


# ------------------------------------------------------------------ plots


def _plane_axes(c2w):
    """The two world axes of a top view: drop the axis closest to "up", taken as the mean of
    the cameras' up directions (-y of OpenCV camera axes), which holds for cars, robots and
    hand-held cameras whatever the world's convention (y down for KITTI, z up for ROS)."""
    up = -np.asarray(c2w)[:, :3, 1].mean(axis=0)
    if np.linalg.norm(up) < 1e-6:  # cameras pointing every way: drop the flattest axis
        points = np.asarray(c2w)[:, :3, 3]
        drop = int(np.argmin(points.max(axis=0) - points.min(axis=0)))
    else:
        drop = int(np.argmax(np.abs(up)))
    return [axis for axis in range(3) if axis != drop]


def write_plots(out_dir, gt_stamps, gt_c2w, extras, title):
    """Top view, per-axis positions and errors over time as PNG files; returns their names."""
    # Start-up: matplotlib takes 1.4 s to import (measured); only runs that plot pay it.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    names = []
    if "aligned" not in extras:
        return names
    gt = gt_c2w[:, :3, 3]
    est = extras["aligned"][:, :3, 3]
    t = np.asarray(gt_stamps) - gt_stamps[0]
    labels = "xyz"

    a, b = _plane_axes(gt_c2w)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot(gt[:, a], gt[:, b], "k-", label="ground truth")
    ax.plot(est[:, a], est[:, b], "C1-", label="estimate (Sim(3) aligned)")
    ax.plot(gt[0, a], gt[0, b], "ko", label="start")
    ax.set_xlabel(f"{labels[a]}"), ax.set_ylabel(f"{labels[b]}")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"{title}: top view ({labels[a]}-{labels[b]} plane)")
    ax.legend(), ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "trajectory_top.png", dpi=110)
    plt.close(fig)
    names.append("trajectory_top.png")

    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    for i, ax in enumerate(axes):
        ax.plot(t, gt[:, i], "k-", label="ground truth")
        ax.plot(t, est[:, i], "C1-", label="estimate (aligned)")
        ax.set_ylabel(labels[i]), ax.grid(True, alpha=0.3)
    axes[0].legend(), axes[0].set_title(f"{title}: position per axis")
    axes[-1].set_xlabel("time from first frame")
    fig.tight_layout()
    fig.savefig(out_dir / "trajectory_xyz.png", dpi=110)
    plt.close(fig)
    names.append("trajectory_xyz.png")

    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(t, extras["ate_errors"], "C3-")
    axes[0].set_ylabel("ATE (Sim(3))"), axes[0].grid(True, alpha=0.3)
    axes[1].plot(t[1:len(extras["rpe_trans"]) + 1], extras["rpe_trans"], "C0-")
    axes[1].set_ylabel("RPE trans (d=1)"), axes[1].grid(True, alpha=0.3)
    axes[2].plot(t[1:len(extras["rpe_rot"]) + 1], extras["rpe_rot"], "C2-")
    axes[2].set_ylabel("RPE rot [deg]"), axes[2].grid(True, alpha=0.3)
    axes[0].set_title(f"{title}: errors over time")
    axes[-1].set_xlabel("time from first frame")
    fig.tight_layout()
    fig.savefig(out_dir / "errors.png", dpi=110)
    plt.close(fig)
    names.append("errors.png")
    return names


# ------------------------------------------------------------------ Markdown


def _fmt(value, digits=4):
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


REPORT_KEYS = ("frames", "associated_frames", "frames_tracked", "lost_frame_count",
               "path_length", "ate_rmse", "ate_rmse_pct", "ate_se3_rmse", "rpe_trans_rmse",
               "rpe_rot_deg_rmse", "fps", "fps_wall", "consistency_psnr")
TRACKING_KEYS = ("health", "lost_frames", "lost_stamps", "recoveries", "ended_lost")


def tracking_lines(result):
    """Markdown lines of the tracking section (methods with a tracking health), or []."""
    if "health" not in result:
        return []
    health = result["health"]
    lines = ["## Tracking", "",
             f"- frames tracked: {result.get('frames_tracked')} of {result.get('frames')} "
             "(" + ", ".join(f"{k} {v}" for k, v in health.items()) + ")"]
    gaps = result.get("lost_frames") or []
    stamps = result.get("lost_stamps") or [[None, None]] * len(gaps)
    recoveries = list(result.get("recoveries") or [])
    if not gaps:
        lines.append("- tracking-loss gaps: none")
    else:
        lines.append(f"- tracking-loss gaps: {len(gaps)} ({result.get('lost_frame_count')} "
                     "frames, health lost)")
        for (a, b), (ta, tb) in zip(gaps, stamps):
            after = [r for r in recoveries if r > b]
            end = f"recovered at frame {after[0]}" if after else "not recovered"
            when = f", {_fmt(ta, 12)} to {_fmt(tb, 12)} s" if ta is not None else ""
            lines.append(f"  - **lost** frames {a} to {b} ({b - a + 1} frames{when}); {end}")
    lines += ["- per-frame health: `tracking.csv`", ""]
    return lines


def write_report(out_dir, result, plots=()):
    """report.md for one input from its metrics dict."""
    out_dir = pathlib.Path(out_dir)
    lines = [f"# Evaluation: {result.get('name')} ({result.get('method')})", ""]
    lines += [f"- input: `{result.get('input')}` ({result.get('kind', '?')})",
              f"- status: **{result.get('status')}**"]
    if result.get("error"):
        lines.append(f"- error: {result['error']}")
    if result.get("command"):
        lines.append(f"- command: `{result['command']}`")
    lines += ["", "| metric | value | meaning |", "|---|---|---|"]
    for key in REPORT_KEYS:
        if key in result:
            lines.append(f"| {key} | {_fmt(result[key])} | {METRIC_NOTES.get(key, '')} |")
    lines += ["", "Alignment: Umeyama on the camera centres of the associated poses. "
              "RPE uses consecutive frames (delta 1) of the Sim(3)-aligned estimate, so its "
              "translation is in ground-truth units after scale correction; a monocular "
              "estimate has no scale of its own.", ""]
    lines += tracking_lines(result)
    details = {k: v for k, v in result.items() if k not in REPORT_KEYS and k not in
               TRACKING_KEYS and k not in
               ("name", "input", "status", "error", "method", "command", "kind")}
    if details:
        lines += ["## Details", "", "```json", json.dumps(_clean(details), indent=2), "```", ""]
    for name in plots:
        lines += [f"![{name}]({name})", ""]
    (out_dir / "report.md").write_text("\n".join(lines))


SUMMARY_KEYS = ("frames", "frames_tracked", "path_length", "ate_rmse", "ate_rmse_pct",
                "ate_se3_rmse", "rpe_trans_rmse", "rpe_rot_deg_rmse", "fps",
                "consistency_psnr")


def write_summary(out_dir, results, command=None):
    """summary.md and summary.json over several inputs (one row each)."""
    out_dir = pathlib.Path(out_dir)
    write_json(out_dir / "summary.json", {"command": command, "results": results})
    header = ["input", "method", "status"] + list(SUMMARY_KEYS) + ["lost frames"]
    lines = ["# Evaluation summary", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        row = [str(r.get("name")), str(r.get("method")), str(r.get("status"))]
        row += [_fmt(r.get(k)) for k in SUMMARY_KEYS]
        gaps = r.get("lost_frames")
        row.append("–" if gaps is None else
                   (", ".join(f"{a}-{b}" for a, b in gaps) or "none"))
        lines.append("| " + " | ".join(row) + " |")
    errors = [r for r in results if r.get("error")]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [f"- {r.get('name')}: {r['error']}" for r in errors]
    lines += ["", "ATE: Sim(3) Umeyama alignment unless `se3`; RPE: delta 1 frame after "
              "Sim(3) scale correction. Units: those of the ground truth. frames_tracked and "
              "lost frames (tracking-loss gaps, first-last frame index): methods with a "
              "tracking health (rap, geometry) only.", ""]
    (out_dir / "summary.md").write_text("\n".join(lines))
