"""Geometric previews: the source image warped into the cameras of a path.

Conventions (docs/architecture.md): OpenCV camera axes (x right, y down, z forward); a path
is camera-to-world 4x4 poses ``rel_c2w`` relative to the source camera (``rel_c2w[0] = I``,
so the "world" is the source camera's frame); intrinsics K (3, 3) in pixels with pixel
centres at integer coordinates (OpenCV's convention, so cv2.warpPerspective and cv2.remap
need no half-pixel shifts); depth is z-depth (along the optical axis) in the path's units;
images uint8 RGB (H, W, 3).

A target camera with pose [R | t] sees a source-frame point X at R^T (X - t).

* ``rotation_homography``: the rotation-only warp H = K_t R^T K_s^-1 (the scene at
  infinity; exact for a camera that only turns).
* ``plane_homography``: the warp induced by the plane n.X = d of the source frame,
  H = K_t R^T (I - t n^T / d) K_s^-1 (fronto-parallel: n = (0, 0, 1), d = its depth); the
  fallback when no depth is known. d -> infinity gives the rotation warp.
* ``warp_homography``: applies one (cv2.warpPerspective) with a validity mask: target pixels
  whose ray meets the plane in front of both cameras and lands inside the source image.
* ``forward_warp_depth``: a depth map's points splatted into the target camera with a
  z-buffer (nearest surface wins), each point on the 4 pixels around its projection; the
  mask marks pixels that received a sample. Infinite depth (sky) warps as the rotation.
  ``splat_source`` + ``splat``: the same, the per-source work done once for many cameras.
* ``fallback_plane_depth``: the plane depth to use for a path without a depth estimate: the
  given depth, pushed beyond the path's furthest forward reach (a plane the camera drives
  through leaves nothing to see).
* ``fill_invalid``: push-pull hole filling (valid-weighted image pyramid), for pixels no
  method has data for.
* ``composite``: warped image where valid, a fallback image elsewhere, blended over a
  feathered band along the edge of the valid region.
"""
import functools
from dataclasses import dataclass

import cv2
import numpy as np

FRONTO_PARALLEL = np.array([0.0, 0.0, 1.0])


def _check_pose(rel_c2w):
    rel_c2w = np.asarray(rel_c2w, dtype=np.float64)
    if rel_c2w.shape != (4, 4):
        raise ValueError(f"rel_c2w must be (4, 4), got {rel_c2w.shape}")
    return rel_c2w[:3, :3], rel_c2w[:3, 3]


def rotation_homography(K_source, rel_c2w, K_target=None):
    """H (3, 3) = K_t R^T K_s^-1 mapping source pixels to target pixels for a target camera
    that turned by R (rel_c2w[:3, :3]); its translation is ignored (scene at infinity).
    K_target defaults to K_source."""
    R, _ = _check_pose(rel_c2w)
    K_source = np.asarray(K_source, dtype=np.float64)
    K_target = K_source if K_target is None else np.asarray(K_target, dtype=np.float64)
    return K_target @ R.T @ np.linalg.inv(K_source)


def plane_homography(K_source, rel_c2w, depth, normal=FRONTO_PARALLEL, K_target=None):
    """H (3, 3) = K_t R^T (I - t n^T / d) K_s^-1: the warp of the plane n.X = d (source
    frame, n unit, d = ``depth`` > 0 in the path's units) into the target camera
    rel_c2w = [R | t]. ``depth`` inf gives ``rotation_homography``."""
    R, t = _check_pose(rel_c2w)
    K_source = np.asarray(K_source, dtype=np.float64)
    K_target = K_source if K_target is None else np.asarray(K_target, dtype=np.float64)
    if not depth > 0:
        raise ValueError(f"plane depth must be > 0, got {depth}")
    shift = np.zeros((3, 3)) if np.isinf(depth) else np.outer(t, normal) / depth
    return K_target @ R.T @ (np.eye(3) - shift) @ np.linalg.inv(K_source)


def fallback_plane_depth(rel_c2w, depth, beyond=3.0):
    """max(depth, beyond x the furthest the path's cameras get ahead of the source (their
    z, path units)): the fronto-parallel plane of ``warp_homography`` when no depth is known.
    rel_c2w: (T, 4, 4); depth > 0 in the path's units."""
    reach = float(np.max(np.asarray(rel_c2w)[:, 2, 3], initial=0.0))
    return max(float(depth), beyond * reach)


