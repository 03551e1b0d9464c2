"""The evaluator's inputs: images, intrinsics and ground truth from one input, as asked.

The readers are ``rap_ros.io`` (``bag``, ``messages``, ``tf``, ``sequence``, ``tum``,
``intrinsics``); this module detects the kind of an input, picks its topics and ground
truth from the options and the bag's contents, and hands out an ``EvalInput``.

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

Every input's frames go through ``rap_ros.io.camera_frames.CameraFrames``, the admission the
trajectory_estimator node runs too: images over ``max_image_pixels`` are downscaled (counted
in ``EvalInput.camera.downscaled``), then undistorted with camera_info's K and D, or, with
``rectified``, taken as they are with camera_info's P; ``EvalInput.K`` is the intrinsics of
the admitted images.

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
import pathlib
from dataclasses import dataclass, field

import cv2
import numpy as np

from rap_ros.io.bag import open_bag
from rap_ros.io.camera_frames import DEFAULT_MAX_IMAGE_PIXELS, CameraFrames
from rap_ros.io.errors import InputError
from rap_ros.io.images import as_rgb8, decoded_to_rgb8
from rap_ros.io.intrinsics import (find_intrinsics_file, intrinsics_matrix_from,
                                   load_intrinsics)
from rap_ros.io.messages import (any_image_to_rgb8, camera_info_calibration,
                                 pose_message_to_matrix, stamp_seconds)
from rap_ros.io.sequence import read_sequence
from rap_ros.io.stamped import DEFAULT_MAX_TIME_DIFF, StampedPoses, sorted_poses
from rap_ros.io.tf import read_tf_chain, tf_frame_pairs
from rap_ros.io.tum import read_tum_list, read_tum_trajectory

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_GT_TOPIC = "/ground_truth/pose"

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped",
              "geometry_msgs/msg/TransformStamped", "nav_msgs/msg/Odometry")
GT_TYPES = POSE_TYPES + (TF_TYPE,)


@dataclass
class InputOptions:
    """What to read from an input (the `rap-ros evaluate` flags).

    image_topic, camera_info_topic, gt_topic: None = the defaults of ``rap-ros synth --bag``,
        falling back to the only topic of a fitting type when the default is absent.
    gt_frames: (PARENT, CHILD) for TF ground truth. gt_tum: a TUM file overriding any other
        ground truth. K: (3, 3) intrinsics overriding the input's (for the images as
        recorded). max_time_diff: seconds allowed between an image and its ground-truth pose.
        groundtruth: False reads no ground truth from bags (pseudo-labelling a recording that
        has none). rectified: the bag's images are rectified (image_rect): camera_info's P,
        no undistortion (else K and D). max_image_pixels: larger images are downscaled on
        arrival, intrinsics with them (the trajectory_estimator's parameter of that name and
        its default; None or 0: no limit).
    """

    image_topic: str = None
    camera_info_topic: str = None
    gt_topic: str = None
    gt_frames: tuple = None
    gt_tum: str = None
    K: np.ndarray = None
    max_time_diff: float = DEFAULT_MAX_TIME_DIFF
    groundtruth: bool = True
    rectified: bool = False
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


@dataclass
class EvalInput:
    """One opened input.

    name: short name (folder or file stem); path: where it was read; kind: "bag",
    "sequence" or "tum". K: (3, 3) intrinsics in pixels or None (unknown); groundtruth:
    StampedPoses or None; frame_count: frames the input announces (None if unknown).
    info: what was read from where (topics and types, notes) for the report. camera: the
    ``CameraFrames`` the frames are admitted through (its ``downscaled`` counts the frames
    downscaled so far). ``frames()`` yields (stamp seconds, uint8 RGB (H, W, 3)) in order,
    admitted (downscaled, undistorted); K is for them.
    """

    name: str
    path: str
    kind: str
    K: np.ndarray = None
    groundtruth: StampedPoses = None
    frame_count: int = None
    info: dict = field(default_factory=dict)
    camera: CameraFrames = None
    _frames: object = None
    _calibration: tuple = None  # the opener's (K, (width, height) or None[, model, d]) of the
    #                             recorded images, for ``open_input`` to admit the frames with

    def frames(self):
        return self._frames()


def intrinsics_from_flags(fx, fy, cx, cy):
    """K from the --fx --fy --cx --cy flags (all four, or none -> None)."""
    given = [v is not None for v in (fx, fy, cx, cy)]
    if not any(given):
        return None
    if not all(given):
        raise InputError("give all four of --fx --fy --cx --cy (or --intrinsics FILE)")
    return intrinsics_matrix_from(fx, fy, cx, cy, "--fx/--fy")


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
    calibration = source._calibration
    if options.K is not None:
        if source.K is not None:
            source.info["intrinsics_overridden"] = True
        source.K = np.asarray(options.K, np.float64)
        source.info["intrinsics_source"] = "command line"
        calibration = None
    if calibration is None and source.K is not None:
        calibration = (source.K, None)  # pinhole; the size is the first frame's
    _admit_frames(source, calibration, options)
    if options.gt_tum:
        source.groundtruth = read_tum_trajectory(options.gt_tum)
        source.info["groundtruth_source"] = f"TUM file {options.gt_tum}"
    return source


def _admit_frames(source, calibration, options):
    """Put the input's frames through a CameraFrames (as the node admits them); K becomes
    the admitted images' intrinsics."""
    camera = CameraFrames(max_image_pixels=options.max_image_pixels,
                          rectified=options.rectified)
    source.camera = camera
    if options.max_image_pixels:
        source.info["max_image_pixels"] = int(options.max_image_pixels)
    if calibration is not None:
        K, size, *distortion = calibration  # (K, size or None[, model, d])
        size = size or _first_frame_size(source)
        if size is not None:
            camera.calibrate(K, size, *distortion)
            source.K = camera.admitted_K()
            if camera.calibration.note:
                source.info["distortion"] = camera.calibration.note
    raw = source._frames

    def admitted():
        for n, (stamp, image) in enumerate(raw()):
            frame = camera.admit(image)
            calibrated = camera.calibration
            if calibrated is not None and frame.K is None:
                raise InputError(f"{source.path}: image {n} is {frame.recorded_size[0]}x"
                                 f"{frame.recorded_size[1]}, the intrinsics are for "
                                 f"{calibrated.size[0]}x{calibrated.size[1]} images")
            yield stamp, frame.rgb

    source._frames = admitted


