"""`rap-ros evaluate` end to end: bags (MCAP and sqlite3; Image and CompressedImage; PoseStamped,
Odometry and TF ground truth), sequence and TUM folders, every method (rap, geometry, model,
opencv-vo) through make_estimator, tracking-loss gaps in the report, and the bad inputs."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from rap_ros.evaluation.inputs import InputOptions, open_input
from rap_ros.io.errors import InputError
from rap_ros.io.intrinsics import load_intrinsics
from rap_ros.io.stamped import associate
from rap_ros.io.tum import tum_rows
from rap_ros.geometry import invert_pose, pose_from_rt, quat_from_matrix
from rap_ros.tools.cli import main as cli_main

WIDTH, HEIGHT, FRAMES = 128, 96, 30
# Optical frame in a body frame (x forward, y left, z up): its columns are the optical axes.
BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
REQUIRED_KEYS = ("frames", "path_length", "ate_rmse", "ate_rmse_pct", "ate_se3_rmse",
                 "rpe_trans_rmse", "rpe_rot_deg_rmse", "fps", "method", "input")


@pytest.fixture(scope="module")
def clip():
    """A rendered forward drive: frames uint8 (T,H,W,3), K, c2w (T,4,4), stamps (T,)."""
    from rap_ros.synth.render import render
    from rap_ros.synth.scenes import make_scene
    from rap_ros.synth.trajectories import make_trajectory, sample_intrinsics

    rng = np.random.default_rng(3)
    traj = make_trajectory("forward", rng, FRAMES, 10.0)
    K = sample_intrinsics(rng, WIDTH, HEIGHT)
    frames = render(make_scene("room", rng, traj), K, traj.c2w, HEIGHT, WIDTH)
    return {"frames": frames, "K": K, "c2w": traj.c2w, "stamps": traj.stamps + 1000.0}


# ------------------------------------------------------------------ bag writing (rosbags)


def _ros():
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    return ts, ts.types


def _header(types, stamp, frame_id):
    sec = int(np.floor(stamp))
    return types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((stamp - sec) * 1e9))),
        frame_id=frame_id)


def _pose(types, T):
    q = quat_from_matrix(T[:3, :3])
    return types["geometry_msgs/msg/Pose"](
        position=types["geometry_msgs/msg/Point"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
        orientation=types["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))


def _transform(types, stamp, parent, child, T):
    q = quat_from_matrix(T[:3, :3])
    return types["geometry_msgs/msg/TransformStamped"](
        header=_header(types, stamp, parent), child_frame_id=child,
        transform=types["geometry_msgs/msg/Transform"](
            translation=types["geometry_msgs/msg/Vector3"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
            rotation=types["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])))


def write_bag(path, clip, gt="pose", storage="mcap", compressed=False, camera_info=True,
              gt_offset=0.0):
    """A rosbag2 recording of the clip with rosbags' writer; ground truth as asked."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts, types = _ros()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        image_conn = writer.add_connection("/camera/image_raw", image_type, typestore=ts)
        info_conn = writer.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo",
                                          typestore=ts) if camera_info else None
        if gt == "pose":
            gt_conn = writer.add_connection("/ground_truth/pose", "geometry_msgs/msg/PoseStamped",
                                            typestore=ts)
        elif gt == "odom":
            gt_conn = writer.add_connection("/odom_gt", "nav_msgs/msg/Odometry", typestore=ts)
        elif gt == "tf":
            gt_conn = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=ts)
            static_conn = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage",
                                                typestore=ts)
        base_from_optical = pose_from_rt(BODY_FROM_OPTICAL, [0.2, 0.0, 0.1])
        if gt == "tf":
            msg = types["tf2_msgs/msg/TFMessage"](transforms=[_transform(
                types, clip["stamps"][0], "base_link", "camera_optical", base_from_optical)])
            writer.write(static_conn, int(clip["stamps"][0] * 1e9),
                         ts.serialize_cdr(msg, "tf2_msgs/msg/TFMessage"))
        for stamp, frame, T in zip(clip["stamps"], clip["frames"], clip["c2w"]):
            ns = int(round(stamp * 1e9))
            header = _header(types, stamp, "camera_optical")
            if compressed:
                ok, data = cv2.imencode(".png", frame[..., ::-1])
                msg = types[image_type](header=header, format="png", data=data.ravel())
            else:
                msg = types[image_type](header=header, height=HEIGHT, width=WIDTH,
                                        encoding="rgb8", is_bigendian=0, step=WIDTH * 3,
                                        data=np.ascontiguousarray(frame).ravel())
            writer.write(image_conn, ns, ts.serialize_cdr(msg, image_type))
            if info_conn is not None:
                K = clip["K"]
                info = types["sensor_msgs/msg/CameraInfo"](
                    header=header, height=HEIGHT, width=WIDTH, distortion_model="plumb_bob",
                    d=np.zeros(5), k=K.ravel(), r=np.eye(3).ravel(),
                    p=np.hstack([K, np.zeros((3, 1))]).ravel(), binning_x=0, binning_y=0,
                    roi=types["sensor_msgs/msg/RegionOfInterest"](
                        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
                writer.write(info_conn, ns, ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            gt_stamp = stamp + gt_offset
            gt_ns = int(round(gt_stamp * 1e9))
            if gt == "pose":
                msg = types["geometry_msgs/msg/PoseStamped"](header=_header(types, gt_stamp, "map"),
                                                             pose=_pose(types, T))
                writer.write(gt_conn, gt_ns, ts.serialize_cdr(msg, "geometry_msgs/msg/PoseStamped"))
            elif gt == "odom":
                cov = types["geometry_msgs/msg/PoseWithCovariance"](pose=_pose(types, T),
                                                                    covariance=np.zeros(36))
                twist = types["geometry_msgs/msg/TwistWithCovariance"](
                    twist=types["geometry_msgs/msg/Twist"](
                        linear=types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                        angular=types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)),
                    covariance=np.zeros(36))
                msg = types["nav_msgs/msg/Odometry"](header=_header(types, gt_stamp, "odom"),
                                                     child_frame_id="camera_optical",
                                                     pose=cov, twist=twist)
                writer.write(gt_conn, gt_ns, ts.serialize_cdr(msg, "nav_msgs/msg/Odometry"))
            elif gt == "tf":
                odom_from_base = T @ invert_pose(base_from_optical)
                msg = types["tf2_msgs/msg/TFMessage"](transforms=[
                    _transform(types, gt_stamp, "odom", "base_link", odom_from_base)])
                writer.write(gt_conn, gt_ns, ts.serialize_cdr(msg, "tf2_msgs/msg/TFMessage"))
    return path


def evaluate(*argv):
    """Run `rap-ros evaluate` in-process; returns the exit code."""
    return cli_main(["evaluate", "--no-progress", *map(str, argv)])


def metrics_of(out, name):
    return json.loads((out / name / "metrics.json").read_text())


# ------------------------------------------------------------------ units


def test_associate_is_one_to_one_closest_first():
    a = np.array([0.0, 0.1, 0.2, 0.3])
    b = np.array([0.011, 0.099, 0.105, 0.5])
    ia, ib = associate(a, b, max_diff=0.02)
    assert ia.tolist() == [0, 1] and ib.tolist() == [0, 1]
    ia, ib = associate(a, b, max_diff=0.001)
    assert ia.tolist() == [1] and ib.tolist() == [1]


def test_load_intrinsics_layouts(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"intrinsics": {"fx": 5, "fy": 6, "cx": 1, "cy": 2}}))
    (tmp_path / "b.yaml").write_text("camera_matrix:\n  rows: 3\n  cols: 3\n"
                                     "  data: [5, 0, 1, 0, 6, 2, 0, 0, 1]\n")
    expected = np.array([[5, 0, 1], [0, 6, 2], [0, 0, 1.0]])
    assert np.allclose(load_intrinsics(tmp_path / "a.json"), expected)
    assert np.allclose(load_intrinsics(tmp_path / "b.yaml"), expected)
    (tmp_path / "c.yaml").write_text("width: 3\n")
    with pytest.raises(InputError, match="neither fx"):
        load_intrinsics(tmp_path / "c.yaml")


