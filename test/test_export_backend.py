"""ONNX export and the inference backends, on a randomly initialised tiny model.

Real torch modules and real ONNX Runtime sessions throughout; the one fake is the list of
available execution providers (no GPU here) in the provider-ordering test.
"""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from rap_ros.backend import ModelFileError, OnnxBackend, shared  # noqa: E402
from rap_ros.backend.torch_backend import TorchBackend  # noqa: E402
from rap_ros.backend.onnx_backend import (DECODER_FILE, DENOISER_FILE, ENCODER_FILE,  # noqa: E402
                                          MANIFEST_FILE, PROVIDER_PREFERENCE, select_providers)
from rap_ros.model.checkpoint import read_weights, save_weights  # noqa: E402
from rap_ros.contract.config import rap_tiny  # noqa: E402
from rap_ros.backend.export import example_inputs, random_modules  # noqa: E402
from rap_ros.tools import cli  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny model saved as a checkpoint and exported by `rap-ros export`."""
    root = tmp_path_factory.mktemp("tiny_model")
    config = rap_tiny()
    codec, dit = random_modules(config, seed=1)
    weights = root / "tiny.pt"
    save_weights(weights, config, codec, dit)
    model_dir = root / "onnx"
    assert cli.main(["export", "--weights", str(weights), "--out", str(model_dir)]) == 0
    return {"config": config, "weights": weights, "dir": model_dir,
            "torch": TorchBackend(weights), "onnx": OnnxBackend(model_dir, threads=1)}


def _copy_model(src, dst):
    dst.mkdir()
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
    return dst


# ---------------------------------------------------------------- export and parity


def test_export_writes_model_folder(tiny):
    names = sorted(p.name for p in tiny["dir"].iterdir())
    assert names == sorted([ENCODER_FILE, DECODER_FILE, DENOISER_FILE, "config.yaml",
                            MANIFEST_FILE])
    manifest = json.loads((tiny["dir"] / MANIFEST_FILE).read_text())
    assert manifest["source_sha256"] == shared.file_sha256(tiny["weights"])
    assert max(manifest["max_abs_error"].values()) < TOLERANCE
    assert tiny["onnx"].config == tiny["config"] == tiny["torch"].config
    assert tiny["onnx"].name == "onnxruntime:CPUExecutionProvider"
    assert tiny["torch"].name == "torch"


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("frames", [None, 3])
def test_onnx_matches_torch_random_inputs(tiny, batch, frames):
    """Every graph, dynamic batch (1, 3) and window length (config's T and a shorter one)."""
    config = tiny["config"]
    T = config.frames if frames is None else frames
    inputs = example_inputs(config, batch=batch, frames=T, seed=batch)
    onnx, ref = tiny["onnx"], tiny["torch"]

    z_onnx, z_ref = onnx.encode(*inputs["encoder"]), ref.encode(*inputs["encoder"])
    t = 1 + (T - 1) // config.temporal_factor
    assert z_onnx.shape == (batch, t, config.latent_channels, config.latent_size,
                            config.latent_size)
    assert np.abs(z_onnx - z_ref).max() < TOLERANCE

    x_onnx, x_ref = onnx.decode(*inputs["decoder"], T), ref.decode(*inputs["decoder"], T)
    assert x_onnx.shape == (batch, T, 3, config.image_size, config.image_size)
    assert np.abs(x_onnx - x_ref).max() < TOLERANCE

    v_onnx, v_ref = onnx.velocity(*inputs["denoiser"]), ref.velocity(*inputs["denoiser"])
    for a, b, x in zip(v_onnx, v_ref, inputs["denoiser"][:2]):
        assert a.shape == x.shape and a.dtype == np.float32
        assert np.abs(b).max() > 1e-3  # the random model computes something
        assert np.abs(a - b).max() < TOLERANCE


def _rendered_clip(config):
    """A rendered synthetic clip at the model's size, or None when the renderer's dataset
    module is not available."""
    try:
        from rap_ros.synth.dataset import sample_clip
    except ImportError:
        return None
    return sample_clip(0, frames=config.frames, height=config.image_size,
                       width=config.image_size)


def test_onnx_matches_torch_on_rendered_clip(tiny):
    """A rendered clip and its raxels through every graph: frames and raxels encoded, the
    video -> camera denoiser step on them, and both decoded."""
    from rap_ros.geometry import encode_raxels, relative_to_first
    from rap_ros.contract.preprocess import images_to_model, motion_channels, normalize_raxels

    config = tiny["config"]
    clip = _rendered_clip(config)
    if clip is None:
        pytest.skip("rap_ros.synth.dataset.sample_clip not available")
    S, T = config.image_size, config.frames
    rel, _ = relative_to_first(clip.c2w)
    raxels = normalize_raxels(encode_raxels(clip.K, rel, S, S, config.raxel_encoding))
    inputs = np.concatenate([images_to_model(clip.frames)[None],
                             raxels[None, :, 0:3], raxels[None, :, 3:6]])  # (3, T, 3, S, S)
    onnx, ref = tiny["onnx"], tiny["torch"]
    z = ref.encode(inputs)
    assert np.abs(onnx.encode(inputs) - z).max() < TOLERANCE
    assert np.abs(onnx.decode(z, T) - ref.decode(z, T)).max() < TOLERANCE
    video, raxel = z[:1], np.concatenate([z[1:2], z[2:3]], axis=2)
    t = z.shape[1]
    t_raxel = np.full((1, t), 0.7, np.float32)
    t_raxel[:, 0] = 0
    args = (video, raxel, np.zeros((1, t), np.float32), t_raxel,
            motion_channels(clip.frames, config)[None])
    for a, b in zip(onnx.velocity(*args), ref.velocity(*args)):
        assert np.abs(a - b).max() < TOLERANCE


def test_backends_check_window_length(tiny):
    config = tiny["config"]
    bad = np.zeros((1, config.frames + 1, 3, config.image_size, config.image_size), np.float32)
    for backend in (tiny["onnx"], tiny["torch"]):
        with pytest.raises(ValueError, match="frames"):
            backend.encode(bad)


# ---------------------------------------------------------------- files and errors


def test_checkpoint_loads_weights_only(tiny):
    config, codec_state, dit_state = read_weights(tiny["weights"])
    assert config == tiny["config"]
    assert set(codec_state) and set(dit_state)


def test_missing_onnx_file_names_it(tiny, tmp_path):
    model = _copy_model(tiny["dir"], tmp_path / "model")
    (model / DENOISER_FILE).unlink()
    with pytest.raises(ModelFileError, match=DENOISER_FILE) as info:
        OnnxBackend(model)
    assert info.value.path == str(model / DENOISER_FILE)
    with pytest.raises(ModelFileError, match="not found"):
        OnnxBackend(tmp_path / "nowhere")


def test_corrupt_onnx_file_names_it(tiny, tmp_path):
    model = _copy_model(tiny["dir"], tmp_path / "model")
    data = (model / ENCODER_FILE).read_bytes()
    (model / ENCODER_FILE).write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFileError, match=ENCODER_FILE):
        OnnxBackend(model)