def _first_frame_size(source):
    """(width, height) of the input's first frame, or None when it cannot be read (the
    frames then report why)."""
    try:
        for _, image in source._frames():
            return image.shape[1], image.shape[0]
    except InputError:
        return None
    return None


# ------------------------------------------------------------------ sequence folders


def _open_sequence(path, options):
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
            yield float(stamp), as_rgb8(frame)

    K = np.asarray(clip.K, dtype=np.float64)
    size = (np.shape(frames[0])[1], np.shape(frames[0])[0]) if len(frames) else None
    return EvalInput(name=input_name(path), path=str(path), kind="sequence", K=K,
                     groundtruth=sorted_poses(stamps.copy(), clip.c2w),
                     frame_count=len(frames), info=info, _frames=generate,
                     _calibration=(K, size))


# ------------------------------------------------------------------ TUM RGB-D folders


def _open_tum(path, options):
    rows = read_tum_list(path / "rgb.txt")
    if not rows:
        raise InputError(f"{path / 'rgb.txt'} lists no images")
    stamps = np.array([r[0] for r in rows])
    files = [path / r[1][0] for r in rows]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(f"{len(missing)} images listed in rgb.txt are missing, first: {missing[0]}")
    K, source = None, find_intrinsics_file(path)
    if source is not None:
        K, source = load_intrinsics(source), str(source)
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
    bag = open_bag(path)
    try:
        topics = dict(bag.topics)
        info = {"topics": {name: f"{t.msgtype} ({t.msgcount} msgs)" for name, t in topics.items()}}
        if bag.damaged:
            info["damaged"] = bag.damaged
        image_topic = _choose_topic(topics, options.image_topic, DEFAULT_IMAGE_TOPIC,
                                    IMAGE_TYPES, "image", path)
        info["image_topic"] = f"{image_topic} ({topics[image_topic].msgtype})"
        K, calibration = None, None
        if options.K is None:
            cam_topic = _choose_topic(topics, options.camera_info_topic,
                                      DEFAULT_CAMERA_INFO_TOPIC, (CAMERA_INFO_TYPE,),
                                      "camera info", path, required=False)
            if cam_topic:
                calibration, note = _read_camera_info(bag, cam_topic, path, options.rectified)
                K = calibration[0] if calibration else None
                info["intrinsics_source"] = (f"{cam_topic} ({CAMERA_INFO_TYPE}"
                                             f"{', P: rectified images' if options.rectified else ''})")
                if note:
                    info["distortion"] = note
        gt, notes = None, []
        if not options.gt_tum and options.groundtruth:
            gt, source, notes = _read_groundtruth(bag, topics, options, path)
            info["groundtruth_source"] = source
        if notes:
            info["groundtruth_notes"] = notes
    finally:
        bag.close()
    count = topics[image_topic].msgcount
    damaged = bag.damaged

    def generate():
        reader = open_bag(path)
        n = 0
        try:
            try:
                for _, _, timestamp, msg in reader.messages({image_topic}):
                    try:
                        image = any_image_to_rgb8(msg)
                    except ValueError as error:  # a message that is no usable image
                        raise InputError(f"bag {path}: image {n} of {image_topic}: "
                                         f"{error}") from None
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
                     frame_count=count, info=info, _frames=generate, _calibration=calibration)