# ------------------------------------------------------------------ bags


def test_mcap_bag_posestamped_opencv_vo(tmp_path, clip):
    bag = write_bag(tmp_path / "drive", clip)
    out = tmp_path / "out"
    assert evaluate(bag, "--out", out, "--method", "opencv-vo") == 0
    result = metrics_of(out, "drive")
    for key in REQUIRED_KEYS:
        assert result[key] is not None, key
    assert result["status"] == "ok" and result["frames"] == FRAMES
    assert result["method"] == "opencv-vo"
    assert result["ate_rmse_pct"] < 15.0
    for name in ("estimate_tum.txt", "groundtruth_tum.txt", "trajectory_top.png",
                 "trajectory_xyz.png", "errors.png", "report.md"):
        assert (out / "drive" / name).is_file(), name
    gt = np.loadtxt(out / "drive" / "groundtruth_tum.txt")
    assert np.allclose(gt[:, 0], clip["stamps"], atol=1e-6)
    assert np.allclose(gt[:, 1:4], clip["c2w"][:, :3, 3], atol=1e-6)
    assert "Sim(3)" in (out / "drive" / "report.md").read_text()


def test_sqlite_compressed_odometry_and_tf_bags(tmp_path, clip):
    odom = write_bag(tmp_path / "odom_bag", clip, gt="odom", storage="sqlite3", compressed=True,
                     gt_offset=0.004)
    tf = write_bag(tmp_path / "tf_bag", clip, gt="tf", camera_info=False)
    source = open_input(odom)
    assert source.info["image_topic"].endswith("(sensor_msgs/msg/CompressedImage)")
    assert "nav_msgs/msg/Odometry" in source.info["groundtruth_source"]
    first = next(iter(source.frames()))[1]
    assert np.array_equal(first, clip["frames"][0])  # PNG is lossless
    tf_source = open_input(tf, InputOptions(gt_frames=("odom", "camera_optical")))
    assert np.allclose(tf_source.groundtruth.c2w, clip["c2w"], atol=1e-6)
    assert tf_source.K is None  # no camera info in this bag

    out = tmp_path / "out"
    K = clip["K"]
    code = evaluate(odom, tf, "--out", out, "--method", "opencv-vo", "--gt-frames", "odom",
                    "camera_optical", "--fx", K[0, 0], "--fy", K[1, 1], "--cx", K[0, 2],
                    "--cy", K[1, 2], "--workers", "2")
    # The Odometry bag has no TF: with --gt-frames it fails, clearly; the TF bag works.
    assert code == 1
    assert "no tf2_msgs/msg/TFMessage topic" in metrics_of(out, "odom_bag")["error"]
    assert metrics_of(out, "tf_bag")["status"] == "ok"
    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary["results"]] == ["odom_bag", "tf_bag"]
    assert "| tf_bag | opencv-vo | ok |" in (out / "summary.md").read_text()
    # Without --gt-frames the Odometry topic is found by its type.
    assert evaluate(odom, "--out", tmp_path / "out2", "--method", "opencv-vo") == 0
    assert metrics_of(tmp_path / "out2", "odom_bag")["associated_frames"] == FRAMES


