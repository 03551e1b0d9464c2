"""Inference speed on this machine: ONNX Runtime vs eager torch, and the video -> camera job.

Measures
1. one denoiser step (a DiT forward), ONNX Runtime vs eager torch, at batch 1 and at the
   batch of K samples; the codec encoder and decoder the same way; the denoiser step with
   one and with all intra-op threads on both backends (the per-step speed-up of ONNX
   Runtime is the best of each against the best of the other);
2. video -> camera end to end (resize, encode + motion channels, denoise with 2 Euler steps,
   decode to poses) on camera-sized frames, in input frames per second: per window
   (T frames / window time) and streaming through ``WindowStream`` (the node's and the
   evaluator's code path) at the node's default stride (``DEFAULT_STRIDE`` new frames per
   window; the other T - DEFAULT_STRIDE frames overlap and fix the scale);
3. how that grows with the window length T and with the input image size.

Usage::

    python benchmarks/bench_inference.py                     # shipped weights (rap_small.pt)
    python benchmarks/bench_inference.py --config tiny       # random tiny model (no weights)
    python benchmarks/bench_inference.py --config default    # random model, training config
    python benchmarks/bench_inference.py --weights PATH.pt

Writes benchmarks/results/inference.json and .md (``--out`` changes the stem). Times are
medians over ``--repeat`` runs after warm-up, in milliseconds, single process.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rap_ros.backend.onnx_backend import OnnxBackend  # noqa: E402
from rap_ros.backend.torch_backend import TorchBackend  # noqa: E402
from rap_ros.pipeline.streaming import DEFAULT_STRIDE, WindowStream  # noqa: E402
from rap_ros.pipeline.trajectory import TrajectoryPipeline  # noqa: E402


def median_ms(fn, repeat, warmup=3):
    """Median wall time of fn() in ms. torch's first calls at a new shape are slow (kernel
    selection), hence the warm-up."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def moving_frames(frames, height, width, seed=0):
    """uint8 (frames, height, width, 3): a smooth random texture panning and zooming, so
    optical flow and the codec see camera-like content."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3),
                                   dtype=np.uint8), (2 * width, 2 * height),
                      interpolation=cv2.INTER_CUBIC)
    out = []
    for i in range(frames):
        zoom = 1.0 + 0.02 * i
        M = np.array([[zoom, 0, -3.0 * i - width / 2], [0, zoom, -1.5 * i - height / 2]])
        out.append(cv2.warpAffine(base, M, (width, height), borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


def intrinsics(width, height):
    f = 0.8 * width
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])


def load_backends(args, workdir):
    """(config, onnx backend, torch backend, description of the weights)."""
    from rap_ros.backend import export

    if args.config:
        from rap_ros.contract.config import SIZES, load_config
        from rap_ros.model.config import CONFIG_DIR

        if args.config in SIZES:
            config = SIZES[args.config]()
        else:  # a YAML file, or the name of one in rap_ros/model/configs
            path = Path(args.config)
            config = load_config(path if path.is_file() else CONFIG_DIR / f"{args.config}.yaml")
        codec, dit = export.random_modules(config, seed=0)
        export.export_modules(config, codec, dit, workdir, verify=False)
        torch_backend = TorchBackend.from_modules(config, codec, dit)
        source = f"random {args.config} config (untrained)"
    else:
        from rap_ros.backend.shared import default_weights

        weights = Path(args.weights) if args.weights else default_weights()
        export.export_onnx(weights, workdir, verify=False)
        torch_backend = TorchBackend(weights)
        config = torch_backend.config
        source = str(weights.relative_to(REPO) if weights.is_relative_to(REPO) else weights)
    onnx_backend = OnnxBackend(workdir, threads=args.threads)
    return config, onnx_backend, torch_backend, source


def bench_networks(config, backends, samples, repeat):
    """Per-call times of the three graphs at batch 1 and batch ``samples``."""
    from rap_ros.backend.export import example_inputs

    rows = []
    for batch in sorted({1, samples}):
        inputs = example_inputs(config, batch=batch)
        for name, backend in backends.items():
            rows.append({
                "backend": backend.name, "batch": batch,
                "denoiser_step_ms": median_ms(lambda: backend.velocity(*inputs["denoiser"]),
                                              repeat),
                "encode_ms": median_ms(lambda: backend.encode(*inputs["encoder"]), repeat),
                "decode_ms": median_ms(lambda: backend.decode(*inputs["decoder"],
                                                              config.frames), repeat),
            })
    return rows


def bench_denoiser_threads(config, model_dir, torch_backend, samples, repeat):
    """Denoiser step times with 1 and with all cores' intra-op threads, both backends."""
    import torch

    from rap_ros.backend.export import example_inputs

    all_threads, torch_default = os.cpu_count(), torch.get_num_threads()
    rows = []
    for threads in sorted({1, all_threads}):
        onnx_backend = OnnxBackend(model_dir, threads=1, denoiser_threads=threads)
        for batch in sorted({1, samples}):
            inputs = example_inputs(config, batch=batch)["denoiser"]
            torch.set_num_threads(threads)
            rows.append({"threads": threads, "batch": batch,
                         "onnx_ms": median_ms(lambda: onnx_backend.velocity(*inputs), repeat),
                         "torch_ms": median_ms(lambda: torch_backend.velocity(*inputs),
                                               repeat)})
    torch.set_num_threads(torch_default)
    return rows


