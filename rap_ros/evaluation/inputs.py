"""Readers for the evaluator: images, intrinsics and ground truth from one input.

Supported inputs (``open_input`` detects the kind):

* rosbag2 recordings read with ``rosbags`` (no ROS installation needed): a folder with
  ``metadata.yaml``, or a single ``.mcap`` / ``.db3`` file; MCAP or sqlite3 storage. Topic
  types are read from the bag: images as ``sensor_msgs/msg/Image`` or ``CompressedImage``,
  intrinsics from ``sensor_msgs/msg/CameraInfo``, ground truth from
  ``geometry_msgs/msg/PoseStamped``, ``PoseWithCovarianceStamped``, ``TransformStamped``,
  ``nav_msgs/msg/Odometry`` or ``tf2_msgs/msg/TFMessage`` (``gt_frames=(PARENT, CHILD)``; the
  chain between the two frames is composed from /tf and /tf_static, interpolated in time).
* sequence folders (``cameras.json`` + ``images/``, see /work/shared/data/README.md), read with
  ``rap_ros.io.sequence``.
* TUM RGB-D style folders: ``rgb.txt`` (``timestamp path`` lines) and ``groundtruth.txt``
  (``timestamp tx ty tz qx qy qz qw``); intrinsics from options or a small YAML/JSON file.

Frames and units: images are uint8 RGB (H, W, 3); stamps are float seconds (or the
sequence's own unit when it counts frames); intrinsics K are 3x3 in pixels with pixel centres
at integer coordinates; ground truth is camera-to-world 4x4 (``T_parent_child`` for TF: child
points to parent frame) in the recording's units (metres for ROS). The evaluator compares
positions after Sim(3) alignment, so the world frame of the ground truth is free; the child
frame should be the camera (for a body frame, the camera's offset from it adds a small error).

Every fault raises ``InputError`` with a message naming what is wrong (and, for a missing
topic, listing the bag's topics). Faults while streaming frames (a truncated bag) surface from
``EvalInput.frames()`` as ``InputError`` after the frames read so far were yielded.
"""
import json
import pathlib
from dataclasses import dataclass, field

import cv2
import numpy as np

from rap_ros.geometry import matrix_from_quat, pose_from_rt, quat_from_matrix
from rap_ros.io.images import decoded_to_rgb8

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_GT_TOPIC = "/ground_truth/pose"
DEFAULT_MAX_TIME_DIFF = 0.02  # seconds, as TUM's associate.py

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped",
              "geometry_msgs/msg/TransformStamped", "nav_msgs/msg/Odometry")
GT_TYPES = POSE_TYPES + (TF_TYPE,)


class InputError(ValueError):
    """An input cannot be read as asked; the message says what is wrong."""


@dataclass
class StampedPoses:
    """Camera-to-world poses over time.

    stamps: (N,) float64 seconds, increasing; c2w: (N, 4, 4) float64.
    """

    stamps: np.ndarray
    c2w: np.ndarray

    def __len__(self):
        return len(self.stamps)


@dataclass
class InputOptions:
    """What to read from an input (the `rap-ros evaluate` flags).

    image_topic, camera_info_topic, gt_topic: None = the defaults of ``rap-ros synth --bag``,
        falling back to the only topic of a fitting type when the default is absent.
    gt_frames: (PARENT, CHILD) for TF ground truth. gt_tum: a TUM file overriding any other
        ground truth. K: (3, 3) intrinsics overriding the input's. max_time_diff: seconds
        allowed between an image and its ground-truth pose.
    """

    image_topic: str = None
    camera_info_topic: str = None
    gt_topic: str = None
    gt_frames: tuple = None
    gt_tum: str = None
    K: np.ndarray = None
    max_time_diff: float = DEFAULT_MAX_TIME_DIFF


@dataclass
class EvalInput:
    """One opened input.

    name: short name (folder or file stem); path: where it was read; kind: "bag",
    "sequence" or "tum". K: (3, 3) intrinsics in pixels or None (unknown); groundtruth:
    StampedPoses or None; frame_count: frames the input announces (None if unknown).
    info: what was read from where (topics and types, notes) for the report.
    ``frames()`` yields (stamp seconds, uint8 RGB (H, W, 3)) in order.
    """

    name: str
    path: str
    kind: str
    K: np.ndarray = None
    groundtruth: StampedPoses = None
    frame_count: int = None
    info: dict = field(default_factory=dict)
    _frames: object = None

    def frames(self):
        return self._frames()


# ------------------------------------------------------------------ helpers


