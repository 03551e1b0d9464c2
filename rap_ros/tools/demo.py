"""`rap-ros demo`: the whole loop on real ROS 2 topics, on a synthetic drive or a bag.

1. Input: a synthetic drive rendered here and written as a rosbag2 (or the bag given).
2. Trajectory: the bag is played over real topics into `rap-ros up` (trajectory_estimator in
   its own process, exactly as `rap-ros evaluate --live` does); `/tf`, `path`, `odometry` and
   `/diagnostics` are recorded; ATE against the ground truth is printed; trajectory plots.
3. Preview: `rap-ros up` runs the view_predictor; from a frame near the end of the drive, the
   planner-side client sends three candidate paths (the path the camera really took next, and
   the same path turned 20° left and right) and the real frame at the path's end as the goal
   to `preview_paths`, receives three previews (the node's default "warp+model": the source
   warped into each camera, the model where the warp has no data) with their scores, and
   writes a contact sheet: a top view of the candidate paths, the real future frames, each
   preview with its goal distance, closed-loop consistency and PSNR against the real frames.

Everything lands in --out: `trajectory/` (metrics.json, TUM files, plots, report.md),
`preview_contact_sheet.png`, `demo.json`. DDS discovery is forced to localhost.

Imports of rclpy, matplotlib and the rap_ros library are local to the functions that use
them: `rap-ros --help` imports every tool module and takes 0.2 s; these take seconds.
"""
import json
import pathlib
import shutil
import sys
import time

import numpy as np

NAME = "demo"
CANDIDATE_TURNS_DEG = (0.0, 20.0, -20.0)
CANDIDATE_NAMES = ("as driven", "20° left", "20° right")


def register(subparsers):
    parser = subparsers.add_parser(
        NAME, help="run the whole loop on real ROS 2 topics (synthetic drive or a bag)",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--bag", help="a rosbag2 to play instead of a synthetic drive "
                                      "(topics as `rap-ros evaluate` detects them)")
    parser.add_argument("--frames", type=int, default=90, help="synthetic drive length")
    parser.add_argument("--size", type=int, default=128, help="synthetic image size (px)")
    parser.add_argument("--seed", type=int, default=7, help="held-out drive index")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--backend", default=None, help="backend spec (default: shipped ONNX)")
    parser.set_defaults(func=main)


def _input_bag(args, out):
    """The bag to play: the user's, or a synthetic held-out drive written as MCAP."""
    if args.bag:
        return pathlib.Path(args.bag)
    from rap_ros.io.bag import write_bag
    from rap_ros.synth.dataset import held_out_seed, make_drive

    bag = out / "drive_bag"
    shutil.rmtree(bag, ignore_errors=True)
    drive = make_drive(held_out_seed(20_000 + args.seed), frames=args.frames,
                       height=args.size, width=args.size)
    write_bag(bag, drive)
    print(f"demo: rendered a {args.frames}-frame drive ({drive.meta.get('scene')}) -> {bag}")
    return bag


def _trajectory(bag, out, args):
    from rap_ros.evaluation.inputs import InputOptions
    from rap_ros.evaluation.live import LiveOptions, evaluate_live_input
    from rap_ros.evaluation.run import RunOptions

    options = RunOptions(method="rap", backend=args.backend, progress=False,
                         command="rap-ros " + " ".join(sys.argv[1:]))
    return evaluate_live_input(bag, out / "trajectory", InputOptions(), options,
                               LiveOptions(rate=args.rate, up_args=["--no-predictor"]),
                               "drive")


def _candidate_paths(c2w_future, angles_deg=CANDIDATE_TURNS_DEG):
    """Candidate plans: the future camera poses as body-frame poses (x forward, z up), turned
    about the first one's vertical axis by each angle; every plan starts at the current pose
    (the first, unturned: the node takes the plan's first pose as the current camera when it
    has no other pose). c2w_future: (T, 4, 4) optical axes.
    Returns a list of (T, 4, 4) body poses in the input's world frame."""
    from rap_ros.geometry.frames import optical_to_body
    from rap_ros.geometry.rotations import rotation_from_axis_angle

    body = np.stack([optical_to_body(T) for T in c2w_future])
    pivot, up = body[0, :3, 3], body[0, :3, 2]
    paths = []
    for angle in angles_deg:
        R = rotation_from_axis_angle(up, np.radians(angle))
        turned = body.copy()
        turned[:, :3, :3] = R @ body[:, :3, :3]
        turned[:, :3, 3] = pivot + (body[:, :3, 3] - pivot) @ R.T
        turned[0] = body[0]
        paths.append(turned)
    return paths


