"""What a larger model input (issue 12: "full frame", 96 and 128 px) costs on this CPU.

The shipped model sees 64x64 images. For each input size S the same architecture
(``rap_small`` with ``image_size=S``: the codec still downsamples by 4 and the denoiser's
patches stay 4x4 latent pixels, so tokens grow with S^2) is built with random weights and
timed where it is used:

* camera job: ``TrajectoryPipeline.estimate_window`` on a 9-frame 640x480 window, ONNX
  Runtime, 2 Euler steps, 1 sample (what the odometry prior and the ``model`` method run);
* view job: ``ViewPipeline.predict_batch`` of 8 candidate paths from one 640x480 source,
  ONNX Runtime, the model's frames only (``preview_paths`` adds the warp on top);
* training: one optimiser step of the denoiser (forward, backward, AdamW) on a batch of 32
  latent clips in eager torch with 1 thread, the unit of ``rap-ros train``'s loop.

Random weights time the same arithmetic as trained ones. Times are medians, in ms.

    python benchmarks/bench_model_size.py            # S = 64, 96, 128
    python benchmarks/bench_model_size.py --sizes 64 96 --repeat 5
    python benchmarks/bench_model_size.py --configs default base --out .../model_size_base
        # named run configs (rap_ros/model/configs) as they are: the GPU recipe's larger model

Writes benchmarks/results/model_size.{json,md}.
"""
import argparse
import dataclasses
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import bench_window, intrinsics, median_ms, moving_frames  # noqa: E402

from rap_ros.backend import export  # noqa: E402
from rap_ros.backend.onnx_backend import OnnxBackend  # noqa: E402
from rap_ros.contract.config import rap_small  # noqa: E402
from rap_ros.evaluation.report import write_benchmark  # noqa: E402
from rap_ros.model.config import load_run_config  # noqa: E402
from rap_ros.pipeline.views import ViewPipeline  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, HEIGHT, PATHS, TRAIN_BATCH = 640, 480, 8, 32


def candidate_paths(frames, count):
    """(count, frames, 4, 4) camera-to-camera paths: forward 0.1 per frame, turned by
    -35..35 degrees about the camera's y axis (OpenCV axes)."""
    paths = np.tile(np.eye(4), (count, frames, 1, 1))
    for p, yaw in enumerate(np.radians(np.linspace(-35, 35, count))):
        for i in range(frames):
            a = yaw * i / (frames - 1)
            paths[p, i, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0],
                                   [-np.sin(a), 0, np.cos(a)]]
            paths[p, i, :3, 3] = [0.1 * i * np.sin(a), 0.0, 0.1 * i * np.cos(a)]
    return paths


def train_step_ms(config, dit, repeat):
    """One AdamW step of the denoiser on a batch of random latent clips (eager torch)."""
    inputs = [torch.from_numpy(a) for a in
              export.example_inputs(config, batch=TRAIN_BATCH)["denoiser"]]
    optimiser = torch.optim.AdamW(dit.parameters(), lr=1e-4)
    dit.train()

    def step():
        optimiser.zero_grad(set_to_none=True)
        v_video, v_raxel = dit(*inputs)
        loss = v_video.square().mean() + v_raxel.square().mean()
        loss.backward()
        optimiser.step()
    return median_ms(step, repeat, warmup=2)


def measure(config, label, repeat, workdir):
    codec, dit = export.random_modules(config, seed=0)
    model_dir = Path(workdir) / label
    export.export_modules(config, codec, dit, model_dir, verify=False)
    backend = OnnxBackend(model_dir)
    frames = moving_frames(config.frames, HEIGHT, WIDTH)
    K = intrinsics(WIDTH, HEIGHT)
    camera = bench_window(backend, frames, K, samples=1, repeat=repeat)
    views = ViewPipeline(backend)
    paths = candidate_paths(config.frames, PATHS)
    view_ms = median_ms(lambda: views.predict_batch(frames[0], K, paths), repeat, warmup=1)
    torch.set_num_threads(1)  # as `rap-ros train` on a shared machine (train.threads=1)
    return {"config": label, "image_size": config.image_size,
            "latent_size": config.latent_size,
            "tokens_per_branch": config.latent_frames * (config.latent_size
                                                         // config.patch_size) ** 2,
            "parameters": sum(p.numel() for m in (codec, dit) for p in m.parameters()),
            "camera_window_ms": camera["total_ms"], "camera_denoise_ms":
                camera.get("denoise_ms", float("nan")),
            "view_8_paths_ms": view_ms, "train_step_ms": train_step_ms(config, dit, repeat)}


def markdown(report):
    rows = report["rows"]
    base = rows[0]
    lines = ["# Model size: what larger inputs and models cost on this CPU (issue 12)", "",
             f"Command: `{report['command']}`; {report['machine']}; {report['seconds']:.0f} s.",
             "", "Each row: the shipped architecture (`rap_small`) with `image_size` S, or a "
             "named run config's model (`rap_ros/model/configs`), random weights. Camera "
             "job: one 9-frame 640x480 window, ONNX Runtime, 2 Euler steps, 1 sample. "
             "View job: 8 candidate paths from one source, the model's frames only. Training: one AdamW step of the denoiser on 32 latent clips, eager "
             "torch, 1 thread. Medians, ms; x = ratio to the first row (same run).", "",
             "| config | S | latent | tokens per branch | parameters | camera window ms | x | "
             "8 previews ms | x | train step ms | x |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r.get('config', '')} | {r['image_size']} | {r['latent_size']} | "
            f"{r['tokens_per_branch']} | "
            f"{r['parameters']:,} | {r['camera_window_ms']:.0f} | "
            f"{r['camera_window_ms'] / base['camera_window_ms']:.2f} | "
            f"{r['view_8_paths_ms']:.0f} | {r['view_8_paths_ms'] / base['view_8_paths_ms']:.2f}"
            f" | {r['train_step_ms']:.0f} | {r['train_step_ms'] / base['train_step_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    parser.add_argument("--configs", nargs="+", default=None, metavar="NAME",
                        help="measure these run configs' models instead of --sizes")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", default=str(RESULTS / "model_size"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        rows = []
        if args.configs:
            models = [(load_run_config(name).model, name) for name in args.configs]
        else:
            models = [(dataclasses.replace(rap_small(), image_size=size), f"rap_small S={size}")
                      for size in args.sizes]
        for config, label in models:
            rows.append(measure(config, label, args.repeat, workdir))
            print(rows[-1], flush=True)
    report = {"command": " ".join(["python", "benchmarks/bench_model_size.py", *sys.argv[1:]]),
              "machine": f"{platform.machine()}, 2 shared CPU cores",
              "rows": rows, "seconds": time.perf_counter() - start}
    write_benchmark(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