def read_tum_trajectory(path):
    """A TUM trajectory file (camera-to-world) -> StampedPoses, via ``rap_ros.io.tum``."""
    from rap_ros.io.tum import read_tum

    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError(f"TUM trajectory file not found: {path}")
    try:
        stamps, c2w = read_tum(path)
    except ValueError as error:
        raise InputError(f"cannot read TUM file: {error}") from None
    if not len(stamps):
        raise InputError(f"TUM file {path} holds no poses")
    return _sorted(StampedPoses(np.asarray(stamps, np.float64), np.asarray(c2w, np.float64)))


def tum_rows(stamps, c2w):
    """(N,) stamps and (N, 4, 4) poses -> (N, 8) rows timestamp tx ty tz qx qy qz qw."""
    c2w = np.asarray(c2w, dtype=np.float64)
    return np.column_stack([stamps, c2w[:, :3, 3], quat_from_matrix(c2w[:, :3, :3])])


def _sorted(poses):
    order = np.argsort(poses.stamps, kind="stable")
    stamps = poses.stamps[order]
    keep = np.concatenate([[True], np.diff(stamps) > 0])  # drop repeated stamps
    return StampedPoses(stamps[keep], poses.c2w[order][keep])


def associate(stamps_a, stamps_b, max_diff=DEFAULT_MAX_TIME_DIFF):
    """Pair two stamp lists one-to-one, closest pairs first, |a - b| <= max_diff.

    The greedy rule of TUM's associate tool: among all candidate pairs, take the one with
    the smallest difference, remove both stamps, repeat. Returns index arrays (ia, ib),
    sorted by ia.
    """
    a = np.asarray(stamps_a, dtype=np.float64)
    b = np.asarray(stamps_b, dtype=np.float64)
    if not len(a) or not len(b):
        return np.zeros(0, int), np.zeros(0, int)
    order_b = np.argsort(b, kind="stable")
    sorted_b = b[order_b]
    lo = np.searchsorted(sorted_b, a - max_diff, side="left")
    hi = np.searchsorted(sorted_b, a + max_diff, side="right")
    candidates = [(abs(a[i] - sorted_b[j]), i, order_b[j])
                  for i in range(len(a)) for j in range(lo[i], hi[i])]
    candidates.sort()
    used_a, used_b, pairs = set(), set(), []
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    pairs.sort()
    if not pairs:
        return np.zeros(0, int), np.zeros(0, int)
    ia, ib = (np.array(x, dtype=int) for x in zip(*pairs))
    return ia, ib