def _preview(bag, out, args):
    """Ask the running view_predictor for previews of three candidate paths."""
    import cv2
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rap_ros_msgs.srv import PreviewPaths
    from sensor_msgs.msg import CameraInfo, Image

    from rap_ros.evaluation.inputs import InputOptions, open_input
    from rap_ros.evaluation.live import (LIVE_IMAGE_TOPIC, LIVE_INFO_TOPIC, LiveOptions,
                                         camera_info_msg, image_msg, start_up_process,
                                         stop_process)
    from rap_ros.evaluation.run import RunOptions
    from rap_ros.io.messages import image_to_rgb8
    from rap_ros.metrics import psnr
    from rap_ros.nodes.conversions import poses_to_path, seconds_to_stamp
    from rap_ros.pipeline.framing import prepare_frames

    source = open_input(bag, InputOptions())
    frames = list(source.frames())
    stamps = np.array([s for s, _ in frames])
    gt_stamps, gt_c2w = source.groundtruth.stamps, source.groundtruth.c2w
    T = 9  # the shipped model's window; the node resamples any plan to its own count
    start = max(0, len(frames) - T - 1)
    future = np.array([gt_c2w[np.argmin(abs(gt_stamps - s))] for s in stamps[start:start + T]])
    paths = _candidate_paths(future)

    _, process = start_up_process(RunOptions(backend=args.backend),
                                  LiveOptions(up_args=["--no-estimator"],
                                              # the closed loop is opt-in (3x the time)
                                              predictor_params={"consistency": "true"}),
                                  out / "preview_node.log")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("rap_ros_demo_planner", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        image_pub = node.create_publisher(Image, LIVE_IMAGE_TOPIC, 10)
        info_pub = node.create_publisher(CameraInfo, LIVE_INFO_TOPIC, 10)
        client = node.create_client(PreviewPaths, "preview_paths")
        if not client.wait_for_service(timeout_sec=120.0):
            raise RuntimeError(f"preview_paths did not appear: {stop_process(process)}")
        request = PreviewPaths.Request()
        request.paths = [poses_to_path(p, stamps[start:start + T], "map",
                                       header_stamp=seconds_to_stamp(stamps[start]))
                         for p in paths]
        goal_index = min(start + T - 1, len(frames) - 1)
        request.goal_image = image_msg(frames[goal_index][1], stamps[goal_index])
        response = None
        deadline = time.monotonic() + 120.0
        msg = image_msg(frames[start][1], stamps[start])

        def from_this_source(r):  # the node previews from the latest image it has received
            return r is not None and r.success and r.previews and \
                r.previews[0].source_stamp == msg.header.stamp

        while not from_this_source(response):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no preview: {response.message if response else 'timeout'}")
            info_pub.publish(camera_info_msg(source.K, frames[start][1], msg.header.stamp))
            image_pub.publish(msg)
            executor.spin_once(timeout_sec=0.2)
            future_call = client.call_async(request)
            executor.spin_until_future_complete(future_call, timeout_sec=60.0)
            response = future_call.result()
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        stop_process(process)

    previews = [np.stack([image_to_rgb8(f) for f in view.frames]) for view in response.previews]
    real = np.stack([f for _, f in frames[start:start + T]])
    h, w = previews[0].shape[1:3]
    if h == w and real.shape[1] != real.shape[2]:  # model previews: the model's framing
        from rap_ros.backend.shared import get_backend
        from rap_ros.pipeline.framing import framing_of
        framing = framing_of(get_backend(args.backend).config)
        truth, _, _ = prepare_frames(real, None, h, framing)
    else:  # full-frame previews, at their size
        truth = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in real])
    errors = []
    for p in previews:
        n = min(len(p), len(truth))
        errors.append(float(np.mean(psnr(p[1:n] / 255.0, truth[1:n] / 255.0))))
    rows = {"consistency": list(response.consistency), "goal_distance":
            list(response.goal_distance), "psnr_vs_real": errors}
    sheet = out / "preview_contact_sheet.png"
    _contact_sheet(sheet, truth, previews, rows, paths)
    return {"source_frame": int(start), "paths": list(CANDIDATE_NAMES),
            "consistency_psnr_db": [float(c) for c in response.consistency],
            "goal_distance": [float(c) for c in response.goal_distance],
            "goal_ssim": [float(c) for c in response.goal_similarity],
            "psnr_vs_real_db": errors, "contact_sheet": str(sheet)}


