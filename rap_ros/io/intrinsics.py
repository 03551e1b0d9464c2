"""Camera intrinsics files: K (3, 3) in pixels from small YAML or JSON files.

Accepted layouts: ``fx, fy, cx, cy`` at the top level or under ``intrinsics``/``camera``;
``K``/``k``/``camera_matrix``/``intrinsic_matrix`` as 9 numbers, a 3x3 list, or ROS
calibration YAML (``camera_matrix: {rows: 3, cols: 3, data: [...]}``). Pixel centres at
integer coordinates, as everywhere in rap_ros.
"""
import json
from pathlib import Path

import numpy as np
import yaml

from rap_ros.io.errors import InputError

# Names of an intrinsics file looked for beside the images of a folder input.
INTRINSICS_FILES = ("intrinsics.yaml", "intrinsics.yml", "intrinsics.json", "camera.yaml",
                    "camera.json", "calibration.yaml")


def check_K(K, what):
    """K (3, 3) with positive finite fx, fy, or InputError naming ``what``."""
    K = np.asarray(K, dtype=np.float64)
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"{what}: intrinsics need positive finite fx, fy, got {K.tolist()}")
    return K


def intrinsics_matrix_from(fx, fy, cx, cy, what="intrinsics"):
    """K from the four numbers, checked."""
    return check_K(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64), what)


def intrinsics_from_mapping(data):
    """K from a parsed YAML/JSON mapping (layouts in the module docstring), or None."""
    if not isinstance(data, dict):
        return None
    if all(k in data for k in ("fx", "fy", "cx", "cy")):
        return intrinsics_matrix_from(data["fx"], data["fy"], data["cx"], data["cy"])
    for key in ("K", "k", "camera_matrix", "intrinsic_matrix"):
        if key in data:
            value = data[key]
            if isinstance(value, dict):
                value = value.get("data")
            return check_K(np.asarray(value, dtype=np.float64).reshape(3, 3), key)
    for key in ("intrinsics", "camera"):
        if key in data:
            K = intrinsics_from_mapping(data[key])
            if K is not None:
                return K
    return None


def load_intrinsics(path):
    """K (3, 3) from a small YAML or JSON file (InputError when missing or unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"intrinsics file not found: {path}")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except Exception as error:
        raise InputError(f"cannot parse intrinsics file {path}: {error}") from None
    K = intrinsics_from_mapping(data)
    if K is None:
        raise InputError(f"intrinsics file {path} has neither fx, fy, cx, cy nor a K / "
                         "camera_matrix entry")
    return K


def find_intrinsics_file(folder):
    """The first of INTRINSICS_FILES in ``folder``, or None."""
    for name in INTRINSICS_FILES:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None
