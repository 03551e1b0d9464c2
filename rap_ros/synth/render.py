"""Batched CPU ray casting of box scenes (torch, vectorised over all rays of all frames).

Each pixel's ray is intersected analytically with every box (slab test); the nearest hit is
shaded with a mip-mapped, bilinearly filtered texture whose coordinates are surface positions
in metres (so texture scale is physical), lit by ambient + Lambertian directional light, and
blended with distance fog. Rays that hit nothing see a sky gradient.

Conventions: intrinsics K (3, 3) with pixel centres at integer coordinates; poses c2w (N, 4, 4)
camera-to-world with OpenCV camera axes (x right, y down, z forward), metres; output images
uint8 RGB (N, H, W, 3).
"""
import contextlib
import ctypes
import functools
import itertools
from dataclasses import dataclass

import numpy as np
import torch

from rap_ros.synth.scenes import Scene
from rap_ros.synth.textures import MIP_LEVELS, TEXTURE_SIZE, texture_atlas

MAX_PAIRS = 1 << 22  # ray-box pairs tested at once; bounds memory (about 16 MB per buffer)
NO_HIT = 1e6  # metres; longer hit distances mean the ray hit nothing
MIN_COSINE = 0.25  # mip selection treats grazing views as this oblique at most (less blur)
# Columns of the per-box material table (see _prepare).
LO, HI, TILE, UV_OFFSET, TINT = slice(0, 3), slice(3, 6), 6, slice(7, 9), slice(9, 12)


@dataclass
class _SceneTensors:
    """The boxes a render can see, as torch tensors (scene frame, float32)."""

    lo: torch.Tensor  # (B, 3)
    hi: torch.Tensor  # (B, 3)
    table: torch.Tensor  # (B, 12) lo, hi, tile, uv_offset, tint; one gather fetches them all
    texture: torch.Tensor  # (B,) int32
    light: torch.Tensor  # (3,)
    fog_colour: torch.Tensor  # (3,)
    sky_horizon: torch.Tensor  # (3,)
    sky_zenith: torch.Tensor  # (3,)
    ambient: float
    fog_distance: float


