"""Dense depth of the source camera from sparse 3-D points (the odometry's local map).

The view job's warps need the depth of the source image (``warp.forward_warp_depth``); the
odometry knows the positions of a few hundred landmarks (``VisualOdometry.map_points``).
``depth_from_points`` turns them into a dense z-depth map of the source camera, or None when
too few of them are in view, so the caller falls back to the fronto-parallel plane.

Conventions (as ``rap_ros.pipeline.warp``): OpenCV camera axes (x right, y down, z forward);
``c2w`` a camera-to-world 4x4 pose in the points' frame and units; K (3, 3) pixels with pixel
centres at integer coordinates; depth is z-depth, the point's z in the camera frame, in the
units of the points and the pose (metres in the node, path units in the benchmarks).

How (``densify``): the points are projected; those in front of the camera (z > 0) whose
projection lies in the image count as "in view" (at least ``min_points`` are needed), and
those up to ``margin`` of the image size outside it help the interpolation reach the borders.
Points whose depth disagrees with their image neighbours by more than a factor
``outlier_factor`` (the median of their ``neighbours`` nearest, in the image) are dropped:
a bad triangulation would otherwise spread over its whole Delaunay triangle. Inverse depth is
then interpolated linearly over the Delaunay triangulation of the projections
(``matplotlib.tri``: what ``scipy.interpolate.griddata`` computes, without its stalls, see
``_linear_on_triangles``; inverse depth is affine in the pixel coordinates on a plane, so any
plane, slanted or not, is recovered exactly inside the points' hull), taken from the nearest
point outside the hull (``scipy.spatial.cKDTree``), on a grid of at most ``grid_side``
pixels on the longer side resized (bilinear) to the image, and clamped to the
``percentiles`` range of the in-view depths.
"""
import cv2
import numpy as np
from scipy.spatial import cKDTree

MIN_POINTS = 20          # fewer in view: no depth (the caller falls back to the plane)
PERCENTILES = (1.0, 99.0)  # the depth map is clamped to this range of the in-view depths
GRID_SIDE = 160          # interpolation grid, longer side (pixels)
MARGIN = 0.25            # points this far outside the image (fraction of its size) help
OUTLIER_FACTOR = 3.0     # a point deeper / shallower than this x its neighbours' median
NEIGHBOURS = 8


