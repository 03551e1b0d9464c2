"""How sensitive is the odometry core to its front-end settings? (issue 11)

Runs method ``geometry`` with a few one-setting variants of ``OdometryConfig`` over every
sequence of benchmarks/eval_odometry.py (9 synthetic drives, the shared real sequences, the
degenerate scenarios except "no camera_info", including the undegraded base clips), and
prints ATE (% of path, Sim(3)) per sequence and variant with the geometric mean.

Why: single settings move single sequences by factors of 10 in both directions (and the
scenario rows were once all cut from one clip that scored badly undegraded). This table is
the evidence for that, not a tuning run: no setting here is adopted unless it wins across
the board.

``--set variety`` runs instead 21 clips of 120 frames at 320x240, every trajectory kind of
rap_ros.synth in every scene kind (benchmarks/odometry_data.variety): more sequences to tell a
setting that wins across the board from one that moves a few sequences; ``rap (defaults)`` and
``opencv-vo`` are reference columns.

Commands: ``python benchmarks/sweep_odometry.py`` (about 25 minutes on 2 shared CPU cores,
with the eval_odometry cache rendered) writes benchmarks/results/odometry_sensitivity.{md,json};
``python benchmarks/sweep_odometry.py --set variety --variants defaults "rap (defaults)"
opencv-vo "initialisation angle 2 deg" "triangulation angle 2 deg" --out
benchmarks/results/odometry_variety`` (about 10 minutes, 3 more to render the clips) writes
odometry_variety.{md,json};
``python benchmarks/sweep_odometry.py --variants defaults "no front-end checks" --out
benchmarks/results/odometry_frontend_checks`` (about 8 minutes) writes the ablation of the
front end's noise and two-view checks on the standard set;
``python benchmarks/sweep_odometry.py --set no_camera_info --variants defaults "no focal
self-calibration" "rap (defaults)" "rap, no focal self-calibration" --out
benchmarks/results/odometry_focal`` (about 25 minutes) writes the ablation of the focal
self-calibration without camera_info (odometry_focal.{md,json});
``python benchmarks/sweep_odometry.py --set variety --variants defaults "rap (defaults)" "rap,
factors weak" "rap, factors always" "rap, factors weak, floors 6 deg 100 %" "rap, factors
always, floors 6 deg 100 %" --out benchmarks/results/odometry_factors_variety`` (about 8
minutes) writes the model's between-factors on the variety clips.
``--report-only RESULTS.json`` writes an earlier run's tables again (e.g. after a new row
such as the bootstrap interval of the ratio to the defaults), running nothing.
"""
import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import odometry_data  # noqa: E402
from eval_odometry import geomean, run_method, score  # noqa: E402