def _homography_valid(H, K_target, rel_c2w, depth, normal, source_shape, target_shape):
    """Target pixels whose ray meets the plane in front of both cameras and projects inside
    the source image (bool (h, w))."""
    h, w = target_shape
    H_inv = np.linalg.inv(H)
    u = np.arange(w, dtype=np.float64)[None, :]
    v = np.arange(h, dtype=np.float64)[:, None]
    # source homogeneous pixel of each target pixel: H_inv @ (u, v, 1), one row at a time
    px = H_inv[0, 0] * u + H_inv[0, 1] * v + H_inv[0, 2]
    py = H_inv[1, 0] * u + H_inv[1, 1] * v + H_inv[1, 2]
    pw = H_inv[2, 0] * u + H_inv[2, 1] * v + H_inv[2, 2]
    valid = pw > 1e-12
    safe = np.where(valid, pw, 1.0)
    x, y = px / safe, py / safe
    valid &= (x > -0.5) & (x < source_shape[1] - 0.5) & (y > -0.5) & (y < source_shape[0] - 0.5)
    if not np.isinf(depth):
        # the target ray t + s D meets the plane at s = (d - n.t) / (n.D): s > 0 in front
        R, t = _check_pose(rel_c2w)
        a = normal @ R @ np.linalg.inv(K_target)  # n.D for D = R K_t^-1 (u, v, 1)
        n_dot_d = a[0] * u + a[1] * v + a[2]
        valid &= (depth - normal @ t) * n_dot_d > 0
    return valid


