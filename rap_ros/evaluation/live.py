"""`--live`: play an input over real ROS 2 topics into running nodes and score what they publish.

For each input:

1. ``rap-ros up`` starts in a subprocess (trajectory_estimator; view_predictor only when
   asked through ``up_args``), its ``image``/``camera_info`` remapped to the topics played here.
2. Once the node subscribes, the frames are published as ``sensor_msgs/Image`` (rgb8) with
   their recorded stamps, paced at ``rate`` times the recorded speed (plus ``CameraInfo`` when
   the input has intrinsics).
3. ``/tf``, ``path``, ``odometry`` and ``/diagnostics`` are recorded until the node has been
   quiet for ``settle_s`` after the last frame.
4. The odometry poses (``T_odom_child``, stamped with the input image stamps) are the estimate;
   they are scored exactly as offline (``run.score``). Latency = arrival of the odometry
   message for a frame minus the moment that frame was published (wall clock, seconds); drops =
   frames published that never got a pose (the node skips frames by ``frame_interval`` and
   while the model is busy).

Frames: the node's odom frame has its own orientation; the Sim(3) alignment absorbs it, and a
constant camera-to-child rotation does not change RPE. Every process that starts rclpy here
keeps DDS discovery on this machine (``prepare_ros_environment(force_localhost=True)``): an
offline replay is nobody else's business.
"""
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from rap_ros.evaluation import report
from rap_ros.evaluation.inputs import InputOptions, open_input
from rap_ros.evaluation.run import RunOptions, score, unique_names
from rap_ros.io.errors import InputError
from rap_ros.io.messages import pose_to_matrix, stamp_seconds
from rap_ros.nodes.conversions import K_to_camera_info, array_to_image, seconds_to_stamp
from rap_ros.nodes.estimator_settings import METHODS as NODE_METHODS
from rap_ros.nodes.runner import spinner_stopped
from rap_ros.ros_env import prepare_ros_environment

LIVE_IMAGE_TOPIC = "/rap_ros_eval/image"
LIVE_INFO_TOPIC = "/rap_ros_eval/camera_info"
STEADY_AFTER_S = 2.0  # latency "steady": frames stamped this long after the first


@dataclass
class LiveOptions:
    """rate: playback speed relative to the recorded stamps. up_args: extra `rap-ros up`
    arguments (before --ros-args). ready_timeout_s: wait for the node to subscribe.
    settle_s: quiet time after the last frame before stopping. node_params: extra
    ``-p trajectory_estimator:NAME:=VALUE`` parameters; predictor_params: extra
    ``-p view_predictor:NAME:=VALUE`` parameters (when `up` runs the view_predictor)."""

    rate: float = 1.0
    up_args: list = field(default_factory=lambda: ["--no-predictor"])
    ready_timeout_s: float = 120.0
    settle_s: float = 5.0
    max_wait_s: float = 120.0
    node_params: dict = field(default_factory=dict)
    predictor_params: dict = field(default_factory=dict)


class Recorder:
    """Subscriptions to the node's outputs; thread-safe lists of what arrived when. Without
    ``path`` the path is not subscribed: rclpy takes ~21-25 ms per 1,000 poses to deserialise
    one in Python, on the thread that also times the odometry's arrival."""

    def __init__(self, node, path=True):
        self.lock = threading.Lock()
        self.odometry = []     # (stamp s, T 4x4, arrival wall s)
        self.lost = []         # stamps (s) of the node's "tracking lost" messages
        self.tf = 0
        self.paths = 0
        self.last_path = None
        self.diagnostics = {}  # status name -> {key: value}
        self.last_output = None
        node.create_subscription(Odometry, "/odometry", self._on_odometry, 200)
        if path:
            node.create_subscription(Path, "/path", self._on_path, 10)
        node.create_subscription(TFMessage, "/tf", self._on_tf, 200)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def _on_odometry(self, msg):
        now = time.monotonic()
        stamp = stamp_seconds(msg.header.stamp)
        try:
            T = pose_to_matrix(msg.pose.pose)
        except ValueError:  # the null pose of a frame tracked while lost (rtabmap's way)
            T = None
        with self.lock:
            if T is None:
                self.lost.append(stamp)
            else:
                self.odometry.append((stamp, T, now))
            self.last_output = now

    def answered(self):
        """Stamps (rounded to the microsecond) the node answered: a pose or "lost"."""
        with self.lock:
            return {round(s, 6) for s, _, _ in self.odometry} | \
                {round(s, 6) for s in self.lost}

    def status_values(self, name_part):
        """A copy of the latest /diagnostics values of the status whose name holds
        ``name_part`` (e.g. "trajectory"); {} before one arrived."""
        with self.lock:
            return dict(next((values for name, values in self.diagnostics.items()
                              if name_part in name), {}))

    def _on_path(self, msg):
        with self.lock:
            self.paths += 1
            self.last_path = msg

    def _on_tf(self, msg):
        with self.lock:
            self.tf += len(msg.transforms)

    def _on_diagnostics(self, msg):
        with self.lock:
            for status in msg.status:
                self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}


