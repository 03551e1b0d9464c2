"""Tests for rap_ros.metrics: Umeyama, ATE, RPE (evo's definitions), PSNR, SSIM."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from rap_ros.geometry import (
    apply_scale,
    camera_centres,
    pose_from_rt,
    random_rotation,
    rotation_from_axis_angle,
)
from rap_ros.metrics import (
    align_trajectory,
    ate,
    path_length,
    psnr,
    rpe,
    ssim,
    umeyama_alignment,
)

seeds = st.integers(0, 2**32 - 1)


def random_trajectory(rng, n=20):
    return pose_from_rt(random_rotation(rng, n), np.cumsum(rng.normal(0, 0.5, (n, 3)), axis=0))


def random_similarity(rng):
    return float(rng.uniform(0.1, 10)), random_rotation(rng, 1)[0], rng.uniform(-10, 10, 3)


def apply_similarity(s, R, t, c2w):
    return pose_from_rt(R, t) @ apply_scale(c2w, s)


# ---------------------------------------------------------------- alignment


@given(seeds)
def test_umeyama_recovers_a_similarity_exactly(seed):
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(30, 3))
    s, R, t = random_similarity(rng)
    s_fit, R_fit, t_fit = umeyama_alignment(src, s * src @ R.T + t)
    assert np.isclose(s_fit, s, rtol=1e-10)
    np.testing.assert_allclose(R_fit, R, atol=1e-10)
    np.testing.assert_allclose(t_fit, t, atol=1e-8)


@given(seeds)
def test_umeyama_without_scale_returns_a_rigid_fit(seed):
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(30, 3))
    _, R, t = random_similarity(rng)
    s_fit, R_fit, _ = umeyama_alignment(src, 3.0 * src @ R.T + t, with_scale=False)
    assert s_fit == 1.0
    np.testing.assert_allclose(R_fit, R, atol=1e-10)
    assert np.isclose(np.linalg.det(R_fit), 1.0)


def test_umeyama_returns_a_rotation_for_mirrored_points():
    """The unconstrained optimum would be a reflection; Umeyama's sign fix
    keeps det(R) = +1."""
    src = np.random.default_rng(3).normal(size=(30, 3))
    _, R, _ = umeyama_alignment(src, src * [1.0, 1.0, -1.0])
    assert np.isclose(np.linalg.det(R), 1.0)


def test_umeyama_rejects_degenerate_points():
    with pytest.raises(ValueError, match="degenerate"):
        umeyama_alignment(np.zeros((5, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        umeyama_alignment(np.zeros((5, 2)), np.zeros((5, 2)))


@given(seeds)
def test_sim3_alignment_restores_full_poses(seed):
    """Alignment fitted on positions also undoes the rotation of orientations."""
    rng = np.random.default_rng(seed)
    gt = random_trajectory(rng)
    s, R, t = random_similarity(rng)
    est = apply_similarity(s, R, t, gt)
    np.testing.assert_allclose(align_trajectory(est, gt, "sim3"), gt, atol=1e-8)
    np.testing.assert_array_equal(align_trajectory(est, gt, "none"), est)


# ---------------------------------------------------------------- ATE


@given(seeds)
def test_ate_of_a_similar_copy_is_zero_under_sim3_only(seed):
    rng = np.random.default_rng(seed)
    gt = random_trajectory(rng)
    _, R, t = random_similarity(rng)
    est = apply_similarity(2.0, R, t, gt)
    result = ate(est, gt, mode="sim3")
    assert result["rmse"] < 1e-8 and result["errors"].shape == (len(gt),)
    assert ate(est, gt, mode="se3")["rmse"] > 1e-3
    assert ate(est, gt, mode="none")["rmse"] > 1e-3
    assert ate(apply_similarity(1.0, R, t, gt), gt, mode="se3")["rmse"] < 1e-8


def test_ate_statistics_of_a_known_offset():
    """Shifting only some positions: alignment 'none' reports the raw offsets."""
    gt = random_trajectory(np.random.default_rng(0), 4)
    est = gt.copy()
    est[:, :3, 3] += np.array([[0, 0, 0], [3, 0, 0], [0, 4, 0], [0, 0, 0]])
    result = ate(est, gt, mode="none")
    np.testing.assert_allclose(result["errors"], [0, 3, 4, 0])
    assert np.isclose(result["rmse"], np.sqrt(25 / 4))
    assert (result["mean"], result["median"], result["max"], result["min"]) == (1.75, 1.5, 4, 0)
    assert np.isclose(result["std"], np.std([0, 3, 4, 0]))


# ---------------------------------------------------------------- RPE


@given(seeds)
def test_rpe_of_identical_or_globally_moved_trajectories_is_zero(seed):
    rng = np.random.default_rng(seed)
    gt = random_trajectory(rng)
    result = rpe(gt, gt)
    np.testing.assert_allclose(result["trans_errors"], 0.0, atol=1e-12)
    assert result["rot_deg_rmse"] < 1e-6
    moved = apply_similarity(1.0, *random_similarity(rng)[1:], gt)
    assert rpe(moved, gt, delta=3)["trans_rmse"] < 1e-8


def test_rpe_of_a_known_perturbation():
    """Perturbing one pose P_k -> P_k D with D = (rotation a about z, shift b)
    gives E_{k-1} = D, and E_k = D^-1 up to the ground-truth motion."""
    n, k = 6, 3
    gt = pose_from_rt(np.broadcast_to(np.eye(3), (n, 3, 3)),
                      np.stack([np.arange(n), np.zeros(n), np.zeros(n)], axis=-1))
    angle, shift = np.radians(5.0), np.array([0.0, 0.2, 0.0])
    D = pose_from_rt(rotation_from_axis_angle([0, 0, 1], angle), shift)
    est = gt.copy()
    est[k] = gt[k] @ D
    result = rpe(est, gt)
    # E_k = (Q_k^-1 Q_k+1)^-1 (D^-1 Q_k^-1 Q_k+1): motion (1, 0, 0) seen after D^-1.
    step = np.array([1.0, 0.0, 0.0])
    expected_trans = np.zeros(n - 1)
    expected_trans[k - 1] = 0.2
    expected_trans[k] = np.linalg.norm(D[:3, :3].T @ (step - shift) - step)
    expected_rot = np.zeros(n - 1)
    expected_rot[[k - 1, k]] = 5.0
    np.testing.assert_allclose(result["trans_errors"], expected_trans, atol=1e-12)
    np.testing.assert_allclose(result["rot_deg_errors"], expected_rot, atol=1e-9)
    assert np.isclose(result["trans_rmse"], np.sqrt(np.mean(expected_trans ** 2)))
    assert np.isclose(result["rot_deg_rmse"], np.sqrt(2 * 25 / (n - 1)))


def test_rpe_pairs_follow_evo():
    """evo's default pairs are (0, d), (d, 2d), ...; all_pairs uses every i."""
    rng = np.random.default_rng(1)
    gt, est = random_trajectory(rng, 10), random_trajectory(rng, 10)
    assert len(rpe(est, gt, delta=3)["trans_errors"]) == 3
    assert len(rpe(est, gt, delta=3, all_pairs=True)["trans_errors"]) == 7
    every = rpe(est, gt, delta=3, all_pairs=True)["trans_errors"]
    np.testing.assert_array_equal(rpe(est, gt, delta=3)["trans_errors"], every[[0, 3, 6]])
    with pytest.raises(ValueError, match="delta"):
        rpe(est, gt, delta=10)