@functools.cache
def _retain_freed_memory():
    """Ask glibc (if that is the C library) to keep freed memory for re-use instead of handing it
    back to the OS. The renderer's temporary arrays are a few MB each; without this every call
    page-faults them in afresh, which costs about a third of the render time on a small VM."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: keep up to 256 MB of free heap
        mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: allocate blocks up to 32 MB on the heap


@contextlib.contextmanager
def _one_thread():
    """Run torch single-threaded inside the block. The renderer's ops are many and small: a
    second thread gains little, and on a busy machine every op waits at a thread barrier for a
    descheduled worker (measured 20-50x slower with two threads on two loaded cores). Render
    in several processes to use more cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def camera_rays(K: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unit ray directions (M, 3) in the camera frame through pixel coordinates u, v (M,)."""
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(K).T
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def visible_boxes(scene: Scene, K: np.ndarray, c2w: np.ndarray, height: int,
                  width: int) -> np.ndarray:
    """Mask (B,) of boxes that may appear in at least one frame: a box is culled from a frame
    when all 8 corners lie outside one side plane of that camera's viewing pyramid."""
    corners = np.array(list(itertools.product((0, 1), repeat=3)))  # (8, 3) lo/hi choice per axis
    scene_corners = np.where(corners[None] == 0, scene.lo[:, None], scene.hi[:, None])  # (B, 8, 3)
    world = scene_corners @ scene.world_from_scene.T
    offset = world[None] - c2w[:, None, None, :3, 3]
    cam = np.einsum("nji,nbkj->nbki", c2w[:, :3, :3], offset)  # (N, B, 8, 3)
    (fx, _, cx), (_, fy, cy) = K[0], K[1]
    inward = np.array([  # side planes through the camera centre, normals pointing inside
        [fx, 0, cx + 0.5], [-fx, 0, width - 0.5 - cx],
        [0, fy, cy + 0.5], [0, -fy, height - 0.5 - cy]])
    culled = ((cam @ inward.T) < 0).all(axis=2).any(axis=-1)  # (N, B)
    return ~culled.all(axis=0)


def _prepare(scene: Scene, keep: np.ndarray) -> _SceneTensors:
    """Tensors of the boxes selected by ``keep`` (B,) and of the lighting."""
    columns = [scene.lo, scene.hi, scene.tile[:, None], scene.uv_offset, scene.tint]
    table = np.concatenate(columns, axis=1, dtype=np.float32)
    return _SceneTensors(
        lo=torch.from_numpy(scene.lo[keep]),
        hi=torch.from_numpy(scene.hi[keep]),
        table=torch.from_numpy(table[keep]),
        texture=torch.from_numpy(scene.texture[keep]),
        light=torch.from_numpy(scene.light),
        fog_colour=torch.from_numpy(scene.fog_colour),
        sky_horizon=torch.from_numpy(scene.sky_horizon),
        sky_zenith=torch.from_numpy(scene.sky_zenith),
        ambient=scene.ambient,
        fog_distance=scene.fog_distance,
    )


def intersect(origin: torch.Tensor, direction: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """Nearest box hit of rays with the slab test.

    origin, direction (R, 3) (direction unit, no zero components), boxes lo/hi (B, 3), all in
    the scene frame. Returns distance t (R,) along the ray (t >= NO_HIT or NaN where nothing is
    hit) and the index (R,) of the box hit. Origins must lie outside every box.

    Per axis, with box centre c and half-size h, the ray is between the two slab planes for
    t in [a - b, a + b], where a = (c - o) / d and b = h / |d|. Work arrays are (B, R) so that
    the long ray axis is contiguous; no boolean masks, which are slow on the CPU.
    """
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    inv = (1 / direction).T.contiguous()  # (3, R)
    origin_inv = origin.T * inv
    enter = exit_ = None
    for axis in range(3):
        a = torch.addcmul(-origin_inv[axis], centre[:, axis, None], inv[axis])  # (B, R)
        b = half[:, axis, None] * inv[axis].abs()
        near = a - b
        far = a.add_(b)  # in place: a is not needed any more
        enter = near if enter is None else torch.maximum(enter, near, out=enter)
        exit_ = far if exit_ is None else torch.minimum(exit_, far, out=exit_)
    enter.clamp_(min=0)  # a box behind the origin now has exit < enter
    enter.sub_(exit_.sub_(enter).clamp_(max=0), alpha=1e30)  # push misses (exit < enter) far away
    return _nearest(enter)


def _nearest(t: torch.Tensor):
    """Minimum over boxes of non-negative distances t (B, R): values (R,) and box indices (R,).

    Non-negative float32 values order like their int32 bit patterns, so the box index is
    written into the lowest mantissa bits and one integer ``amin`` finds both (much faster
    than ``min(dim)`` here); t loses those bits, a relative error below 2**(bits - 23).
    """
    bits = max(1, (len(t) - 1).bit_length())
    index = torch.arange(len(t), dtype=torch.int32)[:, None]
    key = t.view(torch.int32).bitwise_and_(-(1 << bits)).add_(index).amin(dim=0)
    box = key & ((1 << bits) - 1)
    return (key - box).view(torch.float32), box.long()


def _sample_texture(tex: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                    level: torch.Tensor) -> torch.Tensor:
    """Bilinear, wrapping lookup (R, 3) in [0, 1] of textures ``tex`` (R,) at tile coordinates
    u, v (R,) (1 = one tile) and mip levels ``level`` (R,), integer tensors int32."""
    atlas = texture_atlas()
    side = TEXTURE_SIZE >> level
    x, y = u * side - 0.5, v * side - 0.5  # texel centres sit at half-integers
    x0, y0 = x.floor(), y.floor()
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    mask = side - 1  # sides are powers of two: "& mask" wraps like "% side"
    x0, y0 = x0.int() & mask, y0.int() & mask
    x1, y1 = (x0 + 1) & mask, (y0 + 1) & mask
    base = atlas.offsets.view(-1).index_select(0, tex * MIP_LEVELS + level)
    rows = torch.stack([base + y0 * side, base + y1 * side])
    corners = (rows[:, None] + torch.stack([x0, x1])).view(-1)  # (y0,x0), (y0,x1), (y1,x0), (y1,x1)
    rgb0 = atlas.texels.index_select(0, corners).view(torch.uint8).view(4, -1, 4)
    c00, c01, c10, c11 = rgb0.float()
    mixed = torch.lerp(torch.lerp(c00, c01, fx), torch.lerp(c10, c11, fx), fy)
    return mixed[:, :3] / 255


def _face_axis(origin, direction, lo, hi):
    """Axis (R,) of the box face each ray enters through: the slab entered last."""
    x, y, z = torch.minimum((lo - origin) / direction, (hi - origin) / direction).unbind(1)
    return torch.where(z >= torch.maximum(x, y), 2, (y >= x).long())


def _shade_hits(s: _SceneTensors, origin, direction, t, box, focal: float):
    """Colour (R, 3) in [0, 1] and face normal axis (R,) of R rays (origin, unit direction
    (R, 3)) hitting ``box`` at distance ``t``; ``focal`` in pixels sets the mip level."""
    b = s.table.index_select(0, box)
    lo, hi, tile = b[:, LO], b[:, HI], b[:, TILE]
    axis = _face_axis(origin, direction, lo, hi)
    dx, dy, dz = direction.unbind(1)
    along = torch.where(axis == 0, dx, torch.where(axis == 1, dy, dz))  # direction . normal axis
    point = origin + t[:, None] * direction
    # Face coordinates in metres: walls (x or y faces) upright with v growing downwards.
    u = torch.where(axis == 0, point[:, 1] - lo[:, 1], point[:, 0] - lo[:, 0])
    v = torch.where(axis == 2, point[:, 1] - lo[:, 1], hi[:, 2] - point[:, 2])
    pixel_size = t / (focal * along.abs().clamp(min=MIN_COSINE))  # metres on the face
    footprint = pixel_size * TEXTURE_SIZE / tile  # texels per pixel
    level = footprint.clamp(min=1).log2().round().int().clamp(max=MIP_LEVELS - 1)
    offset = b[:, UV_OFFSET]
    texture = s.texture.index_select(0, box)
    albedo = _sample_texture(texture, u / tile + offset[:, 0], v / tile + offset[:, 1], level)
    facing = -torch.sign(along) * s.light.index_select(0, axis)  # face normal . light
    light = s.ambient + (1 - s.ambient) * facing.clamp(min=0)
    fog = torch.exp(-t / s.fog_distance)[:, None]
    colour = albedo * b[:, TINT] * (light[:, None] * fog) + s.fog_colour * (1 - fog)
    return colour, axis


def _sky(s: _SceneTensors, direction: torch.Tensor) -> torch.Tensor:
    """Colour (R, 3) of rays (R, 3) that hit nothing: horizon to zenith by elevation."""
    up = direction[:, 2:].clamp(0, 1)
    return s.sky_horizon * (1 - up) + s.sky_zenith * up


def _cast(s: _SceneTensors, origin: torch.Tensor, direction: torch.Tensor, focal: float):
    """Colour (R, 3) and surface id (R,) of rays (R, 3) in the scene frame, in chunks.

    The surface id is 3 * box + normal axis for hits and -1 for the sky; it changes across
    geometric edges."""
    direction = torch.where(direction == 0, 1e-9, direction)  # keeps 1 / direction finite
    colour = _sky(s, direction)
    surface = torch.full((len(direction),), -1)
    if len(s.lo) == 0:
        return colour, surface
    step = max(1, MAX_PAIRS // len(s.lo))
    for start in range(0, len(direction), step):
        chunk = slice(start, start + step)
        t, box = intersect(origin[chunk], direction[chunk], s.lo, s.hi)
        hit = (t < NO_HIT).nonzero()[:, 0]
        t, box, rays = t.index_select(0, hit), box.index_select(0, hit), hit + start
        ray_origin, ray_direction = origin.index_select(0, rays), direction.index_select(0, rays)
        hit_colour, axis = _shade_hits(s, ray_origin, ray_direction, t, box, focal)
        colour.index_copy_(0, rays, hit_colour)
        surface.index_copy_(0, rays, 3 * box + axis)
    return colour, surface


def _edges(surface: torch.Tensor) -> torch.Tensor:
    """Pixels (N, H, W) bool whose surface id differs from a 4-neighbour's."""
    edge = torch.zeros_like(surface, dtype=torch.bool)
    vertical = surface[:, 1:] != surface[:, :-1]
    horizontal = surface[:, :, 1:] != surface[:, :, :-1]
    edge[:, 1:] |= vertical
    edge[:, :-1] |= vertical
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    return edge


def _cast_pixels(s: _SceneTensors, K, rotation, origin, height: int, width: int):
    """Colour (N, H, W, 3) and surface id (N, H, W) of one ray per pixel centre, for N cameras
    with rotations (N, 3, 3) camera -> scene frame and centres (N, 3) in the scene frame."""
    v, u = np.mgrid[:height, :width].reshape(2, -1)
    rays = torch.from_numpy(camera_rays(K, u, v).astype(np.float32))  # (H*W, 3), all cameras
    direction = torch.einsum("nij,pj->npi", rotation, rays).reshape(-1, 3)
    frame = torch.arange(len(origin)).repeat_interleave(height * width)
    colour, surface = _cast(s, origin.index_select(0, frame), direction, float(K[0, 0]))
    shape = (len(origin), height, width)
    return colour.reshape(*shape, 3), surface.reshape(shape)


def _supersample_edges(s: _SceneTensors, K, rotation, origin, colour, surface, supersample: int):
    """Re-cast pixels on geometric edges with ``supersample`` x ``supersample`` sub-pixel rays and
    store their mean in ``colour`` (N, H, W, 3); ``surface`` (N, H, W) holds the surface ids."""
    n, y, x = _edges(surface).nonzero(as_tuple=True)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    dv, du = (grid.ravel() for grid in np.meshgrid(offsets, offsets, indexing="ij"))
    rays = camera_rays(K, (x.numpy()[:, None] + du).ravel(), (y.numpy()[:, None] + dv).ravel())
    frame = n.repeat_interleave(len(du))
    rays = torch.from_numpy(rays.astype(np.float32))
    direction = torch.einsum("rij,rj->ri", rotation[frame], rays)
    samples, _ = _cast(s, origin[frame], direction, float(K[0, 0]))
    colour[n, y, x] = samples.reshape(len(n), len(du), 3).mean(dim=1)


def render(scene: Scene, K: np.ndarray, c2w: np.ndarray, height: int, width: int,
           supersample: int = 1) -> np.ndarray:
    """Render frames (N, H, W, 3) uint8 of ``scene`` seen by cameras ``c2w`` (N, 4, 4) with
    intrinsics ``K``.

    One ray per pixel centre; with ``supersample`` s > 1, pixels on geometric edges (where the
    surface hit changes) are re-cast with an s x s grid of sub-pixel rays and averaged.
    Textures are already filtered by mip-mapping, so only edges need the extra rays. Runs on one
    CPU thread whatever torch.get_num_threads() says (see _one_thread).
    """
    _retain_freed_memory()
    K, c2w = np.asarray(K, float), np.asarray(c2w, float)
    s = _prepare(scene, visible_boxes(scene, K, c2w, height, width))
    to_scene = scene.world_from_scene.T
    rotation = torch.from_numpy((to_scene @ c2w[:, :3, :3]).astype(np.float32))  # camera->scene
    origin = torch.from_numpy((c2w[:, :3, 3] @ to_scene.T).astype(np.float32))
    with _one_thread():
        colour, surface = _cast_pixels(s, K, rotation, origin, height, width)
        if supersample > 1:
            _supersample_edges(s, K, rotation, origin, colour, surface, supersample)
        return (colour.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
