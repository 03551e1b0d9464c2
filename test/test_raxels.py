"""Tests for rap_ros.geometry.raxels: encoding layout, noise-free round trips
over random cameras, and how the decode degrades with noise and outliers."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rap_ros.geometry import (
    ENCODINGS,
    camera_centres,
    decode_raxels,
    encode_raxels,
    intrinsics_matrix,
    pose_from_rt,
    random_rotation,
    rotation_angle_deg,
)


def camera_errors(decoded, K, c2w, scene_scale=1.0):
    """Per-frame rotation error (deg), centre error (fraction of the scene
    scale) and worst relative focal error (fx or fy)."""
    R, R_true = decoded.c2w[:, :3, :3], c2w[:, :3, :3]
    rotation = rotation_angle_deg(np.swapaxes(R, 1, 2) @ R_true)
    centre = np.linalg.norm(camera_centres(decoded.c2w) - camera_centres(c2w), axis=-1)
    focal = np.abs(np.diagonal(decoded.K, axis1=1, axis2=2)[:, :2]
                   / np.diagonal(np.broadcast_to(K, decoded.K.shape), axis1=1, axis2=2)[:, :2]
                   - 1)
    return rotation, centre / scene_scale, focal.max(axis=1)


def random_cameras(rng, n, height, width, focal=(40.0, 120.0), scene_scale=1.0):
    """n cameras with per-frame K (principal point within 2 px of the centre)
    and centres uniform in a cube of half-side scene_scale."""
    fx = rng.uniform(*focal, n)
    K = intrinsics_matrix(fx, fx * rng.uniform(0.9, 1.1, n),
                          (width - 1) / 2 + rng.uniform(-2, 2, n),
                          (height - 1) / 2 + rng.uniform(-2, 2, n))
    c2w = pose_from_rt(random_rotation(rng, n), rng.uniform(-scene_scale, scene_scale, (n, 3)))
    return K, c2w


# ---------------------------------------------------------------- encoding


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encoding_layout(encoding):
    rng = np.random.default_rng(0)
    K, c2w = random_cameras(rng, 3, 24, 32)
    raxels = encode_raxels(K, c2w, 24, 32, encoding)
    assert raxels.shape == (3, 6, 24, 32) and raxels.dtype == np.float32
    dirs, second = np.moveaxis(raxels[:, :3], 1, -1), np.moveaxis(raxels[:, 3:], 1, -1)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=-1), 1.0, atol=1e-6)
    centres = camera_centres(c2w)[:, None, None]
    if encoding == "raydir_origin":
        np.testing.assert_allclose(second, np.broadcast_to(centres, second.shape), atol=1e-6)
    else:
        np.testing.assert_allclose(second, np.cross(centres, dirs), atol=1e-5)
        np.testing.assert_allclose((dirs * second).sum(-1), 0.0, atol=1e-5)


def test_encoding_follows_opencv_axes_and_pixel_centres():
    """The pixel at the principal point looks along +z, the pixel to its
    right along +x, and the pixel below it along +y (camera frame)."""
    K = intrinsics_matrix(50.0, 50.0, 20.0, 10.0)
    c2w = pose_from_rt(random_rotation(np.random.default_rng(1), 1), [1.0, 2.0, 3.0])
    dirs = encode_raxels(K, c2w, 21, 41)[0, :3]
    R = c2w[0, :3, :3]
    np.testing.assert_allclose(dirs[:, 10, 20], R[:, 2], atol=1e-6)
    right, below = dirs[:, 10, 40] @ R, dirs[:, 20, 20] @ R
    np.testing.assert_allclose(right, [20, 0, 50] / np.hypot(20, 50), atol=1e-6)
    np.testing.assert_allclose(below, [0, 10, 50] / np.hypot(10, 50), atol=1e-6)


# ---------------------------------------------------------------- noise-free round trips

# Random cameras over the whole brief: sizes 32..640, fx and fy 30..2000 px,
# principal point within 5% of the centre, any rotation, scene scales 0.01..100.
camera_draws = st.fixed_dictionaries(dict(
    seed=st.integers(0, 2**32 - 1),
    width=st.integers(32, 640),
    height=st.integers(32, 640),
    fx=st.floats(30.0, 2000.0),
    aspect=st.floats(0.8, 1.25),
    offset=st.tuples(st.floats(-0.05, 0.05), st.floats(-0.05, 0.05)),
    scene_scale=st.floats(0.01, 100.0),
))


def draw_scene(draw, n=2):
    rng = np.random.default_rng(draw["seed"])
    width, height = draw["width"], draw["height"]
    fx = draw["fx"]
    fy = float(np.clip(fx * draw["aspect"], 30.0, 2000.0))
    K = intrinsics_matrix(fx, fy, (width - 1) / 2 + draw["offset"][0] * width,
                          (height - 1) / 2 + draw["offset"][1] * height)
    scale = draw["scene_scale"]
    c2w = pose_from_rt(random_rotation(rng, n), rng.uniform(-scale, scale, (n, 3)))
    return K, c2w


def stride_for(height, width):
    """The default stride 4, coarser on big images to keep the tests fast."""
    return max(4, -(-max(height, width) // 64))


def half_fov_deg(K, height, width):
    return np.degrees(np.arctan(min(width / 2 / K[0, 0], height / 2 / K[1, 1])))


@settings(max_examples=25, deadline=None)
@given(camera_draws)
def test_round_trip_with_known_intrinsics(draw):
    K, c2w = draw_scene(draw)
    height, width = draw["height"], draw["width"]
    for encoding in ENCODINGS:
        raxels = encode_raxels(K, c2w, height, width, encoding)
        decoded = decode_raxels(raxels, K, encoding, stride=stride_for(height, width))
        rotation, centre, _ = camera_errors(decoded, K, c2w, draw["scene_scale"])
        np.testing.assert_array_equal(decoded.K, np.broadcast_to(K, (2, 3, 3)))
        assert rotation.max() < 0.01, encoding
        assert centre.max() < 1e-5, encoding
        assert decoded.residual_deg.max() < 1e-3


@settings(max_examples=25, deadline=None)
@given(camera_draws)
def test_round_trip_with_unknown_intrinsics(draw):
    """Unknown K needs a field of view wider than 2 x 2 degrees: below that,
    a principal-point shift and a rotation differ by less than the float32
    rounding of the raxels (see docs/geometry.md)."""
    K, c2w = draw_scene(draw)
    height, width = draw["height"], draw["width"]
    assume(half_fov_deg(K, height, width) >= 2.0)
    for encoding in ENCODINGS:
        raxels = encode_raxels(K, c2w, height, width, encoding)
        decoded = decode_raxels(raxels, None, encoding, stride=stride_for(height, width))
        rotation, centre, focal = camera_errors(decoded, K, c2w, draw["scene_scale"])
        assert rotation.max() < 0.01, encoding
        assert centre.max() < 1e-5, encoding
        assert focal.max() < 1e-4, encoding
        np.testing.assert_allclose(decoded.K[:, :2, 2], np.broadcast_to(K[:2, 2], (2, 2)),
                                   atol=1e-3 * max(height, width))
        np.testing.assert_array_equal(decoded.K[:, 0, 1], 0.0)


def test_round_trip_with_per_frame_intrinsics_and_wide_angle():
    rng = np.random.default_rng(2)
    K, c2w = random_cameras(rng, 5, 480, 640, focal=(30.0, 2000.0))
    raxels = encode_raxels(K, c2w, 480, 640)
    for known in (K, None):
        rotation, centre, focal = camera_errors(decode_raxels(raxels, known, stride=8), K, c2w)
        assert rotation.max() < 0.01 and centre.max() < 1e-5 and focal.max() < 1e-4


# ---------------------------------------------------------------- noise and outliers

HEIGHT = WIDTH = 64
SIGMAS = (1e-4, 1e-3, 1e-2)


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(3)
    return random_cameras(rng, 64, HEIGHT, WIDTH)


def add_noise(raxels, sigma, rng):
    """Gaussian noise of std sigma on every channel (directions are unit
    vectors, origins and moments are in scene units of about 1)."""
    return (raxels + sigma * rng.standard_normal(raxels.shape)).astype(np.float32)


def add_outliers(raxels, fraction, rng):
    """Replace all 6 channels of a random fraction of the pixels by N(0, 1)."""
    n, _, height, width = raxels.shape
    hit = rng.random((n, 1, height, width)) < fraction
    garbage = rng.standard_normal(raxels.shape).astype(np.float32)
    return np.where(hit, garbage, raxels)


@pytest.mark.parametrize("known_K", [True, False])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_errors_grow_in_proportion_to_noise(scene, encoding, known_K):
    """Median errors scale like sigma (x10 per decade, within 5..20), and no
    frame jumps far above the median (max < 15 x median) at any sigma."""
    K, c2w = scene
    rng = np.random.default_rng(4)
    clean = encode_raxels(K, c2w, HEIGHT, WIDTH, encoding)
    medians = []
    for sigma in SIGMAS:
        noisy = add_noise(clean, sigma, rng)
        rotation, centre, focal = camera_errors(
            decode_raxels(noisy, K if known_K else None, encoding), K, c2w)
        errors = (rotation, centre) if known_K else (rotation, centre, focal)
        for error in errors:
            assert error.max() < 15 * np.median(error)
        medians.append([np.median(error) for error in errors])
    ratios = np.array(medians[1:]) / np.array(medians[:-1])
    assert np.all((5 < ratios) & (ratios < 20)), ratios
    rotation_per_sigma = medians[-1][0] / SIGMAS[-1]
    assert rotation_per_sigma < (20.0 if known_K else 100.0)


@pytest.mark.parametrize("known_K", [True, False])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_robust_decode_ignores_ten_percent_outliers(scene, encoding, known_K):
    K, c2w = scene
    rng = np.random.default_rng(5)
    clean = encode_raxels(K, c2w, HEIGHT, WIDTH, encoding)
    corrupted = add_outliers(clean, 0.1, rng)
    known = K if known_K else None
    rotation, centre, focal = camera_errors(decode_raxels(corrupted, known, encoding), K, c2w)
    assert rotation.max() < 1e-4 and centre.max() < 1e-6 and focal.max() < 1e-6
    naive_rotation, naive_centre, _ = camera_errors(
        decode_raxels(corrupted, known, encoding, robust=False), K, c2w)
    assert np.median(naive_rotation) > 100 * rotation.max()
    assert np.median(naive_centre) > 100 * centre.max()

    # With noise on top, outliers cost little over the noise alone.
    noisy = add_noise(clean, 1e-3, rng)
    both = np.where(corrupted != clean, corrupted, noisy)
    noise_only = camera_errors(decode_raxels(noisy, known, encoding), K, c2w)
    with_outliers = camera_errors(decode_raxels(both, known, encoding), K, c2w)
    for error, reference in zip(with_outliers, noise_only):
        assert np.median(error) <= 1.5 * np.median(reference) + 1e-12


def test_residual_tracks_the_noise(scene):
    K, c2w = scene
    rng = np.random.default_rng(6)
    clean = encode_raxels(K, c2w, HEIGHT, WIDTH)
    assert decode_raxels(clean, K).residual_deg.max() < 1e-4
    small, large = (decode_raxels(add_noise(clean, s, rng), K).residual_deg for s in (1e-3, 1e-2))
    assert np.all((5 < large / small) & (large / small < 20))


def test_non_finite_pixels_are_ignored(scene):
    K, c2w = scene
    rng = np.random.default_rng(7)
    raxels = encode_raxels(K, c2w, HEIGHT, WIDTH, "plucker")
    holes = rng.random((len(K), 1, HEIGHT, WIDTH)) < 0.3
    raxels = np.where(holes, np.float32(np.nan), raxels)
    raxels[:, 4, ::7, ::5] = np.inf
    for known in (K, None):
        rotation, centre, focal = camera_errors(decode_raxels(raxels, known, "plucker"), K, c2w)
        assert rotation.max() < 1e-3 and centre.max() < 1e-5 and focal.max() < 1e-5


# ---------------------------------------------------------------- errors


def test_malformed_input_raises_value_error():
    K, c2w = random_cameras(np.random.default_rng(8), 3, 16, 16)
    raxels = encode_raxels(K, c2w, 16, 16)
    with pytest.raises(ValueError, match="raxels must have shape"):
        decode_raxels(raxels[:, :5])
    with pytest.raises(ValueError, match="raxels must have shape"):
        decode_raxels(raxels[0])
    with pytest.raises(ValueError, match="K must have shape"):
        decode_raxels(raxels, K[:2])
    with pytest.raises(ValueError, match="encoding must be one of"):
        decode_raxels(raxels, encoding="rays")
    with pytest.raises(ValueError, match="c2w must have shape"):
        encode_raxels(K, c2w[0], 16, 16)
    with pytest.raises(ValueError, match="K must have shape"):
        encode_raxels(K[:, :2], c2w, 16, 16)
    empty = raxels.copy()
    empty[1] = np.nan
    with pytest.raises(ValueError, match=r"frames \[1\] have fewer than 4 finite rays"):
        decode_raxels(empty)
