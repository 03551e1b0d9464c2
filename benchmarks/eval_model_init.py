"""Does the model's direction of travel help the odometry core start? (issue 11: the model
"initialises the map at start-up")

Slow starts: synthetic drives rendered at 60 frames/s (half the usual step per frame, so the
parallax needed to initialise comes late), 90 frames at 320x240, held-out seeds, the three
scene kinds in turn. Each runs through ``geometry`` (the core waits for enough parallax)
and ``rap`` with ``prior_init_after`` 8 (after 8 frames of too little parallax, with the
reference frame inside the model's window, the model's direction of travel and the
geometry's rotation initialise the map; the shipped model, ONNX, 2 steps, a fresh prior per
run). Reported: the first frame with a pose from the map, the ATE (Sim(3), % of path) and
whether the model initialised.

    python benchmarks/eval_model_init.py            # results: results/model_init.{md,json}
"""
import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_odometry import build_odometry  # noqa: E402

from rap_ros.evaluation.report import write_benchmark  # noqa: E402
from rap_ros.metrics import ate, path_length  # noqa: E402
from rap_ros.odometry import OdometryConfig  # noqa: E402
from rap_ros.synth.dataset import held_out_seed, make_drive  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SCENES = ("street", "room", "corridor")


def run(clip, method, config):
    """(first frame posed from the map or None, ATE % or None, the core's stats)."""
    vo = build_odometry(method, clip.K, config)
    results = [vo.push(f, i / 60.0) for i, f in enumerate(clip.frames)]
    first = next((r.index for r in results if r.health != "initialising"), None)
    try:
        error = 100 * ate(vo.trajectory(), clip.c2w)["rmse"] / path_length(clip.c2w)
    except ValueError:  # never initialised: every pose the same, nothing to align
        error = None
    vo.close()
    return first, error, vo.stats


def markdown(report):
    lines = ["# The model's initialisation on slow starts", "",
             f"Command: `{report['command']}` (2-core CPU). First posed: the first frame "
             "placed by the map; ATE % of path after Sim(3) alignment; '–': never "
             "initialised.", "",
             "| seed | scene | geometry first posed | geometry ATE % | rap first posed | "
             "rap ATE % | model initialised |", "|---:|---|---:|---:|---:|---:|---|"]
    fmt = (lambda v, p: "–" if v is None else f"{v:.{p}f}")  # noqa: E731
    for r in report["rows"]:
        lines.append(f"| {r['seed']} | {r['scene']} | {fmt(r['geometry_first'], 0)} | "
                     f"{fmt(r['geometry_ate'], 2)} | {fmt(r['rap_first'], 0)} | "
                     f"{fmt(r['rap_ate'], 2)} | {'yes' if r['model_inits'] else 'no'} |")
    used = [r for r in report["rows"] if r["model_inits"] and r["rap_ate"] is not None
            and r["geometry_ate"] is not None]
    if used:
        ratio = np.exp(np.mean([np.log(r["rap_ate"] / r["geometry_ate"]) for r in used]))
        sooner = np.mean([r["geometry_first"] - r["rap_first"] for r in used])
        lines += ["", f"Where the model initialised ({len(used)} of {len(report['rows'])} "
                  f"drives): tracking began {sooner:.1f} frames sooner on average, and the "
                  f"ATE was {ratio:.2f}x geometry's (geometric mean of the ratios)."]
    return "\n".join(lines + [""])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drives", type=int, default=12)
    parser.add_argument("--out", default=str(RESULTS / "model_init"))
    args = parser.parse_args(argv)
    rows = []
    for i in range(args.drives):
        seed, scene = 40 + i, SCENES[i % len(SCENES)]
        clip = make_drive(held_out_seed(seed), 90, 240, 320, 60.0, scene=scene)
        g_first, g_ate, _ = run(clip, "geometry", OdometryConfig())
        r_first, r_ate, stats = run(clip, "rap", OdometryConfig(prior_init_after=8))
        rows.append(dict(seed=seed, scene=scene, geometry_first=g_first, geometry_ate=g_ate,
                         rap_first=r_first, rap_ate=r_ate, model_inits=stats["model_inits"]))
        print(rows[-1], flush=True)
    report = dict(command=shlex.join(["python", "benchmarks/eval_model_init.py",
                                      *(argv if argv is not None else sys.argv[1:])]),
                  rows=rows)
    write_benchmark(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
