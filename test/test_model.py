"""Model unit tests on the tiny config: shapes, causality, samplers, init, ablations, overfit."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from rap_ros.contract import preprocess
from rap_ros.model.codec import CausalVideoCodec, decode_raxels_latent, encode_raxels_latent
from rap_ros.contract.config import ModelConfig, rap_small, rap_tiny
from rap_ros.model.dit import RaxelDiT, count_parameters
from rap_ros.model.flow import draw_jobs, flow_loss, job_batch_masks, sample

torch.set_num_threads(1)


def _latents(cfg, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    t, C, s = cfg.latent_frames, cfg.latent_channels, cfg.latent_size
    return (torch.randn(B, t, C, s, s, generator=g), torch.randn(B, t, 2 * C, s, s, generator=g),
            torch.randn(B, t, cfg.motion_dim, s, s, generator=g) * 0.05)


def test_codec_shapes():
    cfg = rap_tiny()
    codec = CausalVideoCodec(cfg)
    S, s = cfg.image_size, cfg.latent_size
    x = torch.rand(2, cfg.frames, 3, S, S) * 2 - 1
    z = codec.encode(x)
    assert z.shape == (2, cfg.latent_frames, cfg.latent_channels, s, s)
    assert codec.decode(z, frames=cfg.frames).shape == x.shape
    # a single image is one latent frame
    z1 = codec.encode(x[:, :1])
    assert z1.shape == (2, 1, cfg.latent_channels, s, s)
    assert codec.decode(z1, frames=1).shape == (2, 1, 3, S, S)
    rax = torch.rand(2, cfg.frames, 6, S, S)
    zr = encode_raxels_latent(codec, rax)
    assert zr.shape == (2, cfg.latent_frames, 2 * cfg.latent_channels, s, s)
    assert decode_raxels_latent(codec, zr, cfg.frames).shape == rax.shape


def test_codec_is_causal():
    cfg = rap_tiny()
    torch.manual_seed(0)
    codec = CausalVideoCodec(cfg).eval()
    tf = cfg.temporal_factor
    x = torch.rand(1, cfg.frames, 3, cfg.image_size, cfg.image_size)
    z = codec.encode(x)
    for k in range(cfg.frames):
        group = 0 if k == 0 else 1 + (k - 1) // tf
        y = x.clone()
        y[:, k] = torch.rand_like(y[:, k])
        zy = codec.encode(y)
        assert torch.equal(zy[:, :group], z[:, :group]), f"frame {k} leaked into earlier latents"
        assert not torch.allclose(zy[:, group], z[:, group])


@pytest.mark.parametrize("overrides", [
    {}, {"attention": "joint"}, {"raxel_encoding": "plucker"}, {"motion_channels": False},
    {"prediction": "velocity"},
])
def test_dit_shapes_and_ablations(overrides):
    cfg = ModelConfig(**{**rap_tiny().to_dict(), **overrides})
    dit = RaxelDiT(cfg)
    video, raxel, motion = _latents(cfg)
    t = torch.rand(2, cfg.latent_frames)
    vv, vr = dit(video, raxel, t, t.flip(1), motion)
    assert vv.shape == video.shape and vr.shape == raxel.shape
    vv.sum().backward()  # trains


def test_small_parameter_budget():
    cfg = rap_small()
    n = count_parameters(CausalVideoCodec(cfg)) + count_parameters(RaxelDiT(cfg))
    assert n * 4 < 10e6  # fp32 torch weights + ONNX copy stay under 20 MB


def test_adaln_zero_blocks_are_identity_at_init():
    cfg = rap_tiny()
    dit = RaxelDiT(cfg)
    n = dit.n
    B, t, d = 2, cfg.latent_frames, cfg.width
    xv, xr = torch.randn(B, t, n, d), torch.randn(B, t, n, d)
    cv, cr = torch.randn(B, t, cfg.cond_dim), torch.randn(B, t, cfg.cond_dim)
    for block in dit.blocks:
        ov, orx = block(xv, xr, cv, cr)
        assert torch.equal(ov, xv) and torch.equal(orx, xr)
    video, raxel, motion = _latents(cfg)
    tv, tr = torch.rand(2, t) + 0.1, torch.rand(2, t) + 0.1
    vv, vr = dit(video, raxel, tv, tr, motion)  # x0 heads start at 0: v = x_t / t
    torch.testing.assert_close(vv, video / tv[..., None, None, None])
    torch.testing.assert_close(vr, raxel / tr[..., None, None, None])
    cfg_v = ModelConfig(**{**cfg.to_dict(), "prediction": "velocity"})
    vv, vr = RaxelDiT(cfg_v)(video, raxel, tv, tr, motion)
    assert torch.count_nonzero(vv) == 0 and torch.count_nonzero(vr) == 0


class ConstantVelocity(torch.nn.Module):
    """Toy 'model' whose velocity field is constant: x_1 - x_0 for fixed endpoints."""

    def __init__(self, v_video, v_raxel):
        super().__init__()
        self.v_video, self.v_raxel = v_video, v_raxel

    def forward(self, video, raxel, t_video, t_raxel, motion=None):
        return self.v_video.expand_as(video), self.v_raxel.expand_as(raxel)


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("steps", [1, 3, 8])
def test_samplers_reach_endpoint_of_constant_flow(method, steps):
    cfg = rap_tiny()
    x0_v, x0_r, motion = _latents(cfg, B=1, seed=1)
    g = torch.Generator().manual_seed(5)
    noise_v = torch.randn(x0_v.shape, generator=g)
    noise_r = torch.randn(x0_r.shape, generator=g)
    toy = ConstantVelocity(noise_v - x0_v, noise_r - x0_r)
    cv, cr = job_batch_masks("image_to_video_camera", 1, cfg.latent_frames, k_known=False)
    g = torch.Generator().manual_seed(5)  # the sampler draws the same noise
    v, r = sample(toy, x0_v, x0_r, cv, cr, motion, steps=steps, method=method, generator=g)
    torch.testing.assert_close(v, x0_v, atol=1e-5, rtol=0)
    torch.testing.assert_close(r, x0_r, atol=1e-5, rtol=0)


def test_sampling_leaves_clean_frames_untouched():
    cfg = rap_tiny()
    dit = RaxelDiT(cfg)
    for p in dit.parameters():  # a non-trivial network
        torch.nn.init.normal_(p, std=0.05)
    video, raxel, motion = _latents(cfg, B=2)
    for job in preprocess.JOBS:
        cv, cr = job_batch_masks(job, 2, cfg.latent_frames)
        v, r = sample(dit, video, raxel, cv, cr, motion, steps=2, method="heun", num_samples=2)
        assert v.shape[0] == 4
        rep_v, rep_r = video.repeat_interleave(2, 0), raxel.repeat_interleave(2, 0)
        cv2, cr2 = cv.repeat_interleave(2, 0), cr.repeat_interleave(2, 0)
        assert torch.equal(v[cv2], rep_v[cv2]) and torch.equal(r[cr2], rep_r[cr2])
        assert not torch.equal(v[~cv2], rep_v[~cv2]) if (~cv2).any() else True
    # video -> camera: the whole video modality is clean and comes back bit-identical
    cv, cr = job_batch_masks("video_to_camera", 2, cfg.latent_frames)
    v, _ = sample(dit, video, raxel, cv, cr, motion, steps=3)
    assert torch.equal(v, video)


def test_job_masks():
    t = 3
    cv, cr = preprocess.job_masks("video_to_camera", t)
    assert cv.all() and cr.tolist() == [True, False, False]
    cv, cr = preprocess.job_masks("video_to_camera", t, k_known=False)
    assert not cr.any()
    cv, cr = preprocess.job_masks("images_camera_to_video", t)
    assert cr.all() and cv.tolist() == [True, False, False]
    cv, cr = preprocess.job_masks("image_to_video_camera", t)
    assert cv.tolist() == [True, False, False] and not cr.any()
    jobs, cv, cr = draw_jobs(64, t, (0.5, 0.3, 0.2), 0.8, torch.Generator().manual_seed(0))
    assert cv.shape == cr.shape == (64, t) and set(jobs.tolist()) <= {0, 1, 2}
    with pytest.raises(ValueError):
        preprocess.job_masks("fly", t)


def test_preprocess_images_and_raxels_round_trip():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    x = preprocess.images_to_model(frames)
    assert x.shape == (3, 3, 8, 8) and x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(preprocess.model_to_images(x), frames)
    rax = rng.normal(size=(4, 6, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(preprocess.denormalize_raxels(preprocess.normalize_raxels(rax)),
                               rax, rtol=1e-6)


def test_motion_channels_follow_a_shift():
    cfg = ModelConfig(**{**rap_small().to_dict(), "frames": 5})
    rng = np.random.default_rng(0)
    import cv2
    big = cv2.GaussianBlur((rng.random((64, 96, 3)) * 255).astype(np.uint8), (5, 5), 1.5)
    frames = np.stack([big[:, 2 * i:2 * i + 64] for i in range(cfg.frames)])  # content moves left
    m = preprocess.motion_channels(frames, cfg)
    assert m.shape == (cfg.latent_frames, cfg.motion_dim, cfg.latent_size, cfg.latent_size)
    assert np.all(m[0] == 0)
    centre = m[1:, :, 4:-4, 4:-4]
    dx = centre[:, 0::2].mean()
    assert dx == pytest.approx(-2 / 64, abs=0.01)
    assert abs(centre[:, 1::2].mean()) < 0.005


def test_preprocess_imports_no_torch():
    code = ("import sys, rap_ros.contract.preprocess, rap_ros.contract.config; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_loss_decreases_on_a_fixed_batch():
    cfg = rap_tiny()
    torch.manual_seed(0)
    codec = CausalVideoCodec(cfg).eval().requires_grad_(False)
    dit = RaxelDiT(cfg)
    video, raxel, motion = _latents(cfg, B=4, seed=3)
    dirs = torch.nn.functional.normalize(torch.randn(4, cfg.frames, 3, cfg.image_size,
                                                     cfg.image_size), dim=2)
    _, cv, cr = draw_jobs(4, cfg.latent_frames, (0.5, 0.3, 0.2), 0.8,
                          torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(dit.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        g = torch.Generator().manual_seed(0)  # same noise and times every step
        loss, _ = flow_loss(dit, video, raxel, motion, cv, cr, codec=codec, dirs=dirs,
                            cosine_weight=0.1, cosine_samples=2, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.6 * losses[0], losses


def test_motion_is_hidden_on_generated_video_frames():
    """Training must not see the flow of frames it generates: inference cannot know it."""
    from rap_ros.model.flow import visible_motion

    motion = torch.ones(2, 3, 4, 2, 2)
    clean = torch.tensor([[True, True, True], [True, False, False]])
    visible = visible_motion(motion, clean)
    assert torch.equal(visible[0], motion[0])
    assert visible[1, 0].eq(1).all() and visible[1, 1:].eq(0).all()