def test_tf_ground_truth_needs_frames(tmp_path, clip):
    bag = write_bag(tmp_path / "tf_bag", clip, gt="tf")
    with pytest.raises(InputError, match="--gt-frames"):
        open_input(bag)
    with pytest.raises(InputError, match="odom -> base_link"):
        open_input(bag, InputOptions(gt_topic="/tf"))
    with pytest.raises(InputError, match="frame 'map' not in TF"):
        open_input(bag, InputOptions(gt_frames=("map", "camera_optical")))
    # The chain walked backwards gives the inverse poses.
    inverse = open_input(bag, InputOptions(gt_frames=("camera_optical", "odom"))).groundtruth
    assert np.allclose(inverse.c2w, invert_pose(clip["c2w"]), atol=1e-6)


# ------------------------------------------------------------------ folders


def test_sequence_folder_and_tum_folder(tmp_path, clip):
    pytest.importorskip("rap_ros.io.sequence")
    seq = tmp_path / "seq"
    (seq / "images").mkdir(parents=True)
    frames = []
    for i, (stamp, image, T) in enumerate(zip(clip["stamps"], clip["frames"], clip["c2w"])):
        cv2.imwrite(str(seq / "images" / f"{i:06d}.png"), image[..., ::-1])
        frames.append({"file": f"images/{i:06d}.png", "timestamp": float(stamp),
                       "c2w": T.tolist()})
    K = clip["K"]
    (seq / "cameras.json").write_text(json.dumps({
        "name": "seq", "width": WIDTH, "height": HEIGHT, "timestamp_meaning": "seconds",
        "intrinsics": {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]},
        "frames": frames}))
    tum = tmp_path / "tum"
    (tum / "rgb").mkdir(parents=True)
    lines = []
    for i, (stamp, image) in enumerate(zip(clip["stamps"], clip["frames"])):
        cv2.imwrite(str(tum / "rgb" / f"{stamp:.6f}.png"), image[..., ::-1])
        lines.append(f"{stamp:.6f} rgb/{stamp:.6f}.png")
    (tum / "rgb.txt").write_text("# color images\n" + "\n".join(lines) + "\n")
    np.savetxt(tum / "groundtruth.txt", tum_rows(clip["stamps"] + 0.003, clip["c2w"]),
               fmt="%.9f", header="timestamp tx ty tz qx qy qz qw")
    (tum / "camera.yaml").write_text(f"fx: {K[0, 0]}\nfy: {K[1, 1]}\ncx: {K[0, 2]}\ncy: {K[1, 2]}\n")
    out = tmp_path / "out"
    assert evaluate(seq, tum, "--out", out, "--method", "opencv-vo", "--max-frames", 20) == 0
    for name in ("seq", "tum"):
        result = metrics_of(out, name)
        assert result["status"] == "ok" and result["frames"] == 20
        assert result["ate_rmse_pct"] < 15.0
    # The same estimator on the same images gives the same numbers from both folders.
    assert metrics_of(out, "seq")["ate_rmse"] == pytest.approx(metrics_of(out, "tum")["ate_rmse"],
                                                               rel=1e-6)