def warp_homography(image, K_source, rel_c2w, depth=np.inf, normal=FRONTO_PARALLEL,
                    K_target=None, size=None):
    """Warp ``image`` (H, W, 3) uint8 into the target camera rel_c2w assuming the scene is
    the plane n.X = depth (``depth`` inf: rotation only).

    size: (height, width) of the target image (default: the source's), with K_target its
    intrinsics (default: K_source). Returns (warped (h, w, 3) uint8, valid (h, w) bool);
    invalid pixels hold the source's replicated border (cv2.BORDER_REPLICATE).
    """
    image = np.asarray(image)
    size = image.shape[:2] if size is None else tuple(size)
    K_target = np.asarray(K_source if K_target is None else K_target, dtype=np.float64)
    H = plane_homography(K_source, rel_c2w, depth, normal, K_target)
    warped = cv2.warpPerspective(image, H, (size[1], size[0]), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
    valid = _homography_valid(H, K_target, rel_c2w, depth, normal, image.shape[:2], size)
    return warped, valid


def forward_warp_depth(image, depth, K_source, rel_c2w, K_target=None, size=None):
    """Forward-warp ``image`` (H, W, 3) uint8 with its z-depth map ``depth`` (H, W) (path
    units; inf or 0 for no surface, e.g. sky: warped as at infinity) into the target
    camera rel_c2w, z-buffered.

    Each source pixel is projected into the target and written to the pixel its projection
    rounds to; pixels left empty then take the nearest of the points whose projection lies
    within one pixel (closing the cracks of up to 2x magnification). Where several land on
    one pixel the nearest to the target camera wins (depths compared in float32, ties to
    the lowest source pixel). Returns (warped (h, w, 3) uint8, zeros where nothing landed;
    valid (h, w) bool: pixels that received a sample). Warping one source into several
    cameras: ``splat_source`` once, then ``splat`` per camera (the same result).
    """
    return splat(splat_source(image, depth), K_source, rel_c2w, K_target, size)


@dataclass(frozen=True)
class SplatSource:
    """A source image prepared for ``splat``: its inverse z-depth (H, W) float32 (0: no
    surface) and its colours packed one uint32 a pixel (RGB0, row-major) with a zero (no
    colour) appended: (H * W + 1,)."""

    inverse: np.ndarray
    colours: np.ndarray


def splat_source(image, depth):
    """``image`` (H, W, 3) uint8 and its z-depth ``depth`` (H, W) (inf, 0, negative or NaN:
    no surface) prepared for ``splat``: the per-source work of a forward warp, done once for
    all the cameras a source is warped into."""
    image = np.asarray(image)
    H, W = image.shape[:2]
    depth = np.asarray(depth)
    if depth.shape != (H, W):
        raise ValueError(f"depth must be {(H, W)}, got {depth.shape}")
    depth = depth.astype(np.float32, copy=False)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inverse = np.float32(1.0) / depth
    inverse[~(np.isfinite(depth) & (depth > 0))] = 0.0
    colours = np.zeros((H * W + 1, 4), np.uint8)
    colours[:-1, :3] = image.reshape(-1, 3)
    return SplatSource(inverse=inverse, colours=colours.view(np.uint32).reshape(-1))


_NO_KEY = np.iinfo(np.uint64).max
_LOW = np.uint64(0xFFFFFFFF)
_CORNERS = np.array([[0, 1, 0, 1], [0, 0, 1, 1]], np.float32)[..., None]  # (dx, dy) of 4


def splat(source, K_source, rel_c2w, K_target=None, size=None):
    """``forward_warp_depth`` of a ``splat_source`` into the target camera rel_c2w (size
    (h, w), intrinsics K_target: default the source's).

    A source pixel (u, v) of inverse depth i lands where K_t R^T (K_s^-1 (u, v, 1) - t i)
    points: the homography at infinity K_t R^T K_s^-1 applied to (u, v, 1) (a row plus a
    column: cheap) minus the parallax K_t R^T t i, in float32. The z-buffer packs each
    sample's target depth (its float32 bits: ordered as the positive floats are) above its
    source index into one uint64, so one ``np.minimum.at`` finds the nearest sample, ties to
    the lowest index."""
    H, W = source.inverse.shape
    h, w = (H, W) if size is None else tuple(size)
    R, t = _check_pose(rel_c2w)
    K_source = np.asarray(K_source, dtype=np.float64)
    K_target = K_source if K_target is None else np.asarray(K_target, dtype=np.float64)
    RtKinv = R.T @ np.linalg.inv(K_source)
    M = (K_target @ RtKinv).astype(np.float32)      # rows 0, 1: target pixel numerators
    e = (K_target @ R.T @ t).astype(np.float32)     # their parallax per unit inverse depth
    m2, e2 = RtKinv[2].astype(np.float32), np.float32((R.T @ t)[2])
    u, v = _pixel_grid(H, W)
    inverse = source.inverse
    q2 = (m2[0] * u + (m2[1] * v + m2[2])) - e2 * inverse     # target z over source z
    front = q2 > 1e-9
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = np.float32(1.0) / np.where(front, q2, np.float32(1.0))
        px = ((M[0, 0] * u + (M[0, 1] * v + M[0, 2])) - e[0] * inverse) * scale
        py = ((M[1, 0] * u + (M[1, 1] * v + M[1, 2])) - e[1] * inverse) * scale
        # target z-depth (huge for points at infinity, which stay behind every surface)
        z = q2 / np.maximum(inverse, np.float32(1e-30))
    px, py, z, front = px.reshape(-1), py.reshape(-1), z.reshape(-1), front.reshape(-1)
    zbits = z.view(np.uint32)
    # first the pixel each point rounds to
    xr, yr = np.rint(px), np.rint(py)
    inside = front & (xr >= 0) & (xr <= w - 1) & (yr >= 0) & (yr <= h - 1)
    pixel = (yr * np.float32(w) + xr)[inside].astype(np.intp)   # exact below 2^24 pixels
    nearest = _nearest_keys(pixel, np.flatnonzero(inside), zbits, h * w)
    if h * w < 2 ** 24 and not (nearest == _NO_KEY).any():
        return _unpack(nearest, source.colours, h, w)
    # then, for the cracks only, the 4 pixels around each point: only points next to one
    # (a crack within the 3 x 3 pixels around the pixel a point rounds to; points further
    # than a pixel outside the image reach no pixel of it) can fill it
    valid = nearest != _NO_KEY
    hole = cv2.dilate((~valid).reshape(h, w).astype(np.uint8), np.ones((3, 3), np.uint8))
    reach = np.flatnonzero(front & (px > -1) & (px < w) & (py > -1) & (py < h))
    around = (np.clip(yr[reach], 0, h - 1) * np.float32(w)
              + np.clip(xr[reach], 0, w - 1)).astype(np.intp)
    near = reach[hole.reshape(-1)[around].astype(bool)]
    if len(near):
        x = np.floor(px[near]) + _CORNERS[0]                          # (4, n): the 4 pixels
        y = np.floor(py[near]) + _CORNERS[1]
        ok = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        pixel = (y * np.float32(w) + x)[ok].astype(np.intp)
        near = np.broadcast_to(near, ok.shape)[ok]
        keep = ~valid[pixel]
        _nearest_keys(pixel[keep], near[keep], zbits, h * w, out=nearest)  # holes only
    return _unpack(nearest, source.colours, h, w)


def _nearest_keys(targets, sources, zbits, count, out=None):
    """z-buffer: for each of ``count`` pixels the least key (depth bits << 32 | source
    index) of the samples ``sources`` (M,) landing on it (``targets`` (M,)), ``_NO_KEY``
    where none does (``out``: lowered in place). ``zbits``: every source's target depth as
    uint32 bits (float32 >= 0). Unbuffered ``np.minimum.at``: linear in M, no sort."""
    keys = (zbits[sources].astype(np.uint64) << np.uint64(32)) | sources.astype(np.uint64)
    nearest = np.full(count, _NO_KEY, np.uint64) if out is None else out
    np.minimum.at(nearest, targets, keys)
    return nearest


def _unpack(nearest, colours, h, w):
    """(warped (h, w, 3) uint8, valid (h, w) bool) from the z-buffer's keys: each pixel
    the colour of its winning source, zeros (the appended colour) where none won."""
    index = np.minimum(nearest & _LOW, np.uint64(len(colours) - 1)).astype(np.intp)
    packed = colours[index].view(np.uint8).reshape(h, w, 4)
    return cv2.cvtColor(packed, cv2.COLOR_RGBA2RGB), (nearest != _NO_KEY).reshape(h, w)


@functools.lru_cache(maxsize=8)
def _pixel_grid(height, width):
    """Pixel coordinates u (1, width) and v (height, 1), float32, read-only (cached)."""
    u = np.arange(width, dtype=np.float32)[None, :]
    v = np.arange(height, dtype=np.float32)[:, None]
    u.flags.writeable = v.flags.writeable = False
    return u, v


def fill_invalid(image, valid, levels=12):
    """``image`` (h, w, 3) uint8 with the pixels where ``valid`` is False filled from the
    valid ones (push-pull: valid-weighted averages over an image pyramid, the finest level
    that has data wins). Valid pixels are kept; no valid pixel at all: returned as is.

    Colour and weight go down the pyramid together (one 4-channel ``cv2.pyrDown`` a level:
    colour premultiplied by the weight); back up, each level is its own average laid over
    the fill from the level above with opacity min(weight, 1). At the finest level an
    invalid pixel has no weight, so it takes the level above's fill as it is: that level's
    blend is skipped (the same result, a fraction of the time)."""
    valid = np.asarray(valid, bool)
    if valid.all() or not valid.any():
        return np.asarray(image).copy()
    image = np.ascontiguousarray(image, np.uint8)
    mask = valid.astype(np.uint8)
    layer = cv2.merge([image, mask])  # (colour, weight) * valid: exact in uint8
    pyramid = [cv2.bitwise_and(layer, layer, mask=mask).astype(np.float32)]
    for _ in range(levels):
        if min(pyramid[-1].shape[:2]) < 2:
            break
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    c, wgt = pyramid[-1][..., :3], pyramid[-1][..., 3:]
    filled = c / np.maximum(wgt, 1e-6)
    for level in reversed(pyramid[1:-1]):
        c, wgt = level[..., :3], level[..., 3:]
        up = cv2.resize(filled, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_LINEAR)
        # c / max(w, 1) is the level's average where w >= 1, c itself (average x w) below
        filled = c / np.maximum(wgt, 1.0) + up * (1.0 - np.minimum(wgt, 1.0))
    if len(pyramid) > 1:  # the finest level: its invalid pixels take the fill above as is
        filled = cv2.resize(filled, (valid.shape[1], valid.shape[0]),
                            interpolation=cv2.INTER_LINEAR)
    fill = cv2.convertScaleAbs(filled)  # rounded, saturated to uint8 (all values >= 0)
    return cv2.copyTo(image, mask, fill)


def feather_weights(valid, feather_px):
    """Weight (h, w) float32 in [0, 1] of the warped image: 0 outside ``valid``, rising to 1
    over ``feather_px`` pixels inside it (distance to the nearest invalid pixel)."""
    valid = np.asarray(valid, bool)
    if feather_px <= 0 or valid.all():
        return valid.astype(np.float32)
    distance = cv2.distanceTransform(valid.astype(np.uint8), cv2.DIST_L2, 3)
    return np.clip(distance / float(feather_px), 0.0, 1.0).astype(np.float32)


def composite(warped, valid, fallback, fallback_valid=None, feather_px=4.0):
    """The warped image where it is valid, ``fallback`` (e.g. the model's frame) where not.

    warped, fallback: (h, w, 3) uint8; valid: (h, w) bool of the warp; fallback_valid: where
    the fallback has data (default everywhere). Across a band of ``feather_px`` pixels inside
    the valid region the two are blended linearly (no seam); pixels neither has data for are
    filled from the rest (``fill_invalid``). Returns (h, w, 3) uint8.
    """
    valid = np.asarray(valid, bool)
    if valid.all():
        return np.asarray(warped).copy()
    warped = np.ascontiguousarray(warped, np.uint8)
    inside = valid.astype(np.uint8)
    fallback = np.asarray(fallback)
    if fallback_valid is None:
        base = np.ascontiguousarray(fallback, np.uint8)
    else:
        fallback_valid = np.asarray(fallback_valid, bool)
        # the fallback where it has data, else the warp where it has, else nothing: filled
        base = cv2.copyTo(warped, inside, np.zeros_like(warped))
        base = cv2.copyTo(np.ascontiguousarray(fallback, np.uint8),
                          fallback_valid.astype(np.uint8), base)
        base = fill_invalid(base, fallback_valid | valid)
    weight = feather_weights(valid, feather_px)
    # weight x warp + (1 - weight) x base, rounded: the warp inside, the base outside
    return cv2.blendLinear(warped, base, weight, 1.0 - weight)
