"""The trajectory_estimator's methods "rap" and "geometry": frames through the odometry core.

``OdometryFrames`` admits frames by their stamps, queues them for the node's worker thread
(``queue_size`` frames; the oldest is dropped, and counted, when the queue is full), holds the
first frames while camera_info or the camera mount is awaited, and tracks each frame with
the core (``rap_ros.odometry.factory.make_odometry``, rebuilt when the image size or the
intrinsics change). A keyframe's bundle adjustment runs when no frame waits; the corrected
path, the local map and the wheel odometry's scale follow it.

Conventions: camera poses ``c2w`` are 4x4 camera-to-world in OpenCV optical axes (x right,
y down, z forward), the world being the camera at the first frame, in odometry units (the
node's ``ScaleAnchor`` turns them into metres); stamps are seconds; images (H, W, 3) uint8
rgb; K (3, 3) pixels or None. The node's lock guards the queue, the held frames, the
published trajectory and the reset flags; the core is used under ``odometry_lock`` by the
worker only.
"""
import collections
import threading
import time
from typing import NamedTuple

import numpy as np

from rap_ros.odometry import OdometryConfig
from rap_ros.odometry.factory import make_odometry
from rap_ros.pipeline.streaming import TIME_JUMP_S

# Frames that waited for a new map, placed on it per idle moment between frames (each a PnP
# of 1.5-2.5 ms at 640x480 here): after a (re)initialisation up to 60 of them would
# otherwise hold up the next frames by 50-150 ms (benchmarks/results/node_latency.md).
PLACE_PER_IDLE = 8


class QueuedFrame(NamedTuple):
    """A frame between the subscription and the odometry worker (rap, geometry)."""
    seconds: float          # header stamp (s); the node's clock for an unstamped frame
    stamp: object           # builtin_interfaces/Time for the published messages
    frame_id: str           # the image's header.frame_id
    rgb: np.ndarray         # (H, W, 3) uint8, downscaled to max_image_pixels, undistorted if K
    recorded_size: tuple    # (width, height) as recorded, for a camera_info arriving late
    K: object               # (3, 3) intrinsics of ``rgb`` or None (no camera_info yet)
    arrival: float          # time.perf_counter() at arrival, for the latency figures


class BoundedDict(collections.OrderedDict):
    """A dict that forgets its oldest entries beyond ``size`` (memory flat on long runs)."""

    def __init__(self, size):
        super().__init__()
        self.size = int(size)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        while len(self) > self.size:
            self.popitem(last=False)


