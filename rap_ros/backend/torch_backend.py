"""Eager PyTorch backend: the codec and denoiser modules as trained.

It is the reference the ONNX graphs are checked against, and the backend for training
machines. Checkpoints are read with ``torch.load(..., weights_only=True)``: plain dicts of
tensors and builtins, never pickled code.
"""

from pathlib import Path

import numpy as np
import torch

from rap_ros.backend.base import Backend, ModelFileError, as_float32
from rap_ros.model.codec import CausalVideoCodec
from rap_ros.model.config import ModelConfig
from rap_ros.model.dit import RaxelDiT


def load_checkpoint(path):
    """Read a checkpoint: ``(config, codec_state, dit_state)``.

    A checkpoint is a dict with ``"config"`` (``ModelConfig.to_dict()``), ``"codec"``
    and ``"dit"`` (state dicts); when ``"ema"`` is present it holds the denoiser
    weights to use. Raises ModelFileError naming the file when it is missing,
    unreadable or lacks these entries.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "model weights not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelFileError(path, f"cannot read model weights ({error})") from error
    if not isinstance(state, dict) or not {"config", "codec", "dit"} <= set(state):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ModelFileError(path, f"not a rap_ros checkpoint (need config, codec, dit; "
                                   f"found {keys})")
    try:
        config = ModelConfig.from_dict(dict(state["config"]))
    except Exception as error:
        raise ModelFileError(path, f"bad model config in checkpoint ({error})") from error
    dit_state = state.get("ema") or state["dit"]
    return config, state["codec"], dit_state


def build_modules(config, codec_state=None, dit_state=None):
    """Codec and denoiser for ``config`` in eval mode, with the given weights if any."""
    codec, dit = CausalVideoCodec(config), RaxelDiT(config)
    if codec_state is not None:
        codec.load_state_dict(codec_state)
    if dit_state is not None:
        dit.load_state_dict(dit_state)
    return codec.eval(), dit.eval()


def save_checkpoint(path, config, codec, dit):
    """Write a checkpoint that ``load_checkpoint`` reads (config, codec, dit)."""
    torch.save({"config": config.to_dict(), "codec": codec.state_dict(),
                "dit": dit.state_dict()}, path)


class TorchBackend(Backend):
    """The model in eager torch on the CPU (or ``device``).

    weights: path of a checkpoint (see ``load_checkpoint``).
    threads: torch intra-op threads for the process (None: leave torch's setting).
    Use ``TorchBackend.from_modules`` for modules already in memory.
    """

    def __init__(self, weights, device="cpu", threads=None):
        self.weights = Path(weights)
        config, codec_state, dit_state = load_checkpoint(self.weights)
        try:
            codec, dit = build_modules(config, codec_state, dit_state)
        except RuntimeError as error:  # state dict does not fit the config
            raise ModelFileError(self.weights, f"weights do not match their config "
                                               f"({error})") from error
        self._setup(config, codec, dit, device, threads)

    @classmethod
    def from_modules(cls, config, codec, dit, device="cpu", threads=None):
        """A backend around an existing codec and denoiser (put in eval mode)."""
        backend = cls.__new__(cls)
        backend.weights = None
        backend._setup(config, codec.eval(), dit.eval(), device, threads)
        return backend

    def _setup(self, config, codec, dit, device, threads):
        if threads:
            torch.set_num_threads(int(threads))
        self.config = config
        self.device = torch.device(device)
        self.codec = codec.to(self.device)
        self.dit = dit.to(self.device)
        self.name = "torch" if self.device.type == "cpu" else f"torch:{self.device}"

    def _tensor(self, array, name, ndim):
        return torch.from_numpy(as_float32(array, name, ndim)).to(self.device)

    @staticmethod
    def _numpy(tensor):
        return tensor.detach().cpu().numpy().astype(np.float32, copy=False)

    @torch.inference_mode()
    def encode(self, x):
        x = self._tensor(x, "x", 5)
        self.check_frames(x.shape[1])
        return self._numpy(self.codec.encode(x))

    @torch.inference_mode()
    def decode(self, z, frames):
        self.check_frames(frames)
        z = self._tensor(z, "z", 5)
        if self.latent_frames(frames) != z.shape[1]:
            raise ValueError(f"{frames} frames need {self.latent_frames(frames)} latent "
                             f"frames, got z of shape {tuple(z.shape)}")
        return self._numpy(self.codec.decode(z, frames=int(frames)))

    @torch.inference_mode()
    def velocity(self, video, raxel, t_video, t_raxel, motion):
        v_video, v_raxel = self.dit(self._tensor(video, "video", 5),
                                    self._tensor(raxel, "raxel", 5),
                                    self._tensor(t_video, "t_video", 2),
                                    self._tensor(t_raxel, "t_raxel", 2),
                                    self._tensor(motion, "motion", 5))
        return self._numpy(v_video), self._numpy(v_raxel)
