"""What a nav_msgs/Path costs in rclpy, by its length: why the trajectory_estimator sends a long
path less often (``TrajectoryOutput.path_period``).

For paths of N poses (PoseStamped, as the node builds them) it times, median of ``--repeats``:
``publish`` on a real rclpy publisher with no subscriber (the Python-to-C conversion the node's
thread pays at every path message), ``serialize_message`` and ``deserialize_message`` (what a
Python subscriber pays). Absolute times on this shared 2-core CPU; the point is how they grow
with N.

    python benchmarks/bench_path_message.py
"""
import argparse
import pathlib
import sys
import time

import numpy as np
import rclpy
from nav_msgs.msg import Path
from rclpy.serialization import deserialize_message, serialize_message

from rap_ros.evaluation.report import write_benchmark
from rap_ros.nodes.conversions import matrix_to_pose_stamped, seconds_to_stamp
from rap_ros.ros_env import prepare_ros_environment

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def median_ms(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 1000, 3000, 10000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "path_message"))
    args = parser.parse_args(argv)
    prepare_ros_environment(force_localhost=True)
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    node = rclpy.create_node("rap_ros_bench_path", context=context)
    publisher = node.create_publisher(Path, "/rap_ros_bench_path", 1)
    rows = []
    try:
        for n in args.lengths:
            poses = [matrix_to_pose_stamped(np.eye(4), seconds_to_stamp(i / 30.0), "odom")
                     for i in range(n)]
            data = serialize_message(Path(poses=poses))
            rows.append({"poses": n, "bytes": len(data),
                         "publish_ms": median_ms(lambda: publisher.publish(Path(poses=poses)),
                                                 args.repeats),
                         "serialize_ms": median_ms(lambda: serialize_message(Path(poses=poses)),
                                                   args.repeats),
                         "deserialize_ms": median_ms(lambda: deserialize_message(data, Path),
                                                     args.repeats)})
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    command = "python benchmarks/bench_path_message.py " + " ".join(argv or sys.argv[1:])
    lines = ["# nav_msgs/Path in rclpy, by length\n", f"Command: `{command}` (2-core CPU, "
             f"shared; medians of {args.repeats}).\n",
             "| poses | bytes | publish, no subscriber ms | serialize ms | deserialize ms |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['poses']} | {r['bytes']} | {r['publish_ms']:.1f} | "
              f"{r['serialize_ms']:.1f} | {r['deserialize_ms']:.1f} |" for r in rows]
    write_benchmark(args.out, {"command": command, "rows": rows}, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
