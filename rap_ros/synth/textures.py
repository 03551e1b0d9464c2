"""Texture bank: bundled photographs and procedural patterns, mip-mapped into one atlas.

Every texture is a square RGB tile of ``TEXTURE_SIZE`` texels that repeats seamlessly, so the
renderer can wrap texture coordinates. Photographs come from the images bundled with
scikit-image (no download) and are made periodic by mirroring; the procedural patterns
(checker, value noise, stripes, bricks) are periodic by construction. The bank is fixed (one
seed), built once per process; scenes vary it with per-surface tint, scale and offset.
"""
import functools
from dataclasses import dataclass

import cv2
import numpy as np
import skimage.data

TEXTURE_SIZE = 256
MIP_LEVELS = 5  # 256, 128, 64, 32, 16 texels
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "camera", "coins",
          "page")
PROCEDURAL_VARIANTS = 6  # of each procedural pattern
BANK_SEED = 2024


@dataclass(frozen=True)
class TextureAtlas:
    """All textures and their mip levels, flattened so one gather samples any of them.

    texels:  (M,) int32, each the bytes R, G, B, 0 of one texel (one 4-byte gather fetches a
             texel, much faster than three); level ``l`` of texture ``i`` is a row-major
             (S >> l, S >> l) block starting at ``offsets[i, l]``.
    offsets: (num_textures, MIP_LEVELS) int32.
    names:   one name per texture, e.g. "photo:coffee" or "bricks:3".
    """

    texels: np.ndarray
    offsets: np.ndarray
    names: tuple

    def __len__(self) -> int:
        return len(self.names)


def photo(name: str) -> np.ndarray:
    """A bundled scikit-image photograph as a periodic (S, S, 3) uint8 tile (mirrored)."""
    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    half = TEXTURE_SIZE // 2
    square = image[top:top + side, left:left + side, :3]
    crop = cv2.resize(square, (half, half), interpolation=cv2.INTER_AREA)
    row = np.concatenate([crop, crop[:, ::-1]], axis=1)
    return np.ascontiguousarray(np.concatenate([row, row[::-1]], axis=0))


def _periodic_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Smooth periodic value noise (S, S) in [0, 1]: a random cells x cells lattice,
    interpolated."""
    lattice = rng.random((cells, cells))
    x = (np.arange(TEXTURE_SIZE) + 0.5) * cells / TEXTURE_SIZE - 0.5
    i0 = np.floor(x).astype(int)
    w = x - i0
    w = w * w * (3 - 2 * w)  # smoothstep
    i0, i1 = i0 % cells, (i0 + 1) % cells
    rows = lattice[i0] * (1 - w)[:, None] + lattice[i1] * w[:, None]
    return rows[:, i0] * (1 - w) + rows[:, i1] * w


def _fractal_noise(rng: np.random.Generator, base_cells: int, octaves: int) -> np.ndarray:
    """Sum of ``octaves`` value-noise layers, each twice as fine and half as strong, in [0, 1]."""
    total = sum(0.5**k * _periodic_noise(rng, base_cells * 2**k) for k in range(octaves))
    return (total - total.min()) / (total.max() - total.min())


def _colourise(mix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blend a dark and a light random colour by ``mix`` (S, S) in [0, 1], add fine grain, return
    uint8 (S, S, 3)."""
    dark = rng.uniform(0.0, 0.5, 3)
    contrast = rng.uniform(0.3, 0.6) + rng.uniform(-0.15, 0.15, 3)
    light = np.clip(dark + contrast, 0, 1)
    grain = 0.15 * (_periodic_noise(rng, 128) - 0.5)
    rgb = dark + (light - dark) * mix[..., None] + grain[..., None]
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def checker(rng: np.random.Generator) -> np.ndarray:
    """Checkerboard with 2-8 cells per tile, softly shaded by noise."""
    cells = int(rng.choice([2, 4, 8]))
    idx = np.arange(TEXTURE_SIZE) * cells // TEXTURE_SIZE
    board = ((idx[:, None] + idx[None, :]) % 2).astype(float)
    return _colourise(0.8 * board + 0.2 * _fractal_noise(rng, 4, 3), rng)


