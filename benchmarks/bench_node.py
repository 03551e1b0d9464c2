"""The trajectory_estimator node live: per-frame latency, drops and memory at camera rate.

A synthetic drive rendered at 30 Hz is written as a rosbag2 and replayed in real time over
real topics into `rap-ros up --no-predictor` (the player of `rap-ros evaluate --live`) for
each method; the latency of a frame is the time from its image being published to its
odometry arriving at the player (same clock, both processes on this machine). Drops are
frames that never got a pose. Memory is the node's resident set as it reports it on
/diagnostics at the end of the run. Also ATE, so speed is never bought with accuracy.

Issue 11's targets: p95 latency at most 50 ms at 30 Hz with no drops.

    python benchmarks/bench_node.py                      # 640x480, 300 frames, geometry + rap
    python benchmarks/bench_node.py --frames 90 --width 320 --height 240
"""
import argparse
import json
import pathlib
import sys
import tempfile
import time

from rap_ros.evaluation.inputs import InputOptions
from rap_ros.evaluation.live import LiveOptions, evaluate_live_input
from rap_ros.evaluation.run import RunOptions
from rap_ros.io.bag import write_bag
from rap_ros.synth.dataset import held_out_seed, make_drive

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["geometry", "rap"])
    parser.add_argument("--out", default=str(RESULTS / "node_latency"))
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a trajectory_estimator parameter for every run (repeatable)")
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_node.py " + " ".join(argv or sys.argv[1:])

    node_params = dict(p.split(":=", 1) for p in args.node_param)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        clip = make_drive(held_out_seed(args.seed), args.frames, args.height, args.width,
                          args.fps, scene="street")
        bag = write_bag(pathlib.Path(work, "drive"), clip)
        print(f"rendered {args.frames} frames at {args.width}x{args.height} in "
              f"{time.perf_counter() - start:.1f} s")
        for method in args.methods:
            result = evaluate_live_input(bag, pathlib.Path(work, method), InputOptions(),
                                         RunOptions(method=method, progress=False),
                                         LiveOptions(rate=1.0, settle_s=3.0,
                                                     node_params=node_params), method)
            live = result.get("live", {})
            values = next((v for k, v in live.get("diagnostics", {}).items()
                           if "trajectory" in k), {})
            row = {"method": method, "status": result["status"],
                   "published": live.get("published_frames"),
                   "estimated": live.get("estimated_frames"),
                   "dropped": live.get("dropped_frames"),
                   "latency_median_ms": 1e3 * live.get("latency_median_s", float("nan")),
                   "latency_p95_ms": 1e3 * live.get("latency_p95_s", float("nan")),
                   "latency_max_ms": 1e3 * live.get("latency_max_s", float("nan")),
                   "steady_median_ms": 1e3 * live.get("steady_latency_median_s", float("nan")),
                   "steady_p95_ms": 1e3 * live.get("steady_latency_p95_s", float("nan")),
                   "ate_pct": result.get("ate_rmse_pct"),
                   "node_rss_mb": float(values.get("resident memory (MB)", "nan")),
                   "lost": int(values.get("frames lost", 0)),
                   "dropped_by_node": int(values.get("dropped (tracker busy)", 0)),
                   "held_for_camera_info": int(values.get("frames held for camera_info", 0)),
                   "tracking_latency_s": values.get("tracking latency (s)"),
                   "latencies_ms": live.get("latencies_ms"),
                   "arrival_to_odometry_s": values.get("arrival to odometry latency (s)"),
                   "error": result.get("error")}
            rows.append(row)
            print(json.dumps(row))

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    lines = [f"# trajectory_estimator live at {args.fps:g} Hz, {args.width}x{args.height}, "
             f"{args.frames} frames", "", f"Command: `{command}` (2-core CPU, shared)", "",
             "| method | published | posed | no pose | of which lost | latency median ms | p95 ms "
             "| max ms | after 2 s: median ms | after 2 s: p95 ms | held for camera_info "
             "| ATE % | node RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['published']} | {r['estimated']} | {r['dropped']} "
                     f"| {r['lost']} "
                     f"| {r['latency_median_ms']:.1f} | {r['latency_p95_ms']:.1f} | "
                     f"{r['latency_max_ms']:.1f} | {r['steady_median_ms']:.1f} | "
                     f"{r['steady_p95_ms']:.1f} | {r['held_for_camera_info']} | "
                     f"{r['ate_pct'] if r['ate_pct'] is None else round(r['ate_pct'], 2)} "
                     f"| {r['node_rss_mb']:.0f} |")
    lines += ["", "Latency: image published by the player -> its odometry received back (both "
              "in this process's clock). \"after 2 s\": frames stamped 2 s or more after the "
              "first (without discovery, the camera_info wait and initialisation).", "",
              "Target (issue 11): p95 <= 50 ms at 30 Hz with no drops."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
