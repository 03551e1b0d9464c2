"""How much of the model's focal-length error is draw-to-draw noise? (issue 11, no camera_info)

For the first 9 frames of each clip the core would take K from without camera_info (the 21
variety clips, the seed-300 arc clip, the real sequences), 16 diffusion samples of the
shipped model (ONNX, 2 steps) estimate K. Prints per clip f / f_true (mean, sd over the
draws), the expected |log error| of one draw and of a median of 8 draws, and the field of
view the model sees (its centre square, degrees) against the one it estimates (median of the
draws): does the estimate follow the camera at all?

    python benchmarks/eval_model_focal_draws.py   # results: results/model_focal_draws.md
    python benchmarks/eval_model_focal_draws.py --backend torch:runs/X/rap_small.pt
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import odometry_data  # noqa: E402

from rap_ros.backend.shared import get_backend  # noqa: E402
from rap_ros.pipeline import TrajectoryPipeline  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="onnx",
                        help="backend spec (default: the shipped ONNX graphs; e.g. "
                             "torch:runs/X/rap_small.pt for a run's weights)")
    args = parser.parse_args()
    cache = "/tmp/rap_odometry_cache"
    pipeline = TrajectoryPipeline(get_backend(args.backend), steps=2, samples=1, seed=0)
    clips = odometry_data.variety(cache) + [
        dict(name="arc-room (seed 300)", **odometry_data.arc_clip(cache))] + odometry_data.real()
    print("| clip | f / f_true mean | sd | one draw mean abs log error | median of 8 | "
          "square's FOV, true ° | estimated ° |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    spread, one, eight, ratio, fov_true, fov_model = [], [], [], [], [], []
    for clip in clips:
        draws = pipeline.estimate_batch(np.repeat(clip["frames"][:9][None], 16, 0), None)
        f = np.array([d.K[0, 0] for d in draws]) / clip["K"][0, 0]
        spread.append(f.std() / f.mean())
        ratio.append(np.median(f))
        one.append(np.mean(np.abs(np.log(f))))
        eight.append(np.mean([abs(np.log(np.median(f[i:i + 8]))) for i in (0, 8)]))
        square = min(clip["frames"].shape[1:3])  # the model's input: the centre square
        fov_true.append(fov_deg(square, clip["K"][0, 0]))
        fov_model.append(fov_deg(square, np.median(f) * clip["K"][0, 0]))
        print(f"| {clip['name']} | {f.mean():.2f} | {f.std():.2f} | {one[-1]:.3f} | "
              f"{eight[-1]:.3f} | {fov_true[-1]:.1f} | {fov_model[-1]:.1f} |", flush=True)
    print(f"\nMedian over clips of f / f_true: {np.median(ratio):.2f}; median relative sd of "
          f"one draw: {100 * np.median(spread):.1f} %; mean abs log error, one draw "
          f"{np.mean(one):.3f}, median of 8 draws {np.mean(eight):.3f}.")
    print(f"\nField of view of the centre square: true {np.mean(fov_true):.1f} ± "
          f"{np.std(fov_true):.1f}° (range {min(fov_true):.1f}-{max(fov_true):.1f}), estimated "
          f"{np.mean(fov_model):.1f} ± {np.std(fov_model):.1f}°; Pearson correlation "
          f"{np.corrcoef(fov_true, fov_model)[0, 1]:.2f}. A constant guess of the mean estimate "
          f"would have mean abs log focal error {const_error(fov_true, fov_model):.3f}.")


def fov_deg(size, f):
    """Angle (degrees) that ``size`` pixels span at focal length ``f`` (pixels)."""
    return float(np.degrees(2 * np.arctan(0.5 * size / f)))


def const_error(fov_true, fov_model):
    """Mean |log f_const / f_true| of one constant field of view (the estimates' mean) for
    every clip: what an estimator that ignores the images scores."""
    t = np.tan(np.radians(np.asarray(fov_true)) / 2)
    c = np.tan(np.radians(np.mean(fov_model)) / 2)
    return float(np.mean(np.abs(np.log(t / c))))


if __name__ == "__main__":
    main()
