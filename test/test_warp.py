"""Geometric previews (rap_ros.pipeline.warp) against the renderer, the composite, and the
preview modes of ViewPipeline: previews that turn with their paths."""
import cv2
import numpy as np
import pytest

from rap_ros.geometry.cameras import relative_to_first, scale_intrinsics
from rap_ros.geometry.rotations import rotation_from_axis_angle
from rap_ros.metrics import psnr
from rap_ros.pipeline.goal_scores import census_distance, goal_scores
from rap_ros.pipeline.views import ViewPipeline
from rap_ros.pipeline.warp import (composite, feather_weights, fill_invalid,
                                   forward_warp_depth, plane_homography, rotation_homography,
                                   warp_homography)
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


def _reference_forward_warp(image, depth, K, rel, K_target=None, size=None):
    """The z-buffered splat of ``forward_warp_depth`` written plainly (float64, a loop over
    the samples in order of depth): each sample to the pixel it rounds to, then, into the
    pixels left empty, the samples within one pixel; nearest wins, ties to the lowest
    source pixel."""
    H, W = image.shape[:2]
    h, w = (H, W) if size is None else size
    K_target = K if K_target is None else K_target
    R, t = rel[:3, :3], rel[:3, 3]
    v, u = np.mgrid[:H, :W].reshape(2, -1).astype(np.float64)
    rays = np.linalg.inv(K) @ np.stack([u, v, np.ones_like(u)])
    d = depth.reshape(-1)
    inverse = np.where(np.isfinite(d) & (d > 0), 1.0 / np.where(d > 0, d, 1.0), 0.0)
    q = R.T @ (rays - np.outer(t, inverse))
    front = np.flatnonzero(q[2] > 1e-9)
    p = K_target @ (q[:, front] / q[2, front])
    z = q[2, front] / np.maximum(inverse[front], 1e-300)
    order = np.lexsort((front, z))                       # by depth, then source pixel
    colour = image.reshape(-1, 3)
    out, valid = np.zeros((h * w, 3), np.uint8), np.zeros(h * w, bool)
    for i in order:
        x, y = int(np.round(p[0, i])), int(np.round(p[1, i]))
        if 0 <= x < w and 0 <= y < h and not valid[y * w + x]:
            out[y * w + x], valid[y * w + x] = colour[front[i]], True
    first = valid.copy()
    hole = ~first.reshape(h, w)
    for i in order:
        x0, y0 = int(np.floor(p[0, i])), int(np.floor(p[1, i]))
        xr = min(max(int(np.round(p[0, i])), 0), w - 1)
        yr = min(max(int(np.round(p[1, i])), 0), h - 1)
        if not hole[max(yr - 1, 0):yr + 2, max(xr - 1, 0):xr + 2].any():
            continue
        for x, y in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
            if 0 <= x < w and 0 <= y < h and not valid[y * w + x]:
                out[y * w + x], valid[y * w + x] = colour[front[i]], True
    return out.reshape(h, w, 3), valid.reshape(h, w)


@pytest.mark.parametrize("case", ["forward", "backward", "sideways", "zoomed target"])
def test_depth_warp_matches_a_plain_reference(street, case):
    """The vectorised splat (float32, packed z-buffer keys) picks the reference's samples:
    sky (inf), points behind the target camera, magnification cracks, another K and size."""
    scene, K, c2w, depth = street
    source = render(scene, K, c2w[None], H, W, 1)[0]
    rel, K_target, size = {
        "forward": (_shift(0.1, 0.0, 1.5) @ _turn(4.0), None, None),
        "backward": (_shift(0.0, 0.2, -2.0) @ _turn(-8.0), None, None),
        "sideways": (_shift(-1.0, 0.0, 0.3) @ _turn(15.0), None, None),
        # not 1.5: a zoom of 1.5 puts samples on exact half pixels, where rounding noise
        # (float32 here, float64 there) decides
        "zoomed target": (_shift(0.2, 0.0, 0.5), np.diag([1.37, 1.37, 1.0]) @ K, (40, 50)),
    }[case]
    depth = depth.copy()
    depth[:4, :4] = 0.0                                  # no surface, as inf
    expected, expected_valid = _reference_forward_warp(source, depth, K, rel, K_target, size)
    warped, valid = forward_warp_depth(source, depth, K, rel, K_target, size)
    assert np.mean(valid == expected_valid) > 0.999
    assert np.mean(np.all(warped == expected, axis=-1)) > 0.995


