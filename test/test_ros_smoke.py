"""Real rclpy: two nodes in two processes exchange every message type rap_ros relies on."""
import os
import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseStamped, TransformStamped  # noqa: E402
from nav_msgs.msg import Path  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from rap_ros_msgs.msg import PredictedView  # noqa: E402
from test_trajectory_estimator import interrupt  # noqa: E402


def sample_messages():
    image = Image(height=2, width=3, encoding="rgb8", step=9, data=bytes(range(18)))
    image.header.frame_id = "camera_optical_frame"
    pose = PoseStamped()
    pose.header.frame_id = "odom"
    pose.pose.position.x = 1.5
    pose.pose.orientation.w = 1.0
    path = Path(poses=[pose, pose])
    path.header.frame_id = "odom"
    transform = TransformStamped(child_frame_id="camera")
    transform.header.frame_id = "odom"
    transform.transform.rotation.w = 1.0
    view = PredictedView(frames=[image], poses=[pose], scores=[31.5])
    view.header.frame_id = "odom"
    return {"image": image, "path": path, "tf": TFMessage(transforms=[transform]),
            "predicted_view": view}


@pytest.fixture
def echo_process():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    script = os.path.join(os.path.dirname(__file__), "echo_node.py")
    process = subprocess.Popen([sys.executable, script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        # The middleware may log to stdout first (e.g. Fast DDS falling back from a shared
        # memory port another process holds): skip lines until the node says it is ready.
        lines = []
        for line in process.stdout:
            lines.append(line.strip())
            if lines[-1] == "ready" or len(lines) > 50:
                break
        assert lines and lines[-1] == "ready", lines
        yield process
    finally:
        interrupt(process, timeout=10)


def test_messages_cross_processes(echo_process):
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    rclpy.init()
    node = rclpy.create_node("smoke_test")
    try:
        sent = sample_messages()
        received = {}
        publishers = {name: node.create_publisher(type(msg), f"in/{name}", 10)
                      for name, msg in sent.items()}
        for name, msg in sent.items():
            node.create_subscription(type(msg), f"out/{name}",
                                     lambda m, name=name: received.setdefault(name, m), 10)
        deadline = time.monotonic() + 20.0
        while len(received) < len(sent) and time.monotonic() < deadline:
            for name, publisher in publishers.items():
                if name not in received:
                    publisher.publish(sent[name])
            rclpy.spin_once(node, timeout_sec=0.1)
        assert set(received) == set(sent)
        assert bytes(received["image"].data) == bytes(range(18))
        assert received["image"].encoding == "rgb8"
        assert received["path"].poses[1].pose.position.x == 1.5
        assert received["tf"].transforms[0].child_frame_id == "camera"
        view = received["predicted_view"]
        assert list(view.scores) == [31.5] and view.frames[0].width == 3
    finally:
        node.destroy_node()
        rclpy.shutdown()


def test_tf_message_hash_matches_upstream():
    """/tf must carry the real tf2_msgs/msg/TFMessage, whichever build provides it here."""
    import json
    import pathlib

    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import Stores, get_typestore

    description = pathlib.Path(get_package_share_directory("tf2_msgs"), "msg", "TFMessage.json")
    hashes = json.loads(description.read_text())["type_hashes"]
    ours = next(h["hash_string"] for h in hashes if h["type_name"] == "tf2_msgs/msg/TFMessage")
    upstream = get_typestore(Stores.ROS2_JAZZY).hash_rihs01("tf2_msgs/msg/TFMessage")
    assert ours == upstream


def test_a_spinning_thread_is_stopped_before_its_node_is_destroyed():
    """``spinner_stopped``: after ``Executor.shutdown`` the spinning thread leaves ``spin``
    and is joined, so destroying the node cannot race it (the CI hang of `evaluate --live`);
    a thread never started counts as stopped, one still running after the timeout does not."""
    import threading

    from rclpy.executors import SingleThreadedExecutor

    from rap_ros.nodes.runner import spinner_stopped
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("spinner_probe", context=context)
        node.create_subscription(Path, "/spinner_probe", lambda msg: None, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        time.sleep(0.2)
        executor.shutdown(timeout_sec=1.0)
        assert spinner_stopped(spinner, timeout_s=10.0)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    assert spinner_stopped(threading.Thread(target=lambda: None))
    release = threading.Event()
    busy = threading.Thread(target=release.wait, daemon=True)
    busy.start()
    assert not spinner_stopped(busy, timeout_s=0.1)
    release.set()
    assert spinner_stopped(busy, timeout_s=5.0)


def test_a_raw_image_too_large_for_fast_dds_defaults_is_named():
    """A raw image over Fast DDS's default 512 KB shared-memory segment (640x480 rgb8: 921,600
    bytes) gets a warning naming the shipped profile, unless a profile is loaded or another
    rmw is in use; the profile file is valid XML and gives a larger segment."""
    import xml.etree.ElementTree as ElementTree
    from pathlib import Path

    from rap_ros.ros_env import FASTDDS_SHM_SEGMENT_BYTES, large_message_warning

    image = 640 * 480 * 3
    warning = large_message_warning(image, environ={})
    assert warning and "fastdds_large_images.xml" in warning and str(image) in warning
    assert large_message_warning(320 * 240 * 3, environ={}) is None
    assert large_message_warning(image, environ={"FASTRTPS_DEFAULT_PROFILES_FILE": "p.xml"}) \
        is None
    assert large_message_warning(image, environ={"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) \
        is None
    assert large_message_warning(image, environ={"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"})
    profile = Path(__file__).resolve().parents[1] / "config" / "fastdds_large_images.xml"
    sizes = [int(e.text) for e in ElementTree.parse(profile).iter()
             if e.tag.endswith("segment_size")]
    assert sizes and min(sizes) >= 8 * image > FASTDDS_SHM_SEGMENT_BYTES