def load_intrinsics(path):
    """K (3, 3) from a small YAML or JSON file.

    Accepted layouts: ``fx, fy, cx, cy`` at the top level or under ``intrinsics``/``camera``;
    ``K``/``k``/``camera_matrix`` as 9 numbers, a 3x3 list, or ROS calibration YAML
    (``camera_matrix: {rows: 3, cols: 3, data: [...]}``).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError(f"intrinsics file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml
            data = yaml.safe_load(text)
    except Exception as error:
        raise InputError(f"cannot parse intrinsics file {path}: {error}") from None
    K = _intrinsics_from_mapping(data)
    if K is None:
        raise InputError(f"intrinsics file {path} has neither fx, fy, cx, cy nor a K / "
                         "camera_matrix entry")
    return K


def _intrinsics_from_mapping(data):
    if not isinstance(data, dict):
        return None
    if all(k in data for k in ("fx", "fy", "cx", "cy")):
        K = np.array([[data["fx"], 0, data["cx"]], [0, data["fy"], data["cy"]], [0, 0, 1]],
                     dtype=np.float64)
        return _check_K(K, "intrinsics")
    for key in ("K", "k", "camera_matrix", "intrinsic_matrix"):
        if key in data:
            value = data[key]
            if isinstance(value, dict):
                value = value.get("data")
            K = np.asarray(value, dtype=np.float64).reshape(3, 3)
            return _check_K(K, key)
    for key in ("intrinsics", "camera"):
        if key in data:
            K = _intrinsics_from_mapping(data[key])
            if K is not None:
                return K
    return None


def _check_K(K, what):
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"{what}: intrinsics need positive finite fx, fy, got {K.tolist()}")
    return K


def intrinsics_from_flags(fx, fy, cx, cy):
    """K from the --fx --fy --cx --cy flags (all four, or none -> None)."""
    given = [v is not None for v in (fx, fy, cx, cy)]
    if not any(given):
        return None
    if not all(given):
        raise InputError("give all four of --fx --fy --cx --cy (or --intrinsics FILE)")
    return _check_K(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64), "--fx/--fy")


# ------------------------------------------------------------------ detection


def detect_kind(path):
    """"bag", "sequence" or "tum" for a path, or raise InputError saying what was expected."""
    path = pathlib.Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_file():
        if path.suffix in (".mcap", ".db3"):
            return "bag"
        raise InputError(f"{path}: not a rosbag2 file (.mcap or .db3); an input is a rosbag2 "
                         "folder or file, a sequence folder (cameras.json) or a TUM RGB-D "
                         "folder (rgb.txt)")
    if (path / "metadata.yaml").is_file():
        return "bag"
    if (path / "cameras.json").is_file():
        return "sequence"
    if (path / "rgb.txt").is_file():
        return "tum"
    if list(path.glob("*.mcap")) or list(path.glob("*.db3")):
        return "bag"
    raise InputError(f"{path}: not a recognised input folder: expected a rosbag2 recording "
                     "(metadata.yaml, *.mcap or *.db3), a sequence folder (cameras.json + "
                     "images/) or a TUM RGB-D folder (rgb.txt + groundtruth.txt)")


def input_name(path):
    path = pathlib.Path(path)
    name = path.stem if path.is_file() else path.name
    return name or "input"


def open_input(path, options=None):
    """Open an input for evaluation -> EvalInput (raises InputError)."""
    options = options or InputOptions()
    kind = detect_kind(path)
    opener = {"bag": _open_bag, "sequence": _open_sequence, "tum": _open_tum}[kind]
    source = opener(pathlib.Path(path), options)
    if options.K is not None:
        if source.K is not None:
            source.info["intrinsics_overridden"] = True
        source.K = np.asarray(options.K, np.float64)
        source.info["intrinsics_source"] = "command line"
    if options.gt_tum:
        source.groundtruth = read_tum_trajectory(options.gt_tum)
        source.info["groundtruth_source"] = f"TUM file {options.gt_tum}"
    return source


# ------------------------------------------------------------------ sequence folders


def _open_sequence(path, options):
    from rap_ros.io.sequence import read_sequence

    try:
        clip = read_sequence(path)
    except Exception as error:
        raise InputError(f"cannot read sequence folder {path}: {error}") from None
    stamps = np.asarray(clip.stamps, dtype=np.float64)
    frames = clip.frames
    meta = getattr(clip, "meta", None) or {}
    info = {"images": f"{path}/images ({len(frames)} frames)",
            "intrinsics_source": "cameras.json", "groundtruth_source": "cameras.json c2w",
            "timestamp_meaning": meta.get("timestamp_meaning", "seconds")}

    def generate():
        for stamp, frame in zip(stamps, frames):
            yield float(stamp), _as_rgb(frame)

    gt = StampedPoses(stamps.copy(), np.asarray(clip.c2w, dtype=np.float64))
    return EvalInput(name=input_name(path), path=str(path), kind="sequence",
                     K=np.asarray(clip.K, dtype=np.float64), groundtruth=_sorted(gt),
                     frame_count=len(frames), info=info, _frames=generate)


def _as_rgb(frame):
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    return frame[..., :3]


# ------------------------------------------------------------------ TUM RGB-D folders


INTRINSICS_FILES = ("intrinsics.yaml", "intrinsics.yml", "intrinsics.json", "camera.yaml",
                    "camera.json", "calibration.yaml")


def _read_list(path):
    """TUM list file: `timestamp value...` lines, '#' comments -> [(stamp, [values])]."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        try:
            rows.append((float(parts[0]), parts[1:]))
        except ValueError:
            raise InputError(f"{path}:{number}: expected 'timestamp ...', got {line!r}") from None
    return rows


def _open_tum(path, options):
    rows = _read_list(path / "rgb.txt")
    if not rows:
        raise InputError(f"{path / 'rgb.txt'} lists no images")
    stamps = np.array([r[0] for r in rows])
    files = [path / r[1][0] for r in rows]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(f"{len(missing)} images listed in rgb.txt are missing, first: {missing[0]}")
    K, source = None, None
    for candidate in INTRINSICS_FILES:
        if (path / candidate).is_file():
            K, source = load_intrinsics(path / candidate), str(path / candidate)
            break
    gt, gt_source = None, None
    if not options.gt_tum:
        if not (path / "groundtruth.txt").is_file():
            raise InputError(f"{path}: no groundtruth.txt (or pass --gt-tum FILE)")
        gt, gt_source = read_tum_trajectory(path / "groundtruth.txt"), "groundtruth.txt"

    def generate():
        for stamp, file in zip(stamps, files):
            image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise InputError(f"cannot decode image {file}")
            yield float(stamp), decoded_to_rgb8(image)

    info = {"images": f"{path / 'rgb.txt'} ({len(files)} frames)",
            "intrinsics_source": source, "groundtruth_source": gt_source}
    return EvalInput(name=input_name(path), path=str(path), kind="tum", K=K, groundtruth=gt,
                     frame_count=len(files), info=info, _frames=generate)


