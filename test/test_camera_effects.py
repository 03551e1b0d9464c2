"""What a real camera adds to a render (rap_ros.synth.camera_effects): each effect changes what
it says and nothing else, and clips without effects are unchanged."""
import numpy as np
import pytest

from rap_ros.synth import camera_effects, dataset, scenes, trajectories
from rap_ros.synth.render import render

H, W = 48, 64


def _scene_and_path(kind="arc", frames=12, seed=3):
    rng = np.random.default_rng(seed)
    K = trajectories.sample_intrinsics(rng, W, H)
    path = trajectories.make_trajectory(kind, rng, frames, 10.0)
    return scenes.make_scene("room", rng, path), K, path.c2w, rng


def test_a_clip_without_effects_is_the_plain_render():
    scene, K, c2w, rng = _scene_and_path()
    assert np.array_equal(camera_effects.film(scene, K, c2w, H, W),
                          render(scene, K, c2w, H, W))
    with pytest.raises(ValueError, match="unknown camera effects"):
        camera_effects.film(scene, K, c2w, H, W, ("fisheye",), rng)


def test_poses_between_frames_follow_the_motion():
    scene, K, c2w, _ = _scene_and_path()
    half = camera_effects.poses_at(c2w, 0.5)
    np.testing.assert_allclose(half[3, :3, 3], (c2w[3, :3, 3] + c2w[4, :3, 3]) / 2)
    back = camera_effects.poses_at(c2w, -0.5)
    np.testing.assert_allclose(back[4, :3, 3], (c2w[3, :3, 3] + c2w[4, :3, 3]) / 2)
    # the last frame has no next one: the interval before it is continued
    np.testing.assert_allclose(half[-1, :3, 3], c2w[-1, :3, 3] + 0.5 * (c2w[-1, :3, 3]
                                                                       - c2w[-2, :3, 3]))
    for R in half[:, :3, :3]:
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)


def test_a_rolling_shutter_bends_only_a_moving_camera():
    scene, K, c2w, _ = _scene_and_path("turn_in_place")
    still = np.repeat(c2w[:1], 3, axis=0)
    banded = camera_effects.render_with(scene, K, still, H, W, readout=0.5)
    np.testing.assert_array_equal(banded, render(scene, K, still, H, W))  # one pose: no bend
    moving = camera_effects.render_with(scene, K, c2w, H, W, readout=0.5)
    plain = render(scene, K, c2w, H, W)
    rows = np.abs(moving.astype(int) - plain).mean(axis=(0, 2, 3))
    assert rows[H // 2 - 1:H // 2 + 1].mean() < 0.5 * rows[:4].mean()  # the middle row is on time
    assert rows[:4].mean() > 1.0 and rows[-4:].mean() > 1.0


def test_a_moving_object_crosses_the_view_in_its_frames_only():
    scene, K, c2w, rng = _scene_and_path("forward", frames=20)
    mover = camera_effects.moving_box(scene, c2w, rng)
    frames = camera_effects.render_with(scene, K, c2w, H, W, mover=mover)
    plain = render(scene, K, c2w, H, W)
    changed = np.abs(frames.astype(int) - plain).sum(axis=3) > 0
    inside = sorted(mover["centres"])
    outside = [i for i in range(len(c2w)) if i not in mover["centres"]]
    assert not changed[outside].any()
    assert changed[inside].mean() > 0.1
    columns = [np.flatnonzero(changed[i].any(axis=0)).mean() for i in (inside[1], inside[-2])]
    assert abs(columns[1] - columns[0]) > W / 4  # it moves across the image


def test_sensor_noise_grows_with_brightness():
    rng = np.random.default_rng(0)
    dark, bright = np.full((2, 64, 64, 3), 20, np.uint8), np.full((2, 64, 64, 3), 200, np.uint8)
    sd_dark = camera_effects.sensor_noise(dark, rng).std()
    sd_bright = camera_effects.sensor_noise(bright, rng).std()
    assert sd_dark == pytest.approx(np.sqrt(camera_effects.READ_NOISE ** 2
                                            + camera_effects.SHOT_GAIN * 20), rel=0.1)
    assert sd_bright == pytest.approx(np.sqrt(camera_effects.READ_NOISE ** 2
                                              + camera_effects.SHOT_GAIN * 200), rel=0.1)


def test_auto_exposure_changes_the_gain_and_darkens_the_corners():
    frames = np.full((60, 30, 40, 3), 100, np.uint8)
    out = camera_effects.auto_exposure(frames, np.random.default_rng(1)).astype(float)
    centre, corner = out[:, 15, 20, 0], out[:, 0, 0, 0]
    assert np.all(corner < centre)
    low, high = camera_effects.GAIN_RANGE
    assert 100 * low - 1 <= centre.min() and centre.max() <= 100 * high + 1
    assert np.ptp(centre) > 10  # the exposure moves over a clip


def test_jpeg_keeps_the_picture_but_not_the_bytes():
    scene, K, c2w, _ = _scene_and_path()
    frames = render(scene, K, c2w[:2], H, W)
    out = camera_effects.jpeg(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8
    error = np.abs(out.astype(int) - frames)
    assert error.max() > 0 and error.mean() < 15


def test_sample_clip_films_the_same_clip_with_effects():
    plain = dataset.sample_clip(5, frames=6, height=H, width=W)
    noisy = dataset.sample_clip(5, frames=6, height=H, width=W, effects=("sensor_noise",))
    np.testing.assert_array_equal(plain.c2w, noisy.c2w)
    np.testing.assert_array_equal(plain.K, noisy.K)
    assert not np.array_equal(plain.frames, noisy.frames)
    assert noisy.meta["effects"] == ["sensor_noise"] and "effects" not in plain.meta
