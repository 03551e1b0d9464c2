"""Data I/O: TUM files, sequence folders (ours and the shared real ones), rosbag2, the CLI."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from rap_ros.io.bag import read_bag_clip, write_bag
from rap_ros.io.messages import image_to_rgb8
from rap_ros.io.sequence import read_sequence, write_sequence
from rap_ros.io.tum import read_tum, write_tum
from rap_ros.synth.dataset import make_drive, sample_clip
from rap_ros.tools import synth as synth_tool

SHARED = Path("/work/shared/data")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clip():
    return sample_clip(21, frames=6, height=24, width=32)


def assert_same_clip(read, written):
    assert read.frames.dtype == np.uint8 and np.array_equal(read.frames, written.frames)
    assert np.abs(read.c2w - written.c2w).max() < 1e-9
    assert np.abs(read.stamps - written.stamps).max() < 1e-9
    assert np.abs(read.K - written.K).max() < 1e-9


def test_tum_round_trip_and_comments(tmp_path, clip):
    path = tmp_path / "poses.txt"
    write_tum(path, clip.stamps, clip.c2w)
    path.write_text("# a comment\n\n" + path.read_text())
    stamps, c2w = read_tum(path)
    assert np.abs(stamps - clip.stamps).max() < 1e-9
    assert np.abs(c2w - clip.c2w).max() < 1e-9


@pytest.mark.parametrize("bad", ["0.1 1 2 3 0 0 0", "0.1 1 2 3 0 0 zero 1", "0.1 1 2 3 0 0 0 0"])
def test_tum_bad_line_names_file_and_line(tmp_path, bad):
    path = tmp_path / "bad.txt"
    path.write_text(f"# header\n0.0 0 0 0 0 0 0 1\n{bad}\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3: "):
        read_tum(path)


def test_sequence_round_trip(tmp_path, clip):
    folder = write_sequence(tmp_path / "seq", clip)
    assert sorted(p.name for p in (folder / "images").iterdir())[0] == "000000.png"
    cameras = json.loads((folder / "cameras.json").read_text())
    assert cameras["timestamp_meaning"] == "seconds"
    assert (cameras["width"], cameras["height"]) == (32, 24)
    read = read_sequence(folder)
    assert_same_clip(read, clip)
    assert read.meta["meta"] == clip.meta
    stamps, c2w = read_tum(folder / "poses_tum.txt")
    assert np.abs(c2w - clip.c2w).max() < 1e-9


@pytest.mark.parametrize("name, frames, size, grey", [
    ("kitti_vo_seq1", 51, (370, 1226), True),
    ("nerf_synthetic_lego_test", 200, (400, 400), False),
])
def test_read_shared_sequences(name, frames, size, grey):
    folder = SHARED / name
    if not (folder / "cameras.json").is_file():
        pytest.skip(f"{folder} is not on this machine")
    clip = read_sequence(folder)
    assert clip.frames.shape == (frames, *size, 3) and clip.frames.dtype == np.uint8
    channels_equal = np.array_equal(clip.frames[..., 0], clip.frames[..., 1])
    assert channels_equal == grey
    assert clip.c2w.shape == (frames, 4, 4) and clip.stamps.shape == (frames,)
    R = clip.c2w[:, :3, :3]
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-6)
    stamps, c2w = read_tum(folder / "poses_tum.txt")
    assert np.allclose(c2w, clip.c2w, atol=1e-6) and np.allclose(stamps, clip.stamps)
    assert clip.K[0, 0] > 100 and clip.K[2, 2] == 1


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip(tmp_path, clip, storage):
    write_bag(tmp_path / "bag", clip, storage=storage)
    read = read_bag_clip(tmp_path / "bag")
    assert_same_clip(read, clip)
    assert read.meta["start_time_ns"] == 1_700_000_000 * 10**9


def test_bag_messages_deserialize_in_rclpy(tmp_path, clip):
    from geometry_msgs.msg import PoseStamped
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image

    write_bag(tmp_path / "bag", clip, world_frame="odom")
    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CameraInfo": CameraInfo,
             "geometry_msgs/msg/PoseStamped": PoseStamped}
    with Reader(tmp_path / "bag") as reader:
        messages = [(connection.topic, deserialize_message(raw, types[connection.msgtype]))
                    for connection, _, raw in reader.messages()]
    images = [m for topic, m in messages if topic == "/camera/image_raw"]
    infos = [m for topic, m in messages if topic == "/camera/camera_info"]
    poses = [m for topic, m in messages if topic == "/ground_truth/pose"]
    assert len(images) == len(infos) == len(poses) == len(clip)
    image = images[1]
    assert (image.encoding, image.height, image.width, image.step) == ("rgb8", 24, 32, 96)
    pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(24, 32, 3)
    assert np.array_equal(pixels, clip.frames[1])
    assert (image.header.stamp.sec, image.header.stamp.nanosec) == (1_700_000_000, 100_000_000)
    assert image.header.frame_id == "camera_optical_frame" and poses[1].header.frame_id == "odom"
    assert np.allclose(np.reshape(infos[0].k, (3, 3)), clip.K)
    assert infos[0].distortion_model == "plumb_bob"
    assert np.allclose(np.reshape(infos[0].p, (3, 4))[:, :3], clip.K)
    position = poses[2].pose.position
    assert np.allclose([position.x, position.y, position.z], clip.c2w[2, :3, 3])


def test_image_to_rgb8_handles_bgr_mono_and_row_padding():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)

    def message(encoding, pixels, channels):
        rows = np.zeros((2, 3 * channels + 2), np.uint8)  # two bytes of padding per row
        rows[:, :3 * channels] = pixels.reshape(2, -1)
        return SimpleNamespace(encoding=encoding, height=2, width=3, step=rows.shape[1],
                               data=rows.reshape(-1))

    assert np.array_equal(image_to_rgb8(message("rgb8", rgb, 3)), rgb)
    assert np.array_equal(image_to_rgb8(message("bgr8", rgb[..., ::-1], 3)), rgb)
    grey = image_to_rgb8(message("mono8", rgb[..., 0], 1))
    assert np.array_equal(grey, np.repeat(rgb[..., :1], 3, axis=2))
    with pytest.raises(ValueError, match="yuv422"):
        image_to_rgb8(message("yuv422", rgb, 3))


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="rap-ros")
    synth_tool.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_sequence_and_bag(tmp_path):
    common = ["--frames", "5", "--seed", "4", "--width", "32", "--height", "24"]
    assert run_cli(["synth", "--out", str(tmp_path / "seq"), *common]) == 0
    assert run_cli(["synth", "--out", str(tmp_path / "bag"), *common, "--bag"]) == 0
    expected = make_drive(4, 5, 24, 32)
    assert_same_clip(read_sequence(tmp_path / "seq"), expected)
    assert_same_clip(read_bag_clip(tmp_path / "bag"), expected)
    # A rosbag2 is never written over an existing folder.
    assert run_cli(["synth", "--out", str(tmp_path / "bag"), *common, "--bag"]) == 2


def test_cli_runs_as_a_module(tmp_path):
    out = tmp_path / "seq"
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    result = subprocess.run(
        [sys.executable, "-m", "rap_ros.tools.synth", "--out", str(out), "--frames", "3",
         "--seed", "1", "--width", "16", "--height", "16", "--scene", "room"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert read_sequence(out).meta["meta"]["scene"] == "room"
