"""How input images of any size map onto the model's S x S square, intrinsics included.

Images are uint8 RGB (H, W, 3) (batches (..., H, W, 3)); intrinsics K (3, 3) in pixels with
pixel centres at integer coordinates (``geometry.cameras``). The model sees the centred
square of the image, resized to S (``contract.preprocess.resize_frames``, area interpolation).
"""
from dataclasses import dataclass

import numpy as np

from rap_ros.contract import preprocess
from rap_ros.geometry.cameras import scale_intrinsics


@dataclass
class Framing:
    """How an input image maps onto the model's S x S square.

    The centred square of side ``side`` starting at column ``x0``, row ``y0`` is cut out,
    then resized by ``scale = S / side``. Pixel (u, v) of the input lands at
    scale * (u - x0 + 0.5) - 0.5 in the model image.
    """

    x0: int
    y0: int
    side: int
    size: int

    @classmethod
    def centre_square(cls, height, width, size):
        side = min(height, width)
        return cls(x0=(width - side) // 2, y0=(height - side) // 2, side=side, size=size)

    @property
    def scale(self):
        return self.size / self.side

    def crop(self, images):
        """uint8 (..., H, W, 3) -> (..., side, side, 3)."""
        return images[..., self.y0:self.y0 + self.side, self.x0:self.x0 + self.side, :]

    def to_model(self, K):
        """Intrinsics (..., 3, 3) of the input image -> of the model image."""
        K = np.array(K, dtype=np.float64)
        K[..., 0, 2] -= self.x0
        K[..., 1, 2] -= self.y0
        return scale_intrinsics(K, self.scale, self.scale)

    def to_input(self, K):
        """Intrinsics (..., 3, 3) of the model image -> of the input image."""
        K = scale_intrinsics(K, 1.0 / self.scale, 1.0 / self.scale)
        K[..., 0, 2] += self.x0
        K[..., 1, 2] += self.y0
        return K


def prepare_frames(frames, K, size):
    """Centre-crop to a square and resize to the model's size, keeping K consistent.

    frames: uint8 (T, H, W, 3); K: (3, 3) at H x W or None.
    Returns (frames (T, size, size, 3) uint8, K at size x size or None, Framing).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    framing = Framing.centre_square(frames.shape[1], frames.shape[2], size)
    resized = preprocess.resize_frames(np.ascontiguousarray(framing.crop(frames)), size)
    if K is not None:
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K must be (3, 3), got {K.shape}")
        K = framing.to_model(K)
    return resized, K, framing
