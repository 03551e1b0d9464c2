"""TUM formats: trajectory files and the image lists of TUM RGB-D folders.

Trajectory files hold one pose per line, ``timestamp tx ty tz qx qy qz qw``: camera-to-world
(the camera centre and orientation in the world frame), the quaternion Hamilton, scalar
last. List files (``rgb.txt``) hold ``timestamp path`` lines. In both, lines starting with
'#' and blank lines are ignored.
"""
from pathlib import Path

import numpy as np

from rap_ros.geometry.rotations import matrix_from_quat, quat_from_matrix
from rap_ros.io.errors import InputError
from rap_ros.io.stamped import sorted_poses

HEADER = "# timestamp tx ty tz qx qy qz qw  (c2w, OpenCV camera axes)"


def tum_rows(stamps, c2w):
    """(N,) stamps and (N, 4, 4) poses -> (N, 8) rows timestamp tx ty tz qx qy qz qw."""
    c2w = np.asarray(c2w, dtype=np.float64)
    return np.column_stack([stamps, c2w[:, :3, 3], quat_from_matrix(c2w[:, :3, :3])])


def write_tum(path, stamps: np.ndarray, c2w: np.ndarray) -> None:
    """Write stamps (T,) seconds and camera-to-world poses (T, 4, 4) to ``path``."""
    stamps, c2w = np.asarray(stamps, float), np.asarray(c2w, float)
    if c2w.shape != (len(stamps), 4, 4):
        raise ValueError(f"c2w shape {c2w.shape} does not match {len(stamps)} stamps")
    rows = tum_rows(stamps, c2w)
    lines = [HEADER] + [f"{row[0]:.9f} " + " ".join(f"{x:.12f}" for x in row[1:]) for row in rows]
    Path(path).write_text("\n".join(lines) + "\n")


def read_tum(path):
    """Read ``path``; returns stamps (T,) float64 and camera-to-world poses (T, 4, 4) float64.

    Raises ValueError naming the file and line for a line that is not 8 numbers or whose
    quaternion has zero length."""
    stamps, poses = [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            values = [float(x) for x in text.split()]
        except ValueError:
            values = []
        if len(values) != 8 or not np.isfinite(values).all() or np.linalg.norm(values[4:]) == 0:
            raise ValueError(f"{path}:{number}: expected 'timestamp tx ty tz qx qy qz qw', "
                             f"got {text!r}")
        pose = np.eye(4)
        pose[:3, :3] = matrix_from_quat(values[4:])
        pose[:3, 3] = values[1:4]
        stamps.append(values[0])
        poses.append(pose)
    return np.array(stamps), np.array(poses).reshape(-1, 4, 4)


def read_tum_trajectory(path):
    """A TUM trajectory file -> StampedPoses sorted by stamp (InputError when missing,
    unreadable or empty)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"TUM trajectory file not found: {path}")
    try:
        stamps, c2w = read_tum(path)
    except ValueError as error:
        raise InputError(f"cannot read TUM file: {error}") from None
    if not len(stamps):
        raise InputError(f"TUM file {path} holds no poses")
    return sorted_poses(stamps, c2w)


def read_tum_list(path):
    """A TUM list file (``timestamp value...`` lines) -> [(stamp, [values])]."""
    path = Path(path)
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
