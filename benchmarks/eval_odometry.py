"""Benchmark of the odometry core (rap_ros.odometry): accuracy, degenerate scenarios, speed,
memory, and the BA solver choice. Writes benchmarks/results/odometry.md and .json.

Methods: ``rap`` (core + the shipped model as a motion prior, ONNX, 2 Euler steps, 1 sample),
``geometry`` (the core alone), ``opencv-vo`` (rap_ros.evaluation.vo.MonocularVO, unchanged).

Metrics (rap_ros.metrics): ATE = RMS of camera-centre errors after a Sim(3) Umeyama alignment,
as % of the ground-truth path length; RPE rotation = RMS rotation error of consecutive-frame
motions (deg/frame); scale drift = slope of log(estimated / true path length) over 10-frame
windows of the Sim(3)-aligned estimate, as % per 100 frames; tracked = frames whose health
is ok or degraded (opencv-vo has no health: every frame counts); fps = frames / seconds of
the estimator alone (rendering and loading excluded), single run.

Synthetic sequences are held-out seeds (see benchmarks/odometry_data.py), rendered once and
cached (``--cache``). Resumable: finished (sequence, method) rows are kept in the JSON and
skipped unless ``--fresh``.

Command: ``python benchmarks/eval_odometry.py`` (about 15 minutes on 2 CPU cores once the
cache is rendered; rendering the cache takes about as long again).
"""
import argparse
import gc
import json
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import odometry_data  # noqa: E402

from rap_ros.evaluation.vo import MonocularVO  # noqa: E402
from rap_ros.metrics import align_trajectory, ate, path_length, rpe  # noqa: E402
from rap_ros.odometry import ModelPrior, OdometryConfig, VisualOdometry  # noqa: E402

METHODS = ("rap", "geometry", "opencv-vo")
RESULTS = Path(__file__).resolve().parent / "results"


def build_model(samples=1):
    """The model pipeline (the one place that imports it: a moved module is a one-line fix)."""
    from rap_ros.backend import get_backend
    from rap_ros.pipeline import TrajectoryPipeline
    return TrajectoryPipeline(get_backend("onnx"), steps=2, samples=samples, refine=False)


_MODEL = None


def model_prior():
    global _MODEL
    if _MODEL is None:
        _MODEL = build_model()
    return ModelPrior(_MODEL)


# ---------------------------------------------------------------- running and scoring
def run_method(method, frames, K, config=None):
    """Returns (c2w (N, 4, 4), tracked (N,) bool, seconds, extra dict)."""
    if method == "opencv-vo":
        if K is None:  # the baseline needs K: the same 60-degree guess as the core
            h, w = frames.shape[1:3]
            f = 0.5 * w / np.tan(np.radians(30))
            K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
        vo = MonocularVO(K)
        start = time.perf_counter()
        poses = [vo.process(f) for f in frames]
        return np.array(poses), np.ones(len(frames), bool), time.perf_counter() - start, {}
    prior = model_prior() if method == "rap" else None
    vo = VisualOdometry(K, config or OdometryConfig(), prior=prior)
    start = time.perf_counter()
    results = [vo.push(f, 0.1 * i) for i, f in enumerate(frames)]
    seconds = time.perf_counter() - start
    est = vo.trajectory()
    tracked = np.array([r.health in ("ok", "degraded") for r in results])
    # frames buffered for K are placed once the model has answered
    tracked |= np.array([r.source == "buffered" for r in results]) & (vo.stats["inits"] > 0)
    extra = dict(stats={k: (round(v, 4) if isinstance(v, float) else v)
                        for k, v in vo.stats.items()},
                 health={s: int(sum(r.health == s for r in results))
                         for s in ("initialising", "ok", "degraded", "lost")},
                 recovered=int(sum(r.recovered for r in results)),
                 ba_failures=vo.ba.failures)
    vo.close()
    return est, tracked, seconds, extra


