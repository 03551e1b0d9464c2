"""What a longer bundle-adjustment window costs (issue 11): the BA time of the odometry core
(`geometry`) with each window length, on one synthetic drive, runs alternating so the
machine's load falls on every length alike.

Reports per run: all BAs together (s), the longest (s), BA calls, LM fallbacks, the run's
wall time, and the ATE (% of path, Sim(3)), so time is never read without accuracy.

    python benchmarks/bench_ba_window.py                       # 8 vs 16 keyframes, 640x480
    python benchmarks/bench_ba_window.py --windows 8 12 16 --repeats 3
"""
import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_odometry import run_method, score  # noqa: E402

from rap_ros.evaluation.report import write_benchmark  # noqa: E402
from rap_ros.odometry import OdometryConfig  # noqa: E402
from rap_ros.synth.dataset import held_out_seed, make_drive  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=202)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--scene", default="street")
    parser.add_argument("--out", default=str(RESULTS / "ba_window_cost"))
    args = parser.parse_args(argv)

    clip = make_drive(held_out_seed(args.seed), args.frames, args.height, args.width, 10.0,
                      scene=args.scene)
    frames = np.asarray(clip.frames)
    rows = []
    for repeat in range(args.repeats):
        for window in args.windows:
            est, tracked, seconds, extra = run_method(
                "geometry", frames, clip.K, OdometryConfig(window_keyframes=window))
            stats = extra["stats"]
            row = dict(repeat=repeat + 1, window=window, run_s=seconds,
                       ba_total_s=stats["ba_seconds"], ba_max_s=stats["ba_max_seconds"],
                       ba_runs=stats["ba_runs"], ba_fallbacks=stats["ba_fallbacks"],
                       ate_pct=score(est, clip.c2w, tracked, seconds)["ate_pct"])
            rows.append(row)
            print(row, flush=True)

    command = shlex.join(["python", "benchmarks/bench_ba_window.py", *sys.argv[1:]])
    lines = ["# Bundle-adjustment window length: cost (odometry core, geometry)", "",
             f"Command: `{command}` (2-core CPU, shared; runs alternate between lengths). "
             f"One synthetic {args.scene} drive, held-out seed {args.seed}, {args.frames} "
             f"frames at {args.width}x{args.height}.", "",
             "| run | window keyframes | all BAs s | longest BA s | BA calls | LM fallbacks "
             "| run s | ATE % |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['repeat']} | {r['window']} | {r['ba_total_s']:.2f} | {r['ba_max_s']:.3f} | "
              f"{r['ba_runs']} | {r['ba_fallbacks']} | {r['run_s']:.1f} | {r['ate_pct']:.2f} |"
              for r in rows]
    write_benchmark(args.out, {"command": command, "rows": rows}, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
