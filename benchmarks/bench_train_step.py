"""Where a denoiser training step's time goes (the GPU recipe, issue 12).

``rap-ros train``'s denoiser loop does two things per step: a CPU thread assembles the next
batch (``train.draw_batch``: latents of ``train.batch`` clips, and the ray directions of
``train.cosine_samples`` of them for the cosine loss) while the device runs the step
(``train.dit_step``: jobs, flow-matching loss, backward, AdamW, EMA). A step takes the
longer of the two. This times each alone for a run config's model, on ``--device``:

* latents are random numbers of the config's shapes (timing only: the same arithmetic as
  encoded clips), drawn from ``--clips`` rendered synthetic clips (their K and poses give the
  ray directions);
* medians over ``--repeat`` steps after warm-up; CUDA synchronised before each clock read.

    python benchmarks/bench_train_step.py --config base --device cuda   # the GPU recipe
    python benchmarks/bench_train_step.py --config tiny --device cpu --clips 16
    python benchmarks/bench_train_step.py --config base --device cuda --set train.batch=256
    python benchmarks/bench_train_step.py --config default --device cpu --attention manual
        # the attention as exported to ONNX (matmul + softmax) instead of the fused kernel

Prints one JSON line; the results of the recipe's machine are in
benchmarks/results/gpu_recipe.md.
"""
import argparse
import json
import sys
import tempfile
import time
from unittest import mock

import numpy as np
import torch

from rap_ros.model import data as data_mod
from rap_ros.model.codec import CausalVideoCodec
from rap_ros.model.config import load_run_config
from rap_ros.model.dit import RaxelDiT
from rap_ros.model.run import training_device
from rap_ros.model.train import LatentClips, dit_step, draw_batch


def random_latents(config, n, rng):
    """Random arrays of the shapes ``data.build_latent_cache`` writes for ``config``."""
    t, C, s, M = config.latent_frames, config.latent_channels, config.latent_size, \
        config.motion_dim
    shapes = {"video": (n, t, C, s, s), "raxel": (n, t, 2 * C, s, s), "motion": (n, t, M, s, s)}
    if config.warp_condition:
        shapes["warp"] = (n, t, C + 1, s, s)
    return {k: rng.standard_normal(shape).astype(np.float32) for k, shape in shapes.items()}


def timed_ms(fn, repeat, warmup, device):
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="base")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="render workers")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--attention", choices=("fused", "manual"), default="fused",
                        help="manual: the attention as exported (matmul + softmax)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                        help="config overrides, as rap-ros train --set")
    args = parser.parse_args(argv)
    config = load_run_config(args.config, [f"train.device={args.device}", *args.set])
    mc, tc = config.model, config.train
    device = training_device(tc.device)
    torch.set_num_threads(tc.threads)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        cache = data_mod.FrameCache(data_mod.build_frame_cache(
            f"{tmp}/cache", args.clips, mc.frames, mc.image_size, args.workers,
            log=lambda m: None))
        clips = LatentClips(random_latents(mc, args.clips, rng), cache, mc)
        cosine = min(tc.cosine_samples, tc.batch) if tc.cosine_weight > 0 else 0
        draw_ms = timed_ms(lambda: draw_batch([clips], [1.0], rng, tc.batch, cosine),
                           args.repeat, 2, torch.device("cpu"))
        torch.manual_seed(0)
        dit = RaxelDiT(mc).to(device)
        ema = RaxelDiT(mc).requires_grad_(False).to(device)
        codec = CausalVideoCodec(mc).eval().requires_grad_(False).to(device)
        opt = torch.optim.AdamW(dit.parameters(), lr=tc.lr)
        drawn = draw_batch([clips], [1.0], rng, tc.batch, cosine)
        # the DiT's attention takes its ONNX form while an export runs
        exporting = mock.patch("torch.onnx.is_in_onnx_export",
                               return_value=args.attention == "manual")
        with exporting:
            step_ms = timed_ms(lambda: dit_step(dit, dit, ema, opt, codec, drawn,
                                                torch.Generator().manual_seed(1), 100, tc.lr,
                                                config), args.repeat, 3, device)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(json.dumps({"config": args.config, "set": args.set, "device": name,
                      "attention": args.attention,
                      "batch": tc.batch,
                      "cosine_samples": cosine, "draw_batch_ms": round(draw_ms, 2),
                      "dit_step_ms": round(step_ms, 2),
                      "steps_per_s_bound": round(1000.0 / max(draw_ms, step_ms), 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
