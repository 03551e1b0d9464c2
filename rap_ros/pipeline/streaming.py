"""A stream of frames -> windows -> one chained trajectory: the one stream code path.

``WindowStream`` is what the trajectory_estimator node, ``rap-ros evaluate`` (offline, and
``--live`` through the node) and ``benchmarks/bench_inference.py`` run. It

1. admits frames: at most one per ``frame_interval`` seconds of stamps; in ``ordered`` mode a
   frame older than the last is dropped, or, ``time_jump_s`` or more older (a looping bag, a
   restarted clock), restarts the run; a change of image size restarts it too; while a
   complete window waits for the model (``full``), new frames are dropped ("model busy");
   a frame added with ``check=False`` (an unstamped driver's, stamped by the caller's clock)
   keeps its stamp but passes no stamp check, so it never restarts the run;
2. cuts windows of ``window = pipeline.config.frames`` frames, one every ``stride`` frames,
   and hands out up to ``batch`` of them at a time (``take``);
3. estimates them with the ``TrajectoryPipeline`` in one batched call (``estimate``; no stream
   state is touched, so a caller may run it outside its lock) and chains them with a
   ``TrajectoryChainer`` (``chain``), which fixes the new poses for good;
4. at ``finish``, runs what is left and, with ``keep_history``, a tail window over the last
   ``window`` frames aligned on the poses it shares with the chain, so every frame gets a pose;
5. gives the poses fixed so far (``partial``).

``push(frame, stamp)`` does 1-3 in one call (offline use); the node calls ``screen`` / ``add``
from its subscription, and ``take`` / ``estimate`` / ``chain`` from its worker thread, under
its own lock (the stream is not thread-safe).

Every pose source of the evaluator has the same shape, ``PoseStream``: ``push(frame, stamp)``,
``finish()``, ``partial()``, ``details()``, with poses out as ``FixedPoses``.

Conventions: frames uint8 RGB (H, W, 3), one size per run; stamps float seconds; K (3, 3)
in pixels of the frames; poses camera-to-world 4x4 in the run's frame (the first window's
first camera, OpenCV axes) at the first window's normalised scale (monocular: no metres);
covariances (6, 6) over (translation, rotation vector) in the same frame.
"""
import abc
from dataclasses import dataclass, field

import numpy as np

from rap_ros.geometry.cameras import scale_intrinsics
from rap_ros.geometry.poses import align_sim3, apply_sim3
from rap_ros.pipeline.chaining import TrajectoryChainer

# The trajectory_estimator's default window_stride: new frames per window when streaming.
DEFAULT_STRIDE = 4
# A stamp this far behind the previous one is a jump back in time (a looping bag, a restarted
# simulation): the run restarts. Smaller steps back are out-of-order frames and are dropped.
TIME_JUMP_S = 1.0
# Frames are taken up to 10 % early, so 30 Hz -> 10 Hz (frame_interval 0.1) takes every third.
INTERVAL_TOLERANCE = 0.9

ACCEPTED = "accepted"
SKIPPED = "skipped (frame_interval)"
BUSY = "dropped (model busy)"
OUT_OF_ORDER = "dropped (out of order)"


