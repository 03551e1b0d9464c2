"""Per-frame latency of the odometry core at camera rate: the keyframe BA before or after
the pose is published (issue 11's 50 ms p95 target, without DDS in the way).

The trajectory_estimator's worker does, per frame: ``push`` (track, pose) -> publish ->
``optimise`` (the bundle adjustment a new keyframe asked for). This script replays that on
one thread against a 30 Hz clock: frame i arrives at i / rate; the worker starts it when it
arrives or when the previous frame's work is done, whichever is later; its latency is from
arrival to the moment its pose is ready to publish. Two orders are compared in the same run,
interleaved per drive (the machine is shared, so only the ratio is meaningful):

* ``BA before publish``: ``push(frame)`` runs the BA inside (the node before 2026-11-28);
* ``BA after publish``: ``push(frame, optimise=False)``, publish, then ``optimise()`` (the
  node now). Both give the same trajectory (test_deferred_ba_gives_the_same_trajectory).

    python benchmarks/bench_frame_latency.py            # the three 640x480 drives, 30 Hz
    python benchmarks/bench_frame_latency.py --rate 15

Writes benchmarks/results/frame_latency.{json,md}.
"""
import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import odometry_data  # noqa: E402

from rap_ros.evaluation.report import write_benchmark  # noqa: E402
from rap_ros.odometry import OdometryConfig  # noqa: E402
from rap_ros.odometry.factory import make_odometry  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ORDERS = ("BA before publish", "BA after publish")


def replay(frames, K, rate, order):
    """Latencies (s) of every frame replayed at ``rate`` Hz with the given work order."""
    vo = make_odometry("geometry", K, config=OdometryConfig(history=False))
    deferred = order == "BA after publish"
    clock = time.perf_counter
    start = clock()
    busy_until = start
    latencies = []
    for i, frame in enumerate(frames):
        arrival = start + i / rate
        if busy_until < arrival:  # idle: wait for the frame like a subscriber would
            time.sleep(arrival - clock())
        vo.push(frame, i / rate, optimise=not deferred)
        latencies.append(clock() - arrival)  # the pose is published here
        if deferred:
            vo.optimise()
        busy_until = clock()
    vo.close()
    return np.array(latencies)


def summary(latencies):
    ms = 1e3 * latencies
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "max_ms": float(ms.max()), "over_50ms": int((ms > 50).sum()), "frames": len(ms)}


def markdown(report):
    lines = ["# Odometry core: per-frame latency at camera rate, BA before or after publishing",
             "", f"Command: `{report['command']}`; {report['machine']}; rate "
             f"{report['rate']:g} Hz; {report['seconds']:.0f} s.", "",
             "Latency: frame arrival (i / rate) -> its pose ready to publish, one worker "
             "thread replaying the node's order of work (see the script's docstring). Both "
             "orders give the same trajectory. Medians and p95 over each drive's frames, "
             "ms; ratio = after / before within the run.", "",
             "| drive | order | median ms | p95 ms | max ms | frames over 50 ms |",
             "|---|---|---:|---:|---:|---:|"]
    for name, by_order in report["drives"].items():
        for order in ORDERS:
            r = by_order[order]
            lines.append(f"| {name} | {order} | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | "
                         f"{r['max_ms']:.1f} | {r['over_50ms']}/{r['frames']} |")
    ratios = report["p95_ratio"]
    lines += ["", f"p95 after / before, per drive: "
              + ", ".join(f"{v:.2f}" for v in ratios.values())
              + f"; geometric mean {report['p95_ratio_geomean']:.2f}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="/tmp/rap_odometry_cache")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--out", default=str(RESULTS / "frame_latency"))
    args = parser.parse_args(argv)
    began = time.perf_counter()
    drives = [d for d in odometry_data.drives(args.cache) if d["name"].endswith("640x480")]
    report = {"command": " ".join(["python", "benchmarks/bench_frame_latency.py",
                                   *sys.argv[1:]]),
              "machine": f"{platform.machine()}, 2 shared CPU cores", "rate": args.rate,
              "drives": {}, "p95_ratio": {}}
    for drive in drives:
        rows = {order: summary(replay(drive["frames"], drive["K"], args.rate, order))
                for order in ORDERS}
        report["drives"][drive["name"]] = rows
        report["p95_ratio"][drive["name"]] = rows[ORDERS[1]]["p95_ms"] / rows[ORDERS[0]]["p95_ms"]
        print(drive["name"], rows, flush=True)
    report["p95_ratio_geomean"] = float(np.exp(np.mean(np.log(list(
        report["p95_ratio"].values())))))
    report["seconds"] = time.perf_counter() - began
    write_benchmark(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
