"""The trajectory_estimator node over a long live run: is its memory flat, does it keep up?

Issue 11 asks for memory flat over 10,000 frames; eval_odometry.py's memory section shows it
for the odometry core in one process. This runs the node itself, as a robot would: `rap-ros
up --no-predictor` in its own process (the player of `rap-ros evaluate --live`), fed 640x480
frames over real topics at camera rate. A rendered street drive of ``--clip-frames`` frames is
played back and forth (frame 0 .. N-1, N-2 .. 1, 0 ..: the camera reverses, stamps keep
rising) until ``--frames`` frames were sent, so no recording of 10,000 frames is needed.

Every ``--every`` frames it records the node's resident set (VmRSS of its process, read from
/proc), the odometry messages received so far and the latency of the frames in the block
(publish to odometry arrival, same clock); at the end the node's /diagnostics. Latency here
is a health check, not the target (bench_node.py measures that on a quiet machine). The
player does not subscribe to the node's path: in Python a path of 10,000 poses takes about
0.24 s to deserialise, which would hold up the odometry callbacks that time the arrival.

    python benchmarks/soak_node.py                      # rap, 10,000 frames (about 6 min)
    python benchmarks/soak_node.py --frames 600 --every 100 --methods geometry   # a short check
    python benchmarks/soak_node.py --methods geometry --node-param qos_reliability:=best_effort
"""
import argparse
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

from rap_ros.evaluation.live import LiveOptions, player, start_up_process, stop_process
from rap_ros.evaluation.report import write_benchmark
from rap_ros.evaluation.run import RunOptions
from rap_ros.synth.dataset import held_out_seed, make_drive

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
MAP_KEYS = ("landmarks", "keyframes", "records", "kf_poses")  # the node's "map ..." diagnostics


def ping_pong(n, total):
    """Indices 0 .. n-1, n-2 .. 1, 0 .. of a clip of n frames, ``total`` of them."""
    period = np.r_[np.arange(n), np.arange(n - 2, 0, -1)]
    return np.resize(period, total)


