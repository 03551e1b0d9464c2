"""Does adapting the model to a recording help on what it has not seen? (issue 12)

`rap-ros train --finetune` adapts the shipped weights to a recording with pseudo-labels from
the odometry core. Each fine-tuned run here was adapted on the first 60 % of one sequence of
../shared/data (``--span 0 0.6``); this script measures the shipped weights and every run on
the held-out last 40 % of each sequence (the same sequence's unseen stretch, and the other
sequence's) and on the whole of the sequence a run never saw:

* video -> camera, per window of T frames with the true K: mean rotation error of frames
  1..T-1 against the truth (deg, relative to the first frame), and the angle between the
  predicted and the true direction of the last camera centre (deg);
* previews (images + camera -> video): the planner ranking of benchmarks/eval_previews.py
  (the driven path among 9 candidates, SSIM of the last frame to the goal; top-1 rate, mean
  rank of 9) and PSNR of the driven path's previews against the real frames (64 px centre
  square), for the model alone and warp+model with the plane warp.

All weights run in the torch backend (the same numerics for each). Command:
``python benchmarks/eval_finetune.py [--run NAME=WEIGHTS ...]`` (defaults: shipped,
runs/ft_lego/rap_small.pt, runs/ft_kitti/rap_small.pt where present). Writes
benchmarks/results/finetune.{md,json}.
"""
import argparse
import pathlib
import sys
import time

import numpy as np

from eval_previews import SEQUENCES, run_window
from rap_ros.backend.shared import default_weights, get_backend
from rap_ros.evaluation.report import write_benchmark
from rap_ros.geometry.cameras import relative_to_first
from rap_ros.geometry.rotations import rotation_angle_deg
from rap_ros.io.sequence import read_sequence
from rap_ros.pipeline.trajectory import TrajectoryPipeline
from rap_ros.pipeline.views import ViewPipeline

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
HELD_OUT = 0.6   # the runs adapted on frames [0, 0.6 n) of their sequence


def pose_errors(pipeline, frames, K, c2w):
    """(mean rotation error deg, last-centre direction error deg) of one window."""
    estimate = pipeline.estimate_window(frames, K)
    truth, _ = relative_to_first(c2w)
    rotation = rotation_angle_deg(np.swapaxes(estimate.c2w[1:, :3, :3], 1, 2)
                                  @ truth[1:, :3, :3]).mean()
    a, b = estimate.c2w[-1, :3, 3], truth[-1, :3, 3]
    cosine = a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    return float(rotation), float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def measure(backend, clip, starts):
    """Mean of every figure over the windows starting at ``starts``."""
    T = int(backend.config.frames)
    trajectory = TrajectoryPipeline(backend, steps=2, samples=1)
    pipes = {"model": (ViewPipeline(backend, preview="model", seed=1), None),
             "warp+model (plane)": (ViewPipeline(backend, preview="warp+model", seed=1),
                                    "plane")}
    rows = []
    for s in starts:
        frames, c2w = clip.frames[s:s + T], clip.c2w[s:s + T]
        rotation, direction = pose_errors(trajectory, frames, clip.K, c2w)
        views = run_window(pipes, clip.frames[s], clip.K, frames, c2w, None)
        rows.append({"rotation_err_deg": rotation, "direction_err_deg": direction,
                     "model_top1_ssim": views["model"]["top1_ssim"],
                     "model_rank_ssim": views["model"]["rank_ssim"],
                     "model_psnr": views["model"]["psnr_square"],
                     "warp_model_psnr": views["warp+model (plane)"]["psnr_square"]})
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["windows"] = len(rows)
    return out


def markdown(report):
    lines = ["# Fine-tuning on a recording with odometry pseudo-labels", "",
             f"Command: `{report['command']}` (2-core CPU, shared; torch backend for every "
             "weights file)", "",
             "Runs: " + "; ".join(f"`{n}` = {d}" for n, d in report["runs"].items()), "",
             "| stretch | weights | windows | rotation err deg | direction err deg | model "
             "top-1 % | model mean rank | model PSNR dB | warp+model PSNR dB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for stretch, by_run in report["stretches"].items():
        for name, m in by_run.items():
            lines.append(f"| {stretch} | {name} | {m['windows']} | {m['rotation_err_deg']:.2f} "
                         f"| {m['direction_err_deg']:.1f} | {100 * m['model_top1_ssim']:.0f} | "
                         f"{m['model_rank_ssim']:.2f} | {m['model_psnr']:.2f} | "
                         f"{m['warp_model_psnr']:.2f} |")
    lines += ["", "Lower is better for the errors and the rank (1 best of 9; chance 5), higher "
              "for top-1 (chance 11 %) and PSNR. The notes below are written by hand from "
              "this table.", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", default=[], metavar="NAME=WEIGHTS")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(RESULTS / "finetune"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    runs = {"shipped": str(default_weights())}
    for name in ("ft_lego", "ft_kitti"):
        path = ROOT / "runs" / name / "rap_small.pt"
        if path.is_file():
            runs[name] = str(path)
    runs.update(dict(item.split("=", 1) for item in args.run))
    clips = {name: read_sequence(pathlib.Path(args.data) / name) for name in SEQUENCES
             if (pathlib.Path(args.data) / name / "cameras.json").is_file()}
    stretches = {}
    for name, weights in runs.items():
        backend = get_backend(f"torch:{weights}")
        T = int(backend.config.frames)
        for sequence, clip in clips.items():
            n, spacing = len(clip.frames), max(1, SEQUENCES[sequence] // 2)
            first = int(HELD_OUT * n)
            stretch = f"{sequence} frames {first}-{n - 1} (held out)"
            stretches.setdefault(stretch, {})[name] = measure(
                backend, clip, range(first, n - T + 1, spacing))
            print(f"{name} on {stretch}: {stretches[stretch][name]} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    report = {"command": " ".join(["python", "benchmarks/eval_finetune.py", *sys.argv[1:]]),
              "runs": runs, "held_out_from": HELD_OUT, "stretches": stretches,
              "seconds": time.perf_counter() - start}
    write_benchmark(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