# ------------------------------------------------------------------ rosbag2


def stamp_seconds(header_stamp, fallback_ns=None):
    """builtin_interfaces/Time -> seconds; a zero stamp falls back to the bag time (ns)."""
    seconds = float(header_stamp.sec) + 1e-9 * float(header_stamp.nanosec)
    if seconds == 0.0 and fallback_ns is not None:
        return 1e-9 * fallback_ns
    return seconds


_BAYER = {"bayer_rggb8": cv2.COLOR_BayerRG2RGB, "bayer_bggr8": cv2.COLOR_BayerBG2RGB,
          "bayer_gbrg8": cv2.COLOR_BayerGB2RGB, "bayer_grbg8": cv2.COLOR_BayerGR2RGB}
_CHANNELS = {"rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "rgba8": (4, np.uint8),
             "bgra8": (4, np.uint8), "mono8": (1, np.uint8), "8uc1": (1, np.uint8),
             "8uc3": (3, np.uint8), "8uc4": (4, np.uint8), "mono16": (1, np.uint16),
             "16uc1": (1, np.uint16), **{k: (1, np.uint8) for k in _BAYER}}


def image_msg_to_rgb(msg):
    """sensor_msgs/Image (as deserialised by rosbags) -> uint8 RGB (H, W, 3).

    Handles rgb8, bgr8, rgba8, bgra8, mono8, mono16, 8UC1/3/4 (BGR order assumed), 16UC1 and
    8-bit Bayer; honours ``step`` and ``is_bigendian``. Raises InputError otherwise.
    """
    encoding = str(msg.encoding).lower()
    if encoding not in _CHANNELS:
        raise InputError(f"unsupported image encoding {msg.encoding!r}; supported: "
                         f"{', '.join(sorted(_CHANNELS))}")
    channels, dtype = _CHANNELS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    row = width * channels * itemsize
    data = np.asarray(msg.data, dtype=np.uint8).ravel()
    if height == 0 or width == 0 or step < row or data.size < height * step:
        raise InputError(f"malformed {msg.encoding} image: {width}x{height}, step {step}, "
                         f"{data.size} bytes")
    pixels = np.ascontiguousarray(data[:height * step].reshape(height, step)[:, :row])
    pixels = pixels.view(np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<"))
    pixels = pixels.reshape(height, width, channels).astype(dtype)
    if dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if encoding in _BAYER:
        return cv2.cvtColor(pixels[..., 0], _BAYER[encoding])
    if channels == 1:
        return np.repeat(pixels, 3, axis=-1)
    if encoding.startswith("bgr") or encoding.startswith("8uc"):
        return np.ascontiguousarray(pixels[..., 2::-1])
    return np.ascontiguousarray(pixels[..., :3])


def compressed_msg_to_rgb(msg):
    """sensor_msgs/CompressedImage (jpeg, png, ...) -> uint8 RGB (H, W, 3)."""
    data = np.asarray(msg.data, dtype=np.uint8).ravel()
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError(f"cannot decode compressed image (format {msg.format!r}, "
                         f"{data.size} bytes)")
    return decoded_to_rgb8(image)


def _pose_msg_to_matrix(pose):
    """geometry_msgs/Pose -> 4x4."""
    p, q = pose.position, pose.orientation
    return pose_from_rt(matrix_from_quat([q.x, q.y, q.z, q.w]), [p.x, p.y, p.z])


def _transform_to_matrix(transform):
    """geometry_msgs/Transform -> 4x4 (T_parent_child)."""
    t, q = transform.translation, transform.rotation
    return pose_from_rt(matrix_from_quat([q.x, q.y, q.z, q.w]), [t.x, t.y, t.z])


class _Connection:
    """What the readers below need of a topic: name, type, message count."""

    def __init__(self, topic, msgtype, msgcount):
        self.topic, self.msgtype, self.msgcount = topic, msgtype, msgcount


class _RosbagsBag:
    """A readable bag through rosbags' AnyReader (folder, .mcap or .db3)."""

    salvaged = None  # set by _SalvagedMcap: a note saying the bag is damaged

    def __init__(self, path):
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        self.path = path
        self.reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY))
        self.reader.open()
        self.topics = {name: _Connection(name, info.msgtype, info.msgcount)
                       for name, info in self.reader.topics.items()}

    def messages(self, topics):
        """(topic, msgtype, bag time ns, message) of ``topics`` in bag-time order."""
        connections = [c for c in self.reader.connections if c.topic in topics]
        for connection, timestamp, raw in self.reader.messages(connections=connections):
            yield (connection.topic, connection.msgtype, timestamp,
                   self.reader.deserialize(raw, connection.msgtype))

    def close(self):
        self.reader.close()


