"""Synthetic data speed: clips per second of the procedural scene + trajectory + CPU renderer.

Measures, for 8-frame 64x64 clips as training consumes them (``sample_clip``: new
trajectory, intrinsics and scene per clip, then rendering):
1. clips per second of ``sample_clip`` without and with edge supersampling (s = 2, the
   default);
2. the time per clip of each stage (trajectory + intrinsics, scene, render), measured apart;
3. clips per second of ``sample_clip`` in ``--processes`` worker processes (the renderer is
   numpy on the calling thread, so processes are how it uses several cores);
4. one 200-frame ``make_drive`` as the demos replay it.

Usage::

    python benchmarks/bench_renderer.py [--clips 200] [--processes 2]

Writes benchmarks/results/renderer.json. The first clip (texture bank build, about 0.3 s)
is excluded. Other processes on the machine slow every figure: the load average is recorded,
and clips per CPU second (process time) is less sensitive to them than clips per second.
"""
import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rap_ros.synth import dataset, scenes, trajectories  # noqa: E402
from rap_ros.synth.render import render  # noqa: E402

FRAMES, SIZE, FPS = 8, 64, 10.0


def stage_times(seed: int, supersample: int) -> dict:
    """Seconds per stage of a clip built like ``dataset.sample_clip`` does."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    K = trajectories.sample_intrinsics(rng, SIZE, SIZE)
    path = trajectories.make_trajectory(str(rng.choice(trajectories.KINDS)), rng, FRAMES, FPS)
    made_path = time.perf_counter()
    world = scenes.make_scene(str(rng.choice(scenes.KINDS)), rng, path)
    made_scene = time.perf_counter()
    render(world, K, path.c2w, SIZE, SIZE, supersample)
    done = time.perf_counter()
    return {"trajectory": made_path - start, "scene": made_scene - made_path,
            "render": done - made_scene}


def measure(clips: int, supersample: int) -> dict:
    """End-to-end clips per second of ``sample_clip``, then a per-stage breakdown."""
    start, start_cpu = time.perf_counter(), time.process_time()
    for seed in range(clips):
        dataset.sample_clip(seed, FRAMES, SIZE, SIZE, FPS, supersample=supersample)
    clips_per_s = clips / (time.perf_counter() - start)
    clips_per_cpu_s = clips / (time.process_time() - start_cpu)
    stages = [stage_times(seed, supersample) for seed in range(clips)]
    per_clip_ms = {name: 1000 * float(np.mean([s[name] for s in stages])) for name in stages[0]}
    return {"supersample": supersample, "clips": clips,
            "clips_per_s": clips_per_s, "clips_per_cpu_s": clips_per_cpu_s,
            "ms_per_clip": per_clip_ms}


def _render_seed(seed: int) -> int:
    return len(dataset.sample_clip(seed))


def measure_processes(clips: int, processes: int) -> float:
    """Clips per second of ``sample_clip`` (default settings) spread over worker processes, as a
    training data loader would run it; start-up and warm-up excluded."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        pool.map(_render_seed, range(processes))  # warm-up: imports and texture bank
        start = time.perf_counter()
        pool.map(_render_seed, range(clips), chunksize=8)
        return clips / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200, help="clips per setting (default 200)")
    parser.add_argument("--processes", type=int, default=2,
                        help="worker processes for the parallel figure (default 2)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "renderer.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    dataset.sample_clip(0)  # warm-up: texture bank, allocator
    results = [measure(args.clips, supersample) for supersample in (1, 2)]
    parallel = measure_processes(args.clips, args.processes)
    start = time.perf_counter()
    dataset.make_drive(dataset.held_out_seed(0), frames=200)
    drive_s = time.perf_counter() - start
    report = {
        "what": f"{FRAMES}-frame {SIZE}x{SIZE} clips: trajectory, intrinsics, scene, render",
        "command": "python benchmarks/bench_renderer.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "settings": results,
        "processes": args.processes,
        "clips_per_s_processes": parallel,
        "drive_200_frames_s": drive_s,
    }
    for result in results:
        stages = ", ".join(f"{name} {ms:.1f} ms" for name, ms in result["ms_per_clip"].items())
        rate, cpu_rate = result["clips_per_s"], result["clips_per_cpu_s"]
        print(f"supersample {result['supersample']}: {rate:.1f} "
              f"clips/s, {cpu_rate:.1f} per CPU second ({stages})")
    print(f"{args.processes} processes, supersample {dataset.SUPERSAMPLE}: "
          f"{parallel:.1f} clips/s")
    print(f"200-frame drive: {drive_s:.2f} s; load average before {report['load_average_before']}, "
          f"after {report['load_average_after']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
