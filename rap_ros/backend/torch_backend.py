"""Eager PyTorch backend: the codec and denoiser modules as trained.

It is the reference the ONNX graphs are checked against, and the backend for training
machines. Weights are read by ``rap_ros.model.checkpoint.load_weights``
(``torch.load(..., weights_only=True)``: plain dicts of tensors and builtins, never pickled
code). This module and ``rap_ros.backend.export`` are the only ones of the backend floor that
import torch and ``rap_ros.model``.
"""

from pathlib import Path

import numpy as np
import torch

from rap_ros.backend.base import Backend, as_float32
from rap_ros.model.checkpoint import load_weights


class TorchBackend(Backend):
    """The model in eager torch on the CPU (or ``device``).

    weights: path of a weights file (``rap_ros.model.checkpoint``).
    threads: torch intra-op threads for the process (None: leave torch's setting).
    Use ``TorchBackend.from_modules`` for modules already in memory.
    """

    def __init__(self, weights, device="cpu", threads=None):
        self.weights = Path(weights)
        config, codec, dit = load_weights(self.weights)  # CheckpointError is a ModelFileError
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
    def velocity(self, video, raxel, t_video, t_raxel, motion, warp=None):
        warp = None if warp is None or not self.config.warp_condition \
            else self._tensor(warp, "warp", 5)
        v_video, v_raxel = self.dit(self._tensor(video, "video", 5),
                                    self._tensor(raxel, "raxel", 5),
                                    self._tensor(t_video, "t_video", 2),
                                    self._tensor(t_raxel, "t_raxel", 2),
                                    self._tensor(motion, "motion", 5), warp)
        return self._numpy(v_video), self._numpy(v_raxel)
