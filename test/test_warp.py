"""Geometric previews (rap_ros.pipeline.warp) against the renderer, the composite, and the
preview modes of ViewPipeline: previews that turn with their paths."""
import numpy as np
import pytest

from rap_ros.geometry.cameras import relative_to_first
from rap_ros.geometry.rotations import rotation_from_axis_angle
from rap_ros.metrics import psnr
from rap_ros.pipeline.views import ViewPipeline, census_distance, goal_scores
from rap_ros.pipeline.warp import (composite, fill_invalid, forward_warp_depth,
                                   plane_homography, rotation_homography, warp_homography)
from rap_ros.synth import scenes, trajectories
from rap_ros.synth.dataset import held_out_seed
from rap_ros.synth.render import NO_HIT, camera_rays, intersect, render

H, W = 72, 96


def _turn(deg, axis=(0.0, 1.0, 0.0)):
    pose = np.eye(4)
    pose[:3, :3] = rotation_from_axis_angle(np.array(axis), np.radians(deg))
    return pose


def _shift(x, y, z):
    pose = np.eye(4)
    pose[:3, 3] = (x, y, z)
    return pose


@pytest.fixture(scope="module")
def street():
    """A held-out street scene, a camera on its drive, and that camera's true z-depth."""
    rng = np.random.default_rng(held_out_seed(31))
    K = trajectories.sample_intrinsics(rng, W, H)
    path = trajectories.drive_trajectory(rng, 20, 10.0)
    scene = scenes.make_scene("street", rng, path)
    c2w = path.c2w[5]
    v, u = np.mgrid[:H, :W].reshape(2, -1).astype(np.float64)
    rays = camera_rays(K, u, v)
    to_scene = scene.world_from_scene.T
    t, _ = intersect(np.repeat((to_scene @ c2w[:3, 3])[None], len(rays), 0),
                     rays @ (to_scene @ c2w[:3, :3]).T, scene.lo, scene.hi)
    depth = (np.where(t < NO_HIT, t, np.inf) * rays[:, 2]).reshape(H, W)
    return scene, K, c2w, depth


def _psnr_where(a, b, valid):
    return float(psnr(a[valid][None, :, None] / 255.0, b[valid][None, :, None] / 255.0)[0])


def test_rotation_warp_matches_the_rotated_render(street):
    scene, K, c2w, _ = street
    rel = _turn(12.0) @ _turn(-4.0, (1.0, 0.0, 0.0))
    source, target = render(scene, K, np.stack([c2w, c2w @ rel]), H, W, 2)
    warped, valid = warp_homography(source, K, rel)
    assert 0.5 < valid.mean() < 0.95  # the turn brings new pixels in at one side
    assert _psnr_where(warped, target, valid) > 28.0
    assert _psnr_where(source, target, valid) < 20.0  # not just a copy
    # the plane at infinity is the rotation homography K R^T K^-1
    np.testing.assert_allclose(plane_homography(K, rel, np.inf), rotation_homography(K, rel))
    np.testing.assert_allclose(rotation_homography(K, rel),
                               K @ rel[:3, :3].T @ np.linalg.inv(K))


def test_depth_warp_with_true_depth_matches_the_moved_render(street):
    scene, K, c2w, depth = street
    rel = _shift(0.25, 0.0, 0.7) @ _turn(5.0)
    source, target = render(scene, K, np.stack([c2w, c2w @ rel]), H, W, 2)
    warped, valid = forward_warp_depth(source, depth, K, rel)
    assert valid.mean() > 0.85
    assert _psnr_where(warped, target, valid) > 26.0
    rotation_only, rotation_valid = warp_homography(source, K, rel)
    assert _psnr_where(warped, target, valid) > _psnr_where(rotation_only, target,
                                                            rotation_valid) + 3.0
    # standing still: the identity, every pixel valid
    same, same_valid = forward_warp_depth(source, depth, K, np.eye(4))
    assert same_valid.all() and np.array_equal(same, source)


def test_plane_warp_validity_and_fill():
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    # moving past the plane (depth 1, forward 2): nothing of it is in front of the camera
    _, valid = warp_homography(image, K, _shift(0, 0, 2.0), depth=1.0)
    assert not valid.any()
    # moving towards it: a zoom, valid everywhere
    _, valid = warp_homography(image, K, _shift(0, 0, 0.5), depth=2.0)
    assert valid.all()
    hole = np.ones((48, 64), bool)
    hole[10:20, 30:40] = False
    flat = np.full((48, 64, 3), 77, np.uint8)
    filled = fill_invalid(np.where(hole[..., None], flat, 0).astype(np.uint8), hole)
    assert np.abs(filled.astype(int) - 77).max() <= 1


