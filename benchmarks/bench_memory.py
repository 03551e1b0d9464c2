"""Resident memory and speed of the ONNX backend by memory-arena setting, and of
preview_paths-sized view predictions in chunks.

Measures, each configuration in a fresh process (so one's arena cannot hide another's):
1. the backend (``OnnxBackend(memory_arena=...)`` for "on", "off", "shrink"): one model job
   (codec encoder, one denoiser step, codec decoder) at batch 1, 8 and 64: resident memory
   before, peak during and after, and time per call; the speed of each setting as a ratio to
   "off", measured in the same run;
2. the view predictor's preview_paths job (``ViewPipeline.closed_loop_batch``, the node's
   code path with consistency on): 8, 64 and 256 candidate paths in chunks
   (``--chunk``), against all candidates in one batch with the arena on (how the node ran
   before).

Resident memory is /proc/self/statm; the peak is VmHWM of /proc/self/status, reset before
each measurement through /proc/self/clear_refs (a 5 ms sampling thread where that is not
allowed). Usage::

    python benchmarks/bench_memory.py                 # writes benchmarks/results/memory.*
    python benchmarks/bench_memory.py --quick         # fewer repeats, no 256-path rows

Linux only (/proc). Single process per row, ``threads`` as the nodes use them.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rap_ros import geometry as geo  # noqa: E402
from rap_ros.backend.onnx_backend import MEMORY_ARENA_MODES, OnnxBackend  # noqa: E402
from rap_ros.backend.shared import default_onnx_dir  # noqa: E402
from rap_ros.geometry.cameras import K_from_fov  # noqa: E402
from rap_ros.nodes.diagnostics import peak_memory_mb, resident_memory_mb  # noqa: E402
from rap_ros.pipeline.views import ViewPipeline  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
BATCHES = (1, 8, 64)


class PeakMeter:
    """Peak resident memory (MB) of this process over a ``with`` block."""

    def __init__(self):
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident size
        except OSError:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, resident_memory_mb())

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            self.peak = peak_memory_mb()
        self.peak = max(self.peak, resident_memory_mb())


def model_job(backend, batch):
    """A function running encode + one denoiser step + decode at ``batch``."""
    c = backend.config
    T, S, s, C, t = c.frames, c.image_size, c.latent_size, c.latent_channels, c.latent_frames
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, T, 3, S, S)).astype(np.float32)
    raxel = rng.standard_normal((batch, t, 2 * C, s, s)).astype(np.float32)
    motion = np.zeros((batch, t, c.motion_dim, s, s), np.float32)
    times = np.ones((batch, t), np.float32)

    def job():
        z = backend.encode(x)
        v, _ = backend.velocity(z, raxel, times, times, motion)
        backend.decode(v, T)
    return job


def child_backend(mode, repeat):
    """Backend rows for one arena mode (run in a fresh process)."""
    base = resident_memory_mb()
    backend = OnnxBackend(default_onnx_dir(), memory_arena=mode)
    rows = []
    for batch in BATCHES:
        job = model_job(backend, batch)
        before = resident_memory_mb()
        with PeakMeter() as meter:
            job()  # first call at this shape (allocations, arena growth)
            count = max(1, repeat // batch)
            times = []
            for _ in range(count):
                start = time.perf_counter()
                job()
                times.append(time.perf_counter() - start)
        del job
        rows.append(dict(mode=mode, batch=batch, process_start_mb=base, before_mb=before,
                         peak_mb=meter.peak, after_mb=resident_memory_mb(),
                         ms_per_call=1000 * float(np.median(times)), calls=count))
    return rows


def child_speed(repeat):
    """Time per model job of every arena mode, interleaved call by call in one process, so
    that other work on the machine slows all modes alike (the ratios are comparable)."""
    backends = {mode: OnnxBackend(default_onnx_dir(), memory_arena=mode)
                for mode in MEMORY_ARENA_MODES}
    rows = []
    for batch in BATCHES:
        jobs = {mode: model_job(backend, batch) for mode, backend in backends.items()}
        for job in jobs.values():
            job()  # first call at this shape
        times = {mode: [] for mode in jobs}
        for _ in range(max(2, repeat // batch)):
            for mode, job in jobs.items():
                start = time.perf_counter()
                job()
                times[mode].append(time.perf_counter() - start)
        off = float(np.median(times["off"]))
        rows += [dict(mode=mode, batch=batch, ms_per_call=1000 * float(np.median(t)),
                      calls=len(t), vs_off=float(np.median(t)) / off)
                 for mode, t in times.items()]
    return rows


def candidate_paths(count, frames, seed=0):
    """(count, T, 4, 4) camera paths relative to the source: forward, turning and climbing
    by different amounts (the model's normalised unit)."""
    rng = np.random.default_rng(seed)
    paths = []
    for _ in range(count):
        yaw, pitch, side = rng.uniform(-0.6, 0.6), rng.uniform(-0.1, 0.1), rng.uniform(-0.3, 0.3)
        paths.append(np.stack([geo.matrix_from_xyz_rpy(
            (side * f, 0.0, 2.0 * f), (pitch * f, yaw * f, 0.0))
            for f in np.linspace(0.0, 1.0, frames)]))
    return np.stack(paths)


def child_pipeline(mode, count, chunk):
    """One preview_paths-sized closed-loop job (run in a fresh process)."""
    backend = OnnxBackend(default_onnx_dir(), memory_arena=mode)
    pipeline = ViewPipeline(backend)
    rng = np.random.default_rng(1)
    source = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    K = K_from_fov(60.0, 640, 480)
    paths = candidate_paths(count, backend.config.frames)
    pipeline.closed_loop_batch(source, K, paths[:1])  # warm: first-call costs
    before = resident_memory_mb()
    with PeakMeter() as meter:
        start = time.perf_counter()
        results = pipeline.closed_loop_batch(source, K, paths, chunk_size=chunk)
        elapsed = time.perf_counter() - start
    assert len(results) == count
    del results
    return [dict(mode=mode, candidates=count, chunk=chunk or count, before_mb=before,
                 peak_mb=meter.peak, after_mb=resident_memory_mb(),
                 seconds=elapsed, ms_per_path=1000 * elapsed / count)]


def run_child(*args):
    """Rows from a fresh process running ``--child ...``."""
    output = subprocess.run([sys.executable, __file__, "--child", *map(str, args)],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def choice_text(result):
    """The default chosen, with the numbers of this run behind it."""
    by = {(r["mode"], r["batch"]): r for r in result["backend"]}
    speed = {(r["mode"], r["batch"]): r["vs_off"] for r in result["speed"]}
    pipe = {(r["mode"], r["candidates"], r["chunk"]): r for r in result["pipeline"]}
    chunk = result["chunk"]
    text = (
        "Default `memory_arena=\"off\"`. With the arena a model job at batch 64 leaves "
        f"{by[('on', 64)]['after_mb']:.0f} MB resident for good (off: "
        f"{by[('off', 64)]['after_mb']:.0f} MB), at batch 8 {by[('on', 8)]['after_mb']:.0f} "
        f"MB (off: {by[('off', 8)]['after_mb']:.0f} MB). Time with the arena on relative to "
        "off, same process and load: " + ", ".join(
            f"batch {b} {speed[('on', b)]:.2f}" for b in BATCHES) +
        ": within noise at batch 1 (what the trajectory estimator runs), faster at large "
        "batches (its pages are already mapped), which is the memory it never gives back. "
        "\"shrink\" (arena, shrunk after each call) gives the memory back but is slower "
        "than off (" + ", ".join(f"batch {b} {speed[('shrink', b)]:.2f}" for b in BATCHES) +
        "), so it stays an option. preview_paths runs in chunks of "
        f"{chunk} (`preview_chunk_size`): the peak follows the chunk, not the request")
    key_on, key_off = ("on", 64, 64), ("off", 64, chunk)
    if key_on in pipe and key_off in pipe:
        text += (f" (64 candidates: {pipe[key_off]['peak_mb']:.0f} MB peak, "
                 f"{pipe[key_off]['after_mb']:.0f} MB after, against "
                 f"{pipe[key_on]['peak_mb']:.0f} / {pipe[key_on]['after_mb']:.0f} MB in one "
                 "batch with the arena, as before); its times come from separate processes "
                 "under changing load, so the interleaved ratios above are the speed "
                 "comparison")
    return text + "."


def markdown(result):
    lines = ["# Memory benchmark", "",
             f"Model: the shipped ONNX graphs ({result['model']}). Machine: {result['machine']}; "
             f"1-minute load average {result['load_start']:.1f} at the start, "
             f"{result['load_end']:.1f} at the end (other work shares the cores, so compare "
             "ratios within this run). Resident memory in MB (/proc/self/statm; peak: "
             "VmHWM). Each row is a fresh process. "
             f"Command: `{result['command']}`.", "",
             "## Backend: one model job (encode + denoiser step + decode) by memory arena", "",
             "Memory: each mode in its own fresh process, batches 1, 8, 64 in turn. Time: "
             "the three modes in one process, calls interleaved (median; ratio to off "
             "under the same load).", "",
             "| arena | batch | before | peak | after | ms per call | time vs off |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    speed = {(r["mode"], r["batch"]): r for r in result["speed"]}
    for r in result["backend"]:
        t = speed[(r["mode"], r["batch"])]
        lines.append(f"| {r['mode']} | {r['batch']} | {r['before_mb']:.0f} | {r['peak_mb']:.0f} "
                     f"| {r['after_mb']:.0f} | {t['ms_per_call']:.1f} | {t['vs_off']:.2f} |")
    lines += ["", "Process size after loading the three sessions, before any call: " +
              ", ".join(f"{m} {v:.0f} MB" for m, v in result["loaded_mb"].items()) + ".", "",
              "## preview_paths job: closed-loop predictions of N candidates "
              "(ViewPipeline.closed_loop_batch)", "",
              "| arena | candidates | chunk | before | peak | after | s | ms per path |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["pipeline"]:
        lines.append(f"| {r['mode']} | {r['candidates']} | {r['chunk']} | {r['before_mb']:.0f} "
                     f"| {r['peak_mb']:.0f} | {r['after_mb']:.0f} | {r['seconds']:.1f} "
                     f"| {r['ms_per_path']:.0f} |")
    lines += ["", "## Choice", "", choice_text(result), ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats; no 256-candidate rows")
    parser.add_argument("--chunk", type=int, default=8, help="candidates per model call")
    parser.add_argument("--repeat", type=int, default=64,
                        help="paths timed per backend row (batch 1: 64 calls, 64: 1 call)")
    parser.add_argument("--out", default=str(RESULTS / "memory"),
                        help="output stem (.md and .json)")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the .md from the .json of an earlier run")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:
        out = Path(args.out)
        result = json.loads(out.with_suffix(".json").read_text())
        result["choice"] = choice_text(result)
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown(result))
        print(markdown(result))
        return 0
    if args.child:
        kind, mode, *rest = args.child
        if kind == "speed":
            rows = child_speed(int(mode))
        elif kind == "backend":
            rows = child_backend(mode, int(rest[0]))
        else:
            rows = child_pipeline(mode, int(rest[0]), int(rest[1]) or None)
        print(json.dumps(rows))
        return 0

    repeat = 16 if args.quick else args.repeat
    load_start = load_average()
    backend_rows = []
    for mode in MEMORY_ARENA_MODES:
        rows = run_child("backend", mode, repeat)
        backend_rows += rows
        print(*(json.dumps(r) for r in rows), sep="\n", flush=True)
    speed_rows = run_child("speed", repeat)
    print(*(json.dumps(r) for r in speed_rows), sep="\n", flush=True)
    counts = (8, 64) if args.quick else (8, 64, 256)
    plan = [("off", n, args.chunk) for n in counts] + [("on", n, args.chunk) for n in counts[:2]]
    plan += [("on", 64, 0), ("off", 64, 0)]  # all candidates in one batch: as before
    pipeline_rows = []
    for mode, count, chunk in plan:
        rows = run_child("pipeline", mode, count, chunk)
        pipeline_rows += rows
        print(*(json.dumps(r) for r in rows), sep="\n", flush=True)

    result = dict(
        command="python benchmarks/bench_memory.py" + (" --quick" if args.quick else ""),
        model=str(default_onnx_dir().relative_to(REPO)) if default_onnx_dir().is_relative_to(
            REPO) else str(default_onnx_dir()),
        machine=f"{os.cpu_count()} CPU cores, {platform.machine()}, Python "
                f"{platform.python_version()}",
        load_start=load_start, load_end=load_average(), chunk=args.chunk,
        loaded_mb={m: by[(m, 1)]["before_mb"] for m in MEMORY_ARENA_MODES},
        backend=backend_rows, speed=speed_rows, pipeline=pipeline_rows)
    result["choice"] = choice_text(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