def value_noise(rng: np.random.Generator) -> np.ndarray:
    """Multi-octave value noise (stone, plaster, foliage-like)."""
    return _colourise(_fractal_noise(rng, int(rng.choice([4, 8, 16])), 4), rng)


def stripes(rng: np.random.Generator) -> np.ndarray:
    """Straight stripes at an angle that keeps the tile periodic, with soft or hard edges."""
    kx, ky = rng.integers(1, 6), rng.integers(0, 6)
    y, x = np.mgrid[:TEXTURE_SIZE, :TEXTURE_SIZE] / TEXTURE_SIZE
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (kx * x + ky * y))
    if rng.random() < 0.5:
        wave = (wave > 0.5).astype(float)
    return _colourise(0.75 * wave + 0.25 * _fractal_noise(rng, 4, 3), rng)


def bricks(rng: np.random.Generator) -> np.ndarray:
    """Running-bond brick wall: per-brick shade, light mortar joints, noisy surface."""
    rows, cols = int(rng.choice([4, 8])), int(rng.choice([2, 4]))
    y, x = np.mgrid[:TEXTURE_SIZE, :TEXTURE_SIZE] / TEXTURE_SIZE
    row = np.floor(y * rows).astype(int)
    u = x * cols + 0.5 * (row % 2)  # odd rows shifted by half a brick
    col = np.floor(u).astype(int) % cols
    shade = rng.uniform(0.3, 0.8, (rows, cols))[row, col]
    mortar = 0.06
    v = y * rows
    joint = (np.abs(v - np.round(v)) < mortar) | (np.abs(u - np.round(u)) < mortar / 2)
    mix = np.where(joint, 1.0, shade) + 0.15 * (_fractal_noise(rng, 8, 3) - 0.5)
    return _colourise(np.clip(mix, 0, 1), rng)


PROCEDURAL = {"checker": checker, "noise": value_noise, "stripes": stripes, "bricks": bricks}
TEXTURE_NAMES = tuple(
    [f"photo:{name}" for name in PHOTOS]
    + [f"{kind}:{variant}" for kind in PROCEDURAL for variant in range(PROCEDURAL_VARIANTS)]
)


def _mip_chain(texture: np.ndarray) -> list:
    """Levels 0..MIP_LEVELS-1 of a (S, S, 3) uint8 tile, each half the side of the previous."""
    levels = [texture]
    for _ in range(MIP_LEVELS - 1):
        side = levels[-1].shape[0] // 2
        levels.append(cv2.resize(levels[-1], (side, side), interpolation=cv2.INTER_AREA))
    return levels


@functools.lru_cache(maxsize=1)
def texture_atlas() -> TextureAtlas:
    """The process-wide texture bank, in the order of TEXTURE_NAMES."""
    rng = np.random.default_rng(BANK_SEED)
    tiles = [photo(name) for name in PHOTOS]
    tiles += [make(rng) for make in PROCEDURAL.values() for _ in range(PROCEDURAL_VARIANTS)]
    blocks, offsets, start = [], np.zeros((len(tiles), MIP_LEVELS), np.int32), 0
    for i, tile in enumerate(tiles):
        for level, image in enumerate(_mip_chain(tile)):
            offsets[i, level] = start
            blocks.append(image.reshape(-1, 3))
            start += len(blocks[-1])
    rgb = np.concatenate(blocks)
    rgb0 = np.concatenate([rgb, np.zeros_like(rgb[:, :1])], axis=1)
    texels = np.ascontiguousarray(rgb0).view(np.int32).reshape(-1)
    texels.flags.writeable = offsets.flags.writeable = False  # shared by every render
    return TextureAtlas(texels=texels, offsets=offsets, names=TEXTURE_NAMES)
