"""The window chainer alone: windows cut from known trajectories, moved by random Sim(3)s,
chain back to the trajectory (no model, no torch)."""
import numpy as np
import pytest

from rap_ros.geometry import (align_sim3, apply_sim3, pose_from_rt, random_rotation,
                              relative_to_first, rotation_from_axis_angle)
from rap_ros.pipeline.chaining import TrajectoryChainer


def _long_trajectory(n, seed=0):
    """A wandering camera: smooth random turns and steps, (n, 4, 4)."""
    rng = np.random.default_rng(seed)
    angles = np.cumsum(rng.normal(0, 0.08, n))
    axes = np.stack([np.sin(angles), np.cos(angles), 0.5 + np.zeros(n)], axis=-1)
    centres = np.cumsum(rng.normal(0, 0.3, (n, 3)) + [0, 0, 0.4], axis=0)
    return pose_from_rt(rotation_from_axis_angle(axes, angles), centres)


def _random_sim3(rng):
    return rng.uniform(0.2, 5.0), random_rotation(rng, 1)[0], rng.normal(0, 3, 3)


@pytest.mark.parametrize("window,stride", [(9, 4), (5, 2), (5, 3)])
def test_chainer_reproduces_long_trajectory(window, stride):
    """Windows cut from ground truth, each normalised and moved by a random Sim(3): the
    chained trajectory equals the ground truth up to one global Sim(3), and covariances
    follow the windows' maps into the run's frame."""
    rng = np.random.default_rng(window * 10 + stride)
    truth = _long_trajectory(200, seed=stride)
    chainer = TrajectoryChainer(window, stride)
    cov = np.tile(np.diag([1.0, 2.0, 3.0, 0.1, 0.2, 0.3]), (window, 1, 1))
    pieces = []
    for start in range(0, len(truth) - window + 1, stride):
        rel, norm = relative_to_first(truth[start:start + window])
        scale, R, t = _random_sim3(rng)
        chained = chainer.push(apply_sim3(rel, scale, R, t), covariance=cov)
        if start == 0:
            first = norm / scale
        # window units -> run units: (norm / scale) / first
        run_scale = norm / scale / first
        assert np.allclose(np.trace(chained.covariance[:, :3, :3], axis1=1, axis2=2),
                           6.0 * run_scale ** 2)
        assert np.allclose(np.trace(chained.covariance[:, 3:, 3:], axis1=1, axis2=2), 0.6)
        assert chained.first == sum(len(p) for p in pieces)
        pieces.append(chained.c2w)
    estimate = np.concatenate(pieces)
    assert chainer.frames == len(estimate) and len(estimate) > 190
    assert chainer._tail.shape == (window - stride, 4, 4)  # constant state per window
    truth = truth[:len(estimate)]
    aligned = apply_sim3(estimate, *align_sim3(estimate, truth))
    assert np.abs(aligned - truth).max() < 1e-8


def test_chainer_through_a_static_stretch():
    """Overlaps that do not fix the scale (one shared frame, a static camera) keep the
    previous scale: windows moved by rigid transforms chain exactly through a stop."""
    truth = _long_trajectory(5)
    static = np.repeat(truth[-1:], 4, axis=0)
    moving = truth[-1] @ np.linalg.inv(_long_trajectory(6, seed=3)[0]) @ _long_trajectory(6, seed=3)
    trajectory = np.concatenate([truth, static, moving[1:]])  # 14 frames
    chainer = TrajectoryChainer(5, 4)  # overlap of one frame
    rng = np.random.default_rng(1)
    pieces = []
    for start in (0, 4, 8):
        _, R, t = _random_sim3(rng)
        pieces.append(chainer.push(apply_sim3(trajectory[start:start + 5], 1.0, R, t)).c2w)
    estimate = np.concatenate(pieces)
    assert len(estimate) == 13
    aligned = apply_sim3(estimate, *align_sim3(estimate[:5], trajectory[:5]))
    assert np.abs(aligned - trajectory[:13]).max() < 1e-8

    chainer.reset()
    assert chainer.frames == 0 and chainer.push(trajectory[:5]).first == 0
    with pytest.raises(ValueError):
        chainer.push(trajectory[:4])
    with pytest.raises(ValueError):
        TrajectoryChainer(5, 5)