def project_points(points, c2w, K):
    """World points (N, 3) -> (uv (N, 2) pixel coordinates, z (N,) z-depth in the camera
    ``c2w`` (4, 4) camera-to-world, same frame and units as the points). Points at or behind
    the camera (z <= 0) get uv NaN."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    c2w = np.asarray(c2w, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    camera = (points - c2w[:3, 3]) @ c2w[:3, :3]  # R^T (X - t), row-wise
    z = camera[:, 2]
    front = z > 0
    uv = np.full((len(points), 2), np.nan)
    pixels = camera[front] @ K.T
    uv[front] = pixels[:, :2] / pixels[:, 2:3]
    return uv, z


def in_view(uv, z, size, margin=0.0):
    """Mask (N,) of projections in front of the camera and inside the image of ``size``
    (height, width), widened by ``margin`` x its size on every side."""
    h, w = size
    u, v = uv[:, 0], uv[:, 1]
    with np.errstate(invalid="ignore"):
        return ((z > 0) & np.isfinite(u) & (u >= -0.5 - margin * w) & (u <= w - 0.5 + margin * w)
                & (v >= -0.5 - margin * h) & (v <= h - 0.5 + margin * h))


def points_in_view(points, c2w, K, size):
    """How many of ``points`` (N, 3) project into the image of ``size`` (height, width) of
    the camera c2w with intrinsics K (in front of it)."""
    if len(points) == 0:
        return 0
    uv, z = project_points(points, c2w, K)
    return int(np.count_nonzero(in_view(uv, z, size)))


def _reject_outliers(uv, z, factor, neighbours):
    """Mask of the points whose depth is within ``factor`` of the median depth of their
    ``neighbours`` nearest projections (image distance)."""
    k = min(neighbours + 1, len(z))
    if k < 4 or factor <= 1.0:
        return np.ones(len(z), bool)
    _, index = cKDTree(uv).query(uv, k=k)
    local = np.median(np.log(z)[index[:, 1:]], axis=1)
    return np.abs(np.log(z) - local) <= np.log(factor)


def _linear_on_triangles(uv, values, grid_u, grid_v):
    """``values`` (M,) at ``uv`` (M, 2) interpolated linearly over the Delaunay triangles of
    ``uv`` at the grid ``grid_u`` (gw,) x ``grid_v`` (gh,) of pixel coordinates: (gh, gw)
    float64, NaN outside the triangles (none when the points span no triangle).

    ``matplotlib.tri`` (a runtime dependency already; imported here, on first use): the
    values of ``scipy.interpolate.griddata(method="linear")`` (checked to 1e-13), without
    the LAPACK call of scipy's barycentric transforms, whose OpenBLAS thread pool stalled
    it for up to 1.8 s on a busy 2-core machine (measured)."""
    import matplotlib.tri as mtri

    u, v = np.meshgrid(grid_u, grid_v)
    try:
        triangulation = mtri.Triangulation(uv[:, 0], uv[:, 1])
        out = mtri.LinearTriInterpolator(triangulation, values)(u, v)
    except (ValueError, RuntimeError):  # fewer than 3 points, all on a line, duplicates
        return np.full(u.shape, np.nan)
    return np.ma.filled(out.astype(np.float64), np.nan)


def densify(uv, z, size, clamp, grid_side=GRID_SIDE):
    """Dense z-depth (height, width) float32 from depths ``z`` (M,) > 0 at pixel positions
    ``uv`` (M, 2): inverse depth interpolated linearly on their Delaunay triangulation,
    nearest outside their hull, on a grid of at most ``grid_side`` pixels on the longer side
    resized to ``size``, clamped to ``clamp`` (low, high)."""
    h, w = size
    factor = min(1.0, grid_side / max(h, w))
    gh, gw = max(2, round(h * factor)), max(2, round(w * factor))
    # grid pixel j is image coordinate (j + 0.5) * w / gw - 0.5 (cv2.resize's sampling),
    # so resizing the grid back reproduces an affine inverse depth exactly inside
    gu = (np.arange(gw) + 0.5) * (w / gw) - 0.5
    gv = (np.arange(gh) + 0.5) * (h / gh) - 0.5
    inverse = 1.0 / z
    values = _linear_on_triangles(uv, inverse, gu, gv).reshape(-1)
    missing = np.flatnonzero(~np.isfinite(values))
    if len(missing):  # outside the hull: the nearest point's
        grid = np.stack([gu[missing % gw], gv[missing // gw]], axis=-1)
        values[missing] = inverse[cKDTree(uv).query(grid)[1]]
    coarse = values.reshape(gh, gw).astype(np.float32)
    if (gh, gw) != (h, w):
        coarse = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    low, high = clamp
    with np.errstate(divide="ignore"):
        depth = 1.0 / np.maximum(coarse, 1.0 / high)
    return np.clip(depth, low, high).astype(np.float32)


def depth_from_points(points, c2w, K, size, min_points=MIN_POINTS, percentiles=PERCENTILES,
                      grid_side=GRID_SIDE, margin=MARGIN, outlier_factor=OUTLIER_FACTOR,
                      neighbours=NEIGHBOURS):
    """Dense z-depth map (height, width) float32 of the camera ``c2w`` from sparse points,
    or None when fewer than ``min_points`` of them are in view (the caller falls back).

    points: (N, 3) in the frame and units of ``c2w`` (4, 4, camera-to-world, OpenCV axes);
    K: (3, 3) pixels of an image of ``size`` (height, width). The depth is the z coordinate
    in the camera frame, in the points' units, clamped to the ``percentiles`` range of the
    in-view points' depths (see the module docstring for the densification).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) < min_points:
        return None
    uv, z = project_points(points, c2w, K)
    near = in_view(uv, z, size, margin)
    uv, z = uv[near], z[near]
    inside = in_view(uv, z, size)
    if np.count_nonzero(inside) < min_points:
        return None
    keep = _reject_outliers(uv, z, outlier_factor, neighbours)
    if np.count_nonzero(keep & inside) < min_points:
        return None
    uv, z, inside = uv[keep], z[keep], inside[keep]
    low, high = np.percentile(z[inside], percentiles)
    return densify(uv, z, size, (float(low), float(max(high, low))), grid_side)