@dataclass
class FixedPoses:
    """Camera poses a stream has fixed for good, oldest first.

    first: index of the first of them among the frames taken since the run started.
    stamps: (n,) float64 seconds of their frames.
    c2w: (n, 4, 4) camera-to-world in the run's frame (see the module docstring).
    covariance: (n, 6, 6) in the same frame, or None when the source gives none.
    tags: n values passed in with the frames (e.g. ROS header stamps), None where not given.
    """

    first: int = 0
    stamps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    c2w: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))
    covariance: np.ndarray = None
    tags: list = field(default_factory=list)

    def __len__(self):
        return len(self.stamps)

    @classmethod
    def concat(cls, parts):
        """One FixedPoses of consecutive parts (empty parts are skipped)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls()
        covariance = None
        if all(p.covariance is not None for p in parts):
            covariance = np.concatenate([p.covariance for p in parts])
        return cls(first=parts[0].first, stamps=np.concatenate([p.stamps for p in parts]),
                   c2w=np.concatenate([p.c2w for p in parts]), covariance=covariance,
                   tags=[t for p in parts for t in p.tags])


class PoseStream(abc.ABC):
    """Frames in (one at a time, in the order they come), camera poses out.

    The shape of every pose source: the model's ``WindowStream``, the evaluator's OpenCV VO,
    an odometry core. ``rap-ros evaluate --method`` dispatches through it.
    """

    @abc.abstractmethod
    def push(self, frame, stamp, tag=None):
        """Add a frame (uint8 RGB (H, W, 3)) taken at ``stamp`` (s); returns the FixedPoses
        this frame fixed (possibly none)."""

    @abc.abstractmethod
    def finish(self):
        """No more frames: estimate what is left; returns FixedPoses of the whole run."""

    @abc.abstractmethod
    def partial(self):
        """FixedPoses of the run fixed so far (what survives a failure of ``finish``)."""

    def details(self):
        """What the report should say about the run (a JSON-able dict)."""
        return {}


@dataclass
class Window:
    """One window of frames, cut by a WindowStream, ready for the model.

    first: index of its first frame in the run. frames: (T, H, W, 3) uint8. stamps: (T,)
    seconds. tags: T values given with the frames. K: (3, 3) at H x W, or None (unknown: the
    model estimates it). epoch: the run it belongs to (a reset starts a new one). tail: the
    last window of a finished run, over the last T frames whatever the stride.
    """

    first: int
    frames: np.ndarray
    stamps: np.ndarray
    tags: list
    K: np.ndarray
    epoch: int
    tail: bool = False


@dataclass(frozen=True)
class Admission:
    """What a WindowStream did with a frame.

    taken: the frame is in. reason: ACCEPTED, SKIPPED, BUSY or OUT_OF_ORDER.
    reset: why the run restarted before this frame ("time jumped back", "image size
    changed"), else None; detail: the same with figures, for a log line.
    """

    taken: bool
    reason: str
    reset: str = None
    detail: str = None


@dataclass
class _Frame:
    rgb: np.ndarray
    stamp: float
    tag: object


class WindowStream(PoseStream):
    """Frames -> overlapping windows -> TrajectoryPipeline -> TrajectoryChainer.

    pipeline: a ``TrajectoryPipeline``; its backend's ``config.frames`` is the window length.
    stride: frames between window starts, 1 <= stride < window (the overlap of
        window - stride frames fixes the scale between windows: keep it >= 2).
    batch: windows per model call.
    K: intrinsics (3, 3) of the frames, or None (estimated per window); see
        ``set_intrinsics``.
    frame_interval: take at most one frame per this many seconds of stamps (0: every frame).
    ordered: stamps must not go back: an older frame is dropped, one ``time_jump_s`` or more
        older restarts the run. False takes the frames as they come (offline inputs).
    keep_history: keep every fixed pose (``partial``, ``finish``) and the last window of
        frames for the tail window; False keeps memory constant however long the run (a
        node: ``finish`` then only runs the complete windows left).
    on_window: called as ``on_window(window, estimate)`` after each window is chained.

    Raises ValueError for a stride outside [1, window - 1].
    """

    def __init__(self, pipeline, stride=DEFAULT_STRIDE, batch=1, K=None, frame_interval=0.0,
                 ordered=True, time_jump_s=TIME_JUMP_S, keep_history=True, on_window=None):
        self.pipeline = pipeline
        self.window = int(pipeline.config.frames)
        self.stride = int(stride)
        if not 1 <= self.stride < self.window:
            raise ValueError(f"the stride must be in [1, {self.window - 1}] for windows of "
                             f"{self.window} frames, got {self.stride}")
        self.batch = max(1, int(batch))
        self.frame_interval = float(frame_interval)
        self.ordered = bool(ordered)
        self.time_jump_s = time_jump_s
        self.keep_history = bool(keep_history)
        self.on_window = on_window
        self.chainer = TrajectoryChainer(self.window, self.stride)
        self.set_intrinsics(K)
        self.epoch = -1
        self.reset()  # epoch 0

    # -------------------------------------------------------------- state

    def reset(self):
        """Forget the run: the next frame starts a new trajectory (and a new epoch, so
        windows taken before are not chained)."""
        self._frames = []        # held frames; the first is frame self._offset of the run
        self._offset = 0
        self._next_start = 0     # run index of the next window's first frame
        self._last_stamp = None
        self._next_accept = None
        self._fixed = []         # FixedPoses so far (keep_history)
        self.windows = 0         # windows chained in this run
        self.chainer.reset()
        self.epoch += 1

    def set_intrinsics(self, K, size=None):
        """Intrinsics of the frames from now on: K (3, 3) at ``size`` (width, height), scaled
        to the frames' size when it differs; size None: K is at the frames' size. None: unknown
        (each window estimates them)."""
        self._K = None if K is None else (np.asarray(K, dtype=np.float64), size)

    def _intrinsics_for(self, height, width):
        if self._K is None:
            return None
        K, size = self._K
        if size is not None and tuple(size) != (width, height):
            K = scale_intrinsics(K, width / size[0], height / size[1])
        return K

    @property
    def frames(self):
        """Frames taken in this run."""
        return self._offset + len(self._frames)

    @property
    def frames_fixed(self):
        """Frames of this run whose poses are fixed."""
        return self.chainer.frames

    @property
    def buffered(self):
        """Frames held now (waiting for a window, or kept for the tail window)."""
        return len(self._frames)

    @property
    def ready(self):
        """Complete windows not taken yet."""
        available = self.frames - self.window - self._next_start
        return 0 if available < 0 else available // self.stride + 1

    @property
    def full(self):
        """A batch of complete windows waits for the model: new frames would be dropped."""
        return self.ready >= self.batch

    # -------------------------------------------------------------- admission

    def _too_early(self, stamp):
        return (self.frame_interval > 0 and self._next_accept is not None
                and stamp < self._next_accept)

    def screen(self, stamp, check=True):
        """Decide what can be decided about a frame from its stamp alone, before it is
        decoded: its reason (SKIPPED or BUSY) when it will not be taken (a checked stamp is
        recorded), else None (decode it and ``add`` it). ``check`` False: a frame whose stamp
        is not its own (see ``add``), refused only when the stream is full."""
        if not check:
            return BUSY if self.full else None
        if self.ordered and self._last_stamp is not None and stamp < self._last_stamp:
            return None  # a step back: ``add`` decides (drop, or restart the run)
        if self._too_early(stamp):
            self._last_stamp = stamp
            return SKIPPED
        if self.full:
            self._last_stamp = stamp
            return BUSY
        return None

    def add(self, frame, stamp, tag=None, check=True):
        """Admit one frame (uint8 RGB (H, W, 3)) at ``stamp`` (s); returns an Admission.

        ``check`` False: the stamp is not the frame's own (an unstamped driver's frame, which
        the caller stamps with its clock), as the odometry's ``admit(None)``: the frame keeps
        ``stamp`` (its window's stamps, and so the poses', advance with the caller's clock)
        but passes no stamp check (order, time jump, frame_interval) and leaves the last
        checked stamp as it was, so it can neither reset the run nor make the next stamped
        frame look like a jump."""
        reset = detail = None
        if check and self.ordered and self._last_stamp is not None \
                and stamp < self._last_stamp:
            back = self._last_stamp - stamp
            if self.time_jump_s is None or back <= self.time_jump_s:
                return Admission(False, OUT_OF_ORDER)
            reset, detail = "time jumped back", f"time jumped back {back:.1f} s"
            self.reset()
        if check:
            self._last_stamp = stamp
        if self._frames and self._frames[-1].rgb.shape != frame.shape:
            reset = "image size changed"
            detail = (f"image size changed {self._frames[-1].rgb.shape[:2]} -> "
                      f"{frame.shape[:2]}")
            last = self._last_stamp
            self.reset()
            self._last_stamp = last
        if self.full:
            return Admission(False, BUSY, reset, detail)
        if check:
            if self._too_early(stamp):
                return Admission(False, SKIPPED, reset, detail)
            self._next_accept = stamp + INTERVAL_TOLERANCE * self.frame_interval
        self._frames.append(_Frame(frame, float(stamp), tag))
        return Admission(True, ACCEPTED, reset, detail)

    # -------------------------------------------------------------- windows

    def _cut(self, start, tail=False):
        held = self._frames[start - self._offset:start - self._offset + self.window]
        frames = np.stack([f.rgb for f in held])
        return Window(first=start, frames=frames, stamps=np.array([f.stamp for f in held]),
                      tags=[f.tag for f in held],
                      K=self._intrinsics_for(*frames.shape[1:3]), epoch=self.epoch, tail=tail)

    def take(self):
        """Up to ``batch`` complete windows, oldest first ([] when none is complete)."""
        windows = [self._cut(self._next_start + k * self.stride)
                   for k in range(min(self.ready, self.batch))]
        if windows:
            self._next_start = windows[-1].first + self.stride
            # Keep the frames of the next window, and with history the last window's worth
            # for the tail window.
            drop = self._next_start - self._offset
            if self.keep_history:
                drop = min(drop, len(self._frames) - self.window)
            if drop > 0:
                del self._frames[:drop]
                self._offset += drop
        return windows

    def estimate(self, windows):
        """WindowEstimates of ``windows`` (one size, one K) in one batched model call. Touches
        no stream state: safe outside the caller's lock."""
        frames = np.stack([w.frames for w in windows])
        return self.pipeline.estimate_batch(frames, windows[0].K)

    def chain(self, windows, estimates):
        """Chain estimated windows (in the order taken); returns the FixedPoses they fix, or
        None when the run was reset since they were taken (they are dropped)."""
        if not windows or windows[0].epoch != self.epoch:
            return None
        parts = []
        for window, estimate in zip(windows, estimates):
            chained = self.chainer.push(estimate.c2w, estimate.covariance)
            new = slice(self.window - len(chained.c2w), self.window)
            parts.append(self._fixed_part(window, new, chained.c2w, chained.covariance,
                                          estimate))
        return FixedPoses.concat(parts)

    def _fixed_part(self, window, new, c2w, covariance, estimate):
        part = FixedPoses(first=window.first + new.start, stamps=window.stamps[new], c2w=c2w,
                          covariance=covariance, tags=window.tags[new])
        self.windows += 1
        if self.keep_history:
            self._fixed.append(part)
        if self.on_window is not None:
            self.on_window(window, estimate)
        return part

    # -------------------------------------------------------------- PoseStream

    def push(self, frame, stamp, tag=None):
        """Add a frame and estimate every complete batch of windows now."""
        self.add(frame, stamp, tag)
        parts = []
        while self.full:
            windows = self.take()
            parts.append(self.chain(windows, self.estimate(windows)))
        return FixedPoses.concat(parts)

    def finish(self):
        """Estimate the windows left (a last, smaller batch) and, with history, a tail window
        over the last ``window`` frames for the frames after the last full window: it is
        aligned (Sim(3), ``align_sim3``) on the poses it shares with the chain, with the
        chain's scale when the shared poses do not fix one. Returns ``partial()``; a run of
        fewer than ``window`` frames has no poses."""
        while self.ready:
            windows = self.take()
            self.chain(windows, self.estimate(windows))
        fixed = self.frames_fixed
        if self.keep_history and fixed and fixed < self.frames:
            window = self._cut(self.frames - self.window, tail=True)
            estimate = self.pipeline.estimate_batch(window.frames[None], window.K)[0]
            shared = fixed - window.first
            known = self.partial().c2w[window.first:fixed]
            scale, R, t = align_sim3(estimate.c2w[:shared], known, self.chainer.scale)
            covariance = None
            if estimate.covariance is not None:
                A = np.zeros((6, 6))
                A[:3, :3], A[3:, 3:] = scale * R, R
                covariance = A @ estimate.covariance[shared:] @ A.T
            self._fixed_part(window, slice(shared, self.window),
                             apply_sim3(estimate.c2w, scale, R, t)[shared:], covariance,
                             estimate)
        return self.partial()

    def partial(self):
        """Every pose fixed so far in this run (with ``keep_history``)."""
        return FixedPoses.concat(self._fixed)
