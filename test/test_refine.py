"""The optical-flow refinement: rotation and direction from flow, step lengths from the model."""
import numpy as np
import pytest

from rap_ros.geometry import pose_from_rt, relative_to_first, rotation_angle_deg
from rap_ros.metrics import rpe
from rap_ros.pipeline.refine import RefineOptions, refine_at_resolution, refine_window
from rap_ros.synth.dataset import held_out_seed, sample_clip


def centres_only(c2w):
    """The true camera centres with every rotation replaced by the identity: a 'model' that
    got the scale right and the rotation wrong."""
    rel = relative_to_first(c2w)[0]
    return np.stack([pose_from_rt(np.eye(3), pose[:3, 3]) for pose in rel])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_refinement_recovers_rotation_from_flow(index):
    clip = sample_clip(held_out_seed(index), frames=9, height=192, width=192)
    truth = relative_to_first(clip.c2w)[0]
    refined, labels = refine_window(clip.frames, clip.K, centres_only(clip.c2w))
    assert labels[0] == "reference" and labels.count("model") <= 2
    before = rotation_angle_deg(truth[-1, :3, :3])
    after = rotation_angle_deg(refined[-1, :3, :3].T @ truth[-1, :3, :3])
    assert after < 2.0 and (before < 2.0 or after < 0.3 * before)
    assert np.mean(rpe(refined, truth)["rot_deg_errors"]) < 0.6


def test_direction_of_travel_comes_from_flow_only_with_enough_parallax():
    clip = sample_clip(held_out_seed(5), frames=5, height=128, width=128)
    model = centres_only(clip.c2w)
    strict, labels = refine_window(clip.frames, clip.K, model,
                                   RefineOptions(direction_px=float("inf")))
    assert "essential" not in labels and labels.count("model") <= 1
    def step_translations(c2w):                   # in each previous camera's frame
        steps = np.stack([(np.linalg.inv(a) @ b)[:3, 3] for a, b in zip(c2w[:-1], c2w[1:])])
        return steps / np.linalg.norm(steps, axis=1).sum()     # up to the window's scale

    np.testing.assert_allclose(step_translations(strict), step_translations(model), atol=1e-9)
    _, labels = refine_window(clip.frames, clip.K, model, RefineOptions(direction_px=0.0))
    assert "essential" in labels


def test_textureless_frames_keep_the_model():
    model = centres_only(sample_clip(held_out_seed(3), frames=5).c2w)
    grey = np.full((5, 64, 64, 3), 128, np.uint8)
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 31.5], [0, 0, 1]])
    refined, labels = refine_window(grey, K, model)
    assert labels == ["reference"] + ["model"] * 4
    np.testing.assert_allclose(refined, relative_to_first(model)[0], atol=1e-9)


def test_large_inputs_are_refined_at_a_capped_resolution():
    clip = sample_clip(held_out_seed(4), frames=5, height=160, width=160)
    full, _ = refine_window(clip.frames, clip.K, centres_only(clip.c2w))
    capped, _ = refine_at_resolution(clip.frames, clip.K, centres_only(clip.c2w), max_side=80)
    assert capped.shape == full.shape and np.isfinite(capped).all()


def test_pairs_shared_by_overlapping_windows_are_computed_once(monkeypatch):
    from rap_ros.pipeline import refine

    clip = sample_clip(held_out_seed(6), frames=7, height=96, width=96)
    model = centres_only(clip.c2w)
    computed = []
    real = refine.relative_motion
    monkeypatch.setattr(refine, "relative_motion",
                        lambda *args: computed.append(1) or real(*args))
    refine._MEMORY.clear()
    refine_window(clip.frames[:5], clip.K, model[:5])              # pairs 0-1 .. 3-4
    assert len(computed) == 4
    second, labels = refine_window(clip.frames[2:], clip.K, relative_to_first(model[2:])[0])
    assert len(computed) == 6                                      # only 4-5 and 5-6 are new
    refine._MEMORY.clear()
    fresh, fresh_labels = refine_window(clip.frames[2:], clip.K, relative_to_first(model[2:])[0])
    assert labels == fresh_labels
    np.testing.assert_array_equal(second, fresh)
