"""The warp condition (issue 12) on the tiny config: a zero-initialised input that leaves a
model trained without it unchanged, the ONNX graph with (and without) the "warp" input,
training data and steps that move it, and the ViewPipeline feeding it."""
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rap_ros.backend.export import example_inputs, export_modules, random_modules  # noqa: E402
from rap_ros.backend.onnx_backend import OnnxBackend  # noqa: E402
from rap_ros.backend.torch_backend import TorchBackend  # noqa: E402
from rap_ros.contract import preprocess  # noqa: E402
from rap_ros.contract.config import ModelConfig, rap_tiny  # noqa: E402
from rap_ros.model.checkpoint import load_checkpoint, load_weights  # noqa: E402
from rap_ros.model.config import RunConfig, load_run_config  # noqa: E402
from rap_ros.model.dit import RaxelDiT, add_warp_condition  # noqa: E402
from rap_ros.pipeline import conditioning  # noqa: E402

TOLERANCE = 1e-3


def _warp_config(config=None, skip=False):
    return ModelConfig.from_dict({**(config or rap_tiny()).to_dict(), "warp_condition": True,
                                  "warp_skip": skip})


def _inputs(config, batch=2, seed=0):
    arrays = example_inputs(_warp_config(config), batch=batch, seed=seed)["denoiser"]
    return tuple(torch.from_numpy(a) for a in arrays)       # (video, raxel, tv, tr, motion, warp)


def test_new_warp_input_is_zero_initialised():
    dit = RaxelDiT(_warp_config())
    assert dit.warp_embed is not None
    assert not dit.warp_embed.proj.weight.any() and not dit.warp_embed.proj.bias.any()
    assert RaxelDiT(rap_tiny()).warp_embed is None


def test_adding_the_warp_condition_keeps_the_trained_model_exactly():
    """A model fine-tuned from weights trained without the warp starts where they are: the
    same outputs, bit for bit, whatever the warp input."""
    config = rap_tiny()
    _, dit = random_modules(config, seed=3)         # non-zero everywhere, as trained weights
    conditioned = add_warp_condition(dit).eval()
    assert conditioned.config.warp_condition and not dit.config.warp_condition
    video, raxel, tv, tr, motion, warp = _inputs(config)
    with torch.no_grad():
        expected = dit(video, raxel, tv, tr, motion)
        for w in (warp, None, torch.ones_like(warp)):
            got = conditioned(video, raxel, tv, tr, motion, w)
            for e, g in zip(expected, got):
                assert torch.equal(e, g)
    # once the projection is non-zero, the warp changes the output
    with torch.no_grad():
        conditioned.warp_embed.proj.weight.normal_(0, 0.1)
        a = conditioned(video, raxel, tv, tr, motion, warp)[0]
        b = conditioned(video, raxel, tv, tr, motion, None)[0]
    assert not torch.allclose(a, b)


def test_adding_the_warp_skip_to_conditioned_weights_keeps_them_exactly():
    _, dit = random_modules(_warp_config(), seed=4)
    with_skip = add_warp_condition(dit, skip=True).eval()
    assert with_skip.config.warp_skip and add_warp_condition(with_skip, skip=True) is with_skip
    assert add_warp_condition(dit) is dit
    video, raxel, tv, tr, motion, warp = _inputs(rap_tiny())
    with torch.no_grad():
        for e, g in zip(dit.eval()(video, raxel, tv, tr, motion, warp),
                        with_skip(video, raxel, tv, tr, motion, warp)):
            assert torch.equal(e, g)


def test_warp_skip_is_zero_at_init_and_needs_the_warp_condition():
    dit = RaxelDiT(_warp_config(skip=True)).eval()
    assert not dit.warp_skip.proj.weight.any() and not dit.warp_skip.proj.bias.any()
    assert RaxelDiT(_warp_config()).warp_skip is None
    with pytest.raises(ValueError, match="warp_skip"):
        ModelConfig.from_dict({**rap_tiny().to_dict(), "warp_skip": True})


def test_warp_skip_passes_valid_warp_latents_to_the_clean_video():
    """With the skip set to copy validity * latents, the predicted clean video latents move by
    exactly the warp's latents where it is valid and not at all where it is not."""
    config = _warp_config(skip=True)
    dit = RaxelDiT(config).eval()
    C = config.latent_channels
    with torch.no_grad():
        dit.warp_skip.proj.weight[:, C + 1:, 0, 0] = torch.eye(C)   # the validity * latents slice
    video, raxel, tv, tr, motion, warp = _inputs(config)
    warp[:, :, -1] = 0.0
    warp[:, 1:, -1, :2] = 1.0                     # valid: the first two rows of frames 1..
    tv = torch.full_like(tv, 0.5)
    with torch.no_grad():
        v_with = dit(video, raxel, tv, tr, motion, warp)[0]
        v_without = dit(video, raxel, tv, tr, motion, warp * 0)[0]
    # v = (x_t - x0) / t, so x0 moves by -t * dv
    moved = -(v_with - v_without) * 0.5
    expected = warp[:, :, :C] * warp[:, :, -1:]
    assert torch.allclose(moved, expected, atol=1e-5)
    assert moved[:, 1:, :, :2].abs().max() > 0.1 and not moved[:, :, :, 2:].any()


