"""Full frame (issue 12): the centre-square weights against letterbox weights, one table.

Runs, for each of the two weights (``--centre``, ``--letterbox``: backend specs), the existing
benchmarks and gathers their figures into benchmarks/results/full_frame.{md,json} (``--out``):

1. ``benchmarks/eval_model.py`` on held-out synthetic clips rendered at each ``--aspects``
   (square, KITTI's 1226:370, portrait 3:4 ...): video -> camera (ATE, rotation, focal error
   with K unknown; for letterbox also with the padding's raxels fitted) and images + camera
   -> video PSNR/SSIM (each framing scored on its own view of the image, the letterbox's
   padding excluded), and chained windows over drives;
2. ``benchmarks/eval_previews.py`` on the real sequences of ../shared/data (``--sequences``,
   default KITTI only): the driven path's top-1 rate among 9 candidates and preview PSNR of
   the model modes (the model fed the rotation, plane and map-depth warps, and the
   warp+model composite), the synthetic drives skipped;
3. ``rap-ros evaluate --method model`` (the windowed model chained, with and without the
   flow refinement) on the same sequences.

Every sub-run writes its own report under ``--work`` (default runs/letterbox/eval) and is
skipped when that report exists, so an interrupted run resumes.
Run:  .venv/bin/python benchmarks/eval_full_frame.py --letterbox onnx:runs/letterbox/rap_small.pt
"""
import argparse
import datetime
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import eval_model  # noqa: E402
import eval_previews  # noqa: E402

from rap_ros.backend.shared import default_weights, parse_spec  # noqa: E402
from rap_ros.contract.files import file_sha256  # noqa: E402
from rap_ros.evaluation.report import write_benchmark  # noqa: E402
from rap_ros.evaluation.run import RunOptions, evaluate_input  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results"
PREVIEW_METHODS = ("model", "model (warp-conditioned, plane)",
                   "model (warp-conditioned, map depth)", "warp+model (conditioned, plane)",
                   "warp+model (conditioned, map depth)")


def weights_of(spec):
    """The weights file of a backend spec (the shipped ones for a bare "onnx"/"torch")."""
    _, path = parse_spec(spec)
    path = pathlib.Path(path) if path else pathlib.Path(default_weights()).resolve()
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def _load(path):
    return json.loads(pathlib.Path(path).read_text())


def run_all(args):
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = {}
    for label, spec in (("centre", args.centre), ("letterbox", args.letterbox)):
        entry = out[label] = {"backend": spec, "weights": str(weights_of(spec)),
                              "weights_sha256": file_sha256(REPO / weights_of(spec)),
                              "eval_model": {}, "previews": None, "evaluate": {}}
        for aspect in args.aspects:
            prefix = work / f"model_{label}_{aspect.replace(':', 'x')}"
            if not pathlib.Path(f"{prefix}.json").is_file():
                t0 = time.time()
                eval_model.main(["--backend", spec, "--clips", str(args.clips), "--drives",
                                 str(args.drives), "--drive-frames", str(args.drive_frames),
                                 "--aspect", aspect, "--out", str(prefix)])
                print(f"[{label} {aspect}] eval_model {time.time() - t0:.0f} s", flush=True)
            entry["eval_model"][aspect] = _load(f"{prefix}.json")
        prefix = work / f"previews_{label}"
        if args.sequences and not pathlib.Path(f"{prefix}.json").is_file():
            t0 = time.time()
            eval_previews.main(["--backend", spec, "--conditioned", spec, "--drives", "0",
                                "--sequences", *args.sequences, "--methods",
                                *PREVIEW_METHODS, "--data", args.data, "--out", str(prefix)])
            print(f"[{label}] eval_previews {time.time() - t0:.0f} s", flush=True)
        if args.sequences:
            entry["previews"] = _load(f"{prefix}.json")
        for sequence in args.sequences:
            for refine in (True, False):
                name = f"{sequence}{'' if refine else ' --no-refine'}"
                folder = work / f"evaluate_{label}_{sequence}_{'refine' if refine else 'plain'}"
                metrics = folder / "metrics.json"
                if not metrics.is_file():
                    evaluate_input(pathlib.Path(args.data) / sequence, folder,
                                   options=RunOptions(method="model", backend=spec,
                                                      refine=refine, progress=False))
                m = _load(metrics)
                entry["evaluate"][name] = {k: m.get(k) for k in (
                    "status", "frames", "ate_rmse", "ate_rmse_pct", "rpe_trans_rmse",
                    "rpe_rot_deg_rmse", "fps", "consistency_psnr")}
    return out