def resident_mb(pid):
    """VmRSS of process ``pid`` in MB (NaN when it is gone)."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def soak(method, clip, total, every, fps, log_path, node_params=None):
    """One live run of ``total`` frames; returns its row (blocks of ``every`` frames)."""
    live = LiveOptions(node_params=dict(node_params or {}))
    _, process = start_up_process(RunOptions(method=method), live, log_path)
    blocks, published = [], {}
    try:
        # the path unrecorded: a long one takes this process 0.24 s to deserialise
        with player(process, True, live.ready_timeout_s, record_path=False) as (play, recorder):
            start = time.monotonic()
            for i, k in enumerate(ping_pong(len(clip.frames), total)):
                delay = start + i / fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                stamp = 1.0 + i / fps
                play(clip.frames[k], stamp, clip.K)
                published[round(stamp, 6)] = time.monotonic()
                if (i + 1) % every == 0:
                    blocks.append(block_row(i + 1, every, fps, process.pid, recorder,
                                            published))
            time.sleep(live.settle_s)
            blocks.append(block_row(total, every, fps, process.pid, recorder, published))
            diagnostics = recorder.status_values("trajectory")
    finally:
        stop_process(process)
    last = blocks[-1]
    return {"method": method, "frames": total, "received": last["odometry"],
            "lost": last["lost"], "dropped": total - last["odometry"], "blocks": blocks,
            "diagnostics": diagnostics}


def block_row(sent, every, fps, pid, recorder, published):
    """The state after ``sent`` frames: node RSS, odometry so far, latency of the last block's
    frames that have a pose (ms)."""
    first = 1.0 + (sent - every) / fps
    answered = recorder.answered()
    diag = recorder.status_values("trajectory")
    with recorder.lock:
        arrivals = {round(s, 6): t for s, _, t in recorder.odometry}
        lost = len({round(s, 6) for s in recorder.lost})
    lat = [1e3 * (arrivals[s] - t) for s, t in published.items() if s >= first - 1e-9
           and s in arrivals]
    return {"sent": sent, "rss_mb": resident_mb(pid), "odometry": len(answered), "lost": lost,
            "block_p95_ms": float(np.percentile(lat, 95)) if lat else float("nan"),
            "block_median_ms": float(np.median(lat)) if lat else float("nan"),
            **{key: diag.get(f"map {key}", "") for key in MAP_KEYS}}


def markdown(report):
    lines = [f"# The trajectory_estimator node over {report['frames']} live frames\n",
             f"Command: `{report['command']}` (2-core CPU, shared). A {report['clip_frames']}-"
             f"frame street drive at {report['size']} played back and forth at "
             f"{report['fps']:g} Hz into `rap-ros up --no-predictor` over real topics; "
             "RSS: the node process's VmRSS; latency: publish to odometry arrival of the "
             "block's frames (a health check here: bench_node.py measures the target). "
             f"Fast DDS profile (FASTRTPS_DEFAULT_PROFILES_FILE): "
             f"{report.get('dds_profile', 'default')}.\n"]
    for row in report["rows"]:
        d = row["diagnostics"]
        rss = [b["rss_mb"] for b in row["blocks"]]
        lines += [f"## {row['method']}\n",
                  f"Frames sent {row['frames']}, odometry received for {row['received']} "
                  f"(of them {row['lost']} null poses: tracking lost; dropped "
                  f"{row['dropped']}); node RSS {rss[0]:.1f} MB after the first "
                  f"block, {rss[-1]:.1f} MB at the end, at most {np.nanmax(rss):.1f} MB.\n",
                  "| frames sent | node RSS MB | odometry received | lost | block p95 ms | "
                  "block median ms | " + " | ".join(f"map {k}" for k in MAP_KEYS) + " |",
                  "|---:|---:|---:|---:|---:|---:|" + "---:|" * len(MAP_KEYS)]
        for b in row["blocks"]:
            lines.append(f"| {b['sent']} | {b['rss_mb']:.1f} | {b['odometry']} | {b['lost']} | "
                         f"{b['block_p95_ms']:.1f} | {b['block_median_ms']:.1f} | "
                         + " | ".join(str(b.get(k, "")) for k in MAP_KEYS) + " |")
        keys = ("frames lost", "dropped (tracker busy)", "resident memory (MB)",
                "tracking latency (s)")
        lines.append("\nThe node's /diagnostics at the end: " + "; ".join(
            f"{k}: {d[k]}" for k in keys if k in d) + ".\n")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--every", type=int, default=1000, help="frames per report block")
    parser.add_argument("--clip-frames", type=int, default=300)
    parser.add_argument("--size", default="640x480", help="WxH")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["rap"])
    parser.add_argument("--out", default=str(RESULTS / "node_soak"))
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a trajectory_estimator parameter for every run (repeatable), "
                             "e.g. qos_reliability:=best_effort (the player's is reliable)")
    args = parser.parse_args(argv)
    node_params = dict(p.split(":=", 1) for p in args.node_param)
    w, h = map(int, args.size.split("x"))
    clip = make_drive(held_out_seed(args.seed), args.clip_frames, h, w, args.fps,
                      scene="street")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for method in args.methods:
            rows.append(soak(method, clip, args.frames, args.every, args.fps,
                             pathlib.Path(work, f"{method}.log"), node_params))
            print(f"{method}: {rows[-1]['received']} of {args.frames} posed", flush=True)
    report = {"command": "python benchmarks/soak_node.py " + " ".join(argv or sys.argv[1:]),
              "frames": args.frames, "clip_frames": args.clip_frames, "size": args.size,
              "fps": args.fps, "rows": rows,
              "dds_profile": os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE") or "default"}
    write_benchmark(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
