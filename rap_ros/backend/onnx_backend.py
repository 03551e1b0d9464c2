"""ONNX Runtime backend: the exported codec and denoiser graphs.

A model folder, as written by ``rap-ros export`` (``rap_ros.backend.export``), holds

* ``codec_encoder.onnx``: x (B, T, 3, S, S) -> z (B, t, C, s, s)
* ``codec_decoder.onnx``: z (B, t, C, s, s) -> x (B, T, 3, S, S)
* ``denoiser.onnx``: (video, raxel, t_video, t_raxel, motion[, warp]) -> (v_video, v_raxel)
  (the "warp" input only when ``config.warp_condition``)
* ``config.yaml``: the ``ModelConfig`` of the networks
* ``manifest.json``: what was exported from which weights (informational)

Batch B is a dynamic axis of every graph; see the manifest for the others.

Execution providers are tried in the order TensorRT, CUDA, CPU, keeping those the
installed onnxruntime offers (``onnxruntime-gpu`` brings the first two).

This module must not import torch: it is the inference path on robots without it.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime

from rap_ros.backend.base import Backend, as_float32
from rap_ros.contract.config import load_config
from rap_ros.contract.files import ModelFileError

ENCODER_FILE = "codec_encoder.onnx"
DECODER_FILE = "codec_decoder.onnx"
DENOISER_FILE = "denoiser.onnx"
CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
MODEL_FILES = (ENCODER_FILE, DECODER_FILE, DENOISER_FILE, CONFIG_FILE)

# Fastest first. CPU is always available in onnxruntime.
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                       "CPUExecutionProvider")

# CPU memory arena of the sessions (``OnnxBackend(memory_arena=...)``):
#   "off": plain allocations, given back after each call (the default, by measurement);
#   "on": ONNX Runtime's default arena, which keeps the largest batch's peak for good;
#   "shrink": the arena, shrunk back after every call (run option
#       ``memory.enable_memory_arena_shrinkage``).
MEMORY_ARENA_MODES = ("off", "on", "shrink")


def select_providers(requested=None, available=None):
    """Execution providers to use, best first.

    requested: provider names in order of preference, or None for
        ``PROVIDER_PREFERENCE``.
    available: the providers this onnxruntime offers; None asks
        ``onnxruntime.get_available_providers()``.

    Returns the requested providers that are available, in the requested order,
    with CPU appended as the last fallback. Raises ValueError if none of the
    requested ones is available and CPU was not among them.
    """
    if available is None:
        available = onnxruntime.get_available_providers()
    requested = list(PROVIDER_PREFERENCE if requested is None else requested)
    chosen = [p for p in requested if p in available]
    if not chosen:
        raise ValueError(f"none of the execution providers {requested} is available "
                         f"(onnxruntime offers {list(available)})")
    if "CPUExecutionProvider" not in chosen and "CPUExecutionProvider" in available:
        chosen.append("CPUExecutionProvider")
    return chosen


def check_model_dir(model_dir):
    """Raise ModelFileError naming the first missing model file in ``model_dir``."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFileError(model_dir, "ONNX model folder not found")
    for name in MODEL_FILES:
        if not (model_dir / name).is_file():
            raise ModelFileError(model_dir / name, "ONNX model file missing")


