"""Geometric refinement of a window's poses against dense optical flow.

The model's poses (video -> camera) fix what monocular geometry cannot: the translation scale
of every frame of the window in one consistent unit. Two-view geometry on dense flow fixes what
a small model reads poorly at 64x64: the rotation and the direction of travel. For each pair of
consecutive frames of a window, DIS optical flow gives correspondences; then

* if a pure rotation explains the flow (median reprojection error below ``rotation_px``), the
  rotation comes from that fit (Kabsch on bearing vectors) and the step's translation stays the
  model's;
* otherwise the essential matrix (RANSAC, ``cv2.findEssentialMat``) and ``cv2.recoverPose``
  give the rotation; they also give the unit direction of travel, which replaces the model's
  only where the translational parallax is large enough to fix it (that same pure-rotation
  residual at least ``direction_px``): with small baselines at low resolution the model's
  direction of travel is the better one (measured in docs/model.md); the model always gives
  the step length (its ``|c_i - c_{i-1}|``);
* with too little texture or too few inliers, or a rotation that disagrees with the model's
  step by more than ``max_disagreement_deg`` (a wrong decomposition), the model's step is
  kept.

Conventions: K (3, 3) pixels of the frames given, OpenCV camera axes, c2w (T, 4, 4)
camera-to-world relative to camera 0, as ``TrajectoryPipeline`` produces. The result is
re-normalised with ``geometry.relative_to_first``. Nothing here imports ROS or torch.
"""
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from rap_ros.geometry import (pose_from_rt, project_to_so3, relative_to_first,
                              rotation_angle_deg, scale_intrinsics)

_DIS_LOCK = threading.Lock()
_DIS = None

# Consecutive windows share T - stride frames, so most frame pairs come back in the next
# window: what the flow says of a pair is remembered for the last _MEMORY_PAIRS pairs.
_MEMORY_PAIRS = 64
_MEMORY = OrderedDict()
_MEMORY_LOCK = threading.Lock()


@dataclass(frozen=True)
class RefineOptions:
    """grid: pixel stride of flow samples (None: the stride that gives about ``samples``
    samples per frame pair; more cost time in RANSAC and pose recovery and, measured on
    held-out clips at 128 and 320 px, buy no accuracy beyond ~1,000); rotation_px:
    pure-rotation acceptance (median reprojection error, px); direction_px: the same
    residual above which the essential matrix's direction of travel replaces the model's
    (px); ransac_px: essential-matrix inlier threshold (px); min_inliers: fraction of
    samples the essential matrix must explain; min_flow_px: median flow below which a pair
    is treated as not moved; max_disagreement_deg: a step whose rotation differs from the
    model's step by more is an outlier of the flow (a wrong essential-matrix decomposition)
    and the model's step is kept. Frozen: options are part of a remembered pair's key."""

    grid: int = None
    samples: int = 1000
    rotation_px: float = 0.25
    direction_px: float = 4.0
    ransac_px: float = 0.5
    min_inliers: float = 0.5
    min_flow_px: float = 0.15
    max_disagreement_deg: float = 5.0


def _flow(gray0, gray1):
    """DIS flow (H, W, 2) in pixels taking gray0 to gray1 (one shared DIS object, locked)."""
    global _DIS
    with _DIS_LOCK:
        if _DIS is None:
            _DIS = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return _DIS.calc(gray0, gray1, None)


def correspondences(frame0, frame1, grid=2):
    """Pixel pairs (N, 2), (N, 2) from dense flow frame0 -> frame1 (uint8 RGB), sampled every
    `grid` px away from the border, keeping points that land inside frame1."""
    g0, g1 = (cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in (frame0, frame1))
    flow = _flow(g0, g1)
    H, W = g0.shape
    border = max(2, grid)
    v, u = np.mgrid[border:H - border:grid, border:W - border:grid]
    p0 = np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float64)
    p1 = p0 + flow[v.ravel(), u.ravel()].astype(np.float64)
    inside = (p1[:, 0] >= 0) & (p1[:, 0] <= W - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= H - 1)
    return p0[inside], p1[inside]


def rotation_only(p0, p1, K):
    """Rotation R (camera 1 axes in camera 0 axes, i.e. c2w rotation of camera 1 relative to
    camera 0) best explaining p0 -> p1 as a pure rotation, and its median reprojection error
    (px)."""
    Kinv = np.linalg.inv(K)
    b0 = np.c_[p0, np.ones(len(p0))] @ Kinv.T
    b1 = np.c_[p1, np.ones(len(p1))] @ Kinv.T
    b0 /= np.linalg.norm(b0, axis=1, keepdims=True)
    b1 /= np.linalg.norm(b1, axis=1, keepdims=True)
    R10 = project_to_so3(b1.T @ b0)              # b1 ~ R10 b0 with R10 = R^T
    projected = (b0 @ R10.T) @ K.T
    error = np.linalg.norm(projected[:, :2] / projected[:, 2:] - p1, axis=1)
    return R10.T, float(np.median(error))


