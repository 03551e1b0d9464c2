"""TUM trajectory files: one pose per line, ``timestamp tx ty tz qx qy qz qw``.

Poses are camera-to-world (the camera centre and orientation in the world frame); the
quaternion is Hamilton, scalar last. Lines starting with '#' and blank lines are ignored.
"""
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

HEADER = "# timestamp tx ty tz qx qy qz qw  (c2w, OpenCV camera axes)"


def write_tum(path, stamps: np.ndarray, c2w: np.ndarray) -> None:
    """Write stamps (T,) seconds and camera-to-world poses (T, 4, 4) to ``path``."""
    stamps, c2w = np.asarray(stamps, float), np.asarray(c2w, float)
    if c2w.shape != (len(stamps), 4, 4):
        raise ValueError(f"c2w shape {c2w.shape} does not match {len(stamps)} stamps")
    quats = Rotation.from_matrix(c2w[:, :3, :3]).as_quat()  # x, y, z, w
    rows = np.column_stack([stamps, c2w[:, :3, 3], quats])
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
        pose[:3, :3] = Rotation.from_quat(values[4:]).as_matrix()
        pose[:3, 3] = values[1:4]
        stamps.append(values[0])
        poses.append(pose)
    return np.array(stamps), np.array(poses).reshape(-1, 4, 4)