def scale_drift(est, gt, window=10):
    """% change of the estimate's scale per 100 frames (see module docstring)."""
    aligned = align_trajectory(est, gt, "sim3")
    ce, cg = aligned[:, :3, 3], gt[:, :3, 3]
    xs, ys = [], []
    for i in range(0, len(gt) - window, window // 2):
        le = np.linalg.norm(np.diff(ce[i:i + window + 1], axis=0), axis=1).sum()
        lg = np.linalg.norm(np.diff(cg[i:i + window + 1], axis=0), axis=1).sum()
        if lg > 1e-3 * max(path_length(gt), 1e-9) and le > 0:
            xs.append(i)
            ys.append(np.log(le / lg))
    if len(xs) < 3:
        return float("nan")
    slope = np.polyfit(xs, ys, 1)[0]
    return float(100 * (np.exp(100 * slope) - 1))


def score(est, gt, tracked, seconds):
    L = path_length(gt)
    out = dict(frames=len(gt), path=L, tracked=int(tracked.sum()),
               fps=len(gt) / max(seconds, 1e-9))
    try:
        out["ate_pct"] = 100 * ate(est, gt)["rmse"] / max(L, 1e-9)
        out["rpe_rot_deg"] = rpe(align_trajectory(est, gt), gt)["rot_deg_rmse"]
        out["scale_drift_pct_100"] = scale_drift(est, gt)
    except ValueError:  # degenerate estimate (all one point)
        out.update(ate_pct=float("inf"), rpe_rot_deg=float("nan"),
                   scale_drift_pct_100=float("nan"))
    return out


# ---------------------------------------------------------------- sections
def accuracy(sequences, rows, methods, save):
    for seq in sequences:
        for method in methods:
            key = f"{seq['name']}|{method}"
            if key in rows:
                continue
            gc.collect()
            est, tracked, seconds, extra = run_method(method, seq["frames"], seq["K"])
            rows[key] = dict(sequence=seq["name"], kind=seq["kind"], method=method,
                             size=f"{seq['frames'].shape[2]}x{seq['frames'].shape[1]}",
                             **score(est, seq["c2w"], tracked, seconds), **extra)
            r = rows[key]
            print(f"{seq['name']:32s} {method:10s} ATE {r['ate_pct']:7.3f}%  "
                  f"RPE {r['rpe_rot_deg']:.3f} deg  drift {r['scale_drift_pct_100']:7.2f}  "
                  f"tracked {r['tracked']}/{r['frames']}  {r['fps']:.1f} fps", flush=True)
            save()


def speed(drive, results, save):
    """fps by image size (geometry, rap, opencv-vo) and by map size (geometry)."""
    if "speed" in results:
        return
    out = dict(by_size=[], by_map=[])
    frames, K = drive["frames"], drive["K"]
    h0, w0 = frames.shape[1:3]
    for w, h in ((320, 240), (640, 480), (1280, 960)):
        s = w / w0
        F = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames]) \
            if (w, h) != (w0, h0) else frames
        Ks = K.copy()
        Ks[:2] *= s
        Ks[0, 2] = (K[0, 2] + 0.5) * s - 0.5
        Ks[1, 2] = (K[1, 2] + 0.5) * s - 0.5
        row = dict(size=f"{w}x{h}")
        for method in METHODS if (w, h) == (640, 480) else ("geometry", "opencv-vo"):
            _, _, seconds, extra = run_method(method, F, Ks)
            row[method] = len(F) / seconds
            if extra:
                row[f"{method}_ba_ms"] = 1e3 * extra["stats"]["ba_seconds"] / max(
                    extra["stats"]["ba_runs"], 1)
            if method == "rap":
                row["rap_prior_ms_per_frame"] = 1e3 * extra["stats"]["prior_seconds"] / len(F)
        print("speed", row, flush=True)
        out["by_size"].append(row)
    for window, features in ((4, 300), (8, 300), (16, 300), (8, 150), (8, 600)):
        cfg = OdometryConfig(window_keyframes=window, max_features=features,
                             min_features=features // 2)
        est, tracked, seconds, extra = run_method("geometry", frames, K, cfg)
        row = dict(window_keyframes=window, max_features=features, fps=len(frames) / seconds,
                   ba_ms=1e3 * extra["stats"]["ba_seconds"] / max(extra["stats"]["ba_runs"], 1),
                   ate_pct=score(est, drive["c2w"], tracked, seconds)["ate_pct"])
        print("map", row, flush=True)
        out["by_map"].append(row)
    results["speed"] = out
    save()


def solvers(drives, results, save):
    """LM over the window vs iSAM2 on the same window graph, geometry method."""
    if "solvers" in results:
        return
    out = []
    for solver in ("lm", "isam2"):
        for d in drives:
            cfg = OdometryConfig(ba_solver=solver)
            est, tracked, seconds, extra = run_method("geometry", d["frames"], d["K"], cfg)
            s = score(est, d["c2w"], tracked, seconds)
            out.append(dict(solver=solver, sequence=d["name"], ate_pct=s["ate_pct"],
                            fps=s["fps"], failed_windows=extra["ba_failures"], ba_ms=1e3 * extra["stats"]["ba_seconds"]
                            / max(extra["stats"]["ba_runs"], 1)))
            print("solver", out[-1], flush=True)
    for solver in ("geometry-async",):
        for d in drives:
            cfg = OdometryConfig(ba_async=True)
            est, tracked, seconds, extra = run_method("geometry", d["frames"], d["K"], cfg)
            s = score(est, d["c2w"], tracked, seconds)
            out.append(dict(solver="lm, BA on a worker thread", sequence=d["name"],
                            ate_pct=s["ate_pct"], fps=s["fps"], failed_windows=0,
                            ba_ms=1e3 * extra["stats"]["ba_seconds"]
                            / max(extra["stats"]["ba_runs"], 1)))
            print("solver", out[-1], flush=True)
    results["solvers"] = out
    save()


def memory(drive, results, save, frames=10000):
    """Python heap (tracemalloc) and map size while 10,000 frames stream through the core
    without history (a 320x240 drive played back and forth)."""
    if "memory" in results and results["memory"].get("frames") == frames:
        return
    F = drive["frames"]
    order = np.r_[np.arange(len(F)), np.arange(len(F))[::-1]]
    vo = VisualOdometry(drive["K"], OdometryConfig(history=False))
    tracemalloc.start()
    samples = []
    start = time.perf_counter()
    for i in range(frames):
        vo.push(F[order[i % len(order)]])
        if (i + 1) % 1000 == 0:
            current, _ = tracemalloc.get_traced_memory()
            samples.append(dict(frame=i + 1, heap_mb=current / 2**20, **vo.map_size()))
            print("memory", samples[-1], flush=True)
    tracemalloc.stop()
    results["memory"] = dict(frames=frames, samples=samples,
                             fps=frames / (time.perf_counter() - start))
    save()


# ---------------------------------------------------------------- report
def geomean(values):
    values = [v for v in values if np.isfinite(v) and v > 0]
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def fmt(v, digits=3):
    if isinstance(v, str):
        return v
    if v is None or not np.isfinite(v):
        return "–"
    return f"{v:.{digits}f}"


def report(results, command):
    rows = results["rows"]
    lines = ["# Odometry core: accuracy, scenarios, speed, memory", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
             f"{platform.machine()} with 2 CPU cores shared with other work (no GPU). "
             f"Command: `{command}`.", "",
             "Methods: `rap` = `VisualOdometry` + `ModelPrior` (shipped model, ONNX, 2 Euler "
             "steps, 1 sample); `geometry` = `VisualOdometry` alone; `opencv-vo` = "
             "`MonocularVO` (unchanged). ATE: Sim(3)-aligned RMS, % of path; RPE rot: "
             "deg/frame; drift: % scale change per 100 frames; fps: estimator alone, one run.",
             ""]
    for title, kinds in (("Accuracy", ("synthetic", "real")), ("Scenarios", ("scenario",))):
        lines += [f"## {title}", "",
                  "| sequence | method | ATE % | RPE rot °/frame | scale drift %/100 f "
                  "| tracked | fps |", "|---|---|---:|---:|---:|---:|---:|"]
        seqs = []
        for r in rows.values():
            if r["kind"] in kinds and r["sequence"] not in seqs:
                seqs.append(r["sequence"])
        for s in seqs:
            for m in METHODS:
                r = rows.get(f"{s}|{m}")
                if r:
                    lines.append(f"| {s} ({r['size']}) | {m} | {fmt(r['ate_pct'])} | "
                                 f"{fmt(r['rpe_rot_deg'])} | {fmt(r['scale_drift_pct_100'], 1)}"
                                 f" | {r['tracked']}/{r['frames']} | {fmt(r['fps'], 1)} |")
        if title == "Accuracy":
            lines += ["", "| method | geometric mean ATE % | sequences |", "|---|---:|---:|"]
            for m in METHODS:
                vals = [rows[f"{s}|{m}"]["ate_pct"] for s in seqs if f"{s}|{m}" in rows]
                lines.append(f"| {m} | {fmt(geomean(vals))} | {len(vals)} |")
            g = {m: geomean([rows[f"{s}|{m}"]["ate_pct"] for s in seqs if f"{s}|{m}" in rows])
                 for m in METHODS}
            both = [s for s in seqs if all(f"{s}|{m}" in rows for m in METHODS)]
            below = sum(rows[f"{s}|rap"]["ate_pct"] < rows[f"{s}|opencv-vo"]["ate_pct"]
                        for s in both)
            no_worse = sum(rows[f"{s}|rap"]["ate_pct"] <= 1.05 * rows[f"{s}|geometry"]["ate_pct"]
                           for s in both)
            lines += ["", f"Targets: rap / opencv-vo geometric mean = "
                      f"{fmt(g['rap'] / g['opencv-vo'])} (target <= 0.5); rap below opencv-vo on "
                      f"{below}/{len(both)} sequences (target all); rap within 5 % of geometry or "
                      f"better on {no_worse}/{len(both)}; rap / geometry geometric mean = "
                      f"{fmt(g['rap'] / g['geometry'])} (target < 1)."]
        lines.append("")
    if "speed" in results:
        sp = results["speed"]
        lines += ["## Speed", "", "Frames/s end to end (estimator alone), one synthetic drive "
                  "resized; BA ms = mean per BA run.", "",
                  "| size | geometry | rap | opencv-vo | geometry BA ms | rap prior ms/frame |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in sp["by_size"]:
            lines.append(f"| {r['size']} | {fmt(r.get('geometry'), 1)} | {fmt(r.get('rap'), 1)} | "
                         f"{fmt(r.get('opencv-vo'), 1)} | {fmt(r.get('geometry_ba_ms'), 1)} | "
                         f"{fmt(r.get('rap_prior_ms_per_frame'), 1)} |")
        lines += ["", "Map size (geometry, same drive):", "",
                  "| window keyframes | max features | fps | BA ms | ATE % |",
                  "|---:|---:|---:|---:|---:|"]
        for r in sp["by_map"]:
            lines.append(f"| {r['window_keyframes']} | {r['max_features']} | {fmt(r['fps'], 1)} | "
                         f"{fmt(r['ba_ms'], 1)} | {fmt(r['ate_pct'])} |")
        lines.append("")
    if "solvers" in results:
        lines += ["## BA solver", "", "| solver | sequence | ATE % | fps | BA ms | windows "
                  "the solver failed on |", "|---|---|---:|---:|---:|---:|"]
        for r in results["solvers"]:
            lines.append(f"| {r['solver']} | {r['sequence']} | {fmt(r['ate_pct'])} | "
                         f"{fmt(r['fps'], 1)} | {fmt(r['ba_ms'], 1)} | "
                         f"{r.get('failed_windows', 0)} |")
        lines.append("")
    if "memory" in results:
        mem = results["memory"]
        lines += ["## Memory over a long stream", "",
                  f"{mem['frames']} frames (a 320x240 drive played back and forth), "
                  f"`history=False`, {fmt(mem['fps'], 1)} fps; Python heap by tracemalloc.", "",
                  "| frame | heap MB | landmarks | keyframes | tracks | records |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for s in mem["samples"]:
            lines.append(f"| {s['frame']} | {fmt(s['heap_mb'], 2)} | {s['landmarks']} | "
                         f"{s['keyframes']} | {s['tracks']} | {s['records']} |")
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/rap_odometry_cache")
    ap.add_argument("--out", default=str(RESULTS / "odometry"))
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--sections", nargs="+",
                    default=["accuracy", "scenarios", "speed", "solvers", "memory"])
    ap.add_argument("--memory-frames", type=int, default=10000)
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()
    command = "python benchmarks/eval_odometry.py " + " ".join(sys.argv[1:])
    out = Path(args.out)
    results = {"rows": {}}
    if out.with_suffix(".json").exists() and not args.fresh:
        results = json.loads(out.with_suffix(".json").read_text())
    results["command"] = command.strip()

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=float))
        out.with_suffix(".md").write_text(report(results, results["command"]))

    needs = {"accuracy", "speed", "solvers", "memory"} & set(args.sections)
    drives = odometry_data.drives(args.cache) if needs else []
    if "accuracy" in args.sections:
        accuracy(drives + odometry_data.real(), results["rows"], args.methods, save)
    if "scenarios" in args.sections:
        accuracy(odometry_data.scenarios(args.cache), results["rows"], args.methods, save)
    big = [d for d in drives if d["frames"].shape[2] == 640]
    if "speed" in args.sections and big:
        speed(big[0], results, save)
    if "solvers" in args.sections:
        solvers([d for d in drives if d["frames"].shape[2] == 320][:3], results, save)
    if "memory" in args.sections:
        memory(drives[0], results, save, args.memory_frames)
    save()
    print(report(results, results["command"]))


if __name__ == "__main__":
    main()
