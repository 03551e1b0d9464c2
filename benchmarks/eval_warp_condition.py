"""Held-out view job with and without the warp condition (issue 12), at the model's 64 px.

images + camera -> video on the held-out validation clips of a run folder (``val_cache``,
rendered with the true depth of frame 0): frame 0 and every true camera given, 1 Euler step
from noise (the ViewPipeline default). Reported: PSNR (dB) of frames 1..T-1 against the truth
for each weights file, without a warp (zeros) and, for warp-conditioned weights, with the
source warped (``pipeline.conditioning.model_view_warp``) by: the true depth ("oracle"), the
true depth with a scale error and noise ("noisy", as in training), a fronto-parallel plane at
PLANE_DEPTH normalised units pushed beyond the path (``warp.fallback_plane_depth``), and
rotation only. The warps themselves (holes filled) are scored too: what geometry alone gives.

Command: ``python benchmarks/eval_warp_condition.py --weights A.pt B.pt --run-dir runs/warp``
"""
import argparse
import json
import sys

import numpy as np
import torch

from rap_ros.model import data as data_mod
from rap_ros.model.checkpoint import load_weights
from rap_ros.model.evaluate import evaluate_view
from rap_ros.pipeline.conditioning import model_view_warp, perturbed_depth
from rap_ros.pipeline.warp import fallback_plane_depth

PLANE_DEPTH = 10.0  # normalised path units


def warps_of(val, kind, n, size):
    out = []
    for i in range(n):
        frame0, K, path = np.asarray(val.frames[i][0]), val.K[i], val.c2w[i]
        depth = {"oracle": lambda: np.asarray(val.depth[i], np.float32),
                 "noisy": lambda: perturbed_depth(np.random.default_rng([7, i]),
                                                  np.asarray(val.depth[i])),
                 "plane": lambda: fallback_plane_depth(path, PLANE_DEPTH),
                 "rotation": lambda: None}[kind]()
        out.append(model_view_warp(frame0, K, path, depth, size))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", required=True)
    parser.add_argument("--run-dir", required=True, help="run folder with val_cache/")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    val = data_mod.FrameCache(f"{args.run_dir}/val_cache")
    n = min(args.n, len(val))
    size = val.frames.shape[2]
    kinds = ("oracle", "noisy", "plane", "rotation")
    warps = {k: warps_of(val, k, n, size) for k in kinds}
    truth = np.stack([np.asarray(val.frames[i][1:]) for i in range(n)]).astype(np.float64)
    report = {"clips": n, "warp alone (holes filled)": {}}
    for k in kinds:
        w = np.stack([x[0][1:] for x in warps[k]]).astype(np.float64)
        mse = ((w - truth) ** 2).mean(axis=(1, 2, 3, 4))
        report["warp alone (holes filled)"][k] = float(np.mean(
            10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))))
    for path in args.weights:
        config, codec, dit = load_weights(path)
        row = {"no warp": evaluate_view(codec, dit, val, config, None, n)}
        if config.warp_condition:
            for k in kinds:
                row[f"warp {k}"] = evaluate_view(codec, dit, val, config, warps[k], n)
        report[str(path)] = row
        print(path, json.dumps(row), flush=True)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