_MCAP_MAGIC = b"\x89MCAP0\r\n"


class _SalvagedMcap:
    """Messages of a damaged MCAP file (no footer, cut short) read from the start.

    MCAP is a sequence of records (opcode u8, length u64, body); messages sit at the top
    level or inside chunks. Reading stops at the first record that does not fit the file;
    ``salvaged`` says where. Only uncompressed (or zstd/lz4 where a decompressor is
    installed) chunks are read.
    """

    def __init__(self, path):
        from rosbags.typesys import Stores, get_typestore

        self.path = path
        self.typestore = get_typestore(Stores.ROS2_JAZZY)
        self.damage = None
        self.salvaged = None  # the note for the user, set by _open_bag_access
        self.topics = {}
        counts, types = {}, {}
        for topic, msgtype, _, _ in self._records():
            counts[topic] = counts.get(topic, 0) + 1
            types[topic] = msgtype
        self.topics = {t: _Connection(t, types[t], counts[t]) for t in counts}
        if not self.topics:
            raise ValueError(f"no readable messages ({self.damage or 'empty'})")
        self.salvaged = self.damage

    def _records(self):
        data = pathlib.Path(self.path).read_bytes()
        if not data.startswith(_MCAP_MAGIC):
            raise ValueError("not an MCAP file (bad magic)")
        schemas, channels = {}, {}
        self.damage = "the file ends early"
        yield from self._parse(data, len(_MCAP_MAGIC), len(data), schemas, channels, top=True)

    def _parse(self, data, offset, end, schemas, channels, top):
        import struct

        while offset < end:
            if offset + 9 > end:
                self.damage = f"the file ends inside a record header at byte {offset}"
                return
            opcode = data[offset]
            (length,) = struct.unpack_from("<Q", data, offset + 1)
            body_start, body_end = offset + 9, offset + 9 + length
            cut = body_end > end
            if cut and not (top and opcode == 0x06):
                self.damage = (f"record at byte {offset} needs {length} bytes, the "
                                 f"{'file' if top else 'chunk'} ends first")
                return
            body = data[body_start:min(body_end, end)]
            if opcode == 0x03:  # schema: id u16, name, encoding, data
                sid = struct.unpack_from("<H", body)[0]
                name, pos = _mcap_string(body, 2)
                schemas[sid] = name
            elif opcode == 0x04:  # channel: id u16, schema id u16, topic, encoding, metadata
                cid, sid = struct.unpack_from("<HH", body)
                topic, _ = _mcap_string(body, 4)
                channels[cid] = (topic, schemas.get(sid, ""))
            elif opcode == 0x05:  # message: channel u16, sequence u32, log u64, publish u64
                cid, _, log_time, _ = struct.unpack_from("<HIQQ", body)
                if cid in channels:
                    topic, msgtype = channels[cid]
                    yield topic, msgtype, log_time, body[22:]
            elif opcode == 0x06:  # chunk
                _, _, size, _ = struct.unpack_from("<QQQI", body)
                compression, pos = _mcap_string(body, 28)
                (records_length,) = struct.unpack_from("<Q", body, pos)
                records = body[pos + 8:pos + 8 + records_length]
                if cut:  # a chunk cut short: its uncompressed records up to the cut
                    if compression:
                        self.damage = (f"the file ends inside a {compression} chunk at "
                                         f"byte {offset}")
                        return
                    yield from self._parse(records, 0, len(records), schemas, channels,
                                           top=False)
                    self.damage = f"the file ends inside the chunk at byte {offset}"
                    return
                records = _mcap_decompress(records, compression, size)
                if records is None:
                    self.damage = f"chunk compression {compression!r} not readable here"
                    return
                yield from self._parse(records, 0, len(records), schemas, channels, top=False)
            elif opcode in (0x0F, 0x02):  # data end, footer: the file is complete here
                if top:
                    self.damage = None
                return
            offset = body_end

    def messages(self, topics):
        for topic, msgtype, log_time, raw in self._records():
            if topic in topics:
                yield topic, msgtype, log_time, self.typestore.deserialize_cdr(raw, msgtype)

    def close(self):
        pass


