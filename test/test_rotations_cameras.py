"""Tests for rap_ros.geometry.rotations and rap_ros.geometry.cameras."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from rap_ros.geometry import (
    apply_scale,
    camera_centres,
    intrinsics_matrix,
    invert_pose,
    matrix_from_quat,
    pixel_grid,
    pose_from_rt,
    project_to_so3,
    quat_from_matrix,
    random_rotation,
    relative_to_first,
    rotation_angle_deg,
    rotation_from_axis_angle,
    rotation_vector,
    scale_intrinsics,
    skew,
)

seeds = st.integers(0, 2**32 - 1)


def random_poses(rng, n):
    return pose_from_rt(random_rotation(rng, n), rng.uniform(-5, 5, (n, 3)))


# ---------------------------------------------------------------- rotations


@given(seeds)
def test_quaternions_match_scipy_and_round_trip(seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((16, 4))
    R = matrix_from_quat(q)
    np.testing.assert_allclose(R, Rotation.from_quat(q).as_matrix(), atol=1e-12)
    q_back = quat_from_matrix(R)
    unit = q / np.linalg.norm(q, axis=-1, keepdims=True)
    assert np.all(q_back[:, 3] >= 0)
    np.testing.assert_allclose(q_back, unit * np.sign(unit[:, 3:]), atol=1e-12)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-4, np.pi / 2, np.pi - 1e-7, np.pi])
def test_quat_from_matrix_is_accurate_at_any_angle(angle):
    axes = np.random.default_rng(0).standard_normal((8, 3))
    R = rotation_from_axis_angle(axes, np.full(8, angle))
    np.testing.assert_allclose(matrix_from_quat(quat_from_matrix(R)), R, atol=1e-12)


def test_quaternion_axis_convention():
    """(x, y, z, w) = (0, 0, sin 45, cos 45) is +90 degrees about z: x -> y."""
    R = matrix_from_quat([0, 0, np.sqrt(0.5), np.sqrt(0.5)])
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-15)


@pytest.mark.parametrize("angle", [0.0, 1e-10, 1e-6, 0.3, np.pi - 1e-6, np.pi - 1e-10, np.pi])
def test_rotation_angle_is_accurate_near_0_and_180(angle):
    axes = np.random.default_rng(1).standard_normal((8, 3))
    R = rotation_from_axis_angle(axes, np.full(8, angle))
    np.testing.assert_allclose(rotation_angle_deg(R), np.degrees(angle), rtol=1e-6, atol=1e-12)


@given(seeds)
def test_rotation_angle_matches_scipy(seed):
    R = random_rotation(np.random.default_rng(seed), 32)
    expected = np.degrees(np.linalg.norm(Rotation.from_matrix(R).as_rotvec(), axis=-1))
    np.testing.assert_allclose(rotation_angle_deg(R), expected, atol=1e-9)


@given(seeds)
def test_axis_angle_matches_scipy_and_fixes_its_axis(seed):
    rng = np.random.default_rng(seed)
    axis, angle = rng.standard_normal((16, 3)), rng.uniform(-np.pi, np.pi, 16)
    R = rotation_from_axis_angle(axis, angle)
    unit = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    np.testing.assert_allclose(R, Rotation.from_rotvec(unit * angle[:, None]).as_matrix(),
                               atol=1e-12)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", R, unit), unit, atol=1e-12)


@given(seeds)
def test_skew_is_the_cross_product(seed):
    v, x = np.random.default_rng(seed).standard_normal((2, 10, 3))
    np.testing.assert_allclose(np.einsum("nij,nj->ni", skew(v), x), np.cross(v, x), atol=1e-12)


@given(seeds)
def test_project_to_so3_returns_the_nearest_rotation(seed):
    rng = np.random.default_rng(seed)
    R = random_rotation(rng, 8)
    np.testing.assert_allclose(project_to_so3(R), R, atol=1e-12)
    noisy = R + 1e-3 * rng.standard_normal(R.shape)
    projected = project_to_so3(noisy)
    np.testing.assert_allclose(projected @ np.swapaxes(projected, 1, 2),
                               np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(projected), 1.0, atol=1e-12)
    others = random_rotation(rng, 8) @ projected
    closer = np.linalg.norm(noisy - projected, axis=(1, 2)) <= np.linalg.norm(noisy - others,
                                                                               axis=(1, 2))
    assert closer.all()


def test_project_to_so3_fixes_reflections():
    assert np.isclose(np.linalg.det(project_to_so3(np.diag([1.0, 1.0, -1.0]))), 1.0)


def test_random_rotation_is_uniform():
    """For the Haar measure E[R] = 0 and the angle has density (1 - cos a) / pi."""
    R = random_rotation(np.random.default_rng(0), 20000)
    assert R.shape == (20000, 3, 3)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    assert np.abs(R.mean(axis=0)).max() < 0.02
    angle = np.radians(rotation_angle_deg(R))
    assert abs(np.mean(angle) - (np.pi / 2 + 2 / np.pi)) < 0.02


# ---------------------------------------------------------------- cameras


def test_pixel_grid_matches_strided_indexing():
    grid = pixel_grid(7, 10, stride=3)
    assert grid.shape == (3, 4, 2)
    rows, cols = np.mgrid[0:7, 0:10]
    np.testing.assert_array_equal(grid[..., 0], cols[::3, ::3])
    np.testing.assert_array_equal(grid[..., 1], rows[::3, ::3])


def test_intrinsics_matrix_layout_and_broadcasting():
    np.testing.assert_array_equal(intrinsics_matrix(500, 400, 319.5, 239.5),
                                  [[500, 0, 319.5], [0, 400, 239.5], [0, 0, 1]])
    K = intrinsics_matrix(np.array([1.0, 2.0]), 3.0, 4.0, 5.0)
    assert K.shape == (2, 3, 3) and K[1, 0, 0] == 2.0 and K[1, 1, 1] == 3.0


@given(seeds, st.floats(0.1, 4.0), st.floats(0.1, 4.0))
def test_scale_intrinsics_follows_the_pixel_centre_convention(seed, sx, sy):
    """A point seen at (u, v) is seen at (sx (u + .5) - .5, sy (v + .5) - .5)
    after resizing, and a centred principal point stays centred."""
    rng = np.random.default_rng(seed)
    width, height = 64, 48
    K = intrinsics_matrix(rng.uniform(30, 2000), rng.uniform(30, 2000),
                          (width - 1) / 2 + rng.normal(), (height - 1) / 2 + rng.normal())
    points = rng.uniform(-1, 1, (20, 3)) + [0, 0, 3]
    pixels = points @ K.T
    resized = points @ scale_intrinsics(K, sx, sy).T
    uv, uv_resized = pixels[:, :2] / pixels[:, 2:], resized[:, :2] / resized[:, 2:]
    np.testing.assert_allclose(uv_resized, [sx, sy] * (uv + 0.5) - 0.5, rtol=1e-10, atol=1e-9)
    centred = scale_intrinsics(intrinsics_matrix(100, 100, (width - 1) / 2, (height - 1) / 2),
                               sx, sy)
    np.testing.assert_allclose(centred[:2, 2], [(sx * width - 1) / 2, (sy * height - 1) / 2])


@given(seeds)
def test_invert_pose(seed):
    poses = random_poses(np.random.default_rng(seed), 6)
    np.testing.assert_allclose(invert_pose(poses), np.linalg.inv(poses), atol=1e-12)
    np.testing.assert_allclose(invert_pose(poses) @ poses, np.broadcast_to(np.eye(4), poses.shape),
                               atol=1e-12)


def test_pose_from_rt_and_camera_centres():
    R = rotation_from_axis_angle([0, 0, 1], 0.5)
    pose = pose_from_rt(R, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(pose[:3, :3], R)
    np.testing.assert_array_equal(pose[3], [0, 0, 0, 1])
    np.testing.assert_array_equal(camera_centres(pose), [1.0, 2.0, 3.0])


def test_apply_scale_scales_translations_only():
    poses = random_poses(np.random.default_rng(2), 4)
    scaled = apply_scale(poses, 2.5)
    np.testing.assert_allclose(camera_centres(scaled), 2.5 * camera_centres(poses))
    np.testing.assert_array_equal(scaled[:, :3, :3], poses[:, :3, :3])


@given(seeds)
def test_relative_to_first_normalises_and_inverts(seed):
    poses = random_poses(np.random.default_rng(seed), 7)
    rel, scale = relative_to_first(poses)
    np.testing.assert_allclose(rel[0], np.eye(4), atol=1e-12)
    centres = camera_centres(poses)
    assert np.isclose(scale, np.linalg.norm(centres[1:] - centres[0], axis=-1).mean())
    assert np.isclose(np.linalg.norm(camera_centres(rel)[1:], axis=-1).mean(), 1.0)
    np.testing.assert_allclose(poses[0] @ apply_scale(rel, scale), poses, atol=1e-10)


@given(seeds, st.floats(0.01, 100.0))
def test_relative_to_first_removes_any_similarity(seed, s):
    """The result depends on the trajectory's shape, not on its world frame or scale."""
    rng = np.random.default_rng(seed)
    poses = random_poses(rng, 5)
    moved = random_poses(rng, 1)[0] @ apply_scale(poses, s)
    rel, scale = relative_to_first(poses)
    rel_moved, scale_moved = relative_to_first(moved)
    np.testing.assert_allclose(rel_moved, rel, atol=1e-9)
    assert np.isclose(scale_moved, s * scale)


