"""WindowStream, the one stream code path (node, evaluator, benchmark), on a stand-in pipeline:
admission, windows every stride, batching, chaining, the tail window, resets. No model, no
torch, no rclpy."""
from types import SimpleNamespace

import numpy as np
import pytest

from rap_ros.geometry import align_sim3, apply_sim3, random_rotation, relative_to_first
from rap_ros.pipeline.streaming import (ACCEPTED, BUSY, OUT_OF_ORDER, SKIPPED, FixedPoses,
                                        PoseStream, WindowStream)
from test_chaining import _long_trajectory as _trajectory


class TruthPipeline:
    """Stands in for TrajectoryPipeline: a frame's pixels hold its index in ``truth``; a
    window's estimate is the true poses, normalised as the model's are and moved by a random
    similarity (what the chainer must undo). Records the batches it was called with."""

    def __init__(self, truth, frames=5, seed=0):
        self.truth = truth
        self.config = SimpleNamespace(frames=frames)
        self.rng = np.random.default_rng(seed)
        self.calls = []

    def estimate_batch(self, frames, K=None):
        self.calls.append((len(frames), K))
        estimates = []
        for window in frames:
            index = window[:, 0, 0, 0].astype(int) + 256 * window[:, 0, 0, 1].astype(int)
            rel, _ = relative_to_first(self.truth[index])
            scale, R = self.rng.uniform(0.5, 2.0), random_rotation(self.rng, 1)[0]
            c2w = apply_sim3(rel, scale, R, self.rng.normal(0, 1, 3))
            covariance = np.tile(np.eye(6), (len(c2w), 1, 1))
            estimates.append(SimpleNamespace(c2w=c2w, covariance=covariance, K=K,
                                             residual_deg=None, timings={}))
        return estimates


def frame(index, size=(4, 6)):
    image = np.zeros(size + (3,), np.uint8)
    image[..., 0], image[..., 1] = index % 256, index // 256
    return image


def assert_trajectory(fixed, truth):
    aligned = apply_sim3(fixed.c2w, *align_sim3(fixed.c2w, truth[:len(fixed)]))
    assert np.abs(aligned - truth[:len(fixed)]).max() < 1e-8


def test_stream_is_a_pose_stream():
    assert issubclass(WindowStream, PoseStream)
    with pytest.raises(ValueError, match="stride"):
        WindowStream(TruthPipeline(_trajectory(5)), stride=5)


@pytest.mark.parametrize("frames, stride, batch", [(23, 2, 1), (24, 2, 2), (23, 3, 4), (30, 3, 3)])
def test_offline_stream_poses_every_frame(frames, stride, batch):
    """Windows every stride frames, batch windows per call, and a tail window: every frame
    gets its pose, in order, with its stamp and tag, on the true trajectory."""
    truth = _trajectory(frames, seed=stride)
    pipeline = TruthPipeline(truth)
    seen = []
    stream = WindowStream(pipeline, stride=stride, batch=batch, ordered=False,
                          on_window=lambda window, estimate: seen.append(window))
    pushed = [stream.push(frame(i), 10.0 + 0.1 * i, tag=f"t{i}") for i in range(frames)]
    before = FixedPoses.concat(pushed)
    assert all(n <= batch for n, _ in pipeline.calls)
    assert len(before) == len(stream.partial()) <= frames
    poses = stream.finish()
    assert len(poses) == frames and poses.first == 0
    np.testing.assert_allclose(poses.stamps, 10.0 + 0.1 * np.arange(frames))
    assert poses.tags == [f"t{i}" for i in range(frames)]
    assert poses.covariance.shape == (frames, 6, 6)
    assert_trajectory(poses, truth)
    starts = [w.first for w in seen if not w.tail]
    assert starts == list(range(0, frames - 5 + 1, stride))
    assert seen[-1].tail == ((frames - 5) % stride != 0)
    assert stream.windows == len(seen)


def test_short_run_has_no_poses():
    stream = WindowStream(TruthPipeline(_trajectory(5)), stride=2)
    for i in range(4):
        stream.push(frame(i), float(i))
    assert len(stream.finish()) == 0


def test_window_buffer_is_bounded_and_advances_by_stride():
    """The node's use: at most ``window`` frames held, windows advance by exactly the stride
    even when frames are dropped while the model is busy."""
    stream = WindowStream(TruthPipeline(_trajectory(40)), stride=2, keep_history=False)
    taken = []
    for i in range(40):
        if stream.full:
            if i % 3:  # the model is busy two frames in three: the frame is dropped
                assert stream.screen(float(i)) == BUSY
                continue
            taken.append(list(stream.take()[0].stamps))
        assert stream.add(frame(i), float(i)).taken
        assert stream.buffered <= 5
    assert taken[0] == [0, 1, 2, 3, 4]
    for previous, window in zip(taken, taken[1:]):
        assert len(window) == 5
        assert window[:3] == previous[2:]  # overlap of window - stride frames, in order
    full = WindowStream(TruthPipeline(_trajectory(5), frames=3), stride=1, keep_history=False)
    for i in range(3):
        full.add(frame(i), float(i))
    assert full.add(frame(3), 3.0).reason == BUSY and full.buffered == 3