# ------------------------------------------------------------------ bad inputs


def test_bad_inputs_fail_clearly(tmp_path, clip, capsys):
    bag = write_bag(tmp_path / "drive", clip)
    out = tmp_path / "out"
    # Missing topic: the error lists the bag's topics.
    assert evaluate(bag, "--out", out, "--method", "opencv-vo", "--image-topic", "/nope") == 1
    error = metrics_of(out, "drive")["error"]
    assert "/nope" in error and "/camera/image_raw [sensor_msgs/msg/Image, 30 msgs]" in error
    # A topic of the wrong type.
    assert evaluate(bag, "--out", out, "--gt-topic", "/camera/camera_info") == 1
    assert "not a ground-truth pose type" in metrics_of(out, "drive")["error"]
    # No overlapping stamps: the estimate is still written.
    shifted = tmp_path / "shifted.txt"
    np.savetxt(shifted, tum_rows(clip["stamps"] + 50.0, clip["c2w"]), fmt="%.9f")
    assert evaluate(bag, "--out", out, "--method", "opencv-vo", "--gt-tum", shifted) == 1
    result = metrics_of(out, "drive")
    assert "no overlapping timestamps" in result["error"] and result["frames"] == FRAMES
    assert len(np.loadtxt(out / "drive" / "estimate_tum.txt")) == FRAMES
    # Not a bag at all.
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not a bag" * 100)
    assert evaluate(junk, "--out", out) == 1
    assert "cannot open bag" in metrics_of(out, "junk")["error"]
    # Unrecognised folder.
    (tmp_path / "empty").mkdir()
    assert evaluate(tmp_path / "empty", "--out", out) == 1
    assert "not a recognised input folder" in metrics_of(out, "empty")["error"]
    # Bad flags.
    assert evaluate(bag, "--out", out, "--fx", "100") == 2
    assert "all four" in capsys.readouterr().err