def _mcap_string(body, pos):
    import struct

    (n,) = struct.unpack_from("<I", body, pos)
    return body[pos + 4:pos + 4 + n].decode("utf-8", "replace"), pos + 4 + n


def _mcap_decompress(records, compression, size):
    if compression == "":
        return records
    try:
        if compression == "zstd":
            try:
                from compression import zstd
                return zstd.decompress(records)
            except ImportError:
                import zstandard
                return zstandard.ZstdDecompressor().decompress(records, max_output_size=size)
        if compression == "lz4":
            import lz4.frame
            return lz4.frame.decompress(records)
    except ImportError:
        return None
    return None


def _mcap_files(path):
    path = pathlib.Path(path)
    if path.suffix == ".mcap":
        return [path]
    if path.is_dir():
        return sorted(path.glob("*.mcap"))
    return []


def _open_bag_access(path):
    """A reader for the bag; a damaged MCAP recording is salvaged up to the damage."""
    try:
        return _RosbagsBag(path)
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        files = _mcap_files(path)
        if len(files) == 1:
            try:
                bag = _SalvagedMcap(files[0])
            except Exception as salvage_error:
                reason += f"; salvage failed: {salvage_error}"
            else:
                bag.salvaged = (f"bag {path} is truncated or corrupt ({reason}); read the "
                                f"messages before the damage: {bag.damage}")
                return bag
        raise InputError(f"cannot open bag {path}: corrupt or not a rosbag2 recording "
                         f"({reason})") from None


def _topic_table(topics):
    return ", ".join(f"{name} [{info.msgtype}, {info.msgcount} msgs]"
                     for name, info in sorted(topics.items())) or "(no topics)"


def _choose_topic(topics, asked, default, types, what, path, required=True, hint=""):
    """Topic name for `what`: the asked one, else the default, else the only one of a type."""
    if asked:
        if asked not in topics:
            raise InputError(f"{path}: topic {asked} ({what}) not in the bag; "
                             f"its topics: {_topic_table(topics)}")
        if topics[asked].msgtype not in types:
            raise InputError(f"{path}: topic {asked} has type {topics[asked].msgtype}, which is "
                             f"not a {what} type ({', '.join(types)})")
        return asked
    if default in topics and topics[default].msgtype in types:
        return default
    fitting = [name for name, info in topics.items() if info.msgtype in types]
    if len(fitting) == 1:
        return fitting[0]
    if not required:
        return None
    if fitting:
        raise InputError(f"{path}: several {what} topics ({', '.join(sorted(fitting))}); pick "
                         f"one with the matching --*-topic flag")
    raise InputError(f"{path}: no {what} topic ({default} absent, no topic of type "
                     f"{' or '.join(types)}){hint}; its topics: {_topic_table(topics)}")


def _open_bag(path, options):
    bag = _open_bag_access(path)
    try:
        topics = dict(bag.topics)
        info = {"topics": {name: f"{t.msgtype} ({t.msgcount} msgs)" for name, t in topics.items()}}
        if bag.salvaged:
            info["damaged"] = bag.salvaged
        image_topic = _choose_topic(topics, options.image_topic, DEFAULT_IMAGE_TOPIC,
                                    IMAGE_TYPES, "image", path)
        info["image_topic"] = f"{image_topic} ({topics[image_topic].msgtype})"
        K, undistort = None, None
        if options.K is None:
            cam_topic = _choose_topic(topics, options.camera_info_topic,
                                      DEFAULT_CAMERA_INFO_TOPIC, (CAMERA_INFO_TYPE,),
                                      "camera info", path, required=False)
            if cam_topic:
                K, undistort, note = _read_camera_info(bag, cam_topic, path)
                info["intrinsics_source"] = f"{cam_topic} ({CAMERA_INFO_TYPE})"
                if note:
                    info["distortion"] = note
        gt, notes = None, []
        if not options.gt_tum:
            gt, source, notes = _read_groundtruth(bag, topics, options, path)
            info["groundtruth_source"] = source
        if notes:
            info["groundtruth_notes"] = notes
    finally:
        bag.close()
    count = topics[image_topic].msgcount
    damaged = bag.salvaged

    def generate():
        reader = _open_bag_access(path)
        n = 0
        try:
            try:
                for _, msgtype, timestamp, msg in reader.messages({image_topic}):
                    if msgtype.endswith("CompressedImage"):
                        image = compressed_msg_to_rgb(msg)
                    else:
                        image = image_msg_to_rgb(msg)
                    if undistort is not None:
                        image = cv2.remap(image, *undistort, cv2.INTER_LINEAR)
                    n += 1
                    yield stamp_seconds(msg.header.stamp, timestamp), image
            except InputError:
                raise
            except Exception as error:
                raise InputError(f"bag {path} is truncated or corrupt: reading {image_topic} "
                                 f"failed after {n} of {count} images "
                                 f"({type(error).__name__}: {error})") from None
        finally:
            reader.close()
        if damaged:
            raise InputError(f"{damaged}; {n} images of {image_topic} were readable")

    return EvalInput(name=input_name(path), path=str(path), kind="bag", K=K, groundtruth=gt,
                     frame_count=count, info=info, _frames=generate)


