"""The depth of the view_predictor's warps: map_points densified, or a fronto-parallel plane.

``WarpDepths.depths`` answers, for one request (the source image, its intrinsics and the
camera-to-world 4x4 poses of P paths in the plan's frame, each starting at the current
camera), the depth ``ViewPipeline`` warps with and what it is, for /diagnostics:

* ``depth_source`` "map": the latest map_points (metres, in their header's frame, taken into
  the plan's frame by ``lookup`` when the frames differ) densified into a z-depth map of the
  current camera at the preview size (``rap_ros.pipeline.depth``, OpenCV camera axes), the
  plane when there is no usable cloud (none, older than ``map_points_max_age`` seconds
  before the source image, fewer than ``map_points_min`` points in view, a frame ``lookup``
  cannot relate to the plan's);
* "plane": a fronto-parallel plane at ``warp_depth`` metres, pushed beyond the path's reach
  (``rap_ros.pipeline.warp.fallback_plane_depth``); 0: rotation only (None).

Depths are divided by each path's scale, the model's normalised unit
(``rap_ros.geometry.cameras.relative_to_first``). No rclpy: ``lookup(target, source)`` gives
T_target_source (4, 4) or None.
"""
import numpy as np

from rap_ros.geometry.cameras import invert_pose, relative_to_first, scale_intrinsics
from rap_ros.pipeline.depth import depth_from_points, points_in_view
from rap_ros.pipeline.warp import fallback_plane_depth


def _scales(worlds):
    """(rel poses, scale) of each path's poses relative to its first."""
    return [relative_to_first(invert_pose(world[0]) @ world) for world in worlds]


class WarpDepths:
    """The warp's depth per ``settings`` (PredictorSettings: warp_depth, depth_source,
    map_points_max_age, map_points_min). ``needs_depth``: False when the previews warp
    nothing (model previews of an unconditioned model); ``preview_size(H, W)``: the
    previews' (h, w); ``latest_map()``: (frame_id, stamp seconds, points) or None."""

    def __init__(self, settings, *, needs_depth, preview_size, latest_map, lookup):
        self.settings, self.needs_depth = settings, needs_depth
        self._preview_size, self._latest_map, self._lookup = preview_size, latest_map, lookup

    def plane_depths(self, worlds):
        """Depth of the warp's plane in each path's normalised units ((P,), None for
        rotation only): ``warp_depth`` metres over the path's scale, pushed beyond the
        path's reach (``warp.fallback_plane_depth``)."""
        warp_depth = self.settings.warp_depth
        if warp_depth <= 0:
            return None
        return np.array([fallback_plane_depth(rel, warp_depth / scale)
                         for rel, scale in _scales(worlds)])

    def map_depth(self, source, K, T_now, plan_frame):
        """z-depth (h, w) float32 in metres of the current camera T_now (plan frame) at the
        preview size from map_points, and what was used; (None, why not) when there is no
        usable cloud."""
        cloud = self._latest_map()
        if cloud is None:
            return None, "no map_points"
        frame, seconds, points = cloud
        max_age, min_points = self.settings.map_points_max_age, self.settings.map_points_min
        age = source[0] - seconds
        if age > max_age:
            return None, (f"map_points {age:.1f} s older than the image (map_points_max_age "
                          f"{max_age:g})")
        if frame and plan_frame and frame != plan_frame:
            T = self._lookup(plan_frame, frame)
            if T is None:
                return None, f"map_points in '{frame}', the plan in '{plan_frame}', no tf2"
            points = points @ T[:3, :3].T + T[:3, 3]
        H, W = source[2].shape[:2]
        h, w = self._preview_size(H, W)
        K_preview = scale_intrinsics(K, w / W, h / H)
        depth = depth_from_points(points, T_now, K_preview, (h, w), min_points=min_points)
        count = points_in_view(points, T_now, K_preview, (h, w))
        if depth is None:
            return None, f"{count} map points in view (map_points_min {min_points})"
        return depth, f"map ({count} points in view)"

    def depths(self, source, K, worlds, plan_frame):
        """The warp's depth for ViewPipeline (a map (P, h, w) or plane depths (P,), each in
        its path's normalised units; None: rotation only) and what it is."""
        if not self.needs_depth:
            return None, "none (model previews)"
        planes = self.plane_depths(worlds)
        plane = (f"plane {self.settings.warp_depth:g} m" if planes is not None
                 else "rotation only")
        if self.settings.depth_source != "map":
            return planes, plane
        depth, used = self.map_depth(source, K, worlds[0][0], plan_frame)
        if depth is None:
            return planes, f"{plane} ({used})"
        scales = np.array([scale for _, scale in _scales(worlds)], np.float32)
        return depth[None] / scales[:, None, None], used
