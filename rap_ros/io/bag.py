"""ROS 2 bags (rosbag2, MCAP or SQLite3): clips written and read back with ``rosbags``, and
``open_bag``, the reader of any recording (damaged MCAP files included) for the evaluator.

Writing and reading clips (``write_bag``, ``read_bag_clip``):

A bag holds, per frame, on topics of your choice:
- sensor_msgs/msg/Image, encoding rgb8, header.frame_id = the camera's optical frame;
- sensor_msgs/msg/CameraInfo: K, P = [K | 0], R = I, plumb_bob model with zero distortion;
- geometry_msgs/msg/PoseStamped: ground-truth pose of the camera optical frame (OpenCV axes:
  x right, y down, z forward) in the world frame (header.frame_id), i.e. camera-to-world.
All three share one header stamp, ``start_time + clip.stamps[i]`` seconds (default start
1.7e9 s, an arbitrary Unix time in 2023), also used as the bag's receive time. Times are
handled as integer nanoseconds so stamps survive the round trip exactly.
"""
from io import BytesIO
from pathlib import Path

import numpy as np
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, DataEnd, Footer, Message, Schema
from mcap.stream_reader import StreamReader, get_chunk_data_stream
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from rap_ros.geometry.frames import translation_quaternion
from rap_ros.io.clip import Clip
from rap_ros.io.errors import InputError
from rap_ros.io.messages import image_to_rgb8, pose_message_to_matrix

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


def camera_info_message(types, header, K: np.ndarray, width: int, height: int,
                        distortion=("plumb_bob", np.zeros(5))):
    """sensor_msgs/CameraInfo of a camera with intrinsics K (3, 3) and ``distortion``
    (model name, coefficients; default: none)."""
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False)
    return types[CAMERA_INFO](
        header=header,
        height=height,
        width=width,
        distortion_model=str(distortion[0]),
        d=np.asarray(distortion[1], dtype=np.float64),
        k=np.asarray(K, float).reshape(-1),
        r=np.eye(3).reshape(-1),
        p=np.column_stack([K, np.zeros(3)]).reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def pose_message(types, header, c2w: np.ndarray):
    """geometry_msgs/PoseStamped from a 4x4 pose (``translation_quaternion``: rotation
    projected onto SO(3), ValueError for NaN/inf, as the nodes publish poses)."""
    translation, (x, y, z, w) = translation_quaternion(c2w)
    tx, ty, tz = (float(value) for value in translation)
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
    distortion=("plumb_bob", np.zeros(5)),
) -> Path:
    """Write ``clip`` as a rosbag2 directory at ``path`` (which must not exist yet).
    ``distortion`` (model, coefficients) goes into the camera info: the frames are then taken
    to be distorted images of that lens."""
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
                (infos, camera_info_message(types, camera, clip.K, width, height,
                                            distortion)),
                (poses, pose_message(types, world, c2w)),
            )
            for connection, message in messages:
                writer.write(connection, ns, store.serialize_cdr(message, connection.msgtype))
    return Path(path)


def _stamp_ns(message) -> int:
    return message.header.stamp.sec * 10**9 + message.header.stamp.nanosec


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
    poses = {_stamp_ns(m): pose_message_to_matrix(m) for m in topics[gt_topic]}
    stamps = np.array([_stamp_ns(m) for m in topics[image_topic]], dtype=np.int64)
    missing = [int(ns) for ns in stamps if ns not in poses]
    if missing:
        raise ValueError(f"{path}: {len(missing)} images have no pose on {gt_topic} with the same "
                         f"stamp, e.g. {missing[0]} ns")
    return Clip(
        frames=np.stack([image_to_rgb8(m) for m in topics[image_topic]]),
        K=np.asarray(topics[camera_info_topic][0].k, float).reshape(3, 3),
        c2w=np.stack([poses[ns] for ns in stamps]),
        stamps=(stamps - stamps[0]) / 1e9,
        meta={"path": str(path), "start_time_ns": int(stamps[0])},
    )


# ------------------------------------------------------------------ reading any recording


MCAP_MAGIC_SIZE = 8


class BagTopic:
    """What a reader knows of a topic: name, message type, message count."""

    def __init__(self, topic, msgtype, msgcount):
        self.topic, self.msgtype, self.msgcount = topic, msgtype, msgcount


class RosbagsBag:
    """A readable bag through rosbags' AnyReader (folder, .mcap or .db3).

    ``topics``: name -> BagTopic; ``messages(topics)`` yields (topic, msgtype, bag time ns,
    message) in bag-time order; ``damaged`` is None (the bag is whole).
    """

    damaged = None

    def __init__(self, path):
        self.path = path
        self.reader = AnyReader([Path(path)], default_typestore=typestore())
        self.reader.open()
        self.topics = {name: BagTopic(name, info.msgtype, info.msgcount)
                       for name, info in self.reader.topics.items()}

    def messages(self, topics):
        connections = [c for c in self.reader.connections if c.topic in topics]
        for connection, timestamp, raw in self.reader.messages(connections=connections):
            yield (connection.topic, connection.msgtype, timestamp,
                   self.reader.deserialize(raw, connection.msgtype))

    def close(self):
        self.reader.close()