def test_truncated_bag_writes_partial_results(tmp_path, clip):
    bag = write_bag(tmp_path / "drive", clip)
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[:int(len(data) * 0.7)])
    out = tmp_path / "out"
    assert evaluate(cut, "--out", out, "--method", "opencv-vo") == 1
    result = metrics_of(out, "cut")
    assert result["status"] == "partial"
    assert "truncated or corrupt" in result["error"]
    assert 5 < result["frames"] < FRAMES
    assert result["ate_rmse"] is not None
    assert len(np.loadtxt(out / "cut" / "estimate_tum.txt")) == result["frames"]


def test_ray_flag_without_ray(tmp_path, clip, capsys):
    try:
        import ray  # noqa: F401
        pytest.skip("ray is installed here")
    except ImportError:
        pass
    bag = write_bag(tmp_path / "drive", clip)
    assert evaluate(bag, "--out", tmp_path / "out", "--ray") == 2
    assert "--ray needs the `ray` package" in capsys.readouterr().err


# ------------------------------------------------------------------ methods and tracking


def test_cli_method_choices_are_the_estimators():
    from rap_ros.evaluation.estimators import METHODS
    from rap_ros.tools.evaluate import METHODS as CLI_METHODS

    assert CLI_METHODS == METHODS == ("rap", "geometry", "model", "opencv-vo")


def test_loss_gaps_and_tracking_summary():
    from rap_ros.evaluation.estimators import FrameLog, loss_gaps, tracking_summary

    health = ["initialising", "ok", "lost", "lost", "ok", "degraded", "lost"]
    assert loss_gaps(health) == [[2, 3], [6, 6]]
    assert loss_gaps(["ok", "ok"]) == [] and loss_gaps([]) == []
    log = [FrameLog(i, 10.0 + i, h, i == 4, "pnp", False, 40, 100, 0.0, 1.0)
           for i, h in enumerate(health)]
    summary = tracking_summary(log)
    assert summary["frames_tracked"] == 3 and summary["lost_frame_count"] == 3
    assert summary["lost_stamps"] == [[12.0, 13.0], [16.0, 16.0]]
    assert summary["recoveries"] == [4] and summary["ended_lost"]


@pytest.mark.parametrize("method", ["rap", "geometry", "model", "opencv-vo"])
def test_every_method_gives_one_pose_per_frame(method, clip, model_spec):
    """Every --method through make_estimator on the same frames: one pose per frame; rap,
    geometry and opencv-vo give each frame its pose as it comes."""
    from rap_ros.evaluation.estimators import make_estimator
    from rap_ros.evaluation.run import RunOptions

    frames = clip["frames"][:20]
    estimator = make_estimator(method, clip["K"], RunOptions(method=method, backend=model_spec,
                                                             consistency_windows=0))
    per_push = [len(estimator.push(f, s)) for f, s in zip(frames, clip["stamps"])]
    poses = estimator.finish()
    assert len(poses) == len(frames) and np.isfinite(poses.c2w).all()
    assert np.allclose(poses.stamps, clip["stamps"][:len(frames)])
    assert np.allclose(poses.c2w[0], np.eye(4), atol=1e-4)  # the first camera is the world
    if method == "model":
        assert sum(per_push) <= len(frames)  # windows, then the tail at finish
    else:
        assert per_push == [1] * len(frames)
    if method in ("rap", "geometry"):
        assert estimator.details()["method"] == method
        assert poses.covariance.shape == (len(frames), 6, 6)
        assert all(np.any(c) for c in poses.covariance)  # never all zeros
        assert len(estimator.frame_log) == len(frames)