def _read_camera_info(bag, topic, path, rectified=False):
    """-> ((K, (width, height), model, d) or None, note or None) of the first calibrated
    message: K and D, or P and no distortion when ``rectified`` (``camera_info_calibration``,
    as the node reads camera_info)."""
    try:
        for _, _, _, msg in bag.messages({topic}):
            try:
                return camera_info_calibration(msg, rectified), None
            except ValueError:
                continue  # an uncalibrated camera publishes zeros
    except Exception as error:
        raise InputError(f"bag {path}: cannot read {topic}: {type(error).__name__}: {error}") from None
    return None, f"{topic} has no calibrated message"


def _read_groundtruth(bag, topics, options, path):
    """-> (StampedPoses, source description, notes)."""
    notes = []
    frames = tuple(options.gt_frames) if options.gt_frames else None
    tf_topics = sorted(n for n, t in topics.items() if t.msgtype == TF_TYPE)
    if frames and not options.gt_topic:
        if not tf_topics:
            raise InputError(f"{path}: --gt-frames needs TF, but the bag has no "
                             f"{TF_TYPE} topic; its topics: {_topic_table(topics)}")
        gt, notes = read_tf_chain(bag, tf_topics, frames, path)
        return gt, f"TF {frames[0]} -> {frames[1]} from {', '.join(tf_topics)}", notes
    hint = " (for TF ground truth give --gt-frames PARENT CHILD)" if tf_topics else ""
    topic = _choose_topic(topics, options.gt_topic, DEFAULT_GT_TOPIC,
                          GT_TYPES if options.gt_topic else POSE_TYPES, "ground-truth pose",
                          path, hint=hint)
    msgtype = topics[topic].msgtype
    if msgtype == TF_TYPE:
        if not frames:
            pairs = tf_frame_pairs(bag, tf_topics)
            raise InputError(f"{path}: ground truth on {topic} ({TF_TYPE}) needs "
                             f"--gt-frames PARENT CHILD; transforms in the bag: "
                             f"{', '.join(f'{p} -> {c}' for p, c in sorted(pairs)) or 'none'}")
        used = sorted({topic} | {n for n in tf_topics if "static" in n})
        gt, notes = read_tf_chain(bag, used, frames, path)
        return gt, f"TF {frames[0]} -> {frames[1]} from {', '.join(used)}", notes
    stamps, poses = [], []
    try:
        for _, _, timestamp, msg in bag.messages({topic}):
            T = pose_message_to_matrix(msg)
            stamps.append(stamp_seconds(msg.header.stamp, timestamp))
            poses.append(T)
    except Exception as error:
        notes.append(f"reading {topic} stopped after {len(stamps)} poses "
                     f"({type(error).__name__}: {error}); the bag may be truncated")
    if not stamps:
        raise InputError(f"{path}: ground-truth topic {topic} holds no readable messages")
    return sorted_poses(stamps, poses), f"{topic} ({msgtype})", notes