def read_manifest(model_dir):
    """The export manifest of ``model_dir`` as a dict ({} when absent or unreadable)."""
    try:
        return json.loads((Path(model_dir) / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return {}


class OnnxBackend(Backend):
    """The model's three graphs in ONNX Runtime sessions.

    model_dir: folder written by ``rap-ros export`` (``rap_ros.backend.export``).
    providers: execution providers in order of preference (default: TensorRT, CUDA,
        CPU, whichever this onnxruntime has).
    threads: intra-op threads of the codec sessions (None: ONNX Runtime's default, one per
        physical core). Inter-op parallelism is off (the graphs are sequential).
    denoiser_threads: intra-op threads of the denoiser session (default 1; None: as
        ``threads``). A denoiser step of the shipped model is ~1,100 small operators on 48
        tokens a modality, so at batch 1 a second thread costs more than it saves
        (measured on this 2-core CPU: 3.5 ms a step with one thread, 4.1 ms with two) and
        keeps the other core for the codec, optical flow and ROS callbacks; at batch 4 two
        threads win (9.2 vs 11.7 ms). ``benchmarks/results/inference.md``.
    warmup: run each graph once at load, so the first real call is not slow.
    spinning: let idle ONNX Runtime threads busy-wait for the next op. Off by default:
        the process also runs OpenCV (resize, optical flow), numpy and ROS callbacks,
        which spinning threads slow down (measured on 2 cores: a 1080p resize 7 -> 20 ms,
        torch-side work up to 10x slower) for no measurable gain in the graphs.
    memory_arena: "off" (default), "on" or "shrink" (``MEMORY_ARENA_MODES``): the CPU
        memory arena. ONNX Runtime's default arena keeps the peak of the largest batch ever
        run (encode + denoiser step + decode at batch 64: 2,574 MB resident afterwards, for
        good; off: 346 MB); off, a call's memory is freed after it, at the same speed at
        batch 1 and 10-25 % slower at batch 8-64 (``benchmarks/bench_memory.py``,
        ``benchmarks/results/memory.md``). "shrink" frees it too but is slower than off.
        GPU providers' own allocators are not affected.

    Raises ModelFileError (naming the file) when a file is missing or not a valid
    model.
    """

    def __init__(self, model_dir, providers=None, threads=None, denoiser_threads=1,
                 warmup=True, spinning=False, memory_arena="off"):
        if memory_arena not in MEMORY_ARENA_MODES:
            raise ValueError(f"memory_arena must be one of {MEMORY_ARENA_MODES}, "
                             f"got {memory_arena!r}")
        self.memory_arena = memory_arena
        self.model_dir = Path(model_dir)
        check_model_dir(self.model_dir)
        try:
            self.config = load_config(self.model_dir / CONFIG_FILE)
        except Exception as error:  # yaml or dataclass errors: a corrupt file
            raise ModelFileError(self.model_dir / CONFIG_FILE,
                                 f"unreadable model config ({error})") from error
        self.manifest = read_manifest(self.model_dir)
        self.providers = select_providers(providers)

        def session(name, intra_op_threads):
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            options.inter_op_num_threads = 1
            options.enable_cpu_mem_arena = memory_arena != "off"
            if intra_op_threads:
                options.intra_op_num_threads = int(intra_op_threads)
            options.log_severity_level = 3  # errors only
            options.add_session_config_entry("session.intra_op.allow_spinning",
                                             "1" if spinning else "0")
            path = self.model_dir / name
            try:
                return onnxruntime.InferenceSession(str(path), sess_options=options,
                                                    providers=self.providers)
            except Exception as error:
                raise ModelFileError(path, f"cannot load ONNX graph ({error})") from error

        self._run_options = None
        if memory_arena == "shrink":
            self._run_options = onnxruntime.RunOptions()
            self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage",
                                                   "cpu:0")
        self._encoder = session(ENCODER_FILE, threads)
        self._decoder = session(DECODER_FILE, threads)
        self._denoiser = session(DENOISER_FILE,
                                 threads if denoiser_threads is None else denoiser_threads)
        self._denoiser_inputs = [i.name for i in self._denoiser.get_inputs()]
        self.name = f"onnxruntime:{self._denoiser.get_providers()[0]}"
        if warmup:
            self.warmup()

    def warmup(self, batch=1):
        """Run every graph once on zeros of the configured window size."""
        c = self.config
        T, S, s, C = c.frames, c.image_size, c.latent_size, c.latent_channels
        t = c.latent_frames
        self.encode(np.zeros((batch, T, 3, S, S), np.float32))
        self.decode(np.zeros((batch, t, C, s, s), np.float32), T)
        self.velocity(np.zeros((batch, t, C, s, s), np.float32),
                      np.zeros((batch, t, 2 * C, s, s), np.float32),
                      np.ones((batch, t), np.float32), np.ones((batch, t), np.float32),
                      np.zeros((batch, t, c.motion_dim, s, s), np.float32))

    def encode(self, x):
        x = as_float32(x, "x", 5)
        self.check_frames(x.shape[1])
        return self._encoder.run(None, {"x": x}, self._run_options)[0]

    def decode(self, z, frames):
        z = as_float32(z, "z", 5)
        self.check_frames(frames)
        if self.latent_frames(frames) != z.shape[1]:
            raise ValueError(f"{frames} frames need {self.latent_frames(frames)} latent "
                             f"frames, got z of shape {z.shape}")
        return self._decoder.run(None, {"z": z}, self._run_options)[0]

    def velocity(self, video, raxel, t_video, t_raxel, motion, warp=None):
        feeds = {
            "video": as_float32(video, "video", 5),
            "raxel": as_float32(raxel, "raxel", 5),
            "t_video": as_float32(t_video, "t_video", 2),
            "t_raxel": as_float32(t_raxel, "t_raxel", 2),
            "motion": as_float32(motion, "motion", 5),
        }
        if "warp" in self._denoiser_inputs:  # a warp-conditioned graph: None means zeros
            shape = feeds["video"].shape
            feeds["warp"] = (np.zeros(shape[:2] + (self.config.warp_dim,) + shape[3:],
                                      np.float32) if warp is None
                             else as_float32(warp, "warp", 5))
        # An input the network ignores (motion with config.motion_channels off) is
        # pruned from the graph at export.
        feeds = {name: feeds[name] for name in self._denoiser_inputs}
        v_video, v_raxel = self._denoiser.run(None, feeds, self._run_options)
        return v_video, v_raxel
