"""`Clip`: a camera sequence with ground truth, shared by the renderer, the readers and writers
of sequence folders and bags, and the evaluator. Kept free of torch so that reading data
never needs it."""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Clip:
    """A camera sequence with ground truth.

    frames: (T, H, W, 3) uint8 RGB.
    K:      (3, 3) float64 pinhole intrinsics, pixel centres at integer coordinates.
    c2w:    (T, 4, 4) float64 camera-to-world poses, OpenCV camera axes, metres.
    stamps: (T,) float64 seconds.
    meta:   provenance, e.g. {"scene": "room", "trajectory": "arc", "seed": 7}.
    """

    frames: np.ndarray
    K: np.ndarray
    c2w: np.ndarray
    stamps: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)