def bench_window(backend, frames, K, samples, repeat, steps=2, refine=False, window=None):
    """Median wall time of estimate_window and the median of each stage (refine: with the
    optical-flow refinement, the node's default, timed as its own stage).

    frames: the window itself, estimated ``repeat`` times; or, with ``window`` (the model's
    window length), a longer sequence streamed through ``WindowStream`` as in the node:
    windows slide by ``DEFAULT_STRIDE`` frames (the refinement remembers the frame pairs
    consecutive windows share, so repeating one window would time it for free)."""
    pipeline = TrajectoryPipeline(backend, steps=steps, sampler="euler", samples=samples,
                                  refine=refine)
    if window is None:
        for _ in range(2):  # warm-up
            pipeline.estimate_window(frames, K)
        runs = [pipeline.estimate_window(frames, K).timings for _ in range(repeat)]
    else:
        needed = window + (repeat + 1) * DEFAULT_STRIDE
        if len(frames) < needed:
            raise ValueError(f"need {needed} frames, got {len(frames)}")
        timings = []
        stream = WindowStream(pipeline, stride=DEFAULT_STRIDE, K=K, keep_history=False,
                              on_window=lambda _, estimate: timings.append(estimate.timings))
        for index, frame in enumerate(frames[:needed]):
            stream.push(frame, index / 10.0)
        runs = timings[2:]  # the first two windows warm up
        frames = frames[:window]
    stages = {key: 1000.0 * float(np.median([r[key] for r in runs])) for key in runs[0]}
    T = len(frames)
    return {"frames": T, "samples": samples, "steps": steps, "refine": refine,
            "refine_ms": stages.get("refine", 0.0),
            "input": f"{frames.shape[2]}x{frames.shape[1]}",
            **{f"{key}_ms": value for key, value in stages.items()},
            "window_fps": T / (stages["total"] / 1000.0),
            "stream_fps": min(DEFAULT_STRIDE, T - 1) / (stages["total"] / 1000.0)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", help="torch checkpoint (default: shipped rap_small.pt)")
    parser.add_argument("--config",
                        help="benchmark a randomly initialised model instead: a named size "
                             "(tiny, small), a config YAML, or a name in rap_ros/model/configs "
                             "(e.g. default, the training run's model)")
    parser.add_argument("--samples", type=int, default=4, help="K samples for covariance")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime intra-op threads (default: one per core)")
    parser.add_argument("--input", default="640x480", help="camera image size WxH")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "inference"))
    args = parser.parse_args()
    width, height = (int(v) for v in args.input.lower().split("x"))
    load_start = os.getloadavg()[0]  # other work on the machine skews the figures

    with tempfile.TemporaryDirectory() as workdir:
        config, onnx_backend, torch_backend, source = load_backends(args, workdir)
        backends = {"onnx": onnx_backend, "torch": torch_backend}
        T, tf = config.frames, config.temporal_factor
        K = intrinsics(width, height)
        print(f"model: {source}; T={T}, S={config.image_size}, "
              f"latent {config.latent_frames}x{config.latent_channels}x{config.latent_size}^2")

        networks = bench_networks(config, backends, args.samples, args.repeat)
        print("\nper call (ms)            batch  denoiser step  encode  decode")
        for row in networks:
            print(f"  {row['backend']:32s} {row['batch']:3d}  {row['denoiser_step_ms']:10.2f}"
                  f"  {row['encode_ms']:6.2f}  {row['decode_ms']:6.2f}")

        threads = bench_denoiser_threads(config, workdir, torch_backend, args.samples,
                                         args.repeat)
        print("\ndenoiser step by intra-op threads (ms): threads, batch, onnx, torch")
        for row in threads:
            print(f"  {row['threads']}  {row['batch']}  {row['onnx_ms']:6.2f}  "
                  f"{row['torch_ms']:6.2f}")

        frames = moving_frames(T, height, width)
        end_to_end = [bench_window(backend, frames, K, samples, args.repeat)
                      for backend in backends.values() for samples in sorted({1, args.samples})]
        for row, backend in zip(end_to_end, [b for b in backends.values()
                                             for _ in sorted({1, args.samples})]):
            row["backend"] = backend.name
        stream = moving_frames(T + (args.repeat + 1) * DEFAULT_STRIDE, height, width)
        end_to_end.append({**bench_window(onnx_backend, stream, K, 1, args.repeat, refine=True,
                                          window=T), "backend": onnx_backend.name})
        print(f"\nvideo -> camera, {width}x{height} input, 2 Euler steps (ms)")
        for row in end_to_end:
            print(f"  {row['backend']:32s} K={row['samples']} refine={row['refine']:d}  resize {row['resize_ms']:6.2f}"
                  f"  encode {row['encode_ms']:6.2f}  denoise {row['denoise_ms']:6.2f}"
                  f"  decode {row['decode_ms']:6.2f}  total {row['total_ms']:7.2f}"
                  f"  -> {row['window_fps']:6.1f} frames/s per window,"
                  f" {row['stream_fps']:6.1f} streaming (stride {DEFAULT_STRIDE})")

        max_frames = 1 + tf * (config.max_latent_frames - 1)
        lengths = [1 + tf * k for k in range(1, config.max_latent_frames)]
        long_frames = moving_frames(max_frames, height, width)
        by_length = [bench_window(onnx_backend, long_frames[:n], K, 1, args.repeat)
                     for n in lengths]
        print("\nwindow length (ONNX Runtime, K=1): T, total ms, frames/s")
        for row in by_length:
            print(f"  T={row['frames']:3d}  {row['total_ms']:7.2f} ms  "
                  f"{row['window_fps']:6.1f} frames/s")

        sizes = [(160, 120), (320, 240), (640, 480), (1280, 720), (1920, 1080)]
        by_size = []
        for w, h in sizes:
            row = bench_window(onnx_backend, moving_frames(T, h, w), intrinsics(w, h), 1,
                               args.repeat)
            by_size.append(row)
        print(f"\ninput size (ONNX Runtime, K=1, T={T}): resize ms, total ms, frames/s")
        for row in by_size:
            print(f"  {row['input']:>9s}  resize {row['resize_ms']:6.2f}  "
                  f"total {row['total_ms']:7.2f}  {row['window_fps']:6.1f} frames/s")

    result = {
        "model": source, "config": config.to_dict(),
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "python": platform.python_version()},
        "command": "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:]),
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "repeat": args.repeat, "samples": args.samples,
        "networks": networks, "denoiser_threads": threads, "end_to_end": end_to_end,
        "by_window_length": by_length, "by_input_size": by_size,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result, width, height))
    print(f"\nwrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


def markdown(result, width, height):
    config = result["config"]
    lines = [
        "# Inference benchmark",
        "",
        f"Model: {result['model']} (T={config['frames']}, S={config['image_size']}). "
        f"Machine: {result['machine']['cores']} CPU cores, no GPU; 1-minute load average "
        f"{result['load_average_1min']['start']:.1f} at the start, "
        f"{result['load_average_1min']['end']:.1f} at the end (anything above 0 is other "
        f"work competing for the cores). Medians of {result['repeat']} runs, milliseconds. "
        f"Command: `{result['command'].strip()}`.",
        "",
        "## Networks per call",
        "",
        "| backend | batch | denoiser step | encode | decode |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in result["networks"]:
        lines.append(f"| {r['backend']} | {r['batch']} | {r['denoiser_step_ms']:.2f} | "
                     f"{r['encode_ms']:.2f} | {r['decode_ms']:.2f} |")
    lines += ["", "## Denoiser step by intra-op threads", "",
              "The shipped backend gives the denoiser one thread (`OnnxBackend(denoiser_threads=1)`)"
              " and the codec one per core.", "",
              "| threads | batch | ONNX Runtime ms | torch ms |", "|---:|---:|---:|---:|"]
    for r in result["denoiser_threads"]:
        lines.append(f"| {r['threads']} | {r['batch']} | {r['onnx_ms']:.2f} | "
                     f"{r['torch_ms']:.2f} |")
    for batch in sorted({r["batch"] for r in result["denoiser_threads"]}):
        rows = [r for r in result["denoiser_threads"] if r["batch"] == batch]
        best_onnx, best_torch = (min(r[k] for r in rows) for k in ("onnx_ms", "torch_ms"))
        lines.append(f"\nBatch {batch}: best ONNX Runtime {best_onnx:.2f} ms vs best torch "
                     f"{best_torch:.2f} ms, {best_torch / best_onnx:.2f}x.")
    T = config["frames"]
    lines += [
        "",
        f"## Video -> camera end to end ({width}x{height} input, 2 Euler steps)",
        "",
        "Frames/s per window = T / window time; streaming = new frames per window / window "
        f"time at the estimator's default `window_stride` of {DEFAULT_STRIDE} "
        f"(T - {DEFAULT_STRIDE} overlapping "
        "frames fix the scale between windows; a stride of T - 2 is the fastest that does).",
        "",
        "| backend | K samples | resize | encode | denoise | decode | flow refinement | total "
        "| frames/s window | frames/s streaming |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["end_to_end"]:
        lines.append(f"| {r['backend']} | {r['samples']} | {r['resize_ms']:.2f} | "
                     f"{r['encode_ms']:.2f} | {r['denoise_ms']:.2f} | {r['decode_ms']:.2f} | "
                     f"{r['refine_ms']:.2f} | {r['total_ms']:.2f} | {r['window_fps']:.1f} | "
                     f"{r['stream_fps']:.1f} |")
    lines += ["", f"## Window length (ONNX Runtime, K=1, {width}x{height})", "",
              "| T | total ms | frames/s |", "|---:|---:|---:|"]
    for r in result["by_window_length"]:
        lines.append(f"| {r['frames']} | {r['total_ms']:.2f} | {r['window_fps']:.1f} |")
    lines += ["", f"## Input size (ONNX Runtime, K=1, T={T})", "",
              "| input | resize ms | total ms | frames/s |", "|---|---:|---:|---:|"]
    for r in result["by_input_size"]:
        lines.append(f"| {r['input']} | {r['resize_ms']:.2f} | {r['total_ms']:.2f} | "
                     f"{r['window_fps']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
