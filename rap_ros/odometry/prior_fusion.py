"""`PriorFusion`: the odometry core's use of a learned motion prior (``prior.MotionPrior``,
method "rap") — when the model runs on the buffered window of frames, scaling its motion
to the map, between-factors for the bundle adjustment, the model/geometry disagreement for
the health signal, its relative motion for frames the map cannot place, and the
intrinsics when none are given.

Conventions: poses are camera-to-world 4x4 float64 with OpenCV camera axes (x right, y down,
z forward), in the map's units (``window_scale`` scales the model's to them); K (3, 3)
pixels; frames are uint8 RGB (H, W, 3); angles in degrees where a name says so; times in
seconds.
"""
import os
import threading
import time
from collections import deque

import numpy as np

from rap_ros.geometry.cameras import invert_pose
from rap_ros.geometry.rotations import rotation_angle_deg
from rap_ros.odometry.prior import relative_factor, window_scale


class PriorFusion:
    """The prior's state for one run of the core. ``prior``: a ``MotionPrior`` or None (then
    only ``disagreement`` (0) and ``scale`` are used); ``executor``: a one-worker executor
    for ``prior_async`` (else None); ``stats``: the core's counters dict; ``local_map``: its
    ``LocalMap`` (frame records, window keyframes, between-factors); ``placed``: recent
    frames the map placed (PnP / initialisation); ``inliers``: recent frame -> PnP inliers."""

    def __init__(self, prior, cfg, executor, stats, local_map, placed, inliers):
        self.prior, self.cfg, self.executor, self.stats = prior, cfg, executor, stats
        self.map, self.placed, self.inliers = local_map, placed, inliers
        self.buffer = deque(maxlen=prior.window if prior else 1)  # (frame, RGB image)
        self.held = []              # (image, stamp) of frames waiting for the model's K
        self.scale_to_map = None    # the model's scale to the map's (running average)
        self.last_frame = -10**9    # newest frame of the last model window
        self.last_check = 0         # frame of the last health check
        self.disagreement = 0.0     # model vs geometry rotation over the last window, deg
        self.future = None          # (frames, Future) of the window on the worker

    @property
    def full(self):
        return len(self.buffer) == self.prior.window

    def add(self, index, image):
        """Buffer frame ``index`` (uint8 grey or RGB) for the model's window."""
        self.buffer.append((index, rgb(image)))

    def intrinsics(self):
        """K (3, 3) from the model on the held frames (a full window of them), and those
        frames, no longer held."""
        frames = np.stack([rgb(im) for im, _ in self.held])
        t = time.perf_counter()
        window = self.prior.estimate(frames, None)
        self.stats["prior_seconds"] += time.perf_counter() - t
        held, self.held = self.held, []
        return np.asarray(window.K, float), held

    def scale(self, f):
        """Multiply the model-to-map scale by ``f`` (``VisualOdometry.set_scale``)."""
        if self.scale_to_map is not None:
            self.scale_to_map *= f

    def cancel(self):
        if self.future is not None:
            self.future[1].cancel()
            self.future = None

    # ------------------------------------------------------------------ per frame
    def step(self, index, K):
        """At a tracked frame: use a finished worker window, run the model when a full window
        is due (every ``prior_stride`` frames, as ``prior_schedule`` says)."""
        cfg = self.cfg
        self.collect()
        stride = cfg.prior_stride or (self.prior.window - 1)
        if index - self.last_frame >= stride and self.full and self._due(index):
            self._run(K)

    def fallback_motion(self, index, K):
        """The model's relative pose from frame index - 1 to ``index`` in the map's scale, for a
        frame the map cannot place (with ``prior_on_fallback``), or None."""
        if self.prior is None or not self.cfg.prior_on_fallback or not self.full or \
                index - self.last_frame <= 1:
            return None
        rel = self.relative(index - 1, index, K)
        if rel is not None:
            self.stats["prior_fallback"] += 1
        return rel

    def relative(self, a, b, K, to_map=True):
        """The model's relative pose from frame a to frame b (both in the buffer), scaled to
        the map (last known window scale; ``to_map=False``: in the model's own scale), or
        None."""
        frames, window = self._estimate(K)
        if a not in frames or b not in frames:
            return None
        rel = invert_pose(window.c2w[frames.index(a)]) @ window.c2w[frames.index(b)]
        if not to_map:
            return rel
        geo, valid = self._geo_poses(frames)
        valid[frames.index(b)] = False
        s = window_scale(window.c2w, geo, valid)
        if s is None or s <= 0:
            s = self.scale_to_map
        if s is None:
            return None
        rel[:3, 3] *= s
        return rel

    # ------------------------------------------------------------------ model windows
    def _window_frames(self):
        frames = [f for f, _ in self.buffer]
        images = np.stack([im for _, im in self.buffer])
        return frames, images

    def _estimate(self, K):
        frames, images = self._window_frames()
        t = time.perf_counter()
        window = self.prior.estimate(images, K)
        self.stats["prior_seconds"] += time.perf_counter() - t
        self.stats["prior_windows"] += 1
        self.last_frame = frames[-1]
        return frames, window

    def _geo_poses(self, frames):
        """The map's poses (T, 4, 4) of ``frames`` and which are valid (placed by the map
        and tied to a keyframe whose pose is kept)."""
        records, poses, valid = self.map.records, [], []
        for f in frames:
            rec = records.get(f)
            ok = rec is not None and rec[0] is not None and (rec[0] in self.map.kf_pose) \
                and f in self.placed
            poses.append(self.map.pose_of(f) if rec is not None else np.eye(4))
            valid.append(ok)
        return np.array(poses), np.array(valid)

    def _geometry_weak(self, frames):
        """A window is weak when one of its frames was not placed by the map or had fewer than
        2 x ``degraded_inliers`` PnP inliers."""
        placed = set(self.placed)
        return any(f not in placed for f in frames) or \
            min(self.inliers.get(f, 0) for f in frames) < 2 * self.cfg.degraded_inliers

    def _due(self, index):
        cfg = self.cfg
        if cfg.prior_schedule == "always":
            return True
        if cfg.prior_check_every and index - self.last_check >= cfg.prior_check_every:
            self.last_check = index
            return True
        if cfg.prior_factors == "off":
            return False  # nothing to feed: the model runs only for health, init, fallback
        return self._geometry_weak([f for f, _ in self.buffer])

    def _run(self, K):
        """Run the model on the buffered window, now or (``prior_async``) on the worker
        thread whose result is used at a later frame; see ``_use``."""
        if not self.cfg.prior_async:
            self._use(*self._estimate(K))
            return
        if self.future is not None:
            return  # one window in flight at a time
        frames, images = self._window_frames()
        self.last_frame = frames[-1]
        # ONNX Runtime releases the GIL while it runs: the model overlaps the tracking.
        self.future = (frames, self.executor.submit(self._timed, images, K))

    def _timed(self, images, K):
        t = time.perf_counter()
        return self.prior.estimate(images, K), time.perf_counter() - t

    def collect(self, wait=False):
        """Use the worker's model window once it is done (or wait for it)."""
        if self.future is None or not (wait or self.future[1].done()):
            return
        frames, future = self.future
        self.future = None
        window, seconds = future.result()
        self.stats["prior_seconds"] += seconds
        self.stats["prior_windows"] += 1
        self._use(frames, window)

    def _use(self, frames, window):
        """Scale a model window to the map; add between-factors between consecutive keyframes
        inside it (as ``prior_factors`` says); update the disagreement signal."""
        cfg = self.cfg
        geo, valid = self._geo_poses(frames)
        s = window_scale(window.c2w, geo, valid)
        if s is not None and s > 0:
            self.scale_to_map = s if self.scale_to_map is None else \
                0.5 * self.scale_to_map + 0.5 * s
        s = s if s else self.scale_to_map
        idx = np.flatnonzero(valid)
        if len(idx) >= 2:
            a, b = idx[0], idx[-1]
            R_geo = (invert_pose(geo[a]) @ geo[b])[:3, :3]
            R_mod = (invert_pose(window.c2w[a]) @ window.c2w[b])[:3, :3]
            self.disagreement = float(rotation_angle_deg(R_geo.T @ R_mod))
        if s is None:
            return
        weak = (~valid).any() or self._geometry_weak(frames)
        if cfg.prior_factors == "off" or (cfg.prior_factors == "weak" and not weak):
            return
        by_frame = {kf.frame: kf for kf in self.map.window}
        kfs = [by_frame[f] for f in frames if f in by_frame]
        for ka, kb in zip(kfs[:-1], kfs[1:]):
            i, j = frames.index(ka.frame), frames.index(kb.frame)
            T, cov = relative_factor(window, i, j, s, np.radians(cfg.prior_rot_floor_deg),
                                     cfg.prior_trans_floor, 1e-3 * s)
            self.map.betweens.append((ka.kid, kb.kid, T, cov))
            self.stats["prior_factors"] += 1


def lower_thread_priority(increment):
    """Add ``increment`` to the calling thread's niceness (Linux keeps one per thread; a
    thread ONNX Runtime runs a single-threaded session on is the caller). A no-op where the
    platform has no per-thread priorities or refuses the change."""
    if increment <= 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
    except (AttributeError, OSError):
        pass


def rgb(image):
    """uint8 (H, W, 3) RGB of a grey (H, W) or RGB(A) image."""
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]
