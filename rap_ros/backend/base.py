"""The inference interface shared by every backend.

A backend runs the three networks of the model on numpy float32 arrays:

* ``encode``: the video codec's encoder, frames -> latents,
* ``decode``: the codec's decoder, latents -> frames,
* ``velocity``: one denoiser (DiT) evaluation, noisy latents -> flow velocities.

Shapes follow docs/architecture.md ("Model tensors"), with
B batch, T frames, t = 1 + (T - 1) // temporal_factor latent frames,
S = config.image_size, s = S // spatial_factor, C = latent_channels,
M = motion channels. Samplers, pre- and post-processing live in
``rap_ros.pipeline`` and are the same for every backend.

This module imports neither torch nor onnxruntime.
"""

import abc

import numpy as np


class Backend(abc.ABC):
    """One loaded model. Subclasses set ``config`` and ``name``.

    Attributes:
        config: the ``rap_ros.contract.config.ModelConfig`` the networks were built with.
        name: where the networks run, e.g. ``"onnxruntime:CPUExecutionProvider"`` or
            ``"torch"``.

    All methods take and return numpy float32 arrays; inputs of other float dtypes
    are converted. They are safe to call from several threads at once (torch and
    ONNX Runtime both release the GIL and allow concurrent runs of one model).
    """

    config = None
    name = "abstract"

    @abc.abstractmethod
    def encode(self, x):
        """Codec encoder.

        x: (B, T, 3, S, S) float32 in [-1, 1] -> latents (B, t, C, s, s) float32.
        """

    @abc.abstractmethod
    def decode(self, z, frames):
        """Codec decoder.

        z: (B, t, C, s, s) float32; frames: T, with t = 1 + (T - 1) // temporal_factor
        -> (B, T, 3, S, S) float32, nominally in [-1, 1].
        """

    @abc.abstractmethod
    def velocity(self, video, raxel, t_video, t_raxel, motion, warp=None):
        """One denoiser evaluation.

        video: (B, t, C, s, s) and raxel: (B, t, 2C, s, s) noisy or clean latents;
        t_video, t_raxel: (B, t) flow time per latent frame (0 clean, 1 noise);
        motion: (B, t, M, s, s); warp: (B, t, C+1, s, s), the geometry condition of a model
        with ``config.warp_condition`` (the warped source's latents and the warp's validity,
        ``rap_ros.pipeline.conditioning``); None: zeros, no condition; ignored by models
        without it. Returns ``(v_video, v_raxel)`` with the shapes of video and raxel; the
        clean sample is x_0 = x_t - t * v.
        """

    def latent_frames(self, frames):
        """Number of latent frames t for T input frames."""
        return 1 + (int(frames) - 1) // int(self.config.temporal_factor)

    def check_frames(self, frames):
        """Raise ValueError unless T = 1 + temporal_factor * k, k >= 0."""
        factor = int(self.config.temporal_factor)
        if frames < 1 or (frames - 1) % factor:
            raise ValueError(f"a window must have 1 + {factor} * k frames, got {frames}")

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


def as_float32(array, name, ndim):
    """``array`` as a C-contiguous float32 numpy array with ``ndim`` dimensions."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    return array