def test_corrupt_config_names_it(tiny, tmp_path):
    model = _copy_model(tiny["dir"], tmp_path / "model")
    (model / "config.yaml").write_text("frames: [unclosed\n")
    with pytest.raises(ModelFileError, match="config.yaml"):
        OnnxBackend(model)


def test_missing_and_corrupt_weights_name_the_file(tmp_path):
    missing = tmp_path / "missing.pt"
    with pytest.raises(ModelFileError, match="missing.pt"):
        TorchBackend(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ModelFileError, match="corrupt.pt"):
        TorchBackend(corrupt)
    wrong = tmp_path / "wrong.pt"
    torch.save({"weights": torch.zeros(3)}, wrong)
    with pytest.raises(ModelFileError, match="wrong.pt"):
        TorchBackend(wrong)
    assert cli.main(["export", "--weights", str(corrupt), "--out", str(tmp_path / "o")]) == 1


# ---------------------------------------------------------------- providers


def test_provider_order_prefers_tensorrt_then_cuda_then_cpu():
    gpu = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider",
           "AzureExecutionProvider"]
    assert select_providers(available=gpu) == list(PROVIDER_PREFERENCE)
    assert select_providers(available=["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers(available=["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    # an explicit request keeps its order and falls back to CPU
    assert select_providers(["CUDAExecutionProvider"], available=gpu) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ValueError, match="available"):
        select_providers(["CUDAExecutionProvider"], available=["AzureExecutionProvider"])
    # the real onnxruntime here: CPU only
    assert select_providers() == ["CPUExecutionProvider"]


# ---------------------------------------------------------------- shared instances


def test_get_backend_shares_one_instance_across_threads(tiny):
    shared.clear_backends()
    spec = f"onnx:{tiny['dir']}"
    results, barrier = [], threading.Barrier(6)

    def worker():
        barrier.wait()
        results.append(shared.get_backend(spec))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and all(b is results[0] for b in results)
    torch_backend = shared.get_backend(f"torch:{tiny['weights']}")
    assert torch_backend is shared.get_backend(f"torch:{tiny['weights']}")
    assert torch_backend is not results[0] and torch_backend.name == "torch"
    with pytest.raises(ValueError, match="spec"):
        shared.get_backend("tensorflow")
    shared.clear_backends()


def test_default_onnx_is_exported_once_into_cache(tiny, tmp_path, monkeypatch):
    """No shipped ONNX graphs for these weights: the first get_backend("onnx") exports
    them into the cache, later ones reuse the folder."""
    monkeypatch.setenv("RAP_ROS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RAP_ROS_WEIGHTS", str(tiny["weights"]))
    shared.clear_backends()
    backend = shared.get_backend("onnx")
    folder = backend.model_dir
    assert folder.parent == tmp_path / "cache"
    assert folder.name == "onnx-" + shared.file_sha256(tiny["weights"])[:16]
    stamp = (folder / DENOISER_FILE).stat().st_mtime_ns
    shared.clear_backends()
    again = shared.get_backend("onnx")
    assert again is not backend and again.model_dir == folder
    assert (folder / DENOISER_FILE).stat().st_mtime_ns == stamp
    inputs = example_inputs(tiny["config"], batch=1)["denoiser"]
    for a, b in zip(again.velocity(*inputs), tiny["torch"].velocity(*inputs)):
        assert np.abs(a - b).max() < TOLERANCE
    shared.clear_backends()
    monkeypatch.setenv("RAP_ROS_WEIGHTS", str(tmp_path / "absent.pt"))
    with pytest.raises(ModelFileError, match="absent.pt"):
        shared.create_backend("torch")


def test_shipped_onnx_used_when_it_matches_the_weights(tiny, tmp_path, monkeypatch):
    """The graphs shipped in the package win when their manifest names the shipped weights'
    sha256, or when no torch weights are installed; stale ones are ignored."""
    monkeypatch.setattr(shared, "SHIPPED_ONNX_DIR", tiny["dir"])
    monkeypatch.setenv("RAP_ROS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RAP_ROS_WEIGHTS", str(tiny["weights"]))
    assert shared.default_onnx_dir() == tiny["dir"]
    monkeypatch.setenv("RAP_ROS_WEIGHTS", str(tmp_path / "absent.pt"))
    with pytest.raises(ModelFileError, match="absent.pt"):
        shared.default_onnx_dir()
    monkeypatch.delenv("RAP_ROS_WEIGHTS")
    monkeypatch.setattr(shared, "WEIGHTS_DIR", tmp_path)  # no weights installed
    with pytest.raises(ModelFileError, match="rap_small.pt"):
        shared.default_weights()
    assert shared.default_onnx_dir() == tiny["dir"]  # no weights installed: shipped graphs
    other = tmp_path / "other.pt"
    other.write_bytes(tiny["weights"].read_bytes() + b"changed")
    monkeypatch.setenv("RAP_ROS_WEIGHTS", str(other))
    stale = _copy_model(tiny["dir"], tmp_path / "stale")
    monkeypatch.setattr(shared, "SHIPPED_ONNX_DIR", stale)
    monkeypatch.setattr(shared, "onnx_dir_for", lambda weights: ("export", weights))
    assert shared.default_onnx_dir() == ("export", other)  # stale: re-exported instead


def test_concurrent_calls_on_one_backend(tiny):
    """Two threads (two nodes) running one shared session give the serial results."""
    from concurrent.futures import ThreadPoolExecutor

    backend = tiny["onnx"]
    inputs = [example_inputs(tiny["config"], batch=2, seed=seed)["denoiser"] for seed in range(8)]
    serial = [backend.velocity(*args) for args in inputs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda args: backend.velocity(*args), inputs))
    for a, b in zip(serial, parallel):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------- no torch on the ONNX path


def test_onnx_path_runs_without_torch(tiny):
    """onnx_backend, shared and pipeline import and run with torch blocked."""
    code = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import numpy as np
import rap_ros.backend
import rap_ros.backend.onnx_backend
import rap_ros.pipeline as pipeline
backend = rap_ros.backend.get_backend("onnx:{tiny['dir']}")
config = backend.config
frames = np.random.default_rng(0).integers(0, 256, (config.frames, 24, 32, 3), dtype=np.uint8)
estimate = pipeline.TrajectoryPipeline(backend).estimate_window(frames)
assert estimate.c2w.shape == (config.frames, 4, 4)
assert "torch" in sys.modules and sys.modules["torch"] is None
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
