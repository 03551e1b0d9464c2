"""Time per preview call (issue 12's target: a preview of T frames and a `preview_paths` call
with 8 candidates in at most 1 s on this CPU).

``ViewPipeline.predict_batch`` (and ``closed_loop_batch``: the node's `preview_paths` with
``consistency`` on) from one source image, 1 and 8 candidate paths of T frames, each preview
mode, the node's defaults otherwise (1 Euler step, ``max_preview_pixels`` 320x240, chunks of
8, ``depth_source: map``: a z-depth map of the source at the preview size). The source: a
held-out synthetic street rendered at each size with its true depth as the map; the paths
drive 2 units ahead turning by -30 .. +30 degrees, normalised as the node does
(``relative_to_first``), the map divided by each path's scale.

``--compare DIR`` times another checkout (DIR/rap_ros, e.g. the code before a change) in the
same run: each tree runs in its own worker process (warm: backend loaded, every call made
once first) and the two take turns call by call, so the machine's load (2 shared cores)
falls on both alike; the table gives their ratio.

Command: ``python benchmarks/bench_preview_speed.py [--compare DIR]``. Writes
benchmarks/results/preview_speed.{md,json}.
"""
import argparse
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time

import numpy as np

RESULTS = pathlib.Path(__file__).parent / "results"
MODES = ("model", "warp", "warp+model", "guided", "warp+model consistency")
ROOT = pathlib.Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ worker


def _scene(width, height):
    """A held-out street at width x height: (image uint8, K, true z-depth float32)."""
    from rap_ros.synth import scenes, trajectories
    from rap_ros.synth.dataset import held_out_seed
    from rap_ros.synth.render import render, true_depth
    rng = np.random.default_rng(held_out_seed(7))
    K = trajectories.sample_intrinsics(rng, width, height)
    path = trajectories.drive_trajectory(rng, 10, 10.0)
    scene = scenes.make_scene("street", rng, path)
    image = render(scene, K, path.c2w[2:3], height, width, 1)[0]
    depth = true_depth(scene, K, path.c2w[2], height, width).astype(np.float32)
    return image, K, depth


def _paths(P, T):
    """P paths of T frames, 2 units ahead turning by -30 .. +30 degrees, normalised
    (``relative_to_first``): (P, T, 4, 4) and their scales (P,)."""
    from rap_ros.geometry.cameras import relative_to_first
    out = []
    for i in range(P):
        angle = np.radians(-30.0 + 60.0 * i / max(P - 1, 1))
        rel = np.tile(np.eye(4), (T, 1, 1))
        for j, s in enumerate(np.linspace(0.0, 1.0, T)):
            c, n = np.cos(angle * s), np.sin(angle * s)
            rel[j, :3, :3] = [[c, 0, n], [0, 1, 0], [-n, 0, c]]
            rel[j, :3, 3] = [np.sin(angle * s), 0.0, 2.0 * s]
        out.append(relative_to_first(rel))
    return np.stack([p for p, _ in out]), np.array([s for _, s in out])


def worker(threads, max_preview_pixels):
    """Reads configs (JSON lines: size, mode, paths) on stdin, answers each with the seconds
    of one call (JSON line) on stdout; the first call of a config warms it."""
    import cv2

    from rap_ros.backend.shared import create_backend
    from rap_ros.pipeline.views import ViewPipeline
    backend = create_backend("onnx", threads=threads)
    T = int(backend.config.frames)
    scenes, pipes = {}, {}
    for line in iter(sys.stdin.readline, ""):
        config = json.loads(line)
        size, mode, P = config["size"], config["mode"], config["paths"]
        if size not in scenes:
            scenes[size] = _scene(*(int(x) for x in size.split("x")))
        image, K, depth = scenes[size]
        if mode not in pipes:
            pipes[mode] = ViewPipeline(backend, steps=1, preview=mode.split()[0],
                                       max_preview_pixels=max_preview_pixels)
        pipe = pipes[mode]
        rel, scales = _paths(P, T)
        h, w = pipe.preview_size(*image.shape[:2])
        small = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
        maps = small[None] / scales[:, None, None].astype(np.float32)
        call = pipe.closed_loop_batch if mode.endswith("consistency") else pipe.predict_batch
        start = time.perf_counter()
        call(image, K, rel, depth=maps, chunk_size=8)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


