"""Poses over time: the container every reader returns, and timestamp association.

Stamps are float64 seconds (or the input's own unit when it counts frames); poses are
camera-to-world 4x4 float64 (``T_parent_child`` for TF ground truth).
"""
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_TIME_DIFF = 0.02  # seconds, as TUM's associate.py


@dataclass
class StampedPoses:
    """Camera-to-world poses over time.

    stamps: (N,) float64 seconds, increasing; c2w: (N, 4, 4) float64.
    """

    stamps: np.ndarray
    c2w: np.ndarray

    def __len__(self):
        return len(self.stamps)


def sorted_poses(stamps, c2w):
    """StampedPoses sorted by stamp, repeated stamps dropped (the first kept)."""
    stamps = np.asarray(stamps, dtype=np.float64)
    c2w = np.asarray(c2w, dtype=np.float64)
    order = np.argsort(stamps, kind="stable")
    stamps = stamps[order]
    keep = np.concatenate([[True], np.diff(stamps) > 0])
    return StampedPoses(stamps[keep], c2w[order][keep])


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


def describe_stamps(stamps):
    """'N stamps from a to b' for error messages."""
    stamps = np.asarray(stamps)
    if not len(stamps):
        return "no stamps"
    return f"{len(stamps)} stamps from {stamps.min():.6f} to {stamps.max():.6f}"
