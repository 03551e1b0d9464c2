"""The view_predictor's parameters: declared once at start, one typed settings object.

``declare_settings(node)`` declares every parameter of the node, in the order of its
interface (names, defaults, ranges and descriptions: docs/nodes.md,
config/view_predictor.yaml) and returns a ``PredictorSettings``; a value the node cannot run
with raises ``ParameterError`` (``rap_ros.nodes.params``). Units: seconds, metres, pixels,
degrees for ``fov_deg``; frames follow REP-103/REP-105 (base_frame with body axes x forward,
z up; camera_frame with OpenCV optical axes x right, y down, z forward). ``T_base_camera`` is
the camera_mount_xyz/rpy mount, a 4x4 pose of the optical frame in base_frame. All
parameters are read-only after start.
"""
from dataclasses import dataclass

import numpy as np

from rap_ros.nodes.params import (ParameterError, declare, declare_model_parameters,
                                  declare_mount_parameters)
from rap_ros.pipeline.views import PREVIEW_MODES

# The plane depth of the warp and where the warp's depth comes from, chosen by
# benchmarks/results/previews.md.
WARP_DEPTH_DEFAULT = 5.0
DEPTH_SOURCES = ("map", "plane")
DEPTH_SOURCE_DEFAULT = "map"


@dataclass(frozen=True, eq=False)
class PredictorSettings:
    """The view_predictor's parameters (see ``declare_settings`` for each meaning)."""
    model: dict                 # backend, steps, sampler, seed (params.declare_model_parameters)
    fov_deg: float              # deg, horizontal
    qos_reliability: str        # best_effort, reliable
    camera_frame: str           # never empty
    base_frame: str
    T_base_camera: np.ndarray   # (4, 4) optical frame in base_frame, metres
    use_tf: bool
    consistency: bool
    max_plan_poses: int
    max_preview_paths: int
    preview_chunk_size: int
    max_image_pixels: int       # 0: no limit
    rectified: bool             # image_rect: camera_info P, no undistortion
    preview: str                # one of PREVIEW_MODES
    warp_depth: float           # m; 0: rotation only
    depth_source: str           # one of DEPTH_SOURCES
    map_points_max_age: float   # s of stamps
    map_points_min: int
    max_preview_pixels: int     # 0: no limit
    preview_workers: int        # threads warping and compositing the paths of a call
    default_speed: float        # m/s
    diagnostics_period: float   # s


def declare_settings(node):
    """Declare the view_predictor's parameters on ``node`` -> PredictorSettings."""
    values = {"model": declare_model_parameters(node, "predict")}

    def add(name, *args, **kwargs):
        values[name] = declare(node, name, *args, **kwargs)

    add("fov_deg", 60.0, "Horizontal field of view (deg) assumed when neither camera_info nor "
        "estimated_camera_info has arrived.", 1.0, 179.0)
    add("qos_reliability", "best_effort", "Reliability of the image subscription (best_effort = "
        "sensor-data QoS; camera_info is always best effort).",
        choices=("best_effort", "reliable"))
    add("camera_frame", "camera_optical_frame", "Camera optical frame; frame_id of "
        "predicted_image.")
    add("base_frame", "", "Frame whose poses the plan holds; empty: the camera's body frame (the "
        "mount parameters still apply).")
    values["T_base_camera"] = declare_mount_parameters(node)
    add("use_tf", True, "Look the current camera pose up in tf2 (when tf2_ros is importable); "
        "otherwise use the odometry topic.")
    add("consistency", False, "Score predictions by closed-loop consistency (2 extra model jobs: "
        "about 3x the time); off: scores are empty.")
    add("max_plan_poses", 10000, "Plans with more poses are refused (with an error).", 2, 1000000)
    add("max_preview_paths", 64, "preview_paths requests with more candidate paths are refused "
        "(success false, the message says why).", 1, 100000)
    add("preview_chunk_size", 8, "Candidate paths per model call in preview_paths: the peak "
        "memory grows with it (about 20 MB a path), the speed hardly.", 1, 1024)
    add("max_image_pixels", 3840 * 2160, "Images (and goal images) with more pixels are "
        "downscaled on arrival, aspect kept, and counted on /diagnostics; 0: no limit.",
        0, 10 ** 9)
    add("rectified", False, "The images are rectified (image_rect): use camera_info P and no "
        "undistortion; false: K and D of camera_info (as trajectory_estimator's).")
    add("preview", "warp+model", "Preview frames: warp+model (the source warped into each camera "
        "where the warp has data, the model's frame elsewhere, full frame), guided (as "
        "warp+model, the model's frames generated from the warp), warp (the warp alone) or model "
        "(the model's frames of the centred square).", choices=PREVIEW_MODES)
    add("warp_depth", WARP_DEPTH_DEFAULT, "Depth (m) of the fronto-parallel plane the warp "
        "assumes (translation included; pushed beyond 3x the path's forward reach); 0: rotation "
        "only (the scene at infinity). benchmarks/results/previews.md compares them.", 0.0, 1e6)
    add("depth_source", DEPTH_SOURCE_DEFAULT, "Depth of the warp: map (map_points densified, the "
        "plane without a usable cloud) or plane (warp_depth).", choices=DEPTH_SOURCES)
    add("map_points_max_age", 10.0, "map_points whose stamp is more than this many seconds before "
        "the source image's are not used (the plane is).", 0.0, 1e6)
    add("map_points_min", 20, "Fewest map_points in the source camera's view for a map depth; "
        "fewer: the plane.", 3, 1000000)
    add("max_preview_pixels", 320 * 240, "Warp-mode previews are at the source's size, downscaled "
        "(aspect kept) to at most this many pixels; 0: no limit.", 0, 10 ** 9)
    add("preview_workers", 2, "Threads that warp and composite the candidate paths of a call "
        "side by side (the previews do not depend on it); 1: one path after the other.", 1, 64)
    add("default_speed", 0.5, "Speed (m/s) used to time unstamped plans.", 1e-3, 100.0)
    add("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", 0.05, 60.0)
    if not values["camera_frame"]:
        raise ParameterError("parameter 'camera_frame' must not be empty")
    return PredictorSettings(**values)
