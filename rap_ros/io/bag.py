"""Clips as ROS 2 bags (rosbag2, MCAP or SQLite3) written and read with ``rosbags``.

A bag holds, per frame, on topics of your choice:
- sensor_msgs/msg/Image, encoding rgb8, header.frame_id = the camera's optical frame;
- sensor_msgs/msg/CameraInfo: K, P = [K | 0], R = I, plumb_bob model with zero distortion;
- geometry_msgs/msg/PoseStamped: ground-truth pose of the camera optical frame (OpenCV axes:
  x right, y down, z forward) in the world frame (header.frame_id), i.e. camera-to-world.
All three share one header stamp, ``start_time + clip.stamps[i]`` seconds (default start
1.7e9 s, an arbitrary Unix time in 2023), also used as the bag's receive time. Times are
handled as integer nanoseconds so stamps survive the round trip exactly.
"""
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from rap_ros.io.clip import Clip

START_TIME = 1.7e9  # seconds
STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_VERSION = 8  # rosbag2 metadata version, readable by ROS 2 Iron and later
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POSE = "geometry_msgs/msg/PoseStamped"


def typestore():
    """Message definitions of ROS 2 Jazzy."""
    return get_typestore(Stores.ROS2_JAZZY)


def _header(types, nanoseconds: int, frame_id: str):
    sec, nanosec = divmod(nanoseconds, 10**9)
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image_message(types, header, image: np.ndarray):
    """sensor_msgs/Image rgb8 from (H, W, 3) uint8 RGB."""
    height, width = image.shape[:2]
    data = np.ascontiguousarray(image, dtype=np.uint8).reshape(-1)
    return types[IMAGE](header=header, height=height, width=width, encoding="rgb8", is_bigendian=0,
                        step=3 * width, data=data)


def camera_info_message(types, header, K: np.ndarray, width: int, height: int):
    """sensor_msgs/CameraInfo of an undistorted pinhole camera with intrinsics K (3, 3)."""
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False)
    return types[CAMERA_INFO](
        header=header,
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=np.asarray(K, float).reshape(-1),
        r=np.eye(3).reshape(-1),
        p=np.column_stack([K, np.zeros(3)]).reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def pose_message(types, header, c2w: np.ndarray):
    """geometry_msgs/PoseStamped from a 4x4 pose."""
    x, y, z, w = Rotation.from_matrix(c2w[:3, :3]).as_quat()
    tx, ty, tz = (float(value) for value in c2w[:3, 3])
    position = types["geometry_msgs/msg/Point"](x=tx, y=ty, z=tz)
    orientation = types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)
    pose = types["geometry_msgs/msg/Pose"](position=position, orientation=orientation)
    return types[POSE](header=header, pose=pose)


def write_bag(
    path,
    clip: Clip,
    image_topic: str = "/camera/image_raw",
    camera_info_topic: str = "/camera/camera_info",
    gt_topic: str = "/ground_truth/pose",
    camera_frame: str = "camera_optical_frame",
    world_frame: str = "map",
    storage: str = "mcap",
    start_time: float = START_TIME,
) -> Path:
    """Write ``clip`` as a rosbag2 directory at ``path`` (which must not exist yet)."""
    if storage not in STORAGE:
        raise ValueError(f"storage {storage!r} not one of {sorted(STORAGE)}")
    store = typestore()
    types = store.types
    height, width = clip.frames.shape[1:3]
    start_ns = round(start_time * 1e9)
    with Writer(path, version=BAG_VERSION, storage_plugin=STORAGE[storage]) as writer:
        images = writer.add_connection(image_topic, IMAGE, typestore=store)
        infos = writer.add_connection(camera_info_topic, CAMERA_INFO, typestore=store)
        poses = writer.add_connection(gt_topic, POSE, typestore=store)
        for image, stamp, c2w in zip(clip.frames, clip.stamps, clip.c2w):
            ns = start_ns + round(float(stamp) * 1e9)
            camera, world = _header(types, ns, camera_frame), _header(types, ns, world_frame)
            messages = (
                (images, image_message(types, camera, image)),
                (infos, camera_info_message(types, camera, clip.K, width, height)),
                (poses, pose_message(types, world, c2w)),
            )
            for connection, message in messages:
                writer.write(connection, ns, store.serialize_cdr(message, connection.msgtype))
    return Path(path)


def image_to_rgb(message) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/Image in rgb8, bgr8 or mono8."""
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(message.encoding)
    if channels is None:
        raise ValueError(f"image encoding {message.encoding!r} not supported (rgb8, bgr8, mono8)")
    rows = np.asarray(message.data, np.uint8).reshape(message.height, message.step)
    image = rows[:, : message.width * channels].reshape(message.height, message.width, channels)
    if message.encoding == "bgr8":
        image = image[..., ::-1]
    return np.ascontiguousarray(np.broadcast_to(image, (message.height, message.width, 3)))


def _stamp_ns(message) -> int:
    return message.header.stamp.sec * 10**9 + message.header.stamp.nanosec


def _pose_matrix(message) -> np.ndarray:
    position, q = message.pose.position, message.pose.orientation
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    c2w[:3, 3] = position.x, position.y, position.z
    return c2w


def read_bag_clip(
    path,
    image_topic: str = "/camera/image_raw",
    camera_info_topic: str = "/camera/camera_info",
    gt_topic: str = "/ground_truth/pose",
) -> Clip:
    """Read a bag written like ``write_bag`` back into a Clip.

    Frames are the images in bag order; K comes from the first CameraInfo; each image takes the
    ground-truth pose with the same header stamp (ValueError if one is missing). ``stamps`` are
    seconds since the first image; its absolute time is ``meta["start_time_ns"]``.
    """
    store = typestore()
    topics = {image_topic: [], camera_info_topic: [], gt_topic: []}
    with Reader(path) as reader:
        connections = [c for c in reader.connections if c.topic in topics]
        for connection, _, raw in reader.messages(connections=connections):
            topics[connection.topic].append(store.deserialize_cdr(raw, connection.msgtype))
    for topic, messages in topics.items():
        if not messages:
            raise ValueError(f"{path}: no messages on {topic}")
    poses = {_stamp_ns(m): _pose_matrix(m) for m in topics[gt_topic]}
    stamps = np.array([_stamp_ns(m) for m in topics[image_topic]], dtype=np.int64)
    missing = [int(ns) for ns in stamps if ns not in poses]
    if missing:
        raise ValueError(f"{path}: {len(missing)} images have no pose on {gt_topic} with the same "
                         f"stamp, e.g. {missing[0]} ns")
    return Clip(
        frames=np.stack([image_to_rgb(m) for m in topics[image_topic]]),
        K=np.asarray(topics[camera_info_topic][0].k, float).reshape(3, 3),
        c2w=np.stack([poses[ns] for ns in stamps]),
        stamps=(stamps - stamps[0]) / 1e9,
        meta={"path": str(path), "start_time_ns": int(stamps[0])},
    )
