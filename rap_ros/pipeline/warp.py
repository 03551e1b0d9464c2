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
* ``fallback_plane_depth``: the plane depth to use for a path without a depth estimate: the
  given depth, pushed beyond the path's furthest forward reach (a plane the camera drives
  through leaves nothing to see).
* ``fill_invalid``: push-pull hole filling (valid-weighted image pyramid), for pixels no
  method has data for.
* ``composite``: warped image where valid, a fallback image elsewhere, blended over a
  feathered band along the edge of the valid region.
"""
import functools

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
    one pixel the nearest to the target camera wins. Returns (warped (h, w, 3)
    uint8, zeros where nothing landed; valid (h, w) bool: pixels that received a sample).
    """
    image = np.asarray(image)
    H, W = image.shape[:2]
    size = (H, W) if size is None else tuple(size)
    h, w = size
    R, t = _check_pose(rel_c2w)
    K_source = np.asarray(K_source, dtype=np.float64)
    K_target = K_source if K_target is None else np.asarray(K_target, dtype=np.float64)
    depth = np.asarray(depth, dtype=np.float64)
    if depth.shape != (H, W):
        raise ValueError(f"depth must be {(H, W)}, got {depth.shape}")
    inverse = np.where(np.isfinite(depth) & (depth > 0), 1.0 / np.where(depth > 0, depth, 1.0),
                       0.0).reshape(-1)
    rays = _pixel_rays(H, W, tuple(K_source.ravel()))  # (3, H * W), z = 1
    # target camera coordinates divided by the source depth: R^T (ray - t / z)
    q = _times(R.T, rays - np.outer(t, inverse))
    colour = image.reshape(-1, 3)
    front = q[2] > 1e-9
    if not front.all():
        q, inverse, colour = q[:, front], inverse[front], colour[front]
    p = _times(K_target, q / q[2])
    z = q[2] / np.maximum(inverse, 1e-300)  # target z-depth (huge for points at infinity)
    warped = np.zeros((h * w, 3), np.uint8)
    valid = np.zeros(h * w, bool)
    # first the pixel each point rounds to
    xr, yr = np.round(p[0]).astype(np.int64), np.round(p[1]).astype(np.int64)
    inside = np.flatnonzero((xr >= 0) & (xr < w) & (yr >= 0) & (yr < h))
    pixels, winners = _nearest_per_pixel(yr[inside] * w + xr[inside], inside, z, h * w)
    warped[pixels] = colour[winners]
    valid[pixels] = True
    # then, for the cracks only, the 4 pixels around each point: only points next to one
    # (a crack within the 3 x 3 pixels around the pixel a point rounds to) can fill it
    hole = cv2.dilate((~valid).reshape(h, w).astype(np.uint8), np.ones((3, 3), np.uint8))
    near = np.flatnonzero(hole[np.clip(yr, 0, h - 1), np.clip(xr, 0, w - 1)])
    if len(near):
        x0 = np.floor(p[0, near]).astype(np.int64)
        y0 = np.floor(p[1, near]).astype(np.int64)
        targets, sources = [], []
        for dx in (0, 1):
            for dy in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                ok = np.flatnonzero((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h))
                pixel = yi[ok] * w + xi[ok]
                keep = ~valid[pixel]
                targets.append(pixel[keep])
                sources.append(near[ok[keep]])
        pixels, winners = _nearest_per_pixel(np.concatenate(targets), np.concatenate(sources),
                                             z, h * w)
        warped[pixels] = colour[winners]
        valid[pixels] = True
    return warped.reshape(h, w, 3), valid.reshape(h, w)


def _times(M, X):
    """M (3, 3) @ X (3, N), row by row without BLAS: a BLAS matrix product this long wakes
    OpenBLAS's thread pool, which on a busy 2-core machine made the warp 1.5x slower
    (measured)."""
    return M[:, :1] * X[0] + M[:, 1:2] * X[1] + M[:, 2:] * X[2]


@functools.lru_cache(maxsize=8)
def _pixel_rays(height, width, K_values):
    """K^-1 (u, v, 1) of every pixel, row-major: (3, height * width) float64, read-only
    (cached: a path warps one source into T cameras)."""
    v, u = np.mgrid[:height, :width].reshape(2, -1).astype(np.float64)
    K = np.array(K_values, dtype=np.float64).reshape(3, 3)
    rays = np.linalg.inv(K) @ np.stack([u, v, np.ones_like(u)])
    rays.flags.writeable = False
    return rays


def _nearest_per_pixel(targets, sources, z, count):
    """z-buffer: for each pixel (< count) some sample lands on (``targets`` (M,) pixel index
    of sample ``sources`` (M,), whose depth is ``z[sources]``), the sample of least depth,
    ties to the lowest source index. Returns (pixels (n,), winning sources (n,)). Unbuffered
    ``np.minimum.at`` instead of sorting: linear in M."""
    depth = z[sources]
    nearest = np.full(count, np.inf)
    np.minimum.at(nearest, targets, depth)
    best = depth == nearest[targets]
    none = np.iinfo(np.int64).max
    winner = np.full(count, none, np.int64)
    np.minimum.at(winner, targets[best], sources[best])
    pixels = np.flatnonzero(winner != none)
    return pixels, winner[pixels]


def fill_invalid(image, valid, levels=12):
    """``image`` (h, w, 3) uint8 with the pixels where ``valid`` is False filled from the
    valid ones (push-pull: valid-weighted averages over an image pyramid, the finest level
    that has data wins). Valid pixels are kept; no valid pixel at all: returned as is."""
    valid = np.asarray(valid, bool)
    if valid.all() or not valid.any():
        return np.asarray(image).copy()
    weight = valid.astype(np.float32)
    colour = np.asarray(image, np.float32) * weight[..., None]
    pyramid = [(colour, weight)]
    for _ in range(levels):
        c, wgt = pyramid[-1]
        if min(wgt.shape) < 2:
            break
        pyramid.append((cv2.pyrDown(c), cv2.pyrDown(wgt)))
    c, wgt = pyramid[-1]
    filled = c / np.maximum(wgt, 1e-6)[..., None]
    for c, wgt in reversed(pyramid[:-1]):
        up = cv2.resize(filled, (wgt.shape[1], wgt.shape[0]), interpolation=cv2.INTER_LINEAR)
        known = np.clip(wgt, 0.0, 1.0)[..., None]
        filled = c / np.maximum(wgt, 1e-6)[..., None] * known + up * (1 - known)
    out = np.where(valid[..., None], image, np.clip(np.round(filled), 0, 255))
    return out.astype(np.uint8)


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
    fallback = np.asarray(fallback)
    if fallback_valid is None:
        base = fallback
    else:
        fallback_valid = np.asarray(fallback_valid, bool)
        base = np.where(fallback_valid[..., None], fallback,
                        np.where(valid[..., None], warped, 0)).astype(np.uint8)
        base = fill_invalid(base, fallback_valid | valid)
    weight = feather_weights(valid, feather_px)[..., None]
    out = weight * np.asarray(warped, np.float32) + (1 - weight) * base.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