def _contact_sheet(path, truth, previews, scores, paths):
    """Left: a top view of the candidate paths; right, rows: the real future frames, then
    each preview with its scores; columns: frames along the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("real frames (the path as driven)", truth)] + [
        (f"preview {name}: goal distance {goal:.3f} (lower: closer to the real last frame), "
         f"consistency {score:.1f} dB, PSNR vs real {error:.1f} dB", p)
        for name, p, score, goal, error in zip(
            CANDIDATE_NAMES, previews, scores["consistency"],
            scores["goal_distance"] or [float("nan")] * len(previews),
            scores["psnr_vs_real"])]
    cols = max(len(r[1]) for r in rows)
    aspect = truth.shape[2] / truth.shape[1]
    side = 3
    # constrained layout; the row titles span several image columns, so they are left out
    # of the layout (as titles they widened their column, and tight_layout gave up)
    fig = plt.figure(figsize=(1.3 * aspect * cols + 3.2, 1.55 * len(rows)),
                     layout="constrained")
    grid = fig.add_gridspec(len(rows), cols + side)
    top = fig.add_subplot(grid[:, :side])
    colours = ("black", "tab:blue", "tab:red")
    for name, p, colour in zip(CANDIDATE_NAMES, paths, colours):
        top.plot(p[:, 0, 3], p[:, 1, 3], "-o", ms=2, color=colour, label=name)
        heading = p[-1, :3, 0]  # body x: forward
        top.arrow(p[-1, 0, 3], p[-1, 1, 3], 0.3 * heading[0], 0.3 * heading[1],
                  color=colour, head_width=0.08)
    top.plot(paths[0][0, 0, 3], paths[0][0, 1, 3], "k*", ms=10, label="source camera")
    top.set_aspect("equal", adjustable="datalim")
    top.set_xlabel("x (m, world)")
    top.set_ylabel("y (m, world)")
    top.set_title("candidate paths, top view", fontsize=9)
    top.legend(fontsize=7)
    for r, (label, images) in enumerate(rows):
        for c in range(cols):
            ax = fig.add_subplot(grid[r, side + c])
            ax.axis("off")
            if c < len(images):
                ax.imshow(images[c])
            if r == 0:
                ax.text(0.5, 1.02, f"t{c}" + (" (source)" if c == 0 else ""),
                        transform=ax.transAxes, ha="center", va="bottom", fontsize=6)
        title = fig.axes[-cols].text(0.0, 1.12, label, transform=fig.axes[-cols].transAxes,
                                     fontsize=7, ha="left", va="bottom")
        title.set_in_layout(False)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args) -> int:
    from rap_ros.ros_env import prepare_ros_environment

    prepare_ros_environment(force_localhost=True)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bag = _input_bag(args, out)
    result = _trajectory(bag, out, args)
    if result["status"] != "ok":
        print(f"demo: trajectory failed: {result['error']}", file=sys.stderr)
        return 1
    live = result.get("live", {})
    print(f"demo: trajectory_estimator on real topics: {result['frames']} poses, "
          f"{live.get('tf_transforms', 0)} /tf transforms, {live.get('path_messages', 0)} paths, "
          f"latency median {live.get('latency_median_s', float('nan')):.3f} s, "
          f"{live.get('dropped_frames', 0)} dropped")
    print(f"demo: ATE (Sim3) {result['ate_rmse']:.3f} m = {result['ate_rmse_pct']:.2f} % of "
          f"{result['path_length']:.2f} m; RPE rot {result['rpe_rot_deg_rmse']:.2f} deg")
    preview = _preview(bag, out, args)
    print("demo: view_predictor previews, closed-loop consistency (dB): " + ", ".join(
        f"{n} {c:.1f}" for n, c in zip(preview["paths"], preview["consistency_psnr_db"])))
    print("demo: goal distance to the real last frame (lower is closer): " + ", ".join(
        f"{n} {c:.3f}" for n, c in zip(preview["paths"], preview["goal_distance"])))
    summary = {"trajectory": {k: result.get(k) for k in (
        "frames", "path_length", "ate_rmse", "ate_rmse_pct", "rpe_rot_deg_rmse", "fps")},
        "live": live, "preview": preview}
    (out / "demo.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"demo: wrote {out}/trajectory (plots, metrics, report.md), "
          f"{preview['contact_sheet']}, {out}/demo.json")
    return 0
