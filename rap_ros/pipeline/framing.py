"""How input images of any size map onto the model's S x S square, intrinsics included.

Images are uint8 RGB (H, W, 3) (batches (..., H, W, 3)); intrinsics K (3, 3) in pixels with
pixel centres at integer coordinates (``geometry.cameras``). Two framings (``FRAMINGS``), chosen
by the weights (``ModelConfig.framing``, issue 12 "Full frame"):

* ``"centre"`` (the default; weights saved before the field have it): the model sees the
  centred square of the image, resized to S (``contract.preprocess.resize_frames``, area
  interpolation); a 1226x370 KITTI frame keeps its middle 370 columns.
* ``"letterbox"``: the model sees the whole image, resized (aspect kept) so that its longer
  side is S, centred, the rest of the square padded with ``PAD_VALUE`` (mid grey, 0 in the
  model's [-1, 1]). Implemented as the same square crop with a square larger than the image:
  the centred square of side max(H, W) (negative x0 or y0), outside the image ``PAD_VALUE``,
  resized to S; so the pixel map and ``to_model`` / ``to_input`` of K are those of the centre
  square, and one isotropic scale S / max(H, W) holds exactly.
"""
from dataclasses import dataclass

import numpy as np

from rap_ros.contract import preprocess
from rap_ros.geometry.cameras import scale_intrinsics

FRAMINGS = ("centre", "letterbox")
PAD_VALUE = preprocess.LETTERBOX_PAD  # uint8 grey 128 (~0 in the model's [-1, 1])


@dataclass
class Framing:
    """How an input image maps onto the model's S x S square.

    The square of side ``side`` whose top-left input pixel is column ``x0``, row ``y0`` is
    cut out (``crop``; where it extends past the image, as letterbox's does with negative
    x0 or y0, filled with ``PAD_VALUE``), then resized by ``scale = S / side``. Pixel (u, v)
    of the input lands at scale * (u - x0 + 0.5) - 0.5 (and scale * (v - y0 + 0.5) - 0.5) in
    the model image, for either framing.
    """

    x0: int
    y0: int
    side: int
    size: int
    height: int = None  # the input's size (None: not known; ``content_mask`` needs it)
    width: int = None

    @classmethod
    def centre_square(cls, height, width, size):
        side = min(height, width)
        return cls(x0=(width - side) // 2, y0=(height - side) // 2, side=side, size=size,
                   height=height, width=width)

    @classmethod
    def letterbox(cls, height, width, size):
        """The whole image, its longer side at S, centred; x0 = -(side - W) // 2 <= 0 and
        y0 = -(side - H) // 2 <= 0 with side = max(H, W)."""
        side = max(height, width)
        return cls(x0=-((side - width) // 2), y0=-((side - height) // 2), side=side,
                   size=size, height=height, width=width)

    @classmethod
    def of(cls, mode, height, width, size):
        """The framing ``mode`` ("centre" or "letterbox", ``FRAMINGS``) of an H x W input."""
        if mode == "centre":
            return cls.centre_square(height, width, size)
        if mode == "letterbox":
            return cls.letterbox(height, width, size)
        raise ValueError(f"framing must be one of {FRAMINGS}, got {mode!r}")

    @property
    def scale(self):
        return self.size / self.side

    @property
    def padded(self):
        """True when the square extends past the image (letterbox of a non-square image)."""
        return self.x0 < 0 or self.y0 < 0 or (
            self.width is not None and self.x0 + self.side > self.width) or (
            self.height is not None and self.y0 + self.side > self.height)

    def crop(self, images):
        """uint8 (..., H, W, 3) -> (..., side, side, 3); outside the image PAD_VALUE."""
        images = np.asarray(images)
        H, W = images.shape[-3:-1]
        x0, y0, side = self.x0, self.y0, self.side
        if x0 >= 0 and y0 >= 0 and x0 + side <= W and y0 + side <= H:
            return images[..., y0:y0 + side, x0:x0 + side, :]
        out = np.full(images.shape[:-3] + (side, side, images.shape[-1]), PAD_VALUE,
                      images.dtype)
        sx, sy = max(0, x0), max(0, y0)                       # the part inside the image
        ex, ey = min(W, x0 + side), min(H, y0 + side)
        if ex > sx and ey > sy:
            out[..., sy - y0:ey - y0, sx - x0:ex - x0, :] = images[..., sy:ey, sx:ex, :]
        return out

    def content_mask(self, coverage=0.5):
        """(S, S) bool: the model pixels at least ``coverage`` inside the input image (their
        footprint, 1 / scale input pixels wide, overlapping [-0.5, W - 0.5] x [-0.5, H - 0.5]
        by that share along each axis); all True for a crop inside the image."""
        if self.height is None or self.width is None:
            raise ValueError("content_mask needs the input's height and width")

        def axis(origin, extent):
            i = np.arange(self.size)
            lo = origin - 0.5 + i / self.scale                # the footprint in input pixels
            hi = lo + 1.0 / self.scale
            inside = np.clip(np.minimum(hi, extent - 0.5) - np.maximum(lo, -0.5), 0.0, None)
            return inside * self.scale >= coverage

        return axis(self.y0, self.height)[:, None] & axis(self.x0, self.width)[None, :]

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


def prepare_frames(frames, K, size, framing="centre"):
    """Frame the images for the model (``framing``: "centre", the centred square, or
    "letterbox", the whole image padded; ``FRAMINGS``) and resize to the model's size,
    keeping K consistent.

    frames: uint8 (T, H, W, 3); K: (3, 3) at H x W or None. Callers pass the weights'
    ``config.framing`` (``framing_of``).
    Returns (frames (T, size, size, 3) uint8, K at size x size or None, Framing).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    framing = Framing.of(framing, frames.shape[1], frames.shape[2], size)
    resized = preprocess.resize_frames(np.ascontiguousarray(framing.crop(frames)), size)
    if K is not None:
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K must be (3, 3), got {K.shape}")
        K = framing.to_model(K)
    return resized, K, framing


def framing_of(config):
    """The framing a model config asks for ("centre" for configs without the field)."""
    return getattr(config, "framing", "centre") or "centre"
