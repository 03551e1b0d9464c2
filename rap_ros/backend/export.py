"""Export the trained model to ONNX: codec encoder, codec decoder and one denoiser step.

A model folder holds (names from ``rap_ros.backend.onnx_backend``, which runs it)::

    codec_encoder.onnx   x (B, T, 3, S, S)                       -> z (B, t, C, s, s)
    codec_decoder.onnx   z (B, t, C, s, s)                       -> x (B, T, 3, S, S)
    denoiser.onnx        video (B, t, C, s, s), raxel (B, t, 2C, s, s),
                         t_video (B, t), t_raxel (B, t), motion (B, t, M, s, s)
                         [, warp (B, t, C+1, s, s): only with config.warp_condition]
                                                                 -> v_video, v_raxel
    config.yaml          the ModelConfig
    manifest.json        source weights (sha256), opset, dynamic axes, export parity

Dynamic axes: batch B everywhere, and the number of frames T / latent frames t
(t up to ``config.max_latent_frames``), so one export serves every window length.
The samplers stay in numpy (``rap_ros.pipeline.sampling``), so a denoising step is one call
of ``denoiser.onnx`` and the number of steps is chosen at run time. Export sits on the backend
floor: it needs the torch modules (``rap_ros.model``) and writes what ``OnnxBackend`` reads.

The exporter is torch's TorchScript-based one (``dynamo=False``): it needs no extra
packages (the dynamo exporter needs onnxscript) and handles these plain modules.
"""

import datetime
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from rap_ros.backend.onnx_backend import (CONFIG_FILE, DECODER_FILE, DENOISER_FILE,
                                          ENCODER_FILE, MANIFEST_FILE)
from rap_ros.contract.config import save_config
from rap_ros.contract.files import file_sha256
from rap_ros.model.checkpoint import build_modules, load_weights

OPSET = 17
FORMAT_VERSION = 1


class _Encoder(torch.nn.Module):
    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, x):                   # (B, T, 3, S, S) -> (B, t, C, s, s)
        return self.codec.encode(x)


class _Decoder(torch.nn.Module):
    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, z):                   # (B, t, C, s, s) -> (B, T, 3, S, S)
        return self.codec.decode(z)


class _Denoiser(torch.nn.Module):
    def __init__(self, dit):
        super().__init__()
        self.dit = dit

    def forward(self, video, raxel, t_video, t_raxel, motion, warp=None):
        return self.dit(video, raxel, t_video, t_raxel, motion, warp)