class DamagedMcap:
    """The messages of a damaged MCAP file (cut short, no summary), read in file order up to
    the damage with the ``mcap`` library's stream reader (rosbags needs the summary).

    ``damage`` says where reading stopped; a chunk cut short by the end of the file gives the
    records that fit in it. Same interface as ``RosbagsBag``, with ``damaged`` the note for
    the user (set by ``open_bag``); raises ValueError when the file is not MCAP or holds no
    readable message.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.typestore = typestore()
        self.damage = None
        self.damaged = None
        counts, types = {}, {}
        for topic, msgtype, _, _ in self._records():
            counts[topic] = counts.get(topic, 0) + 1
            types[topic] = msgtype
        self.topics = {t: BagTopic(t, types[t], counts[t]) for t in counts}
        if not self.topics:
            raise ValueError(f"no readable messages ({self.damage or 'empty'})")

    def _records(self):
        """(topic, msgtype, log time ns, raw CDR) of every readable message, in file order."""
        schemas, channels = {}, {}
        size = self.path.stat().st_size
        self.damage = f"the file ends early (at byte {size})"
        with open(self.path, "rb") as stream:
            # A record cut by the end of the file claims more than is left; a claim beyond
            # this limit is garbage (a reader would try to allocate it).
            limit = max(4 * size, 64 << 20)
            records = iter(StreamReader(stream, emit_chunks=True,
                                        record_size_limit=limit).records)
            while True:
                start = max(stream.tell(), MCAP_MAGIC_SIZE)  # where the next record begins
                try:
                    record = next(records)
                except StopIteration:
                    return
                except Exception as error:  # a record that does not fit or does not parse
                    if stream.tell() <= MCAP_MAGIC_SIZE:
                        raise ValueError(f"not an MCAP file ({type(error).__name__})") from None
                    record = self._cut_chunk(stream, start)
                    if record is None:
                        self.damage = (f"the record at byte {start} of {size} cannot be read "
                                       f"({type(error).__name__}: {error})")
                        return
                if isinstance(record, (DataEnd, Footer)):  # the data section is complete
                    self.damage = None
                    return
                inner, cut = (self._chunk_records(record) if isinstance(record, Chunk)
                              else ([record], False))
                for item in inner:
                    if isinstance(item, Schema):
                        schemas[item.id] = item.name
                    elif isinstance(item, Channel):
                        channels[item.id] = (item.topic, schemas.get(item.schema_id, ""))
                    elif isinstance(item, Message) and item.channel_id in channels:
                        topic, msgtype = channels[item.channel_id]
                        yield topic, msgtype, item.log_time, item.data
                if cut:
                    return

    @staticmethod
    def _cut_chunk(stream, start):
        """The chunk record at byte ``start`` that the end of the file cuts through, with the
        part of its data the file has (the stream reader gives up on it), or None."""
        stream.seek(start)
        data = ReadDataStream(stream)
        try:
            if data.read1() != Opcode.CHUNK:
                return None
            data.read8()  # the record's length: more than the file has
            return Chunk.read(data)  # reads the chunk's data up to the end of the file
        except Exception:  # the end of the file cuts the chunk's header
            return None

    def _chunk_records(self, chunk):
        """(records of a chunk, whether the file ends in it): of a chunk cut short, the
        records that fit (uncompressed chunks; a compressed one cannot be read in part)."""
        if chunk.compression or len(chunk.data) >= chunk.uncompressed_size:
            try:
                data, length = get_chunk_data_stream(chunk)
            except Exception as error:  # a compressed chunk cut short, or no decompressor
                self.damage = (f"a {chunk.compression} chunk is cut short or cannot be "
                               f"decompressed here ({type(error).__name__})")
                return [], True
            cut = False
        else:
            data, length = ReadDataStream(BytesIO(chunk.data)), len(chunk.data)
            self.damage = (f"the file ends inside a chunk ({length} of its "
                           f"{chunk.uncompressed_size} bytes)")
            cut = True
        records = []
        while data.count + 9 <= length:
            opcode, size = data.read1(), data.read8()
            if data.count + size > length:
                break  # the record the end of the file cuts through
            if opcode == Opcode.MESSAGE:
                records.append(Message.read(data, size))
            elif opcode == Opcode.CHANNEL:
                records.append(Channel.read(data))
            elif opcode == Opcode.SCHEMA:
                records.append(Schema.read(data))
            else:
                data.read(size)
        return records, cut

    def messages(self, topics):
        for topic, msgtype, log_time, raw in self._records():
            if topic in topics:
                yield topic, msgtype, log_time, self.typestore.deserialize_cdr(raw, msgtype)

    def close(self):
        pass


def mcap_files(path):
    """The MCAP files of a recording: the file itself, or those in the folder."""
    path = Path(path)
    if path.suffix == ".mcap":
        return [path]
    if path.is_dir():
        return sorted(path.glob("*.mcap"))
    return []


def open_bag(path):
    """A reader for the recording at ``path`` (``RosbagsBag``); a damaged single-file MCAP
    recording is read up to the damage (``DamagedMcap``; ``damaged`` says what happened).
    Raises InputError when neither works."""
    try:
        return RosbagsBag(path)
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        files = mcap_files(path)
        if len(files) == 1:
            try:
                bag = DamagedMcap(files[0])
            except Exception as salvage_error:
                reason += f"; reading it up to the damage failed: {salvage_error}"
            else:
                bag.damaged = (f"bag {path} is truncated or corrupt ({reason}); read the "
                               f"messages before the damage: {bag.damage}")
                return bag
        raise InputError(f"cannot open bag {path}: corrupt or not a rosbag2 recording "
                         f"({reason})") from None
