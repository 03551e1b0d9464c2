"""How much of the model's focal-length error is draw-to-draw noise? (issue 11, no camera_info)

For the first 9 frames of each clip the core would take K from without camera_info (the 21
variety clips, the seed-300 arc clip, the real sequences), 16 diffusion samples of the
shipped model (ONNX, 2 steps) estimate K. Prints per clip f / f_true (mean, sd over the
draws), the expected |log error| of one draw and of a median of 8 draws.

    python benchmarks/eval_model_focal_draws.py   # results: results/model_focal_draws.md
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import odometry_data  # noqa: E402

from rap_ros.backend.shared import get_backend  # noqa: E402
from rap_ros.pipeline import TrajectoryPipeline  # noqa: E402


def main():
    cache = "/tmp/rap_odometry_cache"
    pipeline = TrajectoryPipeline(get_backend("onnx"), steps=2, samples=1, seed=0)
    clips = odometry_data.variety(cache) + [
        dict(name="arc-room (seed 300)", **odometry_data.arc_clip(cache))] + odometry_data.real()
    print("| clip | f / f_true mean | sd | one draw mean abs log error | median of 8 |")
    print("|---|---:|---:|---:|---:|")
    spread, one, eight, ratio = [], [], [], []
    for clip in clips:
        draws = pipeline.estimate_batch(np.repeat(clip["frames"][:9][None], 16, 0), None)
        f = np.array([d.K[0, 0] for d in draws]) / clip["K"][0, 0]
        spread.append(f.std() / f.mean())
        ratio.append(np.median(f))
        one.append(np.mean(np.abs(np.log(f))))
        eight.append(np.mean([abs(np.log(np.median(f[i:i + 8]))) for i in (0, 8)]))
        print(f"| {clip['name']} | {f.mean():.2f} | {f.std():.2f} | {one[-1]:.3f} | "
              f"{eight[-1]:.3f} |", flush=True)
    print(f"\nMedian over clips of f / f_true: {np.median(ratio):.2f}; median relative sd of "
          f"one draw: {100 * np.median(spread):.1f} %; mean abs log error, one draw "
          f"{np.mean(one):.3f}, median of 8 draws {np.mean(eight):.3f}.")


if __name__ == "__main__":
    main()