def test_composite_fills_from_the_model_and_keeps_the_warp():
    warped = np.full((40, 60, 3), 200, np.uint8)
    model = np.full((40, 60, 3), 50, np.uint8)
    valid = np.zeros((40, 60), bool)
    valid[:, :30] = True
    out = composite(warped, valid, model, feather_px=4)
    assert np.all(out[:, 30:] == 50)  # invalid: the model's
    assert np.all(out[:, :26] == 200)  # valid beyond the feather band: the warp's
    band = out[:, 26:30, 0].astype(int)
    assert np.all((band > 50) & (band < 200)) and np.all(np.diff(band, axis=1) < 0)
    # where the model has no data either, the rest is filled from what is known
    model_valid = np.ones((40, 60), bool)
    model_valid[:, 50:] = False
    out = composite(warped, valid, model, model_valid, feather_px=0)
    assert np.all(out[:, 30:50] == 50) and np.all(out[:, :30] == 200)
    assert np.all((out[:, 50:] >= 50) & (out[:, 50:] <= 200))


def test_goal_scores_prefer_the_same_view_under_exposure_change(street):
    scene, K, c2w, _ = street
    a, b = render(scene, K, np.stack([c2w, c2w @ _turn(20.0)]), H, W, 2)
    darker = (a * 0.6 + 20).astype(np.uint8)
    scores = goal_scores(np.stack([a, b]), darker)
    assert scores["gradient_distance"][0] < 0.1 < scores["gradient_distance"][1]
    assert scores["census_distance"][0] < scores["census_distance"][1]
    assert census_distance(a / 255.0, a / 255.0) == 0.0


@pytest.fixture(scope="module")
def backend():
    pytest.importorskip("onnxruntime")
    from rap_ros.backend import ModelFileError
    from rap_ros.backend.shared import get_backend

    try:
        return get_backend("onnx")
    except (ModelFileError, FileNotFoundError):
        pytest.skip("no shipped ONNX model")


def test_previews_turn_with_their_paths(backend, street):
    """"20 deg left" and "20 deg right" previews differ by far more than the ~3/255 of the
    model alone; warp modes preview the full frame; one code path for batches and chunks."""
    scene, K, c2w, _ = street
    T = int(backend.config.frames)
    forward = np.stack([_shift(0, 0, 0.1 * i) for i in range(T)])
    paths = np.stack([relative_to_first(np.stack([np.eye(4)] + [
        _turn(angle * i / (T - 1)) @ p for i, p in enumerate(forward[1:], 1)]))[0]
        for angle in (-20.0, 20.0)])
    source = render(scene, K, c2w[None], H, W, 2)[0]
    composite_view = ViewPipeline(backend, preview="warp+model", seed=4)
    previews = composite_view.predict_batch(source, K, paths, depth=5.0)
    assert previews.shape == (2, T, H, W, 3)
    assert np.array_equal(previews[0, 0], source)  # frame 0: the source itself
    left, right = previews[:, -1].astype(float)
    assert np.abs(left - right).mean() > 20.0
    chunked = ViewPipeline(backend, preview="warp+model", seed=4).predict_batch(
        source, K, paths, chunk_size=1, depth=5.0)
    assert np.abs(chunked.astype(int) - previews).max() <= 2
    warp_only = ViewPipeline(backend, preview="warp").predict(source, K, paths[0], depth=5.0)
    assert warp_only.shape == (T, H, W, 3)
    model = ViewPipeline(backend).predict(source, K, paths[0])
    S = backend.config.image_size
    assert model.shape == (T, S, S, 3)
    with pytest.raises(ValueError, match="preview"):
        ViewPipeline(backend, preview="sketch")


def test_guided_previews_start_from_the_warp(backend, street):
    """"guided": the model's frames are denoised from the warp noised to ``guide_t``. At
    guide_t = 1 (pure noise) it is "warp+model" exactly; near 0 the model's frames are the
    warp as the codec reproduces it, so its fill continues the warped scene."""
    scene, K, c2w, _ = street
    T = int(backend.config.frames)
    path = relative_to_first(np.stack([_turn(-25.0 * i / (T - 1)) @ _shift(0, 0, 0.1 * i)
                                       for i in range(T)]))[0]
    source = render(scene, K, c2w[None], H, W, 2)[0]
    plain = ViewPipeline(backend, preview="warp+model", seed=4).predict(source, K, path, 5.0)
    as_noise = ViewPipeline(backend, preview="guided", guide_t=1.0, seed=4).predict(
        source, K, path, 5.0)
    np.testing.assert_array_equal(as_noise, plain)
    near = ViewPipeline(backend, preview="guided", guide_t=0.05, seed=4)
    prepared = near._prepare_source(source, K)
    warps = near._chunk_warps(prepared, path[None], [5.0])
    guide = near._warps_and_validity_in_model_view(prepared, warps)[0]
    frames = near._predict_chunk(prepared.latent, prepared.K_model, path[None],
                                 near._draw_noise(1, T), guide)
    unguided = near._predict_chunk(prepared.latent, prepared.K_model, path[None],
                                   near._draw_noise(1, T))
    error = lambda a: np.abs(a[0, 1:].astype(float) - guide[0, 1:]).mean()
    assert error(frames) < 0.5 * error(unguided), (error(frames), error(unguided))
    with pytest.raises(ValueError, match="guide_t"):
        ViewPipeline(backend, preview="guided", guide_t=0.0)