def _read_camera_info(bag, topic, path):
    try:
        for _, _, _, msg in bag.messages({topic}):
            K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
            if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
                continue  # an uncalibrated camera publishes zeros
            d = np.asarray(msg.d, dtype=np.float64)
            model = str(msg.distortion_model)
            if d.size and np.any(d != 0):
                if model in ("plumb_bob", "rational_polynomial"):
                    maps = cv2.initUndistortRectifyMap(K, d, None, K,
                                                       (int(msg.width), int(msg.height)),
                                                       cv2.CV_32FC1)
                    return K, maps, f"{model} distortion removed (cv2.remap, same K)"
                return K, None, f"distortion model {model!r} not supported: images used as they are"
            return K, None, None
    except Exception as error:
        raise InputError(f"bag {path}: cannot read {topic}: {type(error).__name__}: {error}") from None
    return None, None, f"{topic} has no calibrated message"


def _read_groundtruth(bag, topics, options, path):
    """-> (StampedPoses, source description, notes)."""
    notes = []
    frames = tuple(options.gt_frames) if options.gt_frames else None
    tf_topics = sorted(n for n, t in topics.items() if t.msgtype == TF_TYPE)
    if frames and not options.gt_topic:
        if not tf_topics:
            raise InputError(f"{path}: --gt-frames needs TF, but the bag has no "
                             f"{TF_TYPE} topic; its topics: {_topic_table(topics)}")
        gt, notes = _read_tf_chain(bag, tf_topics, frames, path)
        return gt, f"TF {frames[0]} -> {frames[1]} from {', '.join(tf_topics)}", notes
    hint = " (for TF ground truth give --gt-frames PARENT CHILD)" if tf_topics else ""
    topic = _choose_topic(topics, options.gt_topic, DEFAULT_GT_TOPIC,
                          GT_TYPES if options.gt_topic else POSE_TYPES, "ground-truth pose",
                          path, hint=hint)
    msgtype = topics[topic].msgtype
    if msgtype == TF_TYPE:
        if not frames:
            pairs = _tf_frame_pairs(bag, tf_topics)
            raise InputError(f"{path}: ground truth on {topic} ({TF_TYPE}) needs "
                             f"--gt-frames PARENT CHILD; transforms in the bag: "
                             f"{', '.join(f'{p} -> {c}' for p, c in sorted(pairs)) or 'none'}")
        used = sorted({topic} | {n for n in tf_topics if "static" in n})
        gt, notes = _read_tf_chain(bag, used, frames, path)
        return gt, f"TF {frames[0]} -> {frames[1]} from {', '.join(used)}", notes
    stamps, poses = [], []
    try:
        for _, _, timestamp, msg in bag.messages({topic}):
            if msgtype == "geometry_msgs/msg/PoseStamped":
                T = _pose_msg_to_matrix(msg.pose)
            elif msgtype == "geometry_msgs/msg/TransformStamped":
                T = _transform_to_matrix(msg.transform)
            else:  # PoseWithCovarianceStamped, Odometry: pose.pose
                T = _pose_msg_to_matrix(msg.pose.pose)
            stamps.append(stamp_seconds(msg.header.stamp, timestamp))
            poses.append(T)
    except Exception as error:
        notes.append(f"reading {topic} stopped after {len(stamps)} poses "
                     f"({type(error).__name__}: {error}); the bag may be truncated")
    if not stamps:
        raise InputError(f"{path}: ground-truth topic {topic} holds no readable messages")
    return _sorted(StampedPoses(np.array(stamps), np.array(poses))), f"{topic} ({msgtype})", notes


def _tf_messages(bag, tf_topics, notes=None):
    """Yield (parent, child, stamp s, T_parent_child, is_static) from TF topics."""
    count = 0
    try:
        for topic, _, timestamp, msg in bag.messages(set(tf_topics)):
            static = "static" in topic
            for tr in msg.transforms:
                count += 1
                yield (str(tr.header.frame_id).lstrip("/"), str(tr.child_frame_id).lstrip("/"),
                       stamp_seconds(tr.header.stamp, timestamp),
                       _transform_to_matrix(tr.transform), static)
    except Exception as error:
        if notes is None:
            raise
        notes.append(f"reading TF stopped after {count} transforms "
                     f"({type(error).__name__}: {error}); the bag may be truncated")