# ------------------------------------------------------------------ driver


class Tree:
    """A worker process timing the rap_ros of one checkout."""

    def __init__(self, root, threads, max_preview_pixels):
        env = dict(os.environ, PYTHONPATH=str(root))
        command = [sys.executable, __file__, "--worker", "--max-preview-pixels",
                   str(max_preview_pixels)]
        if threads:
            command += ["--threads", str(threads)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        env=env, text=True)

    def time(self, config):
        self.process.stdin.write(json.dumps(config) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("worker died")
        return json.loads(line)["seconds"]

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def markdown(report):
    trees = report["trees"]
    lines = ["# Preview speed", "", f"Command: `{report['command']}`  ",
             f"Date: {report['date']}; machine: {report['machine']}; backend ONNX Runtime "
             f"(threads: {report['threads'] or 'default'}); steps 1, max_preview_pixels "
             f"{report['max_preview_pixels']}, map depth (a held-out synthetic street's true "
             f"depth at the preview size), chunks of 8. Medians of {report['repeats']} warm "
             "calls; with a comparison the two trees take turns call by call.", ""]
    head = "| source | mode | paths | " + " | ".join(f"{t} s" for t in trees)
    rule = "|---|---|---:|" + "---:|" * len(trees)
    if len(trees) == 2:
        head += f" | {trees[1]} / {trees[0]} |"
        rule += "---:|"
    else:
        head += " |"
    lines += [head, rule]
    for row in report["rows"]:
        times = [row[t] for t in trees]
        line = (f"| {row['size']} | {row['mode']} | {row['paths']} | "
                + " | ".join(f"{x:.2f}" for x in times))
        line += f" | {times[1] / times[0]:.2f} |" if len(trees) == 2 else " |"
        lines.append(line)
    return "\n".join(lines + [""])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x480"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--paths", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime intra-op threads (default: the backend's)")
    parser.add_argument("--max-preview-pixels", type=int, default=320 * 240,
                        help="the node's max_preview_pixels (its default: 320x240)")
    parser.add_argument("--compare", default=None, metavar="DIR",
                        help="also time DIR/rap_ros (e.g. a copy of the code before a change)")
    parser.add_argument("--labels", nargs=2, default=["before", "after"],
                        help="names of the --compare tree and of this one")
    parser.add_argument("--out", default=str(RESULTS / "preview_speed"))
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.threads, args.max_preview_pixels)
        return 0
    from rap_ros.evaluation.report import write_benchmark
    roots = {"this tree": ROOT} if args.compare is None else {
        args.labels[0]: pathlib.Path(args.compare), args.labels[1]: ROOT}
    trees = {name: Tree(root, args.threads, args.max_preview_pixels)
             for name, root in roots.items()}
    rows = []
    try:
        for size in args.sizes:
            for mode in args.modes:
                for P in args.paths:
                    config = {"size": size, "mode": mode, "paths": P}
                    for tree in trees.values():
                        tree.time(config)  # warm
                    times = {name: [] for name in trees}
                    for _ in range(args.repeats):
                        for name, tree in trees.items():
                            times[name].append(tree.time(config))
                    row = dict(config, **{n: float(np.median(t)) for n, t in times.items()})
                    rows.append(row)
                    print(row, flush=True)
    finally:
        for tree in trees.values():
            tree.close()
    report = {"command": shlex.join(["python", "benchmarks/bench_preview_speed.py",
                                   *(sys.argv[1:] if argv is None else argv)]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.machine()}, 2 shared CPU cores",
              "threads": args.threads, "max_preview_pixels": args.max_preview_pixels,
              "repeats": args.repeats, "trees": list(trees), "rows": rows}
    write_benchmark(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
