"""The numpy pipelines (video -> camera, images + camera -> video, closed loop) and windows
through the chainer, on a randomly initialised tiny model in real torch and ONNX Runtime.
The chainer alone: test_chaining.py."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from rap_ros.backend.onnx_backend import OnnxBackend  # noqa: E402
from rap_ros.backend.torch_backend import TorchBackend  # noqa: E402
from rap_ros.backend.export import export_modules, random_modules  # noqa: E402
from rap_ros.contract.config import rap_tiny  # noqa: E402
from rap_ros.geometry import pose_from_rt, relative_to_first, rotation_from_axis_angle  # noqa: E402
from rap_ros.model import flow  # noqa: E402
from rap_ros.pipeline import (Framing, TrajectoryChainer, TrajectoryPipeline,  # noqa: E402
                              ViewPipeline, integrate_flow, prepare_frames)


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    config = rap_tiny()
    codec, dit = random_modules(config, seed=2)
    model_dir = tmp_path_factory.mktemp("pipeline_model")
    export_modules(config, codec, dit, model_dir, verify=False)
    return {"torch": TorchBackend.from_modules(config, codec, dit),
            "onnx": OnnxBackend(model_dir, threads=1), "dit": dit}


def _intrinsics(width, height, fx=None):
    fx = fx or 0.8 * width
    return np.array([[fx, 0, (width - 1) / 2], [0, fx, (height - 1) / 2], [0, 0, 1.0]])


def _frames(config, height=24, width=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (config.frames, height, width, 3), dtype=np.uint8)


def _forward_path(frames, length=1.0):
    """Camera moving straight ahead (+z), unit mean distance from the first centre."""
    z = np.linspace(0.0, length, frames)
    centres = np.stack([np.zeros(frames), np.zeros(frames), z], axis=-1)
    return relative_to_first(pose_from_rt(np.broadcast_to(np.eye(3), (frames, 3, 3)),
                                          centres))[0]


# ---------------------------------------------------------------- resize and intrinsics


def test_crop_and_resize_keep_intrinsics_consistent():
    """A 3D point projects to the same model pixel whether projected with the model K or
    projected at the input size and mapped through the crop and the resize."""
    height, width, size = 48, 80, 16
    K = np.array([[60.0, 0, 41.3], [0, 58.0, 22.7], [0, 0, 1]])
    frames = np.zeros((1, height, width, 3), np.uint8)
    resized, K_model, framing = prepare_frames(frames, K, size)
    assert resized.shape == (1, size, size, 3)
    assert (framing.x0, framing.y0, framing.side) == (16, 0, 48)
    point = np.array([0.3, -0.2, 2.0])
    u, v, w = K @ point
    u_model, v_model, w_model = K_model @ point
    scale = size / framing.side
    assert np.allclose([u_model / w_model, v_model / w_model],
                       [scale * (u / w - framing.x0 + 0.5) - 0.5,
                        scale * (v / w - framing.y0 + 0.5) - 0.5])
    assert np.allclose(framing.to_input(K_model), K)
    assert np.allclose(Framing.centre_square(30, 20, 10).crop(np.zeros((30, 20, 3))).shape,
                       (20, 20, 3))


# ---------------------------------------------------------------- sampler


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_numpy_sampler_matches_model_flow_sample(backends, sampler):
    """pipeline.integrate_flow (numpy, any backend) == model.flow.sample (torch) given the
    same noise, for the video -> camera masks."""
    config = rap_tiny()
    t, s, C = config.latent_frames, config.latent_size, config.latent_channels
    rng = np.random.default_rng(3)
    video = rng.standard_normal((2, t, C, s, s)).astype(np.float32)
    raxel_clean = rng.standard_normal((2, t, 2 * C, s, s)).astype(np.float32)
    motion = 0.02 * rng.standard_normal((2, t, config.motion_dim, s, s)).astype(np.float32)
    clean_v, clean_r = flow.job_batch_masks("video_to_camera", 2, t, k_known=True)

    generator = torch.Generator().manual_seed(5)
    ref_v, ref_r = flow.sample(backends["dit"], torch.from_numpy(video),
                               torch.from_numpy(raxel_clean), clean_v, clean_r,
                               torch.from_numpy(motion), steps=3, method=sampler,
                               generator=torch.Generator().manual_seed(5))
    noise_v = torch.randn(video.shape, generator=generator).numpy()
    noise_r = torch.randn(raxel_clean.shape, generator=generator).numpy()
    mask_r = clean_r[0].numpy()[None, :, None, None, None]
    start_r = np.where(mask_r, raxel_clean, noise_r)
    assert noise_v.shape == video.shape  # drawn (and discarded) as flow.sample does
    for name in ("torch", "onnx"):
        out_v, out_r = integrate_flow(backends[name], video, start_r, clean_v[0].numpy(),
                                      clean_r[0].numpy(), motion, 3, sampler)
        assert np.array_equal(out_v, video)
        assert np.array_equal(out_r[:, 0], raxel_clean[:, 0])  # clean frame untouched
        assert np.abs(out_r - ref_r.numpy()).max() < 1e-4


# ---------------------------------------------------------------- video -> camera


def test_trajectory_pipeline_shapes_and_samples(backends):
    config = rap_tiny()
    frames = _frames(config, 24, 40)
    K = _intrinsics(40, 24)
    estimate = TrajectoryPipeline(backends["onnx"], steps=2, samples=3).estimate_window(frames, K)
    T = config.frames
    assert estimate.c2w.shape == (T, 4, 4) and np.allclose(estimate.c2w[0], np.eye(4))
    assert np.allclose(estimate.c2w[:, :3, :3] @ np.swapaxes(estimate.c2w[:, :3, :3], 1, 2),
                       np.eye(3), atol=1e-9)
    assert np.allclose(estimate.K, K)
    assert estimate.samples.shape == (3, T, 4, 4)
    cov = estimate.covariance
    assert cov.shape == (T, 6, 6) and np.allclose(cov, np.swapaxes(cov, 1, 2))
    assert np.all(np.linalg.eigvalsh(cov) > -1e-12)
    assert np.allclose(cov[0], 0, atol=1e-12)  # frame 0 is the identity in every sample
    assert cov[1:].trace(axis1=1, axis2=2).min() > 0  # random model: samples disagree
    assert set(estimate.timings) == {"resize", "encode", "denoise", "decode", "total"}

    single = TrajectoryPipeline(backends["onnx"], samples=1).estimate_window(frames, K)
    assert np.all(single.covariance == 0)


def test_trajectory_pipeline_unknown_intrinsics(backends):
    config = rap_tiny()
    estimate = TrajectoryPipeline(backends["torch"]).estimate_window(_frames(config, 30, 30))
    assert estimate.K.shape == (3, 3) and np.all(np.isfinite(estimate.K))
    assert estimate.K[2, 2] == 1 and estimate.K[0, 0] > 0
    assert np.all(np.isfinite(estimate.c2w))


def test_trajectory_pipeline_onnx_matches_torch(backends):
    config = rap_tiny()
    frames, K = _frames(config, 16, 16, seed=4), _intrinsics(16, 16)
    a = TrajectoryPipeline(backends["torch"], samples=2, seed=7).estimate_window(frames, K)
    b = TrajectoryPipeline(backends["onnx"], samples=2, seed=7).estimate_window(frames, K)
    assert np.abs(a.samples - b.samples).max() < 1e-3


def test_static_camera_flows_through(backends):
    """A static camera (every frame the same image) gives finite poses."""
    config = rap_tiny()
    still = np.repeat(_frames(config, 20, 20)[:1], config.frames, axis=0)
    estimate = TrajectoryPipeline(backends["onnx"], samples=2).estimate_window(
        still, _intrinsics(20, 20))
    assert np.all(np.isfinite(estimate.c2w)) and np.all(np.isfinite(estimate.covariance))


def test_batch_of_windows(backends):
    config = rap_tiny()
    frames = np.stack([_frames(config, seed=i) for i in range(3)])
    estimates = TrajectoryPipeline(backends["onnx"], samples=2).estimate_batch(frames)
    assert len(estimates) == 3
    assert all(e.c2w.shape == (config.frames, 4, 4) for e in estimates)


# ---------------------------------------------------------------- images + camera -> video


def test_view_pipeline_known_rotation_and_batch(backends):
    config = rap_tiny()
    T, S = config.frames, config.image_size
    source = _frames(config, 24, 32)[0]
    K = _intrinsics(32, 24)
    # turning in place by a known rotation: the centre stays at the origin
    R = rotation_from_axis_angle(np.array([0, 1.0, 0]), np.linspace(0, 0.4, T))
    turn = pose_from_rt(R, np.zeros((T, 3)))
    view = ViewPipeline(backends["onnx"], steps=2, sampler="heun")
    frames = view.predict(source, K, turn)
    assert frames.shape == (T, S, S, 3) and frames.dtype == np.uint8
    paths = np.stack([turn, _forward_path(T), _forward_path(T, 2.0)])
    batch = view.predict_batch(source, K, paths)
    assert batch.shape == (3, T, S, S, 3)


def test_closed_loop_scores(backends):
    config = rap_tiny()
    source = _frames(config, 24, 32)[0]
    view = ViewPipeline(backends["onnx"], steps=2)
    result = view.closed_loop(source, _intrinsics(32, 24), _forward_path(config.frames))
    assert result.frames.shape == result.regenerated.shape
    assert result.c2w.shape == (config.frames, 4, 4)
    assert np.isfinite(result.psnr) and result.psnr > 0
    assert np.isfinite(result.translation_error) and np.isfinite(result.rotation_error_deg)


def test_view_pipeline_rejects_bad_paths(backends):
    view = ViewPipeline(backends["torch"], steps=1)
    source = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="frames"):
        view.predict(source, _intrinsics(16, 16), np.tile(np.eye(4), (4, 1, 1)))
    with pytest.raises(ValueError, match="K"):
        view.predict(source, None, np.tile(np.eye(4), (5, 1, 1)))


# ---------------------------------------------------------------- chaining


def test_pipeline_windows_chain(backends):
    """Estimated windows of a longer clip go through the chainer (shapes, continuity)."""
    config = rap_tiny()
    video = np.random.default_rng(0).integers(0, 256, (13, 20, 20, 3), dtype=np.uint8)
    pipeline = TrajectoryPipeline(backends["onnx"])
    window, stride = config.frames, config.frames - 1
    chainer = TrajectoryChainer(window, stride)
    poses = [chainer.push(pipeline.estimate_window(video[s:s + window]).c2w).c2w
             for s in range(0, len(video) - window + 1, stride)]
    assert np.concatenate(poses).shape == (13, 4, 4)