from rap_ros.evaluation.report import write_benchmark  # noqa: E402
from rap_ros.odometry import OdometryConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FAILED_PCT = 5.0  # ATE above this % of the path counts as a failed sequence in the summary
VARIANTS = {
    "defaults": {},
    "no feature grid": {"grid_cells": 0},
    "no epipolar check": {"epipolar_px": 0.0},
    "moving-track mask 0.06": {"moving_mask_frac": 0.06},
    # the mask only where three or more dropped tracks lie within its radius of each other
    "moving-track mask 0.06, clusters of 3": {"moving_mask_frac": 0.06,
                                              "moving_mask_cluster": 3},
    "no feature grid, no epipolar check": {"grid_cells": 0, "epipolar_px": 0.0},
    "epipolar check 4 px": {"epipolar_px": 4.0},
    "600 features": {"max_features": 600, "min_features": 300},
    "KLT forward-backward 0.5 px": {"fb_threshold": 0.5},
    "top up below 250 tracks": {"min_features": 250},
    "triangulation angle 0.5 deg": {"tri_min_angle_deg": 0.5},
    "keyframe parallax x2": {"kf_parallax_frac": 0.024},
    "keyframe parallax x1.33": {"kf_parallax_frac": 0.016},
    "no bundle adjustment": {"ba": False},
    "initialisation angle 2 deg": {"init_min_angle_deg": 2.0},
    # the initialisation's reference renewed only when fewer than init_min_points of its
    # tracks are left (before session 12), not also when it holds under half the live ones
    "initialisation reference kept while it has init_min_points": {"init_renew_ratio": 0.0},
    "triangulation angle 2 deg": {"tri_min_angle_deg": 2.0},
    # landmarks at keyframes of weak tracking (fewer inliers than kf_min_tracked) at 0.5 deg
    "weak-tracking triangulation 0.5 deg": {"tri_min_angle_weak_deg": 0.5},
    "scale after a loss from depth": {"loss_scale": "depth"},
    "scale after a loss from depth and speed": {"loss_scale": "blend"},
    "weak-tracking triangulation 0.5 deg, scale after a loss from depth":
        {"tri_min_angle_weak_deg": 0.5, "loss_scale": "depth"},
    # the front end before its noise and two-view checks (docs/evaluation.md, "Front-end
    # checks"): corners of any strength, any two-view motion with 8 inliers
    "no front-end checks": {"corner_noise_ratio": 0.0, "twoview_min_inlier_ratio": 0.0,
                            "twoview_min_inliers": 8},
    "both angles 2 deg": {"init_min_angle_deg": 2.0, "tri_min_angle_deg": 2.0},
    # without camera_info: the focal left at its start (the 60 degree guess)
    "no focal self-calibration": {"focal_refinements": 0},
    "BA fallback dogleg": {"ba_fallback": "dogleg"},
    # without camera_info: each focal solve also started from 0.6 and 1.6 times the focal
    "focal starts x0.6 x1 x1.6": {"focal_starts": (1.0, 0.6, 1.6)},
    # where KLT starts each track (the default since session 11: "map")
    "KLT from the old position": {"klt_predict": "previous"},
    "KLT from the predicted rotation": {"klt_predict": "rotation"},
    "KLT from the old position, keyframe parallax x0.75": {"klt_predict": "previous",
                                                            "kf_parallax_frac": 0.009},
    "BA window 12 keyframes": {"window_keyframes": 12},
    "BA window 16 keyframes": {"window_keyframes": 16},
}
# other methods as reference columns: name -> (method, OdometryConfig overrides)
REFERENCES = {"rap (defaults)": ("rap", {}), "opencv-vo": ("opencv-vo", {}),
              "rap, no focal self-calibration": ("rap", {"focal_refinements": 0}),
              "rap, focal starts x0.6 x1 x1.6": ("rap", {"focal_starts": (1.0, 0.6, 1.6)}),
              "rap, focal also from the guess": ("rap", {"focal_start_guess": True,
                                                         "model_intrinsics": True}),
              # without camera_info, since session 17 both starts are the default
              "rap, the model's focal as the start": ("rap", {"model_intrinsics": True,
                                                              "focal_start_guess": False}),
              "rap, the 60 deg guess as the start": ("rap", {"model_intrinsics": False}),
              "rap, KLT from the old position": ("rap", {"klt_predict": "previous"}),
              "rap, initialisation reference kept while it has init_min_points": (
                  "rap", {"init_renew_ratio": 0.0}),
              # the model's motion as BA between-factors (docs/evaluation.md, "fusion")
              "rap, factors weak": ("rap", {"prior_factors": "weak"}),
              "rap, factors always": ("rap", {"prior_factors": "always"}),
              "rap, factors always, floors 6 deg 100 %": (
                  "rap", {"prior_factors": "always", "prior_rot_floor_deg": 6.0,
                          "prior_trans_floor": 1.0}),
              "rap, factors weak, floors 6 deg 100 %": (
                  "rap", {"prior_factors": "weak", "prior_rot_floor_deg": 6.0,
                          "prior_trans_floor": 1.0})}


def sequences(cache, which="standard"):
    """"standard": the eval_odometry sequences (minus no camera_info) and the undegraded arc
    clip; "variety": odometry_data.variety (every trajectory kind in every scene kind);
    "camera_effects": odometry_data.camera_effects (four clips as rendered and with each of
    what a real camera adds: rolling shutter, a moving object, sensor noise, auto-exposure,
    JPEG); "rolling_shutter": the variety clips with a rolling shutter; "no_camera_info":
    the variety clips, the arc clip the degradations start from (seed 300;
    the other degradation bases are variety clips) and the real sequences with K withheld
    (the true K kept as ``K_true`` for the focal error)."""
    if which == "variety":
        return odometry_data.variety(cache)
    if which == "camera_effects":
        return odometry_data.camera_effects(cache)
    if which == "rolling_shutter":
        return odometry_data.rolling_shutter(cache)
    if which == "no_camera_info":
        clips = odometry_data.variety(cache) + [
            dict(name="arc-room (seed 300)", **odometry_data.arc_clip(cache))] + \
            odometry_data.real()
        return [dict(s, K=None, K_true=s["K"]) for s in clips]
    return odometry_data.drives(cache) + odometry_data.real() + [
        s for s in odometry_data.scenarios(cache) if s.get("degradation") != "no_camera_info"]


