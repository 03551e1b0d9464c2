"""Camera sequence folders, the layout of /work/shared/data (see its README.md):

    images/000000.png ...   frames in order
    cameras.json            width, height, intrinsics {fx, fy, cx, cy}, timestamp_meaning,
                            frames [{file, timestamp, c2w}] and descriptive keys
    poses_tum.txt           the same poses in TUM format

Poses are camera-to-world 4x4 with OpenCV camera axes (x right, y down, z forward). Images are
read back as RGB uint8 whatever their stored form (grey, RGB, RGBA composited on white).
"""
import json
from pathlib import Path

import cv2
import numpy as np

from rap_ros.io.tum import write_tum
from rap_ros.io.clip import Clip

POSE_CONVENTION = ("c2w (camera-to-world) 4x4; OpenCV camera axes: x right, y down, "
                   "z forward (looking direction)")
CAMERA_KEYS = ("width", "height", "intrinsics", "frames")  # the rest of cameras.json -> Clip.meta


def write_sequence(out_dir, clip: Clip) -> Path:
    """Write ``clip`` as a sequence folder at ``out_dir`` (created if needed); returns the path.
    Timestamps are written as given, with timestamp_meaning "seconds"."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for index, (image, stamp, pose) in enumerate(zip(clip.frames, clip.stamps, clip.c2w)):
        name = f"images/{index:06d}.png"
        if not cv2.imwrite(str(out / name), np.ascontiguousarray(image[..., ::-1])):
            raise OSError(f"could not write {out / name}")
        frames.append({"file": name, "timestamp": float(stamp), "c2w": pose.tolist()})
    height, width = clip.frames.shape[1:3]
    cameras = {
        "name": out.name,
        "kind": "synthetic (rap_ros.synth)",
        "meta": clip.meta,
        "width": int(width),
        "height": int(height),
        "intrinsics": {
            "fx": float(clip.K[0, 0]),
            "fy": float(clip.K[1, 1]),
            "cx": float(clip.K[0, 2]),
            "cy": float(clip.K[1, 2]),
            "distortion_model": "none",
        },
        "timestamp_meaning": "seconds",
        "pose_convention": POSE_CONVENTION,
        "num_frames": len(frames),
        "frames": frames,
    }
    (out / "cameras.json").write_text(json.dumps(cameras, indent=1))
    write_tum(out / "poses_tum.txt", clip.stamps, clip.c2w)
    return out


def read_rgb(path) -> np.ndarray:
    """Image file -> (H, W, 3) uint8 RGB. Grey is repeated, alpha composited on white."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: expected 8-bit channels, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    rgb = image[..., 2::-1].astype(np.float32)
    if image.shape[2] == 4:
        alpha = image[..., 3:].astype(np.float32) / 255
        rgb = rgb * alpha + 255 * (1 - alpha)
    return np.ascontiguousarray(rgb.round().astype(np.uint8))


def read_sequence(folder) -> Clip:
    """Read a sequence folder into a Clip. ``stamps`` are cameras.json's timestamps as stored
    (``meta["timestamp_meaning"]`` says whether they are seconds or frame indices); every
    other descriptive key of cameras.json is kept in ``meta``, plus ``meta["path"]``."""
    folder = Path(folder)
    cameras = json.loads((folder / "cameras.json").read_text())
    intrinsics = cameras["intrinsics"]
    K = np.array([[intrinsics["fx"], 0.0, intrinsics["cx"]],
                  [0.0, intrinsics["fy"], intrinsics["cy"]],
                  [0.0, 0.0, 1.0]])
    frames = np.stack([read_rgb(folder / frame["file"]) for frame in cameras["frames"]])
    expected = (cameras["height"], cameras["width"])
    if frames.shape[1:3] != expected:
        raise ValueError(f"{folder}: images are {frames.shape[1:3]} (height, width), "
                         f"cameras.json says {expected}")
    meta = {key: value for key, value in cameras.items() if key not in CAMERA_KEYS}
    meta["path"] = str(folder)
    return Clip(
        frames=frames,
        K=K,
        c2w=np.array([frame["c2w"] for frame in cameras["frames"]], dtype=np.float64),
        stamps=np.array([frame["timestamp"] for frame in cameras["frames"]], dtype=np.float64),
        meta=meta,
    )