def test_fill_invalid_and_composite_match_a_plain_push_pull():
    """fill_invalid skips the finest level's blend (its holes have no weight) and composite
    blends the feather band only: the same images as the plain formulas, up to rounding."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    valid = rng.random((50, 70)) > 0.3
    valid[5:30, 10:40] = False
    weight = valid.astype(np.float32)
    pyramid = [(image * weight[..., None], weight)]
    while min(pyramid[-1][1].shape) >= 2:
        pyramid.append((cv2.pyrDown(pyramid[-1][0]), cv2.pyrDown(pyramid[-1][1])))
    c, wgt = pyramid[-1]
    filled = c / np.maximum(wgt, 1e-6)[..., None]
    for c, wgt in reversed(pyramid[:-1]):
        up = cv2.resize(filled, wgt.shape[::-1], interpolation=cv2.INTER_LINEAR)
        known = np.clip(wgt, 0, 1)[..., None]
        filled = c / np.maximum(wgt, 1e-6)[..., None] * known + up * (1 - known)
    expected = np.where(valid[..., None], image, np.clip(np.round(filled), 0, 255))
    assert np.abs(fill_invalid(image, valid).astype(int) - expected).max() <= 1
    fallback = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    fallback_valid = np.zeros((50, 70), bool)
    fallback_valid[:, 20:60] = True
    base = fill_invalid(np.where(fallback_valid[..., None], fallback,
                                 np.where(valid[..., None], image, 0)).astype(np.uint8),
                        fallback_valid | valid)
    a = feather_weights(valid, 4.0)[..., None]
    expected = np.clip(np.round(a * image + (1 - a) * base.astype(np.float32)), 0, 255)
    out = composite(image, valid, fallback, fallback_valid, 4.0)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_the_model_view_of_a_warp_at_a_reduced_size_agrees_with_the_full_size_warp(street):
    """ViewPipeline warps the model's condition from the source downscaled to 2 pixels a
    model pixel (``conditioning.condition_source``), not from the preview-size warp: in the
    model's 64 px view the two agree (the warp's cost falls with the pixels)."""
    from rap_ros.pipeline.conditioning import (condition_source, condition_warps,
                                               in_model_view, warp_path)
    from rap_ros.pipeline.framing import prepare_frames
    from rap_ros.synth.render import true_depth
    scene, K, c2w, _ = street
    big = 4                                              # a 384 x 288 source
    K_big = scale_intrinsics(K, big, big)
    source = render(scene, K_big, c2w[None], H * big, W * big, 1)[0]
    depth = true_depth(scene, K_big, c2w, H * big, W * big)
    path = relative_to_first(np.stack([_turn(-15.0 * i / 8) @ _shift(0.05 * i, 0, 0.3 * i)
                                       for i in range(9)]))[0]
    S = 64
    _, K_model, _ = prepare_frames(source[None], K_big, S)
    to_source = (K_big @ np.linalg.inv(K_model))[:2]
    for d in (depth, 5.0, None):
        full, full_validity = in_model_view(*warp_path(source, K_big, path, d), to_source, S)
        small_source = condition_source(source, K_big, to_source)
        assert small_source[0].shape[:2] == (128, 171)   # the model's square at 128 px
        small, small_validity = condition_warps(*small_source, path, d, S)
        assert small.shape == full.shape and small_validity.shape == full_validity.shape
        difference = np.abs(small.astype(float) - full)
        assert difference.mean() < 4.0 and np.percentile(difference, 99) < 40.0
        # where the warp magnifies beyond 2x (the road just ahead) both have cracks, in
        # patterns that differ with the size: compared over 8 x 8 model pixels
        blocks = lambda v: v.reshape(len(v), 8, 8, 8, 8).mean(axis=(2, 4))
        assert np.abs(blocks(small_validity) - blocks(full_validity)).mean() < 0.03
        assert np.abs(small_validity.mean() - full_validity.mean()) < 0.01
    # already small: warped as it is
    frames, K_tiny, _ = prepare_frames(source[None], K_big, S)
    tiny = frames[0]
    assert condition_source(tiny, K_tiny, np.eye(3)[:2])[0] is tiny


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
    model alone; warp modes preview the full frame; one code path for batches and chunks,
    and for paths warped side by side or one after the other."""
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
    one_by_one = ViewPipeline(backend, preview="warp+model", seed=4, workers=1)
    np.testing.assert_array_equal(one_by_one.predict_batch(source, K, paths, depth=5.0),
                                  previews)
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
    guide = near._warps_and_validity_in_model_view(warps)[0]
    frames = near._predict_chunk(prepared.latent, prepared.K_model, path[None],
                                 near._draw_noise(1, T), guide)
    unguided = near._predict_chunk(prepared.latent, prepared.K_model, path[None],
                                   near._draw_noise(1, T))
    error = lambda a: np.abs(a[0, 1:].astype(float) - guide[0, 1:]).mean()
    assert error(frames) < 0.5 * error(unguided), (error(frames), error(unguided))
    with pytest.raises(ValueError, match="guide_t"):
        ViewPipeline(backend, preview="guided", guide_t=0.0)