def ratio_interval(ate, base, resamples=2000, seed=0):
    """The geometric mean of ate[s] / base[s] over the sequences, with a 95 % percentile
    bootstrap interval (sequences resampled with replacement; a fixed seed, so a report is
    reproducible): whether a variant's difference from the defaults is more than which
    sequences happened to be in the set."""
    logs = np.log([ate[s] / base[s] for s in base])
    rng = np.random.default_rng(seed)
    means = logs[rng.integers(0, len(logs), (resamples, len(logs)))].mean(axis=1)
    low, high = np.exp(np.percentile(means, [2.5, 97.5]))
    return f"{np.exp(logs.mean()):.2f} [{low:.2f}, {high:.2f}]"


def markdown(report):
    names = list(report["variants"])
    offsets = report.get("offsets", [0])
    runs = "one run each" if len(offsets) == 1 else (
        f"each sequence run from frames {', '.join(map(str, offsets))} and the geometric mean "
        "of those ATEs shown")
    lines = ["# Odometry core: sensitivity to front-end settings (method geometry)", "",
             f"Command: `{report['command']}` (2-core CPU, shared). ATE % of path after "
             f"Sim(3) alignment; {runs}.", ""]
    if report.get("note"):  # written by hand into the JSON
        lines += [f"Note: {report['note']}.", ""]
    lines += ["| sequence | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    sequences = list(report["ate_pct"][names[0]])
    for s in sequences:
        lines.append(f"| {s} | " + " | ".join(f"{report['ate_pct'][n][s]:.2f}" for n in names)
                     + " |")
    lines.append("| **geometric mean** | " + " | ".join(
        f"**{report['geomean'][n]:.3f}**" for n in names) + " |")
    lines.append("| median | " + " | ".join(
        f"{np.median(list(report['ate_pct'][n].values())):.3f}" for n in names) + " |")
    lines.append(f"| sequences over {FAILED_PCT:g} % | " + " | ".join(
        str(sum(v > FAILED_PCT for v in report["ate_pct"][n].values())) for n in names) + " |")
    if "defaults" in names:
        base = report["ate_pct"]["defaults"]

        def versus(n):
            ate = report["ate_pct"][n]
            better = sum(ate[s] < 0.95 * base[s] for s in base)
            worse = sum(ate[s] > 1.05 * base[s] for s in base)
            return f"{better} / {worse}"
        lines.append("| better / worse than defaults (by 5 %) | " + " | ".join(
            versus(n) for n in names) + " |")
        lines.append("| ATE / defaults: geometric mean [95 % bootstrap interval] | " + " | ".join(
            ratio_interval(report["ate_pct"][n], base) for n in names) + " |")
    groups = sorted({s.split(" (")[0] for s in sequences if " (" in s},
                    key=lambda g: [s.split(" (")[0] for s in sequences].index(g))
    if len(groups) > 1:  # sequences named "<condition> (<base clip>)": one row per condition
        lines += ["", "By condition: geometric mean ATE % over its base clips (and its ratio "
                  "to the same variant's undegraded clips, where there are some):", "",
                  "| condition | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for g in groups:
            cells = []
            for n in names:
                ate = report["ate_pct"][n]
                mean = geomean([v for s, v in ate.items() if s.split(" (")[0] == g])
                clean = [v for s, v in ate.items() if s.split(" (")[0] == "undegraded"]
                cells.append(f"{mean:.2f}" + (f" ({mean / geomean(clean):.2f}x)"
                                              if clean and g != "undegraded" else ""))
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
    if report.get("focal_error_pct"):
        lines += ["", "Focal length error without camera_info, |f / f_true - 1| in % (the "
                  "focal the core ends with):", "",
                  "| sequence | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        errors = report["focal_error_pct"]
        for s in sequences:
            lines.append(f"| {s} | " + " | ".join(
                "–" if errors[n].get(s) is None else f"{errors[n][s]:.1f}" for n in names) + " |")
        lines.append("| **median** | " + " | ".join(
            f"**{np.median([v for v in errors[n].values() if v is not None]):.1f}**"
            if any(v is not None for v in errors[n].values()) else "–" for n in names) + " |")
    if report.get("ba_max_ms"):
        timed = [n for n in names if n in report["ba_max_ms"]]
        lines += ["", "The longest bundle adjustment of each run, ms (it holds up the frames "
                  "behind it in a node; one run each on a shared machine):", "",
                  "| sequence | " + " | ".join(timed) + " |", "|---|" + "---|" * len(timed)]
        for s in sequences:
            lines.append(f"| {s} | " + " | ".join(
                f"{report['ba_max_ms'][n].get(s, float('nan')):.0f}" for n in timed) + " |")
        lines.append("| **median** | " + " | ".join(
            f"**{np.median(list(report['ba_max_ms'][n].values())):.0f}**" for n in timed) + " |")
    lines += ["", "Settings (method geometry unless a reference method): " + "; ".join(
        f"{n}: `{report['variants'][n] or 'OdometryConfig()'}`" for n in names), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="/tmp/rap_odometry_cache")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS),
                        help=f"names of VARIANTS or REFERENCES ({', '.join(REFERENCES)})")
    parser.add_argument("--set", dest="which",
                        choices=("standard", "variety", "camera_effects", "rolling_shutter",
                                 "no_camera_info"),
                        default="standard", help="which sequences (see ``sequences``)")
    parser.add_argument("--out", default=str(RESULTS / "odometry_sensitivity"))
    parser.add_argument("--offsets", type=int, nargs="+", default=[0], metavar="N",
                        help="run every sequence from each of these first frames and score "
                             "the geometric mean of the ATEs (default 0: once, whole). A "
                             "single run of a clip is one draw: a setting that changes one "
                             "early decision (the initialisation's frame, a keyframe) moves "
                             "a clip's ATE by factors of 3-20 either way, so comparisons "
                             "of settings average over a few starts")
    parser.add_argument("--backend", default="onnx", metavar="SPEC",
                        help="the model of the rap columns, as rap-ros evaluate's --backend "
                             "(default: the shipped weights on ONNX Runtime), e.g. "
                             "torch:runs/NAME/rap_small.pt for weights under trial")
    parser.add_argument("--report-only", metavar="JSON",
                        help="write the tables of an earlier run's JSON again (its .md beside "
                             "it), running nothing")
    args = parser.parse_args(argv)
    if args.report_only:
        path = Path(args.report_only)
        report = json.loads(path.read_text())
        path.with_suffix(".md").write_text(markdown(report))
        return 0
    unknown = [n for n in args.variants if n not in VARIANTS and n not in REFERENCES]
    if unknown:
        parser.error(f"unknown variants {unknown}: names of VARIANTS or REFERENCES")
    start = time.perf_counter()
    seqs = sequences(args.cache, args.which)
    ate_pct, ate_runs, focal_error_pct, ba_max_ms = {}, {}, {}, {}
    for name in args.variants:
        method, overrides = REFERENCES.get(name, ("geometry", VARIANTS.get(name, {})))
        ate_pct[name], focal_error_pct[name], ba_max_ms[name] = {}, {}, {}
        ate_runs[name] = {}
        config = OdometryConfig(**overrides)
        for s in seqs:
            runs = []
            for offset in args.offsets:  # the same clip started a few frames later
                est, tracked, seconds, extra = run_method(method, s["frames"][offset:], s["K"],
                                                          config, args.backend)
                runs.append(score(est, s["c2w"][offset:], tracked, seconds)["ate_pct"])
            ate_pct[name][s["name"]] = geomean(runs)
            if len(runs) > 1:
                ate_runs[name][s["name"]] = runs
            if "ba_max_seconds" in extra.get("stats", {}):
                ba_max_ms[name][s["name"]] = 1e3 * extra["stats"]["ba_max_seconds"]
            if s["K"] is None and extra.get("fx_used"):
                focal_error_pct[name][s["name"]] = \
                    100 * abs(extra["fx_used"] / s["K_true"][0, 0] - 1)
            print(f"{name}: {s['name']} {ate_pct[name][s['name']]:.3f}", flush=True)
    report = {"command": shlex.join(["python", "benchmarks/sweep_odometry.py", *sys.argv[1:]]),
              "variants": {n: VARIANTS.get(n, REFERENCES.get(n)) for n in args.variants},
              "ate_pct": ate_pct, "offsets": args.offsets,
              "ate_pct_by_offset": {n: v for n, v in ate_runs.items() if v},
              "focal_error_pct": {n: v for n, v in focal_error_pct.items() if v},
              "ba_max_ms": {n: v for n, v in ba_max_ms.items() if v},
              "geomean": {n: geomean(list(v.values())) for n, v in ate_pct.items()},
              "seconds": time.perf_counter() - start}
    write_benchmark(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
