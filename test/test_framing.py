"""Framing of input images for the model (``pipeline.framing``, issue 12 "Full frame"): the
centred square and the letterbox (the whole image, longer side S, padded), pixel coordinates
and intrinsics through both, the padding, the weights' choice (``ModelConfig.framing``), the
pipelines with letterbox weights and the letterboxed training clips."""
import dataclasses

import numpy as np
import pytest

from rap_ros.contract.config import ModelConfig, load_config, rap_tiny, save_config
from rap_ros.pipeline.framing import FRAMINGS, PAD_VALUE, Framing, framing_of, prepare_frames


def _intrinsics(width, height, fx=None):
    fx = fx or 0.8 * width
    return np.array([[fx, 0, (width - 1) / 2 + 1.3], [0, 1.02 * fx, (height - 1) / 2 - 0.7],
                     [0, 0, 1.0]])


def _model_pixel(framing, u, v):
    """The documented map: input pixel (u, v) -> scale * (u - x0 + 0.5) - 0.5, ..."""
    s = framing.scale
    return np.array([s * (u - framing.x0 + 0.5) - 0.5, s * (v - framing.y0 + 0.5) - 0.5])


def _project(K, point):
    u, v, w = K @ point
    return np.array([u / w, v / w])


@pytest.mark.parametrize("height,width", [(37, 123), (120, 48), (40, 40), (33, 80)])
def test_letterbox_keeps_pixels_and_intrinsics_consistent(height, width):
    """Wide, tall, square, odd padding: a 3D point projects to the model pixel the documented
    map gives, K survives to_model / to_input, and prepare_frames agrees with Framing."""
    size = 16
    K = _intrinsics(width, height)
    frames = np.random.default_rng(0).integers(0, 256, (2, height, width, 3), np.uint8)
    resized, K_model, framing = prepare_frames(frames, K, size, "letterbox")
    assert resized.shape == (2, size, size, 3) and resized.dtype == np.uint8
    assert framing.side == max(height, width)
    assert framing.x0 == -((framing.side - width) // 2) and framing.x0 <= 0
    assert framing.y0 == -((framing.side - height) // 2) and framing.y0 <= 0
    assert np.isclose(framing.scale, size / max(height, width))
    for point in ([0.3, -0.2, 2.0], [-1.0, 0.4, 3.0], [0.0, 0.0, 1.0]):
        point = np.array(point)
        assert np.allclose(_project(K_model, point),
                           _model_pixel(framing, *_project(K, point)))
    assert np.allclose(framing.to_input(K_model), K)
    assert np.allclose(framing.to_input(framing.to_model(K)), K)
    # the image's corners land inside the model square, its centre at the centre
    corners = [_model_pixel(framing, u, v) for u in (-0.5, width - 0.5)
               for v in (-0.5, height - 0.5)]
    assert np.all(np.array(corners) >= -0.5 - 1e-9)
    assert np.all(np.array(corners) <= size - 0.5 + 1e-9)
    assert np.allclose(_model_pixel(framing, (width - 1) / 2, (height - 1) / 2),
                       (size - 1) / 2, atol=0.5 * framing.scale + 1e-9)


def test_letterbox_of_a_wide_image_pads_above_and_below():
    """KITTI-like 1226x370 at a fifth: rows above and below the image are PAD_VALUE, every
    column holds image; the content mask covers exactly the image's rows."""
    height, width, size = 74, 245, 32
    frames = np.zeros((1, height, width, 3), np.uint8)  # black image, grey padding
    resized, _, framing = prepare_frames(frames, None, size, "letterbox")
    assert framing.x0 == 0 and framing.y0 < 0 and framing.padded
    image_rows = np.flatnonzero((resized[0] != PAD_VALUE).any(axis=(1, 2)))
    top, bottom = _model_pixel(framing, 0, -0.5)[1], _model_pixel(framing, 0, height - 0.5)[1]
    assert image_rows[0] == int(np.floor(top + 0.5))
    assert image_rows[-1] == int(np.ceil(bottom - 0.5))
    assert np.all(resized[0, :image_rows[0]] == PAD_VALUE)
    assert np.all(resized[0, image_rows[-1] + 1:] == PAD_VALUE)
    assert np.all(resized[0, image_rows[1]:image_rows[-1]] == 0)       # whole rows of image
    mask = framing.content_mask()
    assert mask.shape == (size, size)
    assert np.all(mask.any(axis=0))                                   # every column
    rows = np.flatnonzero(mask.any(axis=1))
    assert abs(len(rows) - height * framing.scale) <= 1
    assert np.all(resized[0][mask] != PAD_VALUE)


def test_letterbox_of_a_tall_image_pads_left_and_right():
    height, width, size = 90, 30, 18
    frames = np.full((1, height, width, 3), 7, np.uint8)
    resized, K_model, framing = prepare_frames(frames, _intrinsics(width, height), size,
                                               "letterbox")
    assert framing.y0 == 0 and framing.x0 == -30 and framing.scale == pytest.approx(0.2)
    assert np.all(resized[0, :, :6] == PAD_VALUE) and np.all(resized[0, :, 12:] == PAD_VALUE)
    assert np.all(resized[0, :, 6:12] == 7)
    mask = framing.content_mask()
    assert np.array_equal(mask, np.broadcast_to((np.arange(size) >= 6) & (np.arange(size) < 12),
                                                (size, size)))
    assert K_model[0, 2] == pytest.approx(0.2 * (_intrinsics(width, height)[0, 2] + 30 + 0.5)
                                          - 0.5)


def test_square_input_is_the_same_for_both_framings():
    frames = np.random.default_rng(1).integers(0, 256, (1, 40, 40, 3), np.uint8)
    K = _intrinsics(40, 40)
    a, Ka, fa = prepare_frames(frames, K, 16, "centre")
    b, Kb, fb = prepare_frames(frames, K, 16, "letterbox")
    assert np.array_equal(a, b) and np.allclose(Ka, Kb)
    assert not fb.padded and fb.content_mask().all()


def test_centre_square_is_unchanged_and_unpadded():
    frames = np.random.default_rng(2).integers(0, 256, (1, 48, 80, 3), np.uint8)
    resized, _, framing = prepare_frames(frames, None, 16)          # default: centre
    assert (framing.x0, framing.y0, framing.side) == (16, 0, 48) and not framing.padded
    assert np.array_equal(framing.crop(frames), frames[:, :, 16:64])
    assert framing.content_mask().all()


def test_crop_pads_a_square_past_the_image():
    images = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    framing = Framing.letterbox(3, 4, 8)
    out = framing.crop(images)
    assert out.shape == (2, 4, 4, 3)
    assert np.all(out[:, 3] == PAD_VALUE) and np.array_equal(out[:, :3], images)


def test_unknown_framing_is_refused():
    with pytest.raises(ValueError, match="framing"):
        prepare_frames(np.zeros((1, 4, 4, 3), np.uint8), None, 4, "stretch")
    with pytest.raises(ValueError, match="framing"):
        ModelConfig(framing="stretch")


def test_config_framing_defaults_to_centre_and_round_trips(tmp_path):
    """Weights saved before the field (no key) keep "centre"; the field is saved."""
    assert FRAMINGS == ("centre", "letterbox")
    old = {k: v for k, v in rap_tiny().to_dict().items() if k != "framing"}
    assert ModelConfig.from_dict(old).framing == "centre"
    assert framing_of(ModelConfig.from_dict(old)) == "centre"
    assert framing_of(object()) == "centre"
    config = dataclasses.replace(rap_tiny(), framing="letterbox")
    save_config(config, tmp_path / "c.yaml")
    assert "framing: letterbox" in (tmp_path / "c.yaml").read_text()
    assert load_config(tmp_path / "c.yaml") == config


# ---------------------------------------------------------------- pipelines, training data


@pytest.fixture(scope="module")
def letterbox_backend():
    pytest.importorskip("torch")
    from rap_ros.backend.export import random_modules
    from rap_ros.backend.torch_backend import TorchBackend
    config = dataclasses.replace(rap_tiny(), framing="letterbox", warp_condition=True)
    codec, dit = random_modules(config, seed=3)
    return TorchBackend.from_modules(config, codec, dit)


def test_trajectory_pipeline_with_letterbox_weights(letterbox_backend):
    """K unknown: the estimate comes back at the input size through the letterbox; the
    padding's raxels are left out of the fit unless fit_padding."""
    from rap_ros.pipeline import TrajectoryPipeline
    config = letterbox_backend.config
    frames = np.random.default_rng(4).integers(0, 256, (config.frames, 20, 64, 3), np.uint8)
    K = _intrinsics(64, 20)
    for fit_padding in (False, True):
        pipe = TrajectoryPipeline(letterbox_backend, steps=1, fit_padding=fit_padding)
        known = pipe.estimate_window(frames, K)
        assert np.allclose(known.K, K)
        assert np.allclose(known.K_model, prepare_frames(frames[:1], K, 16, "letterbox")[1])
        blind = pipe.estimate_window(frames, None)
        framing = Framing.letterbox(20, 64, 16)
        assert np.allclose(blind.K, framing.to_input(blind.K_model))
        assert blind.c2w.shape == (config.frames, 4, 4) and np.all(np.isfinite(blind.c2w))


def test_view_pipeline_with_letterbox_weights_covers_the_whole_frame(letterbox_backend):
    from rap_ros.geometry import relative_to_first
    from rap_ros.pipeline import ViewPipeline
    config = letterbox_backend.config
    source = np.random.default_rng(5).integers(0, 256, (20, 64, 3), np.uint8)
    K = _intrinsics(64, 20)
    path = np.tile(np.eye(4), (config.frames, 1, 1))
    path[:, 0, 3] = np.linspace(0.0, 0.5, config.frames)
    path = relative_to_first(path)[0]
    model = ViewPipeline(letterbox_backend, preview="model").predict(source, K, path, depth=3.0)
    assert model.shape == (config.frames, 16, 16, 3)
    composite = ViewPipeline(letterbox_backend, preview="warp+model")
    prepared = composite._prepare_source(source, K)
    assert prepared.model_valid.all()          # the model's square covers the whole frame
    # the model's pixel grid maps onto the frame through the inverse of the letterbox
    framing = Framing.letterbox(20, 64, 16)
    corner = prepared.model_to_preview @ np.array([*_model_pixel(framing, 10.0, 5.0), 1.0])
    assert np.allclose(corner, [10.0, 5.0])
    assert composite.predict(source, K, path, depth=3.0).shape == (config.frames, 20, 64, 3)
    goal = composite.goal_view(source, (20, 64))
    assert goal.shape == (20, 64, 3)
    assert ViewPipeline(letterbox_backend).goal_view(source, (16, 16)).shape == (16, 16, 3)


def test_letterboxed_training_clips_match_inference_framing(tmp_path):
    """A letterboxed cache clip (``model.data.letterbox_cache``) is the letterbox of its strip
    with the clip's K, and its warp condition is the inference one of the strip."""
    pytest.importorskip("torch")
    from rap_ros.io.clip_cache import FrameCache, write_clip_cache
    from rap_ros.model import data
    from rap_ros.pipeline.conditioning import model_view_warp, training_warp
    from rap_ros.synth.dataset import sample_clip
    config = rap_tiny()
    S = config.image_size
    clips = [sample_clip(seed, config.frames, S, S, depth=True) for seed in range(6)]
    source = write_clip_cache(tmp_path / "square", np.stack([c.frames for c, _ in clips]),
                              np.stack([c.K for c, _ in clips]),
                              np.stack([relative_to_first_clip(c.c2w) for c, _ in clips]),
                              "train")
    np.save(source / "depth.npy", np.stack([d for _, d in clips]).astype(np.float32))
    boxed = FrameCache(data.letterbox_cache(source, tmp_path / "boxed", seed=0,
                                            log=lambda m: None))
    square = FrameCache(source)
    boxes = np.load(tmp_path / "boxed" / "box.npy")
    assert len({tuple(b) for b in boxes}) > 1
    for i in range(len(boxed)):
        x0, y0, w, h = boxes[i]
        assert max(w, h) == S
        strip = np.asarray(square.frames[i])[:, y0:y0 + h, x0:x0 + w]
        K = square.K[i].copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        framed, K_model, _ = prepare_frames(strip, K, S, "letterbox")
        assert np.array_equal(framed, boxed.frames[i])
        assert np.allclose(K_model, boxed.K[i])
        _, _, _, (warped, channel) = data._clip_inputs(boxed, i, config, training_warp, 0)
        # the same draw of depth as the training warp: the rng of clip i
        rng = np.random.default_rng([0, i])
        from rap_ros.pipeline.conditioning import draw_depth
        _, depth = draw_depth(rng, boxed.c2w[i], np.asarray(boxed.depth[i])[y0:y0 + h,
                                                                             x0:x0 + w])
        expected, valid = model_view_warp(strip[0], K, boxed.c2w[i], depth, S, "letterbox")
        assert np.array_equal(warped, expected)
        from rap_ros.contract import preprocess
        assert np.allclose(channel, preprocess.warp_validity_channel(valid, config))


def relative_to_first_clip(c2w):
    from rap_ros.geometry import relative_to_first
    return relative_to_first(c2w)[0]