def relative_motion(frame0, frame1, K, options):
    """What the flow says of camera 1 relative to camera 0: (R, direction, label).

    R (3, 3): camera 1 axes in camera 0's frame, or None when the flow cannot decide
    (label "model"); direction: unit centre of camera 1 in camera 0's frame, or None when the
    flow fixes only the rotation (label "rotation": a pure rotation explains it;
    "essential-rotation": too little parallax for the direction); label "essential": both.
    """
    grid = options.grid or max(2, round(np.sqrt(frame0.shape[0] * frame0.shape[1]
                                                / options.samples)))
    p0, p1 = correspondences(frame0, frame1, grid)
    if len(p0) < 16 or np.median(np.linalg.norm(p1 - p0, axis=1)) < options.min_flow_px:
        return None, None, "model"
    R, parallax = rotation_only(p0, p1, K)
    if parallax < options.rotation_px:
        return R, None, "rotation"
    E, mask = cv2.findEssentialMat(p0, p1, K, method=cv2.RANSAC, prob=0.999,
                                   threshold=options.ransac_px)
    if E is None or E.shape != (3, 3) or mask.mean() < options.min_inliers:
        return None, None, "model"
    _, R10, t10, _ = cv2.recoverPose(E, p0, p1, K, mask=mask)
    R = R10.T                                  # camera 1 axes in camera 0's frame
    if parallax < options.direction_px:
        return R, None, "essential-rotation"
    return R, -R @ t10.ravel(), "essential"    # camera 1 centre in camera 0's frame, unit


def _digest(frame):
    frame = np.ascontiguousarray(frame)
    return frame.shape, hashlib.blake2b(frame.tobytes(), digest_size=16).digest()


def remembered_relative_motion(frame0, frame1, K, options):
    """``relative_motion``, computed once per frame pair (by content) among the last
    ``_MEMORY_PAIRS`` pairs of the process; the result is the same (OpenCV's RANSAC is
    seeded), only the repeated flow and pose recovery are saved."""
    key = (_digest(frame0), _digest(frame1), np.asarray(K, dtype=np.float64).tobytes(), options)
    with _MEMORY_LOCK:
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            return _MEMORY[key]
    result = relative_motion(frame0, frame1, K, options)
    with _MEMORY_LOCK:
        _MEMORY[key] = result
        while len(_MEMORY) > _MEMORY_PAIRS:
            _MEMORY.popitem(last=False)
    return result


def refine_window(frames, K, c2w, options=None):
    """Refined poses of one window and per-frame labels of what decided each pose.

    Consecutive frames are paired (small motion keeps the flow reliable); each step's
    rotation comes from the flow, its direction from the flow where the parallax fixes it
    and from the model otherwise, its length from the model (|c_i - c_{i-1}|); a step the
    flow cannot decide is the model's own relative step.

    frames: uint8 (T, H, W, 3); K: (3, 3) at H x W; c2w: (T, 4, 4) the model's poses relative
    to frame 0. Returns (c2w (T, 4, 4) re-normalised, labels: "reference" for frame 0, then
    "model" | "rotation" | "essential-rotation" | "essential" per step).
    """
    options = options or RefineOptions()
    K = np.asarray(K, dtype=np.float64)
    c2w = np.asarray(c2w, dtype=np.float64)
    refined, labels = c2w.copy(), ["reference"]
    for i in range(1, len(frames)):
        model_step = np.linalg.inv(c2w[i - 1]) @ c2w[i]
        R, direction, label = remembered_relative_motion(frames[i - 1], frames[i], K, options)
        if R is not None and rotation_angle_deg(
                R.T @ model_step[:3, :3]) > options.max_disagreement_deg:
            R, label = None, "model"
        if R is None:
            step = model_step
        elif direction is None:
            step = pose_from_rt(R, model_step[:3, 3])
        else:
            step = pose_from_rt(R, direction * np.linalg.norm(model_step[:3, 3]))
        refined[i] = refined[i - 1] @ step
        labels.append(label)
    return relative_to_first(refined)[0], labels


def refine_at_resolution(frames, K, c2w, max_side=320, options=None):
    """``refine_window`` on frames downscaled so their longer side is at most `max_side` px
    (flow at the input's resolution, not the model's, is what makes the geometry accurate;
    the cap bounds its cost). frames: uint8 (T, H, W, 3); K (3, 3) at H x W."""
    frames = np.asarray(frames)
    H, W = frames.shape[1:3]
    factor = min(1.0, max_side / max(H, W))
    if factor < 1.0:
        size = (max(16, round(W * factor)), max(16, round(H * factor)))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        K = scale_intrinsics(K, size[0] / W, size[1] / H)
    return refine_window(frames, K, c2w, options)