def test_geometry_without_intrinsics_guesses_them(clip):
    from rap_ros.evaluation.estimators import make_estimator
    from rap_ros.evaluation.run import RunOptions

    estimator = make_estimator("geometry", None, RunOptions(method="geometry"))
    for f, s in zip(clip["frames"][:12], clip["stamps"]):
        estimator.push(f, s)
    assert len(estimator.finish()) == 12
    assert estimator.details()["intrinsics"] == (
        "self-calibrated, started from a 60 degree horizontal field of view")


def test_tracking_loss_gap_is_marked(tmp_path, clip):
    """Frames blacked out in the middle (a covered lens): the evaluator reports the gap of
    lost frames and the recovery after it, per frame and in the report."""
    dark = dict(clip, frames=clip["frames"].copy())
    dark["frames"][10:16] = 0
    bag = write_bag(tmp_path / "dark", dark)
    out = tmp_path / "out"
    assert evaluate(bag, "--out", out, "--method", "geometry") == 0
    result = metrics_of(out, "dark")
    assert result["status"] == "ok" and result["frames"] == FRAMES
    gaps = result["lost_frames"]
    assert len(gaps) >= 1
    first, last = gaps[0]
    assert 10 <= first <= last < FRAMES
    assert result["lost_frame_count"] == sum(b - a + 1 for a, b in gaps)
    assert result["health"]["lost"] == result["lost_frame_count"]
    assert result["recoveries"] and result["recoveries"][0] == last + 1
    assert result["frames_tracked"] <= FRAMES - result["lost_frame_count"]
    assert result["lost_stamps"][0][0] == pytest.approx(clip["stamps"][first])
    rows = (out / "dark" / "tracking.csv").read_text().splitlines()[1:]
    assert sum(",lost," in r for r in rows) == result["lost_frame_count"]
    text = (out / "dark" / "report.md").read_text()
    assert f"**lost** frames {first} to {last}" in text
    assert f"recovered at frame {last + 1}" in text
    assert len(np.loadtxt(out / "dark" / "estimate_tum.txt")) == FRAMES  # no hole in the path


# ------------------------------------------------------------------ the model


@pytest.fixture(scope="module")
def model_spec(tmp_path_factory):
    """The shipped default model when present; else a random tiny model exported to ONNX."""
    pytest.importorskip("onnxruntime")
    from rap_ros.backend import ModelFileError, get_backend

    try:
        get_backend("onnx")
        return "onnx"
    except (ModelFileError, FileNotFoundError):
        pass
    pytest.importorskip("torch")
    from rap_ros.contract.config import rap_tiny
    from rap_ros.backend.export import export_modules, random_modules

    config = rap_tiny()
    codec, dit = random_modules(config, seed=2)
    model_dir = tmp_path_factory.mktemp("eval_model")
    export_modules(config, codec, dit, model_dir, verify=False)
    return f"onnx:{model_dir}"


def test_model_method_on_a_bag(tmp_path, clip, model_spec):
    bag = write_bag(tmp_path / "drive", clip)
    out = tmp_path / "out"
    assert evaluate(bag, "--out", out, "--method", "model", "--backend", model_spec,
                    "--consistency-windows", "1") == 0
    result = metrics_of(out, "drive")
    assert result["status"] == "ok", result.get("error")
    assert result["method"] == "model" and result["frames"] == FRAMES  # tail window included
    assert "lost_frames" not in result and not (out / "drive" / "tracking.csv").exists()
    assert result["estimator"]["windows"] >= 2
    assert np.isfinite(result["ate_rmse"]) and result["consistency_psnr"] is not None
    est = np.loadtxt(out / "drive" / "estimate_tum.txt")
    assert len(est) == FRAMES and np.allclose(est[0, 1:], [0, 0, 0, 0, 0, 0, 1], atol=1e-6)