@pytest.mark.parametrize("warp_condition,skip", [(True, False), (True, True), (False, False)])
def test_onnx_export_and_backends_with_and_without_the_warp_input(tmp_path, warp_condition,
                                                                   skip):
    config = _warp_config(skip=skip) if warp_condition else rap_tiny()
    codec, dit = random_modules(config, seed=1)
    manifest = export_modules(config, codec, dit, tmp_path / "onnx")
    assert manifest["max_abs_error"]["denoiser"] < TOLERANCE
    names = manifest["graphs"]["denoiser"]["inputs"]
    assert ("warp" in names) == warp_condition
    onnx = OnnxBackend(tmp_path / "onnx", threads=1)
    assert onnx.config.warp_condition == warp_condition
    assert ("warp" in onnx._denoiser_inputs) == warp_condition
    eager = TorchBackend.from_modules(config, codec, dit)
    video, raxel, tv, tr, motion, warp = (a.numpy() for a in _inputs(rap_tiny(), seed=5))
    for w in (warp, None):
        got = onnx.velocity(video, raxel, tv, tr, motion, w)
        expected = eager.velocity(video, raxel, tv, tr, motion, w)
        for e, g in zip(expected, got):
            assert np.abs(e - g).max() < TOLERANCE
    with_warp = onnx.velocity(video, raxel, tv, tr, motion, warp)[0]
    without = onnx.velocity(video, raxel, tv, tr, motion)[0]
    assert (not np.allclose(with_warp, without, atol=1e-5)) == warp_condition
    zeros = onnx.velocity(video, raxel, tv, tr, motion, np.zeros_like(warp))[0]
    assert np.abs(zeros - without).max() < 1e-6  # None means zeros


def test_validity_channel_pools_frames_and_cells():
    config = rap_tiny()                                       # T 5, S 16, tf 2, sf 4
    valid = np.zeros((5, 16, 16), np.float32)
    valid[0] = 1.0
    valid[1, :4, :4] = 1.0                                    # latent frame 1 = frames 1, 2
    out = preprocess.warp_validity_channel(valid, config)
    assert out.shape == (3, 1, 4, 4)
    assert np.all(out[0] == 1.0) and out[1, 0, 0, 0] == 0.5 and out[1].sum() == 0.5
    assert not out[2].any()


@pytest.mark.parametrize("kind", conditioning.DEPTH_KINDS)
def test_training_warps_each_depth_kind_in_the_model_view(kind, monkeypatch):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    K = np.array([[14.0, 0, 7.5], [0, 14.0, 7.5], [0, 0, 1]])
    path = np.tile(np.eye(4), (5, 1, 1))
    path[:, 0, 3] = np.linspace(0, 3.0, 5)                    # sideways
    depth = np.full((16, 16), 3.0, np.float32)
    monkeypatch.setattr(conditioning, "DEPTH_KIND_PROBS",
                        tuple(float(k == kind) for k in conditioning.DEPTH_KINDS))
    drawn_kind, drawn = conditioning.draw_depth(np.random.default_rng(1), path, depth)
    assert drawn_kind == kind
    warped, validity = conditioning.training_warp(np.random.default_rng(1), frame, K, path,
                                                  depth)
    assert warped.shape == (5, 16, 16, 3) and warped.dtype == np.uint8
    assert validity.shape == (5, 16, 16) and 0 <= validity.min() and validity.max() <= 1
    assert np.array_equal(warped[0], frame) and validity[0].min() == 1.0  # frame 0: the source
    if kind != "rotation":                                    # translation shows up as holes
        assert validity[-1].mean() < 1.0


