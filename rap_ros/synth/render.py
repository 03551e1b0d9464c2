"""Batched CPU ray casting of box scenes (numpy, vectorised over all rays of all frames).

Each pixel's ray is intersected analytically with every box (slab test); the nearest hit is
shaded with a mip-mapped, bilinearly filtered texture whose coordinates are surface positions
in metres (so texture scale is physical), lit by ambient + Lambertian directional light, and
blended with distance fog. Rays that hit nothing see a sky gradient.

Conventions: intrinsics K (3, 3) with pixel centres at integer coordinates; poses c2w (N, 4, 4)
camera-to-world with OpenCV camera axes (x right, y down, z forward), metres; output images
uint8 RGB (N, H, W, 3). All ray arithmetic is float32. Only numpy is needed: the work is a
few large single-threaded array operations, so render in several processes to use more cores.
"""
import itertools
from dataclasses import dataclass

import numpy as np

from rap_ros.synth.scenes import Scene
from rap_ros.synth.textures import MIP_LEVELS, TEXTURE_SIZE, texture_atlas

MAX_PAIRS = 1 << 16  # ray-box pairs tested at once; bounds memory (256 kB per work buffer)
MAX_RAYS = 1 << 16  # rays cast per batch of frames (at least one frame); bounds memory too
BLOCK = 128  # rays per block of the slab test (see _cast_keys)
TILE_PIXELS = 32  # boxes are culled per TILE_PIXELS x TILE_PIXELS tile of each frame
NO_HIT = 1e6  # metres; longer hit distances mean the ray hit nothing
MIN_COSINE = 0.25  # mip selection treats grazing views as this oblique at most (less blur)
# Columns of the per-box material table (see _prepare).
LO, HI, TILE, UV_OFFSET, TINT = slice(0, 3), slice(3, 6), 6, slice(7, 9), slice(9, 12)
_SIGN = np.uint32(1 << 31)  # float32 sign bit


@dataclass
class _SceneArrays:
    """The boxes a render can see (scene frame, float32) and the lighting."""

    lo: np.ndarray  # (B, 3)
    hi: np.ndarray  # (B, 3)
    table: np.ndarray  # (B, 12) lo, hi, tile, uv_offset, tint; one gather fetches them all
    texture: np.ndarray  # (B,) int32
    light: np.ndarray  # (3,)
    fog_colour: np.ndarray  # (3,)
    sky_horizon: np.ndarray  # (3,)
    sky_zenith: np.ndarray  # (3,)
    ambient: float
    fog_distance: float