def test_admission_interval_order_and_jumps():
    stream = WindowStream(TruthPipeline(_trajectory(50)), stride=2, frame_interval=0.1)
    stamps = 100.0 + np.arange(9) / 30.0  # 30 Hz -> every third frame at 10 Hz
    outcomes = [stream.screen(s) or stream.add(frame(0), s).reason for s in stamps]
    assert outcomes == [ACCEPTED, SKIPPED, SKIPPED] * 3
    assert stream.add(frame(0), 100.2).reason == OUT_OF_ORDER  # a small step back
    assert stream.frames == 3
    jump = stream.add(frame(0), 50.0)  # far back: a looping bag
    assert jump.taken and jump.reset == "time jumped back" and "50.3 s" in jump.detail
    assert stream.frames == 1
    resized = stream.add(frame(0, size=(8, 6)), 50.5)
    assert resized.taken and resized.reset == "image size changed" and stream.frames == 1


def test_unstamped_frames_keep_the_callers_stamps_without_checks():
    """Frames of an unstamped driver (``check=False``, stamped by the caller's clock): their
    windows' stamps are the clock's, increasing and nonzero; they pass no stamp check
    (frame_interval, order, time jump) and leave the last checked stamp as it was."""
    stream = WindowStream(TruthPipeline(_trajectory(30)), stride=2, frame_interval=0.5,
                          keep_history=False)
    clock = 1000.0 + np.arange(9) / 30.0  # 30 Hz, under frame_interval: all taken unchecked
    windows, fixed = [], []
    for i, seconds in enumerate(clock):
        assert stream.screen(seconds, check=False) is None
        admission = stream.add(frame(i), seconds, tag=i, check=False)
        assert admission.taken and admission.reset is None
        if stream.full:
            taken = stream.take()
            windows += taken
            fixed.append(stream.chain(taken, stream.estimate(taken)))
    assert [w.first for w in windows] == [0, 2, 4]
    for window in windows:
        np.testing.assert_allclose(window.stamps, clock[window.first:window.first + 5])
        assert np.all(window.stamps > 0) and np.all(np.diff(window.stamps) > 0)
    np.testing.assert_allclose(FixedPoses.concat(fixed).stamps, clock)
    # Amid stamped frames: an unstamped one far ahead (a wall clock) or far behind is no jump
    # and no drop, and the next stamped frame is compared with the last stamped one only.
    mixed = WindowStream(TruthPipeline(_trajectory(30)), stride=2)
    assert mixed.add(frame(0), 500.0).taken
    for seconds in (1.7e9, 1.0):
        admission = mixed.add(frame(1), seconds, check=False)
        assert admission.taken and admission.reset is None
    nxt = mixed.add(frame(2), 500.1)
    assert nxt.taken and nxt.reset is None and mixed.frames == 4
    assert mixed.add(frame(3), 500.05).reason == OUT_OF_ORDER


def test_reset_discards_windows_in_flight():
    truth = _trajectory(20)
    stream = WindowStream(TruthPipeline(truth), stride=2, keep_history=False)
    for i in range(5):
        stream.add(frame(i), float(i), tag=i)
    windows = stream.take()
    estimates = stream.estimate(windows)
    stream.reset()
    assert stream.chain(windows, estimates) is None
    for i in range(5):
        stream.add(frame(i + 10), 20.0 + i, tag=i)
    windows = stream.take()
    estimates = stream.estimate(windows)
    fixed = stream.chain(windows, estimates)
    assert fixed.first == 0 and fixed.tags == [0, 1, 2, 3, 4]  # a new run: the window as is
    np.testing.assert_allclose(fixed.c2w, estimates[0].c2w)
    assert stream.frames_fixed == 5 and len(stream.partial()) == 0  # no history kept


def test_intrinsics_follow_the_frames():
    pipeline = TruthPipeline(_trajectory(10))
    K = np.array([[100.0, 0, 59.5], [0, 100.0, 39.5], [0, 0, 1]])
    stream = WindowStream(pipeline, stride=2)
    stream.set_intrinsics(K, size=(120, 80))  # camera_info at twice the image size
    for i in range(5):
        stream.push(frame(i, size=(40, 60)), float(i))
    K_used = pipeline.calls[0][1]
    np.testing.assert_allclose(K_used[0, 0], 50.0)
    np.testing.assert_allclose(K_used[:2, 2], [29.5, 19.5])
