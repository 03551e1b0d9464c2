"""Does the model's worker thread at a lower priority keep the frame path's CPU? (issue 11)

The geometry core tracks 120 frames of a 640x480 drive in this thread while a model window
(the shipped ONNX model, 2 steps, 1 sample) runs back to back on a worker thread, whose
niceness is raised by 0 or 10 (``odometry.core.lower_thread_priority``, the node's
``OdometryConfig.prior_nice``), with the codec's threads at 1 or ONNX Runtime's default.
Prints the frame path's per-frame median and p95 and the windows the worker finished.
Each setting runs twice, interleaved (a shared machine: compare within a run).

    python benchmarks/bench_model_priority.py   # needs the eval_odometry cache (renders it)
"""
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import odometry_data  # noqa: E402

from rap_ros.backend.shared import create_backend  # noqa: E402
from rap_ros.odometry import OdometryConfig  # noqa: E402
from rap_ros.odometry.core import lower_thread_priority  # noqa: E402
from rap_ros.odometry.factory import make_odometry  # noqa: E402
from rap_ros.pipeline import TrajectoryPipeline  # noqa: E402


def run(frames, K, nice, threads):
    pipeline = TrajectoryPipeline(create_backend("onnx", threads=threads), steps=2, samples=1)
    stop, windows = threading.Event(), [0]

    def model_worker():
        lower_thread_priority(nice)
        while not stop.is_set():
            pipeline.estimate_window(frames[:9], K)
            windows[0] += 1
    worker = threading.Thread(target=model_worker)
    worker.start()
    vo = make_odometry("geometry", K, config=OdometryConfig(history=False))
    times = []
    for i, frame in enumerate(frames):
        start = time.perf_counter()
        vo.push(frame, i / 30)
        times.append(time.perf_counter() - start)
    stop.set()
    worker.join()
    return 1000 * np.median(times), 1000 * np.percentile(times, 95), windows[0]


def main():
    drive = next(d for d in odometry_data.drives("/tmp/rap_odometry_cache")
                 if "640x480" in d["name"])
    frames, K = drive["frames"][:120], drive["K"]
    print("| run | worker niceness + | codec threads | frame median ms | frame p95 ms | "
          "model windows done |\n|---:|---:|---|---:|---:|---:|")
    for rep in (1, 2):
        for nice, threads in ((0, None), (10, None), (10, 1), (0, 1)):
            median, p95, windows = run(frames, K, nice, threads)
            print(f"| {rep} | {nice} | {threads or 'default'} | {median:.1f} | {p95:.1f} | "
                  f"{windows} |", flush=True)


if __name__ == "__main__":
    main()