def _rays(K: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unit ray directions (3, M) float64 in the camera frame through pixels u, v (M,)."""
    rays = np.linalg.inv(K) @ np.stack([u, v, np.ones_like(u)]).astype(float)
    rays /= np.sqrt(np.einsum("im,im->m", rays, rays))
    return rays


def camera_rays(K: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unit ray directions (M, 3) in the camera frame through pixel coordinates u, v (M,)."""
    return _rays(K, u, v).T


def _camera_corners(scene: Scene, c2w: np.ndarray) -> np.ndarray:
    """Box corners (N, B, 8, 3) in each camera's frame (OpenCV axes)."""
    corners = np.array(list(itertools.product((0, 1), repeat=3)))  # (8, 3) lo/hi choice per axis
    scene_corners = np.where(corners[None] == 0, scene.lo[:, None], scene.hi[:, None])  # (B, 8, 3)
    world = scene_corners @ scene.world_from_scene.T
    offset = world[None] - c2w[:, None, None, :3, 3]
    return np.einsum("nji,nbkj->nbki", c2w[:, :3, :3], offset)


def _outside(cam: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """(N, B, P): all 8 corners of box b (cam (N, B, 8, 3)) lie outside plane p of frame n;
    ``normal`` (N, P, 3) or (P, 3) are the inward normals of planes through the camera centre."""
    return (np.einsum("nbki,...pi->nbkp", cam, normal) < 0).all(axis=2)


def visible_boxes(scene: Scene, K: np.ndarray, c2w: np.ndarray, height: int,
                  width: int) -> np.ndarray:
    """Mask (B,) of boxes that may appear in at least one frame: a box is culled from a frame
    when all 8 corners lie outside one side plane of that camera's viewing pyramid."""
    return _tile_mask(scene, K, c2w, height, width, max(height, width))[..., 0, 0].any(axis=0)


def _tile_mask(scene: Scene, K: np.ndarray, c2w: np.ndarray, height: int, width: int,
               tile: int) -> np.ndarray:
    """Mask (N, B, rows, columns): box b may appear in the ``tile`` x ``tile`` pixel tile
    (row, column) of frame n. A box is culled from a tile when all 8 corners lie outside one side
    plane of the tile's viewing pyramid, or of the frame's. The planes pass half a pixel outside
    the tile's outer pixel centres, so every (sub-pixel) ray of the tile's pixels is inside."""
    cam = _camera_corners(scene, c2w)
    (fx, _, cx), (_, fy, cy) = K[0], K[1]
    frame = ~_outside(cam, np.array([  # side planes through the camera centre, normals inwards
        [fx, 0, cx + 0.5], [-fx, 0, width - 0.5 - cx],
        [0, fy, cy + 0.5], [0, -fy, height - 0.5 - cy]])).any(axis=-1)  # (N, B)

    def band(focal, centre, size, along):  # (N, B, tiles) not culled by a tile's two planes
        first = np.arange(0, size, tile) - 0.5  # edges of the tiles along this image axis
        last = np.minimum(first + tile, size - 0.5)
        normal = np.zeros((2, len(first), 3))
        normal[0, :, along], normal[0, :, 2] = focal, centre - first
        normal[1, :, along], normal[1, :, 2] = -focal, last - centre
        return ~_outside(cam, normal.reshape(-1, 3)).reshape(*cam.shape[:2], 2, -1).any(axis=2)

    rows, columns = band(fy, cy, height, 1), band(fx, cx, width, 0)
    return frame[..., None, None] & rows[..., :, None] & columns[..., None, :]


def _prepare(scene: Scene, keep: np.ndarray) -> _SceneArrays:
    """Arrays of the boxes selected by ``keep`` (B,) and of the lighting."""
    columns = [scene.lo, scene.hi, scene.tile[:, None], scene.uv_offset, scene.tint]
    table = np.concatenate(columns, axis=1, dtype=np.float32)[keep]
    return _SceneArrays(
        lo=np.ascontiguousarray(table[:, LO]),
        hi=np.ascontiguousarray(table[:, HI]),
        table=table,
        texture=scene.texture[keep].astype(np.int32),
        light=np.asarray(scene.light, np.float32),
        fog_colour=np.asarray(scene.fog_colour, np.float32),
        sky_horizon=np.asarray(scene.sky_horizon, np.float32),
        sky_zenith=np.asarray(scene.sky_zenith, np.float32),
        ambient=float(scene.ambient),
        fog_distance=float(scene.fog_distance),
    )


def _safe(direction: np.ndarray) -> np.ndarray:
    """``direction`` as float32 with zero components replaced by 1e-9 (keeps 1 / d finite)."""
    direction = np.asarray(direction, np.float32)
    return np.where(direction == 0, np.float32(1e-9), direction)


def _bits(boxes: int) -> int:
    """Mantissa bits that hold a box index below ``boxes``."""
    return max(1, (boxes - 1).bit_length())


def _nearest(key: np.ndarray, bits: int):
    """Distances t (R,) float32 and box indices (R,) int64 of nearest-hit keys (R,) uint32.

    Non-negative float32 values order like their unsigned bit patterns, and negative ones (sign
    bit set) order after all of them, so with the box index written into the lowest mantissa
    bits one integer ``min`` over boxes finds both distance and box (much faster than
    ``argmin`` over the box axis); t loses those bits, a relative error below 2**(bits - 23).
    Keys with the sign bit set mean nothing was hit: t is inf there."""
    low = np.uint32((1 << bits) - 1)
    box = (key & low).astype(np.int64)
    t = (key & ~low).view(np.float32)
    t[key >= _SIGN] = np.inf
    return t, box


def _runs(group: np.ndarray, direction: np.ndarray):
    """Sort rays into runs that share ``group`` (R,) (small non-negative ints) and the signs of
    their direction (3, R). Returns the order (R,), the run boundaries (runs + 1,) in it, and
    per run its group (runs,) and negative-axis flags (runs, 3) bool."""
    negative = (direction < 0).view(np.uint8)
    octant = negative[0] | (negative[1] << 1) | (negative[2] << 2)
    dtype = np.uint16 if 8 * (int(group.max(initial=0)) + 1) <= 1 << 16 else np.int64
    code = group.astype(dtype) << 3
    code |= octant
    order = np.argsort(code, kind="stable")  # a radix sort for uint16
    counts = np.bincount(code)
    runs = np.flatnonzero(counts)
    bounds = np.concatenate([[0], np.cumsum(counts[runs])])
    return order, bounds, runs >> 3, ((runs[:, None] >> np.arange(3)) & 1).astype(bool)


def _run_planes(origins, run_group, negative, lo, hi, visible):
    """Per run, the slab planes (runs, 6, B') float32 and ids (runs, B') uint32 of the boxes its
    group may see (B' = the most any group sees; unused slots never hit), and how many (runs,).

    Rows 0-2 give entry, rows 3-5 exit distances once multiplied by |1 / d_k|: lo_k - o_k and
    hi_k - o_k where d_k > 0, o_k - hi_k and o_k - lo_k where d_k < 0."""
    count = visible.sum(axis=1)[run_group]
    width = max(1, int(count.max(initial=0)))
    ids = np.argsort(~visible, axis=1, kind="stable")[run_group, :width]  # seen boxes first
    origin = origins[run_group][:, None]
    to_lo, to_hi = lo[ids] - origin, hi[ids] - origin  # (runs, B', 3)
    enter = np.where(negative[:, None], -to_hi, to_lo)
    leave = np.where(negative[:, None], -to_lo, to_hi)
    unused = np.arange(width) >= count[:, None]
    enter[unused], leave[unused] = 1, -1  # entry > 0 > exit: a miss
    planes = np.concatenate([enter, leave], axis=2).transpose(0, 2, 1)
    return np.ascontiguousarray(planes, np.float32), ids.astype(np.uint32), count


def _cast_keys(origins, group, direction, lo, hi, visible, bits: int) -> np.ndarray:
    """Nearest-hit keys (R,) uint32 (see _nearest) of rays (3, R) from ``origins[group]``
    (origins (G, 3), group (R,)); group g's rays are tested against the boxes lo/hi (B, 3) that
    ``visible[g]`` (G, B) bool marks.

    Slab test: along axis k the ray is between the box's two planes for t in
    [(lo_k - o_k) / d_k, (hi_k - o_k) / d_k] (ends swapped for d_k < 0), and the box is hit at
    entry = max over axes if entry <= exit = min over axes. Rays are sorted into runs with one
    origin and one direction octant, so each end is one product per box, axis and ray of a
    per-box plane (see _run_planes) and |1 / d_k|. Runs are cut into blocks of BLOCK rays
    (the last one padded), blocks sorted by how many boxes they see, and tested in chunks of
    at most MAX_PAIRS ray-box pairs (or one block) as arrays (blocks, boxes, BLOCK) with the ray
    axis contiguous: a few large array operations whatever the number of runs.

    A key is the entry distance's float32 bits with the box id in the lowest ``bits`` mantissa
    bits, or just the sign bit on a miss (exit < entry); a box behind the origin (entry < 0)
    has the sign bit set too, so the smallest key over boxes is the nearest hit.
    """
    order, bounds, run_group, negative = _runs(group, direction)
    planes, ids, count = _run_planes(origins, run_group, negative, lo, hi, visible)
    # Blocks of BLOCK rays, most boxes first.
    blocks = -(-np.diff(bounds) // BLOCK)
    block_run = np.repeat(np.arange(len(blocks)), blocks)
    block_start = np.arange(len(block_run)) * BLOCK
    block_start -= np.repeat((np.cumsum(blocks) - blocks) * BLOCK - bounds[:-1], blocks)
    by_count = np.argsort(-count[block_run], kind="stable")
    block_run, block_start = block_run[by_count], block_start[by_count]
    slot = block_start[:, None] + np.arange(BLOCK)  # (blocks, BLOCK) positions in ``order``
    used = slot < bounds[1:][block_run][:, None]
    ray = order.take(np.minimum(slot, len(order) - 1))  # padding repeats a ray; dropped below
    abs_inv = np.reciprocal(direction.take(ray, axis=1))  # (3, blocks, BLOCK)
    np.abs(abs_inv, out=abs_inv)
    block_count = count[block_run]
    key = np.full(ray.shape, _SIGN, np.uint32)
    not_low = ~np.uint32((1 << bits) - 1)
    work = np.empty((3, max(MAX_PAIRS, int(block_count.max(initial=0)) * BLOCK)), np.float32)
    first = 0
    while first < len(block_run) and block_count[first] > 0:
        boxes = int(block_count[first])
        last = first + max(1, MAX_PAIRS // (boxes * BLOCK))
        run = block_run[first:last]
        inv = abs_inv[:, first:last, None]  # (3, n, 1, BLOCK)
        plane = planes[run][:, :, :boxes, None]  # (n, 6, boxes, 1)
        near, far, tmp = work[:, :len(run) * boxes * BLOCK].reshape(3, len(run), boxes, BLOCK)
        np.multiply(plane[:, 0], inv[0], out=near)
        np.multiply(plane[:, 3], inv[0], out=far)
        for axis in (1, 2):
            np.multiply(plane[:, axis], inv[axis], out=tmp)
            np.maximum(near, tmp, out=near)
            np.multiply(plane[:, 3 + axis], inv[axis], out=tmp)
            np.minimum(far, tmp, out=far)
        bits_, missed = near.view(np.uint32), tmp.view(bool)[..., :BLOCK]
        np.less(far, near, out=missed)
        np.bitwise_and(bits_, not_low, out=bits_)
        np.bitwise_or(bits_, ids[run][:, :boxes, None], out=bits_)
        np.copyto(bits_, _SIGN, where=missed)
        np.min(bits_, axis=1, out=key[first:last])
        first = last
    unsorted = np.empty(len(order), np.uint32)
    unsorted[ray[used]] = key[used]
    return unsorted


def intersect(origin: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Nearest box hit of rays with the slab test (see _cast_keys).

    origin, direction (R, 3) (direction unit, no zero components), boxes lo/hi (B, 3), all in
    the scene frame. Returns distance t (R,) float32 along the ray (t >= NO_HIT, inf, where
    nothing is hit) and the index (R,) of the box hit. Origins must lie outside every box.
    """
    origin = np.asarray(origin, np.float32).reshape(-1, 3)
    direction = _safe(direction).reshape(-1, 3).T
    lo, hi = np.asarray(lo, np.float32).reshape(-1, 3), np.asarray(hi, np.float32).reshape(-1, 3)
    if len(lo) == 0:
        return np.full(len(origin), np.inf, np.float32), np.zeros(len(origin), np.int64)
    origins, group = np.unique(origin, axis=0, return_inverse=True)
    visible = np.ones((len(origins), len(lo)), bool)
    bits = _bits(len(lo))
    return _nearest(_cast_keys(origins, group.reshape(-1), direction, lo, hi, visible, bits), bits)


def _sample_texture(tex: np.ndarray, u: np.ndarray, v: np.ndarray,
                    level: np.ndarray) -> np.ndarray:
    """Bilinear, wrapping lookup (3, R) float32 in [0, 1] of textures ``tex`` (R,) at tile
    coordinates u, v (R,) float32 (1 = one tile) and mip levels ``level`` (R,) int32."""
    atlas = texture_atlas()
    side = np.right_shift(TEXTURE_SIZE, level, dtype=np.int32)
    side_f = side.astype(np.float32)
    x, y = u * side_f, v * side_f
    x -= 0.5  # texel centres sit at half-integers
    y -= 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    mask = side - 1  # sides are powers of two: "& mask" wraps like "% side"
    x0, y0 = x0.astype(np.int32) & mask, y0.astype(np.int32) & mask
    x1, y1 = (x0 + 1) & mask, (y0 + 1) & mask
    row0 = atlas.offsets.reshape(-1).take(tex * MIP_LEVELS + level)
    row1 = row0 + y1 * side
    row0 += y0 * side
    corners = np.stack([row0 + x0, row0 + x1, row1 + x0, row1 + x1])  # (4, R)
    rgb0 = atlas.texels.take(corners).view(np.uint8).reshape(4, -1, 4)
    c00, c01, c10, c11 = rgb0.transpose(2, 0, 1)[:3].astype(np.float32, order="C").swapaxes(0, 1)
    top = c01 - c00
    top *= fx
    top += c00
    bottom = c11 - c10
    bottom *= fx
    bottom += c10
    bottom -= top
    bottom *= fy
    bottom += top
    bottom *= np.float32(1 / 255)
    return bottom


def _shade_hits(s: _SceneArrays, origin, direction, t, box, focal: float):
    """Colour (3, R) float32 in [0, 1] and face normal axis (R,) of R rays (origin, unit
    direction (3, R)) hitting ``box`` (R,) at distance ``t`` (R,); ``focal`` in pixels sets the
    mip level."""
    b = s.table.take(box, axis=0).T  # (12, R), rows strided
    lo, hi, tile = b[LO], b[HI], np.ascontiguousarray(b[TILE])
    # The face entered is that of the slab entered last.
    x, y, z = np.minimum((lo - origin) / direction, (hi - origin) / direction)
    on_z = z >= np.maximum(x, y)
    on_y = y >= x
    on_y &= ~on_z
    axis = on_y.view(np.uint8) + 2 * on_z.view(np.uint8)
    on_x = (axis == 0).astype(np.float32)
    on_y, on_z = on_y.astype(np.float32), on_z.astype(np.float32)  # one-hot: exact selection
    along = direction[0] * on_x + direction[1] * on_y + direction[2] * on_z  # direction . axis
    point = direction * t
    point += origin
    # Face coordinates in metres: walls (x or y faces) upright with v growing downwards.
    from_lo_y = point[1] - lo[1]
    u = from_lo_y * on_x + (point[0] - lo[0]) * (1 - on_x)
    v = from_lo_y * on_z + (hi[2] - point[2]) * (1 - on_z)
    pixel_size = t / (np.float32(focal) * np.maximum(np.abs(along), np.float32(MIN_COSINE)))
    footprint = pixel_size * np.float32(TEXTURE_SIZE) / tile  # texels per pixel
    level = np.round(np.log2(np.maximum(footprint, np.float32(1)))).astype(np.int32)
    np.minimum(level, MIP_LEVELS - 1, out=level)
    u /= tile
    u += b[UV_OFFSET][0]
    v /= tile
    v += b[UV_OFFSET][1]
    colour = _sample_texture(s.texture.take(box), u, v, level)
    light_x, light_y, light_z = s.light.tolist()
    facing = light_x * on_x + light_y * on_y + light_z * on_z  # face normal . light
    facing *= -np.sign(along)
    light = np.float32(s.ambient) + np.float32(1 - s.ambient) * np.maximum(facing, np.float32(0))
    fog = np.exp(-t / np.float32(s.fog_distance))
    colour *= b[TINT]
    colour *= light * fog
    colour += np.multiply.outer(s.fog_colour, 1 - fog)
    return colour, axis


def _sky(s: _SceneArrays, direction: np.ndarray) -> np.ndarray:
    """Colour (3, R) float32 of rays (3, R) that hit nothing: horizon to zenith by elevation."""
    colour = np.multiply.outer(s.sky_zenith - s.sky_horizon, np.clip(direction[2], 0, 1))
    colour += s.sky_horizon[:, None]
    return colour


def _cast(s: _SceneArrays, origins, group, direction, visible, bits: int, focal: float):
    """Colour (3, R) float32 and surface id (R,) of rays (3, R) in the scene frame from
    ``origins[group]`` (origins (G, 3), group (R,)); group g's rays are tested against the boxes
    that ``visible[g]`` (G, B) marks.

    The surface id is 3 * box + normal axis for hits and -1 for the sky; it changes across
    geometric edges."""
    direction = _safe(direction)
    colour = _sky(s, direction)
    surface = np.full(direction.shape[1], -1, np.int32)
    if len(s.lo) == 0:
        return colour, surface
    t, box = _nearest(_cast_keys(origins, group, direction, s.lo, s.hi, visible, bits), bits)
    rays = np.flatnonzero(t < NO_HIT)
    t, box = t.take(rays), box.take(rays)
    ray_origin = origins.T.take(group.take(rays), axis=1)
    hit_colour, axis = _shade_hits(s, ray_origin, direction.take(rays, axis=1), t, box, focal)
    for channel, hit in zip(colour, hit_colour):  # row by row: faster than colour[:, rays]
        channel[rays] = hit
    surface[rays] = 3 * box + axis
    return colour, surface


def _edges(surface: np.ndarray) -> np.ndarray:
    """Pixels (N, H, W) bool whose surface id differs from a 4-neighbour's."""
    edge = np.zeros(surface.shape, bool)
    vertical = surface[:, 1:] != surface[:, :-1]
    horizontal = surface[:, :, 1:] != surface[:, :, :-1]
    edge[:, 1:] |= vertical
    edge[:, :-1] |= vertical
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    return edge


def _render_frames(s: _SceneArrays, K, rotation, origin, visible, bits: int, height: int,
                   width: int, supersample: int) -> np.ndarray:
    """Colour (3, N, H, W) float32 of N cameras with rotations (N, 3, 3) camera -> scene frame
    and centres (N, 3) in the scene frame: one ray per pixel centre, and the mean of
    ``supersample`` x ``supersample`` sub-pixel rays on geometric edges. ``visible`` (N, B,
    rows, columns) marks the boxes each TILE_PIXELS square tile may show (see _tile_mask)."""
    count, focal = len(origin), float(K[0, 0])
    tiles = visible.shape[2] * visible.shape[3]
    visible = visible.transpose(0, 2, 3, 1).reshape(count * tiles, -1)  # (frame, row, column)
    origins = np.repeat(origin, tiles, axis=0)  # per (frame, tile)
    v, u = np.mgrid[:height, :width].reshape(2, -1)
    tile = (v // TILE_PIXELS) * -(-width // TILE_PIXELS) + u // TILE_PIXELS  # tile of each pixel
    rays = _rays(K, u, v).astype(np.float32)  # (3, H*W), all cameras
    direction = np.matmul(rotation, rays).swapaxes(0, 1).reshape(3, -1)
    group = (np.arange(count)[:, None] * tiles + tile).reshape(-1)
    colour, surface = _cast(s, origins, group, direction, visible, bits, focal)
    colour = colour.reshape(3, count, height, width)
    if supersample > 1:
        n, y, x = _edges(surface.reshape(count, height, width)).nonzero()
        offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
        dv, du = (grid.ravel() for grid in np.meshgrid(offsets, offsets, indexing="ij"))
        # Sub-pixel rays sample-major: (s * s, edge pixels), so their mean is over rows.
        sub = _rays(K, (x + du[:, None]).ravel(), (y + dv[:, None]).ravel()).astype(np.float32)
        frame = np.tile(n, len(du))
        turn = rotation.reshape(-1, 9).T.take(frame, axis=1).reshape(3, 3, -1)  # (3, 3, rays)
        direction = turn[:, 0] * sub[0]
        direction += turn[:, 1] * sub[1]
        direction += turn[:, 2] * sub[2]
        pixel = (n * height + y) * width + x
        group = np.tile(n * tiles + tile.take(y * width + x), len(du))
        samples, _ = _cast(s, origins, group, direction, visible, bits, focal)
        colour.reshape(3, -1)[:, pixel] = samples.reshape(3, len(du), -1).mean(axis=1)
    return colour


def render(scene: Scene, K: np.ndarray, c2w: np.ndarray, height: int, width: int,
           supersample: int = 1) -> np.ndarray:
    """Render frames (N, H, W, 3) uint8 of ``scene`` seen by cameras ``c2w`` (N, 4, 4) with
    intrinsics ``K``.

    One ray per pixel centre; with ``supersample`` s > 1, pixels on geometric edges (where the
    surface hit changes) are re-cast with an s x s grid of sub-pixel rays and averaged.
    Textures are already filtered by mip-mapping, so only edges need the extra rays. The rays of
    each TILE_PIXELS square tile of a frame are tested only against the boxes in that tile's
    viewing pyramid; frames are cast in batches of about MAX_RAYS rays, so memory stays
    bounded for any number of frames.
    """
    K, c2w = np.asarray(K, float), np.asarray(c2w, float)
    visible = _tile_mask(scene, K, c2w, height, width, TILE_PIXELS)  # (N, B, rows, columns)
    keep = visible.any(axis=(0, 2, 3))
    s = _prepare(scene, keep)
    bits = _bits(len(s.lo))
    visible = visible[:, keep]
    to_scene = scene.world_from_scene.T
    rotation = (to_scene @ c2w[:, :3, :3]).astype(np.float32)  # camera -> scene
    origin = (c2w[:, :3, 3] @ to_scene.T).astype(np.float32)
    images = np.empty((len(c2w), height, width, 3), np.uint8)
    batch = max(1, MAX_RAYS // (height * width))
    for start in range(0, len(c2w), batch):
        part = slice(start, start + batch)
        colour = _render_frames(s, K, rotation[part], origin[part], visible[part], bits, height,
                                width, supersample)
        np.clip(colour, 0, 1, out=colour)
        colour *= 255
        for channel, value in enumerate(np.round(colour, out=colour).astype(np.uint8)):
            images[part, ..., channel] = value
    return images


def true_depth(scene: Scene, K: np.ndarray, c2w: np.ndarray, height: int,
               width: int) -> np.ndarray:
    """z-depth (height, width) float64 in metres of ``scene`` seen from the camera c2w (4, 4)
    with intrinsics K (inf: sky, no surface), by the renderer's ray-box intersection (one ray
    through each pixel centre)."""
    v, u = np.mgrid[:height, :width].reshape(2, -1).astype(np.float64)
    rays = camera_rays(K, u, v)  # (M, 3) unit, camera frame
    to_scene = scene.world_from_scene.T
    direction = rays @ (to_scene @ c2w[:3, :3]).T
    origin = np.repeat((to_scene @ c2w[:3, 3])[None], len(rays), axis=0)
    t, _ = intersect(origin, direction, scene.lo, scene.hi)
    t = np.where(t < NO_HIT, t.astype(np.float64), np.inf)
    return (t * rays[:, 2]).reshape(height, width)
