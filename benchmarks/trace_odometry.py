"""Where does the odometry core lose a drive? A per-frame trace of one synthetic drive.

Prints, for each keyframe, each frame not tracked "ok" and every 10th frame: health, pose
source, PnP inliers, live tracks, map landmarks, and the truth's step length and rotation
that frame (so a loss can be read against the motion that caused it), then ATE, scale drift
and the frames per health. The seeds are development ones (held_out_seed(60..)), not the
benchmark sets' (100.., 200..).

    python benchmarks/trace_odometry.py --scene street --seed 62      # slow turn: lost, 7 %
    python benchmarks/trace_odometry.py --method rap                   # the same with the model
"""
import argparse
import ast
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_odometry import build_odometry, score  # noqa: E402

from rap_ros.evaluation.estimators import tracking_summary  # noqa: E402
from rap_ros.geometry.rotations import rotation_angle_deg  # noqa: E402
from rap_ros.odometry import OdometryConfig  # noqa: E402
from rap_ros.synth.dataset import held_out_seed, make_drive  # noqa: E402


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scene", default="street")
    parser.add_argument("--seed", type=int, default=62, help="held_out_seed index")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", default="320x240", help="WxH")
    parser.add_argument("--method", choices=("geometry", "rap"), default="geometry")
    parser.add_argument("--backend", default="onnx", help="the model of --method rap, as "
                        "rap-ros evaluate's --backend")
    parser.add_argument("--option", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="an OdometryConfig field (Python literal "
                        "or string), e.g. --option loss_scale depth")
    args = parser.parse_args()
    options = {name: _literal(value) for name, value in args.option}
    w, h = map(int, args.size.split("x"))
    drive = make_drive(held_out_seed(args.seed), frames=args.frames, height=h, width=w,
                       scene=args.scene)
    c2w = drive.c2w
    step = np.r_[0.0, np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1)]
    turn = np.r_[0.0, [float(rotation_angle_deg(c2w[i - 1][:3, :3].T @ c2w[i][:3, :3]))
                       for i in range(1, len(c2w))]]
    vo = build_odometry(args.method, drive.K, OdometryConfig(**options), args.backend)
    print("| frame | health | source | keyframe | inliers | tracks | landmarks | true step m | "
          "true turn ° |\n|---:|---|---|---|---:|---:|---:|---:|---:|")
    results = []
    for i, frame in enumerate(drive.frames):
        r = vo.push(frame, 0.1 * i)
        results.append(r)
        if r.health != "ok" or r.is_keyframe or i % 10 == 0:
            print(f"| {i} | {r.health}{' (recovered)' if r.recovered else ''} | {r.source} | "
                  f"{'yes' if r.is_keyframe else ''} | {r.inliers} | {vo.map_size()['tracks']} "
                  f"| {vo.map_size()['landmarks']} | {step[i]:.3f} | {turn[i]:.2f} |")
    tracked = tracking_summary(results, initialised=vo.stats["inits"] > 0)["frames_tracked"]
    s = score(vo.trajectory(), c2w, tracked, 1.0)
    health = {k: sum(r.health == k for r in results) for k in ("initialising", "ok",
                                                                "degraded", "lost")}
    print(f"\nATE {s['ate_pct']:.2f} % of {s['path']:.1f} m, scale drift "
          f"{s['scale_drift_pct_100']:.1f} % per 100 frames, frames per health {health}")


if __name__ == "__main__":
    main()