def markdown(report):
    c, lb = report["runs"]["centre"], report["runs"]["letterbox"]
    lines = ["# Full frame: centre square vs letterbox (issue 12)", "",
             f"Measured {report['date']} on this 2-core CPU (shared with other jobs; no "
             f"GPU), {report['seconds'] / 60:.0f} min. Command: `{report['command']}`  ",
             f"centre: `{c['backend']}` ({c['weights']}, sha256 {c['weights_sha256']})  ",
             f"letterbox: `{lb['backend']}` ({lb['weights']}, sha256 "
             f"{lb['weights_sha256']})", ""]
    lines += ["## Held-out synthetic clips (`benchmarks/eval_model.py`)", "",
              "Per aspect: video -> camera on one 9-frame window per clip (2 Euler steps; "
              "ATE in % of the path after Sim(3); rotation error of consecutive frames; "
              "focal error with K unknown), images + camera -> video (PSNR/SSIM of the "
              "model's frames against the truth, each on its framing's view of the image: "
              "the centre square, or the letterbox without its padding, so the two rows see "
              "different pixels), and chained windows over drives.", "",
              "| aspect | weights | ATE % (K known) | rel. rot ° | ATE % (K unknown) | "
              "focal err % (mean / median) | view PSNR dB | view SSIM | copy-source PSNR | "
              "drives ATE % | drives RPE rot ° |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for aspect in report["aspects"]:
        for label, entry in (("centre", c), ("letterbox", lb)):
            r = entry["eval_model"][aspect]
            s, v, d = r["short_clips"], r["view_synthesis"], r["long_drives"]["rap"]
            f = s["focal_error_pct_K_unknown"]
            lines.append(
                f"| {aspect} ({s['width']}x{s['height']}) | {label} | "
                f"{s['rap_2_steps']['ate_pct']:.2f} | {s['rap_2_steps']['rot_rel_deg']:.3f} | "
                f"{s['rap_2_steps_K_unknown']['ate_pct']:.2f} | "
                f"{f['mean']:.1f} / {f['median']:.1f} | {v['psnr_pred']:.2f} | "
                f"{v['ssim_pred']:.3f} | {v['psnr_copy_source']:.2f} | "
                f"{d['ate_rmse_pct']:.2f} | {d['rpe_rot_deg_rmse']:.3f} |")
    lines += ["", "Letterbox weights, the padding's raxels fitted too (`fit_padding=True`) "
              "against the default (image pixels only), same noise:", "",
              "| aspect | ATE % K known (image / +padding) | ATE % K unknown (image / "
              "+padding) | focal err % mean (image / +padding) |", "|---|---:|---:|---:|"]
    for aspect in report["aspects"]:
        s = lb["eval_model"][aspect]["short_clips"]
        lines.append(
            f"| {aspect} | {s['rap_2_steps']['ate_pct']:.2f} / "
            f"{s['rap_2_steps_fit_padding']['ate_pct']:.2f} | "
            f"{s['rap_2_steps_K_unknown']['ate_pct']:.2f} / "
            f"{s['rap_2_steps_K_unknown_fit_padding']['ate_pct']:.2f} | "
            f"{s['focal_error_pct_K_unknown']['mean']:.1f} / "
            f"{s['focal_error_pct_K_unknown_fit_padding']['mean']:.1f} |")
    if c["previews"]:
        lines += ["", "## Real sequences: previews (`benchmarks/eval_previews.py`)", "",
                  "The driven path hidden among 9 candidates (top-1: share of source frames "
                  "where it scored best; chance 11 %), by SSIM / gradient / census distance "
                  "of the last frame to the goal; PSNR of the driven path's frames: "
                  "\"model view\" on each framing's view (centre square, or letterbox "
                  "without padding), \"full\" on the whole frame (composites only).", "",
                  "| sequence | method | weights | top-1 SSIM | top-1 gradient | top-1 census "
                  "| mean rank SSIM | PSNR model view | PSNR full |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for group in c["previews"]["groups"]:
            for method in c["previews"]["groups"][group]:
                for label, entry in (("centre", c), ("letterbox", lb)):
                    r = entry["previews"]["groups"][group][method]
                    full = f"{r['psnr_full']:.2f}" if "psnr_full" in r else "–"
                    lines.append(
                        f"| {group} | {method} | {label} | {100 * r['top1_ssim']:.0f} % | "
                        f"{100 * r['top1_gradient_distance']:.0f} % | "
                        f"{100 * r['top1_census_distance']:.0f} % | {r['rank_ssim']:.2f} | "
                        f"{r['psnr_square']:.2f} | {full} |")
        lines += ["", "## Real sequences: the windowed model (`rap-ros evaluate --method "
                  "model`, K known)", "",
                  "| sequence | weights | ATE Sim(3) RMSE | ATE % of path | RPE trans RMSE | "
                  "RPE rot ° RMSE | consistency PSNR dB |", "|---|---|---:|---:|---:|---:|---:|"]
        for name in c["evaluate"]:
            for label, entry in (("centre", c), ("letterbox", lb)):
                m = entry["evaluate"][name]
                cons = m.get("consistency_psnr")
                lines.append(
                    f"| {name} | {label} | {m['ate_rmse']:.4g} | {m['ate_rmse_pct']:.3g} | "
                    f"{m['rpe_trans_rmse']:.4g} | {m['rpe_rot_deg_rmse']:.4g} | "
                    f"{'–' if cons is None else f'{cons:.3g}'} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--centre", default="onnx", help="backend spec of centre weights "
                        "(default: the shipped ones)")
    parser.add_argument("--letterbox", required=True, help="backend spec of letterbox weights")
    parser.add_argument("--aspects", nargs="+", default=["1:1", "1226:370", "3:4"])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--drives", type=int, default=1)
    parser.add_argument("--drive-frames", type=int, default=100)
    parser.add_argument("--sequences", nargs="*", default=["kitti_vo_seq1"])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--work", default=str(REPO / "runs" / "letterbox" / "eval"))
    parser.add_argument("--out", default=str(RESULTS / "full_frame"))
    args = parser.parse_args(argv)
    start = time.time()
    runs = run_all(args)
    report = {"command": " ".join(["python", "benchmarks/eval_full_frame.py", *sys.argv[1:]]),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime(
                  "%Y-%m-%d %H:%M UTC"),
              "aspects": args.aspects, "sequences": args.sequences, "runs": runs,
              "seconds": time.time() - start}
    write_benchmark(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