def test_relative_to_first_keeps_a_static_camera_unscaled():
    pose = random_poses(np.random.default_rng(3), 1)
    static = np.repeat(pose, 4, axis=0)
    static[1:, :3, 3] += 1e-8
    rel, scale = relative_to_first(static)
    assert scale == 1.0
    np.testing.assert_allclose(rel, invert_pose(pose[0]) @ static, atol=1e-12)
    assert relative_to_first(pose)[1] == 1.0


@settings(max_examples=20)
@given(seeds)
def test_rotation_helpers_keep_batch_shapes(seed):
    R = random_rotation(np.random.default_rng(seed), 6).reshape(2, 3, 3, 3)
    assert quat_from_matrix(R).shape == (2, 3, 4)
    assert rotation_angle_deg(R).shape == (2, 3)
    assert project_to_so3(R).shape == R.shape
    assert invert_pose(pose_from_rt(R, np.zeros(3))).shape == (2, 3, 4, 4)


def test_rotation_vector_small_and_large_angles():
    axis = np.array([0.2, -0.5, 0.8]) / np.linalg.norm([0.2, -0.5, 0.8])
    for angle in (0.0, 1e-9, 0.3, 3.1, np.pi - 1e-7):
        R = rotation_from_axis_angle(axis, angle)
        assert np.allclose(rotation_vector(R), axis * angle, atol=1e-7)