def example_inputs(config, batch=2, frames=None, seed=0):
    """Random float32 inputs of every graph: dict graph name -> tuple of numpy arrays.

    Shapes as in the module docstring, with T = frames (default config.frames).
    Latents are standard normal, images uniform in [-1, 1], times uniform in [0, 1]; the
    denoiser's warp input (config.warp_condition only) latents and a validity in [0, 1].
    """
    rng = np.random.default_rng(seed)
    T = config.frames if frames is None else int(frames)
    t = 1 + (T - 1) // config.temporal_factor
    S, s, C = config.image_size, config.latent_size, config.latent_channels

    def normal(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    denoiser = (normal(batch, t, C, s, s), normal(batch, t, 2 * C, s, s),
                rng.uniform(0, 1, (batch, t)).astype(np.float32),
                rng.uniform(0, 1, (batch, t)).astype(np.float32),
                0.05 * normal(batch, t, config.motion_dim, s, s))
    if config.warp_condition:
        denoiser += (np.concatenate([normal(batch, t, C, s, s),
                                     rng.uniform(0, 1, (batch, t, 1, s, s)).astype(np.float32)],
                                    axis=2),)
    return {
        "encoder": (rng.uniform(-1, 1, (batch, T, 3, S, S)).astype(np.float32),),
        "decoder": (normal(batch, t, C, s, s),),
        "denoiser": denoiser,
    }


# graph -> (file, input names, output names, dynamic axes), of a model without the warp
# condition; ``graphs(config)`` gives a config's (the denoiser's extra "warp" input).
_GRAPHS = {
    "encoder": (ENCODER_FILE, ["x"], ["z"],
                {"x": {0: "batch", 1: "frames"}, "z": {0: "batch", 1: "latent_frames"}}),
    "decoder": (DECODER_FILE, ["z"], ["x"],
                {"z": {0: "batch", 1: "latent_frames"}, "x": {0: "batch", 1: "frames"}}),
    "denoiser": (DENOISER_FILE, ["video", "raxel", "t_video", "t_raxel", "motion"],
                 ["v_video", "v_raxel"],
                 {name: {0: "batch", 1: "latent_frames"}
                  for name in ("video", "raxel", "t_video", "t_raxel", "motion",
                               "v_video", "v_raxel")}),
}


def graphs(config):
    """``_GRAPHS`` of ``config``: with ``warp_condition`` the denoiser has a sixth input,
    "warp" (B, t, C+1, s, s); without it the graphs are the old ones, unchanged."""
    if not config.warp_condition:
        return _GRAPHS
    file, inputs, outputs, axes = _GRAPHS["denoiser"]
    return {**_GRAPHS, "denoiser": (file, inputs + ["warp"], outputs,
                                    {**axes, "warp": {0: "batch", 1: "latent_frames"}})}


def export_modules(config, codec, dit, out_dir, source=None, opset=OPSET, verify=True):
    """Export a codec and denoiser (torch modules) into the model folder ``out_dir``.

    source: path of the weights they came from (its sha256 goes into the manifest).
    verify: run every graph in ONNX Runtime (CPU) on random inputs at two batch sizes
        and record the largest absolute difference from torch in the manifest.
    Files are written to a temporary folder first and moved in at the end, so an
    interrupted export never leaves a half-written model folder. Returns the manifest.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    codec, dit = codec.eval(), dit.eval()
    modules = {"encoder": _Encoder(codec), "decoder": _Decoder(codec), "denoiser": _Denoiser(dit)}
    inputs = example_inputs(config, batch=2)
    specs = graphs(config)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        for graph, module in modules.items():
            file, input_names, output_names, axes = specs[graph]
            args = tuple(torch.from_numpy(a) for a in inputs[graph])
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # tracer and deprecation notes
                torch.onnx.export(module, args, str(staging / file), dynamo=False,
                                  input_names=input_names, output_names=output_names,
                                  dynamic_axes=axes, opset_version=opset,
                                  do_constant_folding=True)
        save_config(config, staging / CONFIG_FILE)
        manifest = {
            "format_version": FORMAT_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source_weights": str(source) if source else None,
            "source_sha256": file_sha256(source) if source else None,
            "opset": opset,
            "torch": torch.__version__,
            "graphs": {graph: {"file": spec[0], "inputs": spec[1], "outputs": spec[2],
                               "dynamic_axes": spec[3]} for graph, spec in specs.items()},
        }
        if verify:
            manifest["max_abs_error"] = verify_model_dir(staging, config, modules)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        for path in staging.iterdir():
            os.replace(path, out_dir / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def random_modules(config, seed=0, std=0.05):
    """Randomly initialised codec and denoiser for ``config`` (tests, benchmarks).

    The denoiser's adaLN-Zero and output layers start at zero (so an untrained network
    predicts zero velocity); here they get N(0, std) values too, so every graph computes
    something non-trivial to compare and time.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    codec, dit = build_modules(config)
    with torch.no_grad():
        for parameter in dit.parameters():
            if not parameter.any():
                parameter.copy_(std * torch.randn(parameter.shape, generator=generator))
    return codec, dit


def export_onnx(weights, out_dir, opset=OPSET, verify=True):
    """Export the weights file ``weights`` (``rap_ros.model.checkpoint``) to the model folder
    ``out_dir``. Returns the manifest."""
    config, codec, dit = load_weights(weights)
    return export_modules(config, codec, dit, out_dir, source=weights, opset=opset,
                          verify=verify)


def verify_model_dir(model_dir, config, modules, batches=(1, 3)):
    """Largest |onnxruntime - torch| per graph on random inputs, batch sizes ``batches``.

    modules: dict graph name -> torch module with the graph's forward signature.
    Returns dict graph name -> float.
    """
    errors = {}
    for graph, module in modules.items():
        file, input_names, _, _ = graphs(config)[graph]
        session = onnxruntime.InferenceSession(str(Path(model_dir) / file),
                                               providers=["CPUExecutionProvider"])
        present = {i.name for i in session.get_inputs()}
        worst = 0.0
        for batch in batches:
            arrays = example_inputs(config, batch=batch, seed=batch)[graph]
            with torch.no_grad():
                expected = module(*(torch.from_numpy(a) for a in arrays))
            expected = expected if isinstance(expected, tuple) else (expected,)
            feeds = {n: a for n, a in zip(input_names, arrays) if n in present}
            got = session.run(None, feeds)
            for e, g in zip(expected, got):
                worst = max(worst, float(np.abs(e.numpy() - g).max()))
        errors[graph] = worst
    return errors