CAMERA_FRAME = "camera_optical_frame"


def image_msg(frame, stamp):
    """sensor_msgs/Image rgb8 of a frame (uint8 RGB (H, W, 3)) stamped ``stamp`` seconds."""
    return array_to_image(frame, "rgb8", seconds_to_stamp(stamp), CAMERA_FRAME)


def camera_info_msg(K, frame, stamp_msg):
    """sensor_msgs/CameraInfo of K (3, 3) for frames like ``frame``, stamped ``stamp_msg``."""
    return K_to_camera_info(K, frame.shape[1], frame.shape[0], stamp_msg, CAMERA_FRAME)


def start_up_process(options, live, log_path):
    command = [sys.executable, "-m", "rap_ros.tools.cli", "up", *live.up_args]
    if options.backend and "--backend" not in live.up_args:
        command += ["--backend", options.backend]
    if options.method not in NODE_METHODS:
        raise InputError(f"--live runs the trajectory_estimator node, whose methods are "
                         f"{', '.join(NODE_METHODS)}; got {options.method!r}")
    # The player's poses are camera poses: the node publishes odom -> camera frame
    # (base_frame empty), so no mount is waited for.
    params = {"method": options.method, "base_frame": "''", "qos_reliability": "reliable",
              "queue_size": 100, **live.node_params}
    if options.method == "model":
        params.setdefault("frame_interval", 0.0)
    command += ["--ros-args", "-r", f"image:={LIVE_IMAGE_TOPIC}",
                "-r", f"camera_info:={LIVE_INFO_TOPIC}"]
    for name, value in params.items():
        command += ["-p", f"trajectory_estimator:{name}:={value}"]
    for name, value in live.predictor_params.items():
        command += ["-p", f"view_predictor:{name}:={value}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # an offline replay stays on this machine
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    process.log_path = log_path
    return command, process


def stop_process(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    try:
        return pathlib.Path(process.log_path).read_text(errors="replace")[-4000:]
    except OSError:
        return ""


@contextlib.contextmanager
def player(process, with_camera_info, ready_timeout_s, record_path=True):
    """A ROS node that plays frames into the started `rap-ros up` ``process`` and records what
    it publishes. Yields (play, recorder) once the node subscribes to the played image topic
    (and camera_info topic, ``with_camera_info``): ``play(frame, stamp, K)`` publishes one
    frame (uint8 RGB, stamped ``stamp`` seconds; with its CameraInfo unless K is None);
    ``recorder`` is the ``Recorder`` of the node's outputs (``record_path``: the path too).
    The node is torn down on exit
    (its spinning thread joined first, ``spinner_stopped``)."""
    prepare_ros_environment(force_localhost=True)
    context = rclpy.Context()
    rclpy.init(args=[], context=context)  # the caller's argv is not ROS arguments
    node = rclpy.create_node("rap_ros_evaluate_live", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    try:
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        image_pub = node.create_publisher(Image, LIVE_IMAGE_TOPIC, qos)
        info_pub = node.create_publisher(CameraInfo, LIVE_INFO_TOPIC, qos)
        recorder = Recorder(node, path=record_path)
        spinner.start()
        deadline = time.monotonic() + ready_timeout_s
        while image_pub.get_subscription_count() == 0 or (
                with_camera_info and info_pub.get_subscription_count() == 0):
            if process.poll() is not None:
                raise RuntimeError(f"`rap-ros up` exited with {process.returncode}: "
                                   f"{stop_process(process)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"`rap-ros up` did not subscribe to {LIVE_IMAGE_TOPIC} "
                                   f"within {ready_timeout_s} s")
            time.sleep(0.1)
        time.sleep(0.5)  # discovery settles both ways before the first frame

        def play(frame, stamp, K=None):
            msg = image_msg(frame, stamp)
            if K is not None:
                info_pub.publish(camera_info_msg(K, frame, msg.header.stamp))
            image_pub.publish(msg)

        yield play, recorder
    finally:
        executor.shutdown(timeout_sec=1.0)
        if spinner_stopped(spinner):
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def evaluate_live_input(path, out_dir, input_options, options, live, name):
    """Play one input into `rap-ros up` and score the published odometry; returns metrics."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"name": name, "input": str(path), "method": f"{options.method} (live)",
              "status": "failed",
              "error": None, "command": options.command, "rate": live.rate}
    process = None
    try:
        source = open_input(path, input_options)
        result.update(kind=source.kind, input_info=source.info)
        if source.groundtruth is None:
            raise InputError(f"{path}: no ground truth")
        frames = list(source.frames())
        if options.max_frames:
            frames = frames[:options.max_frames]
        if not frames:
            raise InputError(f"{path}: no frames")
        command, process = start_up_process(options, live, out_dir / "node.log")
        result["node_command"] = " ".join(command)
        with player(process, source.K is not None, live.ready_timeout_s) as (play, recorder):
            published = {}
            stamp0, start = frames[0][0], time.monotonic()
            for stamp, frame in frames:
                due = start + (stamp - stamp0) / live.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                play(frame, stamp, source.K)
                published[round(stamp, 6)] = time.monotonic()
            play_s = time.monotonic() - start
            end = time.monotonic() + live.max_wait_s
            while time.monotonic() < end:
                with recorder.lock:
                    last = recorder.last_output or start
                done = len(recorder.answered()) >= len(frames)
                if done or time.monotonic() - max(last, start + play_s) > live.settle_s:
                    break
                time.sleep(0.1)
        node_log = stop_process(process)
        process = None
        answered = recorder.answered()
        with recorder.lock:
            odometry = list(recorder.odometry)
            lost = {round(s, 6) for s in recorder.lost}
            result["live"] = {"published_frames": len(frames), "play_seconds": play_s,
                              "tf_transforms": recorder.tf, "path_messages": recorder.paths,
                              "diagnostics": recorder.diagnostics}
        poses, latencies, steady = {}, [], []
        for stamp, T, arrival in odometry:
            key = round(stamp, 6)
            poses[key] = T
            if key in published:
                latencies.append(arrival - published[key])
                if stamp - stamp0 >= STEADY_AFTER_S:
                    steady.append(latencies[-1])
        live_stats = result["live"]
        live_stats["estimated_frames"] = len(poses)
        # a frame tracked while lost is answered with a null pose: lost, not dropped
        live_stats["frames_answered_lost"] = len((lost - set(poses)) & set(published))
        live_stats["dropped_frames"] = len(frames) - len(answered & set(published))
        live_stats["drop_fraction"] = live_stats["dropped_frames"] / len(frames)
        if latencies:
            lat = np.array(latencies)
            live_stats["latencies_ms"] = np.round(1e3 * lat, 1).tolist()  # as they arrived
            live_stats.update(latency_mean_s=float(lat.mean()), latency_median_s=float(np.median(lat)),
                              latency_p95_s=float(np.percentile(lat, 95)), latency_max_s=float(lat.max()))
        if steady:  # without the start (discovery, camera_info wait, initialisation)
            live_stats.update(steady_latency_median_s=float(np.median(steady)),
                              steady_latency_p95_s=float(np.percentile(steady, 95)))
        result["frames"] = len(poses)
        result["fps"] = len(poses) / play_s if play_s > 0 else None
        if not poses:
            raise RuntimeError(f"the node published no odometry for {len(frames)} frames; "
                               f"its log ends: {node_log[-1500:]}")
        stamps = np.array(sorted(poses))
        c2w = np.array([poses[s] for s in stamps])
        report.write_tum(out_dir / "estimate_tum.txt", stamps, c2w)
        score(result, source, stamps, c2w, input_options, out_dir)
        result["status"] = "ok"
    except Exception as error:
        result["error"] = str(error) if isinstance(error, InputError) else \
            f"{type(error).__name__}: {error}"
    finally:
        if process is not None:
            result["node_log_tail"] = stop_process(process)[-1500:]
    plots = result.pop("_plots", [])
    report.write_json(out_dir / "metrics.json", result)
    report.write_report(out_dir, result, plots)
    return result


def evaluate_live(paths, out_dir, input_options=None, options=None, live=None):
    """``evaluate_live_input`` for each input in turn (one node at a time); summary if several."""
    input_options = input_options or InputOptions()
    options = options or RunOptions(method="rap")
    live = live or LiveOptions()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [evaluate_live_input(p, out_dir / n, input_options, options, live, n)
               for p, n in zip(paths, unique_names(paths))]
    if len(paths) > 1:
        report.write_summary(out_dir, results, options.command)
    return results