def _tf_frame_pairs(bag, tf_topics):
    pairs = set()
    try:
        for parent, child, *_ in _tf_messages(bag, tf_topics):
            pairs.add((parent, child))
    except Exception:
        pass
    return pairs


def _read_tf_chain(bag, tf_topics, frames, path):
    """Compose T_parent_child over the TF tree at the stamps of the chain's dynamic edges.

    Every edge (parent -> child) keeps its samples; a static edge (from a *static* topic, or
    with a single sample) is constant. The chain from PARENT to CHILD is found in the tree
    (edges may be walked backwards, i.e. inverted). The output stamps are those of the dynamic
    edge with the most samples, restricted to where every dynamic edge can be interpolated
    (translation linearly, rotation by slerp); no extrapolation.
    """
    from scipy.spatial.transform import Rotation, Slerp

    notes = []
    edges = {}
    for parent, child, stamp, T, static in _tf_messages(bag, tf_topics, notes):
        entry = edges.setdefault((parent, child), {"stamps": [], "T": [], "static": False})
        entry["stamps"].append(stamp)
        entry["T"].append(T)
        entry["static"] |= static
    parent, child = (f.lstrip("/") for f in frames)
    frames_seen = sorted({f for edge in edges for f in edge})
    for frame in (parent, child):
        if frame not in frames_seen:
            raise InputError(f"{path}: frame {frame!r} not in TF; frames: "
                             f"{', '.join(frames_seen) or 'none'}")
    # Breadth-first search on the undirected tree.
    neighbours = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append((b, (a, b), False))
        neighbours.setdefault(b, []).append((a, (a, b), True))
    previous = {parent: None}
    queue = [parent]
    while queue:
        node = queue.pop(0)
        for nxt, edge, inverted in neighbours.get(node, []):
            if nxt not in previous:
                previous[nxt] = (node, edge, inverted)
                queue.append(nxt)
    if child not in previous:
        raise InputError(f"{path}: TF has no chain from {parent!r} to {child!r}; transforms: "
                         f"{', '.join(f'{a} -> {b}' for a, b in sorted(edges))}")
    chain, node = [], child
    while previous[node] is not None:
        node_before, edge, inverted = previous[node]
        chain.append((edge, inverted))
        node = node_before
    chain.reverse()

    samplers, dynamic = [], []
    for edge, inverted in chain:
        entry = edges[edge]
        stamps = np.array(entry["stamps"])
        order = np.argsort(stamps, kind="stable")
        stamps = stamps[order]
        T = np.array(entry["T"])[order]
        keep = np.concatenate([[True], np.diff(stamps) > 0])
        stamps, T = stamps[keep], T[keep]
        if entry["static"] or len(stamps) == 1:
            samplers.append((inverted, T[-1], None, None, None))
        else:
            slerp = Slerp(stamps, Rotation.from_matrix(T[:, :3, :3]))
            samplers.append((inverted, None, stamps, T[:, :3, 3], slerp))
            dynamic.append(stamps)
    if not dynamic:
        raise InputError(f"{path}: the TF chain {parent} -> {child} is static: no trajectory")
    stamps = max(dynamic, key=len)
    lo = max(s[0] for s in dynamic)
    hi = min(s[-1] for s in dynamic)
    stamps = stamps[(stamps >= lo) & (stamps <= hi)]
    poses = np.tile(np.eye(4), (len(stamps), 1, 1))
    for inverted, fixed, edge_stamps, translations, slerp in samplers:
        if fixed is not None:
            T = np.broadcast_to(fixed, poses.shape)
        else:
            T = np.tile(np.eye(4), (len(stamps), 1, 1))
            T[:, :3, :3] = slerp(stamps).as_matrix()
            for axis in range(3):
                T[:, axis, 3] = np.interp(stamps, edge_stamps, translations[:, axis])
        if inverted:
            T = np.linalg.inv(T)
        poses = poses @ T
    chain_text = " , ".join(f"{'inv ' if inv else ''}{a}->{b}" for (a, b), inv in chain)
    notes.append(f"TF chain: {chain_text}")
    return StampedPoses(stamps.copy(), poses), notes


def describe_stamps(stamps):
    """'N stamps from a to b' for error messages."""
    stamps = np.asarray(stamps)
    if not len(stamps):
        return "no stamps"
    return f"{len(stamps)} stamps from {stamps.min():.6f} to {stamps.max():.6f}"