def test_trajectory_shapes_are_checked():
    gt = random_trajectory(np.random.default_rng(2), 5)
    with pytest.raises(ValueError, match=r"\(N, 4, 4\)"):
        ate(gt[:4], gt)
    with pytest.raises(ValueError, match="mode"):
        align_trajectory(gt, gt, mode="sim2")


def test_path_length():
    c2w = pose_from_rt(np.eye(3), [[0, 0, 0], [3, 4, 0], [3, 4, 2]])
    assert path_length(c2w) == 7.0
    assert path_length(c2w[:1]) == 0.0
    assert np.allclose(camera_centres(c2w)[-1], [3, 4, 2])


# ---------------------------------------------------------------- images


def noisy_pair(rng, shape):
    a = rng.random(shape)
    return a, np.clip(a + rng.normal(0, 0.1, shape), 0, 1)


@given(seeds)
def test_psnr_matches_skimage_per_image(seed):
    a, b = noisy_pair(np.random.default_rng(seed), (3, 20, 24, 3))
    expected = [peak_signal_noise_ratio(x, y, data_range=1.0) for x, y in zip(a, b)]
    np.testing.assert_allclose(psnr(a, b), expected, rtol=1e-12)
    assert np.all(np.isinf(psnr(a, a)))


@pytest.mark.parametrize("shape", [(11, 11, 1), (32, 48, 3), (2, 40, 30, 3)])
def test_ssim_matches_skimage(shape):
    a, b = noisy_pair(np.random.default_rng(0), shape)
    batch_a, batch_b = a.reshape((-1,) + shape[-3:]), b.reshape((-1,) + shape[-3:])
    expected = [structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, channel_axis=-1,
                                      data_range=1.0) for x, y in zip(batch_a, batch_b)]
    np.testing.assert_allclose(np.ravel(ssim(a, b)), expected, atol=1e-4)
    np.testing.assert_allclose(ssim(a, a), 1.0)


def test_ssim_respects_data_range():
    a, b = noisy_pair(np.random.default_rng(1), (16, 16, 3))
    assert np.isclose(ssim(255 * a, 255 * b, data_range=255.0), ssim(a, b))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(a[:10], b[:10])