class OdometryFrames:
    """Frames of the methods rap and geometry (see the module docstring).

    ``settings``: the node's ``EstimatorSettings``; ``backend``: the model (None for
    geometry); ``lock``: the node's lock; ``camera``: its ``CameraInput`` (to undistort frames
    held before camera_info); ``mount``, ``output``, ``diagnostics``, ``logger``, ``anchor``,
    ``wheel``: the node's ``CameraMount``, ``TrajectoryOutput``, ``NodeDiagnostics``, logger,
    ``ScaleAnchor`` and ``WheelScale``. Callbacks into the node, called under its lock:
    ``publish_frame(result, stamp, seconds, camera_frame, T_base_camera)`` publishes one
    tracked frame, ``request_reset(reason)`` forgets the published run; and, outside it,
    ``publish_intrinsics(K, width, height, stamp, camera_frame)`` the intrinsics in use.
    """

    def __init__(self, settings, backend, *, lock, camera, mount, output, diagnostics, logger,
                 anchor, wheel, publish_frame, publish_intrinsics, request_reset):
        self.settings, self.backend = settings, backend
        self._lock, self.camera, self.mount, self.output = lock, camera, mount, output
        self.diagnostics, self.logger, self.anchor, self.wheel = (diagnostics, logger, anchor,
                                                                  wheel)
        self.publish_frame, self.publish_intrinsics = publish_frame, publish_intrinsics
        self.request_reset = request_reset
        self.queue = collections.deque()          # QueuedFrame, subscription -> worker
        self._held = collections.deque()          # QueuedFrame waiting for camera_info/mount
        self.odometry_lock = threading.Lock()     # the odometry core, used by one thread
        self.odometry = None                      # built at the first frame (needs K)
        self._ba_runs_published = 0               # odometry.stats["ba_runs"] at the last
        #                                           path correction and map_points
        self._odometry_key = None
        self._awaiting_intrinsics = []            # (seconds, stamp) the core holds for K
        self._info_wait_start = None
        self._camera_info_timeout = settings.camera_info_timeout  # 0 once decided
        self._frame_stamps = BoundedDict(1000)    # frame index -> stamp (s), for the scale
        self._last_stamp = None                   # seconds of the last stamped frame taken
        self._reset_pending = False               # reset the core before the next frame
        self._drop_held = False                   # forget the held frames (a reset)

    # -------------------------------------------------------------- subscription side

    def admit(self, seconds):
        """Stamp checks -> (take it, reset reason or None). Caller holds the lock;
        ``seconds`` None is an unstamped frame."""
        if seconds is None:
            return True, None
        last = self._last_stamp
        if last is not None and seconds < last:
            if last - seconds <= TIME_JUMP_S:
                self.diagnostics.count("out of order")
                return False, None
            self._last_stamp = seconds
            return True, f"time jumped back {last - seconds:.1f} s"
        interval = self.settings.frame_interval
        if last is not None and interval > 0 and seconds < last + interval:
            self.diagnostics.count("skipped (frame_interval)")
            return False, None
        self._last_stamp = seconds
        return True, None

    def put(self, frame):
        """Queue a frame for the worker, dropping the oldest when full. Caller holds the
        lock."""
        if len(self.queue) >= self.settings.queue_size:
            self.queue.popleft()
            self.diagnostics.count("dropped (tracker busy)")
        self.queue.append(frame)
        self.diagnostics.tick("accepted")

    def clear(self):
        """A reset: forget the queued frames and the last stamp. Caller holds the lock."""
        self._last_stamp = None
        self.queue.clear()

    def reset_requested(self):
        """The core is reset, and the held frames dropped, before the worker's next frame.
        Caller holds the lock."""
        self._reset_pending = True
        self._drop_held = True

    # -------------------------------------------------------------- worker side

    def _odometry_for(self, K, size):
        """The odometry core for frames of ``size`` with intrinsics K, rebuilt when either
        changes or a reset was asked for."""
        key = (size, None if K is None else tuple(np.round(K, 6).ravel()))
        with self._lock:
            pending, self._reset_pending = self._reset_pending, False
        settings = self.settings
        if self.odometry is None or key != self._odometry_key:
            if self.odometry is not None:
                self.odometry.close()
                with self._lock:
                    self.request_reset("camera changed")
                    self._reset_pending = False
            self.odometry = make_odometry(settings.method, K, backend=self.backend,
                                          config=OdometryConfig(
                                              history=False, prior_async=True,
                                              ba_fallback=settings.ba_fallback,
                                              klt_predict=settings.klt_predict,
                                              model_intrinsics=settings.model_intrinsics),
                                          samples=settings.samples,
                                          steps=settings.model["steps"],
                                          seed=settings.model["seed"])
            self._odometry_key = key
            self._awaiting_intrinsics.clear()
        elif pending:
            self.odometry.reset()
            self._awaiting_intrinsics.clear()
        return self.odometry

    def _waiting_for_camera_info(self, K, seconds):
        """True while the first frames wait (at most camera_info_timeout seconds of stamps)
        for intrinsics, so the trajectory does not restart when they arrive."""
        if K is not None or self._camera_info_timeout <= 0:
            return False
        if self._info_wait_start is None:
            self._info_wait_start = seconds
        if seconds - self._info_wait_start < self._camera_info_timeout:
            return True
        if self.odometry is None:
            text = (f"no camera_info after {self._camera_info_timeout} s: intrinsics from "
                    + ("the model" if self.settings.method == "rap"
                       else "a field-of-view guess"))
            self.diagnostics.warn(text)
            self.logger.warn(text)
        self._camera_info_timeout = 0.0  # decided once per run of the node
        return False

    def process(self, frame):
        """Track one frame; frames that arrive before camera_info (up to camera_info_timeout)
        or before the camera mount (up to mount_timeout) are held, at most queue_size of
        them, and tracked in order once it is known, so none is lost."""
        with self._lock:
            if self._drop_held:
                self._held.clear()
                self._drop_held = False
        waiting = self._waiting_for(frame)
        if waiting:
            if len(self._held) >= self.settings.queue_size:
                self._held.popleft()
                self.diagnostics.count(f"dropped (waiting for {waiting})")
            self._held.append(frame)
            self.diagnostics.count(f"frames held for {waiting}")
            return
        while self._held:
            early = self._held.popleft()
            if early.K is None and frame.K is not None:
                rgb, K = self.camera.undistort(early.rgb, early.recorded_size)
                early = early._replace(rgb=rgb, K=K)
            self._track(early)
        self._track(frame)

    def _waiting_for(self, frame):
        """What ``frame`` must wait for ("camera_info", "the camera mount") or None."""
        if self._waiting_for_camera_info(frame.K, frame.seconds):
            return "camera_info"
        with self._lock:
            camera_frame = self.mount.camera_frame_of(frame.frame_id)
            mount = self.mount.lookup(camera_frame, frame.seconds)
        if mount is None:
            self.diagnostics.warn(f"waiting for {self.settings.base_frame} -> {camera_frame} "
                                  "on /tf_static")
            return "the camera mount"
        return None

    def _track(self, frame):
        seconds, stamp, frame_id, rgb, _, K, arrival = frame
        camera_frame = self.mount.camera_frame_of(frame_id)
        with self.odometry_lock:
            odometry = self._odometry_for(K, rgb.shape[1::-1])
            # a new keyframe's bundle adjustment waits until the pose is out (below)
            result = odometry.push(rgb, seconds, optimise=False)
        self.diagnostics.latency("tracking", result.timing.get("total", 0.0))
        if result.source == "buffered":      # waiting for the model's intrinsics
            self.diagnostics.count("frames buffered for intrinsics")
            self._awaiting_intrinsics.append((seconds, stamp))
            return
        # Frames the core held for the model's K come back with this one: publish each.
        replayed = list(zip(result.earlier, self._awaiting_intrinsics))
        self._awaiting_intrinsics.clear()
        with self._lock:
            T_base_camera = self.mount.lookup(camera_frame, seconds)
            for earlier, (earlier_seconds, earlier_stamp) in replayed:
                self.publish_frame(earlier, earlier_stamp, earlier_seconds, camera_frame,
                                   T_base_camera)
                self._frame_stamps[earlier.index] = earlier_seconds
            self.publish_frame(result, stamp, seconds, camera_frame, T_base_camera)
            self._frame_stamps[result.index] = seconds
        self.diagnostics.latency("arrival to odometry", time.perf_counter() - arrival)
        # A keyframe's bundle adjustment (and the corrected path and map, which read it) runs
        # when no frame waits; while frames wait they are tracked first, and the core runs
        # the BA itself once max_deferred_keyframes keyframes wait for it.
        keyframes = landmarks = None
        with self.odometry_lock:
            if not self.queue:  # a deque's truth is atomic: no need for the node's lock
                started = time.perf_counter()
                if odometry.optimise(place_limit=PLACE_PER_IDLE):
                    self.diagnostics.latency("bundle adjustment",
                                             time.perf_counter() - started)
                if odometry.stats["ba_runs"] != self._ba_runs_published:  # here or in push
                    self._ba_runs_published = odometry.stats["ba_runs"]
                    keyframes = odometry.keyframes()
                    landmarks = (odometry.map_points() if self.output.map_pub is not None
                                 else None)
        with self._lock:
            if keyframes:
                self.output.correct_path(keyframes, T_base_camera)
                self._update_scale(keyframes, keyframes.get(result.index, result.c2w))
            if landmarks is not None and result.health != "lost":
                self.output.map_points(landmarks, stamp, T_base_camera)
        if K is None and odometry.K is not None and (result.earlier or result.index % 30 == 0):
            self.publish_intrinsics(odometry.K, rgb.shape[1], rgb.shape[0], stamp, camera_frame)

    def _update_scale(self, keyframes, c2w):
        """A keyframe: wheel odometry's distance between the window's keyframes may fix the
        scale (re-anchored at the current pose ``c2w``, so the output stays continuous)."""
        window = [(self._frame_stamps[i], T[:3, 3]) for i, T in sorted(keyframes.items())
                  if i in self._frame_stamps]
        scale = self.wheel.estimate(window)
        if scale is not None and abs(scale / self.anchor.scale - 1.0) > 0.01:
            self.anchor.set_scale(scale, c2w)
            self.diagnostics.set_value("scale (m per unit, wheel odometry)", float(scale))

    def map_size(self):
        """The local map's sizes (name -> count); empty before the first frame."""
        return {} if self.odometry is None else self.odometry.map_size()

    def close(self):
        if self.odometry is not None:
            self.odometry.close()