def test_finetuning_with_the_warp_moves_the_warp_projection(tmp_path):
    from rap_ros.model.finetune import finetune_dit
    from rap_ros.model.run import Run
    from rap_ros.model.train import run_training
    tiny = load_run_config("tiny", ["train.render_workers=1"])
    run_training(tiny, tmp_path / "base", stage="all", max_steps=2, quiet=True)
    weights = tmp_path / "base" / "rap_small.pt"
    config = RunConfig(_warp_config(tiny.model),
                       load_run_config("tiny", ["train.render_workers=1",
                                                "train.job_probs=[0.0, 1.0, 0.0]",
                                                "train.warp_probability=1.0"]).train)
    run = Run(tmp_path / "warp", config, quiet=True)
    out = finetune_dit(run, weights, None, 1.0, False, max_steps=3,
                       warp_clip=conditioning.training_warp)
    model = load_checkpoint(tmp_path / "warp" / "dit.pt")["model"]
    assert model["warp_embed.proj.weight"].abs().sum() > 0
    latents = np.load(next((tmp_path / "warp").glob("latents_*_warp.npz")))
    assert latents["warp"].shape == (8, 3, 5, 4, 4)
    config_out, _, dit = load_weights(out)
    assert config_out.warp_condition and dit.warp_embed is not None
    # the run exports like any other (frozen codec.pt written beside dit.pt)
    from rap_ros.model.checkpoint import weights_from_run
    exported = weights_from_run(tmp_path / "warp", tmp_path / "exported.pt")
    assert load_weights(exported)[0].warp_condition
    assert Path(exported).with_suffix(".yaml").is_file()


class _Spy:
    """A backend that records the warp input of every denoiser call."""

    def __init__(self, backend):
        self.backend, self.config, self.warps = backend, backend.config, []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def velocity(self, video, raxel, t_video, t_raxel, motion, warp=None):
        self.warps.append(warp)
        return self.backend.velocity(video, raxel, t_video, t_raxel, motion, warp)


@pytest.mark.parametrize("preview", ["model", "warp+model"])
@pytest.mark.parametrize("warp_condition", [True, False])
def test_view_pipeline_feeds_the_warp_when_the_config_asks(preview, warp_condition):
    from rap_ros.pipeline.views import ViewPipeline
    config = _warp_config() if warp_condition else rap_tiny()
    codec, dit = random_modules(config, seed=4)
    spy = _Spy(TorchBackend.from_modules(config, codec, dit))
    T, s = config.frames, config.latent_size
    rng = np.random.default_rng(0)
    source = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    K = np.array([[25.0, 0, 15.5], [0, 25.0, 11.5], [0, 0, 1]])
    paths = np.tile(np.eye(4), (2, T, 1, 1))
    paths[1, :, 0, 3] = np.linspace(0, 1.5, T)                # sideways
    out = ViewPipeline(spy, preview=preview).predict_batch(source, K, paths, depth=4.0)
    assert out.shape[:2] == (2, T)
    if not warp_condition:
        assert all(w is None for w in spy.warps)
        return
    warp = spy.warps[0]
    assert warp.shape == (2, config.latent_frames, config.warp_dim, s, s)
    validity = warp[:, :, -1]
    assert np.all(validity[:, 0] == 1.0)                      # frame 0: the source itself
    assert 0.0 <= validity.min() and validity.max() <= 1.0
    assert validity[1, -1].mean() < 1.0                       # sideways: a hole at one side
    assert np.all(validity[0] == 1.0)                         # standing still: all warped


@pytest.mark.parametrize("preview", ["model", "warp+model"])
def test_closed_loop_feeds_the_warp_to_a_conditioned_model(preview):
    """The node's preview_paths (consistency on) goes through closed_loop_batch: its previews
    must be predict_batch's, and the regeneration gets the warps of the estimated poses."""
    from rap_ros.pipeline.views import ViewPipeline
    config = _warp_config(skip=True)
    codec, dit = random_modules(config, seed=4)
    with torch.no_grad():  # a skip that passes the warp on, so the warp changes the frames
        dit.warp_skip.proj.weight.normal_(0, 0.5)
    spy = _Spy(TorchBackend.from_modules(config, codec, dit))
    T = config.frames
    rng = np.random.default_rng(0)
    source = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    K = np.array([[25.0, 0, 15.5], [0, 25.0, 11.5], [0, 0, 1]])
    paths = np.tile(np.eye(4), (2, T, 1, 1))
    paths[1, :, 0, 3] = np.linspace(0, 1.5, T)                # sideways
    results = ViewPipeline(spy, preview=preview, seed=2).closed_loop_batch(
        source, K, paths, depth=4.0)
    fed = [w for w in spy.warps if w is not None]   # 1 Euler step: predicted, regenerated
    assert len(fed) == 2 and all(w.shape[-3] == config.warp_dim for w in fed)
    spy.warps.clear()
    previews = ViewPipeline(spy, preview=preview, seed=2).predict_batch(source, K, paths,
                                                                       depth=4.0)
    assert all(w is not None for w in spy.warps)
    for result, preview_frames in zip(results, previews):
        assert np.abs(result.frames.astype(int) - preview_frames).max() <= 1
        assert np.isfinite(result.psnr)