def test_default_method_is_rap_odometry_with_the_model(tmp_path, clip, model_spec):
    """No --method: rap, the odometry core with the model as its prior; per-frame health."""
    from rap_ros.evaluation.run import RunOptions

    assert RunOptions().method == "rap"
    bag = write_bag(tmp_path / "drive", clip)
    out = tmp_path / "out"
    assert evaluate(bag, "--out", out, "--backend", model_spec) == 0
    result = metrics_of(out, "drive")
    assert result["status"] == "ok", result.get("error")
    assert result["method"] == "rap" and result["frames"] == FRAMES
    assert result["ate_rmse_pct"] < 15.0
    details = result["estimator"]
    assert details["method"] == "rap" and details["intrinsics"] == "given"
    assert details["keyframes"] >= 2 and details["ba_runs"] >= 1
    assert details["map"]["landmarks"] > 0 and "model_windows" in details
    assert result["lost_frames"] == [] and result["frames_tracked"] >= FRAMES - 3
    assert sum(result["health"].values()) == FRAMES
    log = (out / "drive" / "tracking.csv").read_text().splitlines()
    assert log[0].startswith("index,stamp,health") and len(log) == FRAMES + 1
    assert "tracking-loss gaps: none" in (out / "drive" / "report.md").read_text()


def test_synth_bag_end_to_end(tmp_path, model_spec):
    """A bag written by `rap-ros synth --bag` (40 frames, 64x64), evaluated with both methods
    through the real command line in a subprocess."""
    pytest.importorskip("rap_ros.tools.synth")
    exe = [sys.executable, "-m", "rap_ros.tools.cli"]
    bag = tmp_path / "synth_bag"
    made = subprocess.run([*exe, "synth", "--out", str(bag), "--bag", "--frames", "40",
                           "--width", "64", "--height", "64"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]
    for method in ("opencv-vo", "rap"):
        out = tmp_path / f"out_{method}"
        run = subprocess.run([*exe, "evaluate", str(bag), "--out", str(out), "--method",
                              method, "--backend", model_spec, "--no-progress"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-1000:] + run.stderr[-2000:]
        result = metrics_of(out, "synth_bag")
        assert result["status"] == "ok" and result["frames"] == 40
        assert result["input_info"]["groundtruth_source"].startswith("/ground_truth/pose")
        assert np.isfinite(result["ate_rmse"]) and np.isfinite(result["rpe_rot_deg_rmse"])


def test_live_playback_into_rap_ros_up(tmp_path, clip, model_spec):
    """--live: real ROS topics into `rap-ros up` in a subprocess; odometry scored, latency and
    drops measured."""
    pytest.importorskip("rclpy")
    bag = write_bag(tmp_path / "drive", clip)
    out = tmp_path / "out"
    assert evaluate(bag, "--out", out, "--live", "--rate", "3", "--backend", model_spec) == 0
    result = metrics_of(out, "drive")
    assert result["status"] == "ok", result.get("error")
    live = result["live"]
    assert live["published_frames"] == FRAMES
    assert 0 < live["estimated_frames"] <= FRAMES
    assert live["dropped_frames"] == \
        FRAMES - live["estimated_frames"] - live["frames_answered_lost"]
    assert live["latency_median_s"] > 0 and live["tf_transforms"] > 0
    assert result["ate_rmse"] is not None


def test_live_recorder_takes_a_lost_frame_and_records_on():
    """The node answers a frame tracked while lost with rtabmap's null pose (zero quaternion):
    the live recorder counts it as lost and goes on recording. (Found by
    benchmarks/soak_node.py: the null pose raised in the recorder's callback, which ended its
    spinning thread, and every later pose went unrecorded.)"""
    rclpy = pytest.importorskip("rclpy")
    from rap_ros.evaluation.live import Recorder
    from rap_ros.nodes.conversions import matrix_to_odometry, null_odometry, seconds_to_stamp
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("rap_ros_test_recorder", context=context)
        recorder = Recorder(node)
        recorder._on_odometry(null_odometry(seconds_to_stamp(1.0), "odom", "camera", 9999.0))
        recorder._on_odometry(matrix_to_odometry(np.eye(4), seconds_to_stamp(1.1), "odom",
                                                 "camera"))
        assert recorder.lost == [1.0] and len(recorder.odometry) == 1
        assert recorder.answered() == {1.0, 1.1}
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


# ------------------------------------------------------------------ frame admission


DISTORTION = ("plumb_bob", np.array([-0.25, 0.08, 0.001, -0.001, 0.0]))


def test_evaluator_admits_frames_as_the_node_does(tmp_path, clip, capsys):
    """A 4x larger distorted camera: the evaluator downscales over --max-image-pixels and
    undistorts exactly as the trajectory_estimator's CameraInput (same images, same K) and as
    an independent reference (cv2 area resize, then OpenCV's undistortion), counts
    the downscaled frames, and with --rectified takes camera_info's P and no undistortion."""
    from types import SimpleNamespace

    from rap_ros.geometry.undistort import undistort, undistortion
    from rap_ros.io import bag as bag_io
    from rap_ros.io.camera_frames import DEFAULT_MAX_IMAGE_PIXELS
    from rap_ros.io.messages import camera_info_calibration
    from rap_ros.nodes.camera_input import CameraInput

    big = np.stack([cv2.resize(f, (WIDTH * 4, HEIGHT * 4), interpolation=cv2.INTER_CUBIC)
                    for f in clip["frames"]])
    K_big = np.diag([4.0, 4.0, 1.0]) @ clip["K"]
    bag = bag_io.write_bag(tmp_path / "big", SimpleNamespace(
        frames=big, K=K_big, c2w=clip["c2w"], stamps=clip["stamps"], meta={}),
        distortion=DISTORTION)
    reader = bag_io.open_bag(bag)
    try:
        info = next(msg for _, _, _, msg in reader.messages({"/camera/camera_info"}))
    finally:
        reader.close()
    assert InputOptions().max_image_pixels == DEFAULT_MAX_IMAGE_PIXELS  # the node's default
    diagnostics = SimpleNamespace(counted=[], count=lambda key: diagnostics.counted.append(key),
                                  warn=lambda text: pytest.fail(text))
    for rectified in (False, True):
        source = open_input(bag, InputOptions(max_image_pixels=WIDTH * HEIGHT,
                                              rectified=rectified))
        node = CameraInput(diagnostics, max_image_pixels=WIDTH * HEIGHT)
        node.calibrate(*camera_info_calibration(info, rectified))  # as _on_camera_info does
        for n, ((_, frame), raw) in enumerate(zip(source.frames(), big)):
            rgb, _, K = node.prepare(raw)
            assert frame.shape == (HEIGHT, WIDTH, 3) and np.array_equal(frame, rgb), n
            np.testing.assert_allclose(source.K, K)
        assert source.camera.downscaled == FRAMES
        scaled = np.diag([0.25, 0.25, 1.0]) @ K_big  # P = [K | 0] in write_bag's camera_info
        if rectified:  # P, scaled with the image; no remap: the plain downscaled frame
            np.testing.assert_allclose(source.K, scaled)
            assert np.array_equal(frame, cv2.resize(big[-1], (WIDTH, HEIGHT),
                                                    interpolation=cv2.INTER_AREA))
            assert "distortion" not in source.info
        else:  # an independent reference: downscale, then OpenCV's undistortion of the scaled K
            maps, K_ref, _ = undistortion(scaled, DISTORTION[1], DISTORTION[0], WIDTH, HEIGHT)
            small = cv2.resize(big[-1], (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
            assert np.array_equal(frame, undistort(small, maps))
            np.testing.assert_allclose(source.K, K_ref)
            assert not np.allclose(source.K, scaled) and "plumb_bob" in source.info["distortion"]
    assert len(diagnostics.counted) == 2 * FRAMES

    out = tmp_path / "out"
    assert evaluate(bag, "--out", out, "--method", "opencv-vo", "--rectified",
                    "--max-image-pixels", str(WIDTH * HEIGHT)) == 0
    result = metrics_of(out, "big")
    assert result["images_downscaled"] == FRAMES and result["image_size"] == [WIDTH, HEIGHT]
    assert "P: rectified images" in result["input_info"]["intrinsics_source"]
    assert evaluate(bag, "--out", out, "--max-image-pixels", "-1") == 2
    assert "--max-image-pixels" in capsys.readouterr().err
