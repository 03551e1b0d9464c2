"""The trajectory_estimator's parameters: declared once at start, one typed settings object.

``declare_settings(node)`` declares every parameter of the node (names, defaults, ranges and
descriptions are the node's interface: docs/nodes.md, config/trajectory_estimator.yaml) and
returns an ``EstimatorSettings``; a value the node cannot run with raises ``ParameterError``
(``rap_ros.nodes.params``). Units: seconds, metres, pixels; frames follow REP-103/REP-105
(odom_frame, base_frame with body axes x forward, z up; camera_frame with OpenCV optical axes
x right, y down, z forward). ``T_base_camera_parameters`` is the camera_mount_xyz/rpy mount,
a 4x4 pose of the optical frame in base_frame. All parameters are read-only after start but
``scale``, which the node applies through its ``ScaleAnchor``: the settings keep the value
it started with.
"""
from dataclasses import dataclass

import numpy as np

from rap_ros.io.camera_frames import DEFAULT_MAX_IMAGE_PIXELS
from rap_ros.nodes.params import (ParameterError, declare, declare_model_parameters,
                                  declare_mount_parameters)
from rap_ros.odometry import OdometryConfig
from rap_ros.pipeline.streaming import DEFAULT_STRIDE

METHODS = ("rap", "geometry", "model")


@dataclass(frozen=True, eq=False)
class EstimatorSettings:
    """The trajectory_estimator's parameters (see ``declare_settings`` for each meaning)."""
    method: str                 # one of METHODS
    model: dict                 # backend, steps, sampler, seed (params.declare_model_parameters)
    samples: int
    refine: bool
    ba_fallback: str
    klt_predict: str
    model_intrinsics: bool
    image_transport: str        # raw, compressed
    qos_reliability: str        # best_effort, reliable
    qos_depth: int
    queue_size: int
    frame_interval: float       # s; the method's default already applied (never negative)
    window_stride: int
    camera_info_timeout: float  # s of frame stamps
    rectified: bool
    max_image_pixels: int
    odom_frame: str
    base_frame: str
    camera_frame: str
    mount_source: str           # tf, parameters
    mount_timeout: float        # s of frame stamps
    T_base_camera_parameters: np.ndarray  # (4, 4) optical frame in base_frame, metres
    publish_mount_tf: bool
    scale: float                # metres per odometry unit at start
    publish_tf: bool
    publish_map_points: bool
    map_points_max: int
    max_path_length: int
    consistency_every: int
    diagnostics_period: float   # s


def declare_settings(node):
    """Declare the trajectory_estimator's parameters on ``node`` -> EstimatorSettings."""
    method = declare(node, "method", "rap",
                     "rap: odometry core + the model as motion prior; geometry: "
                     "the core alone; model: the model's windowed poses.",
                     choices=METHODS)
    model = declare_model_parameters(node, "estimate")
    samples = declare(node, "samples", 1,
                      "Diffusion samples per model window; their spread weighs the "
                      "model's factors (rap) or gives the covariance (model).", 1, 32)
    refine = declare(node, "refine", True,
                     "model: refine each window's rotations and directions of travel "
                     "against optical flow (rap_ros.pipeline.refine).")
    ba_fallback = declare(node, "ba_fallback", OdometryConfig.ba_fallback,
                          "rap, geometry: how a keyframe's bundle adjustment solves a "
                          "window iSAM2's Gauss-Newton step cannot: lm (Levenberg-"
                          "Marquardt: more accurate, up to ~0.1-0.3 s) or dogleg "
                          "(a trust region: 3-4x shorter; benchmarks/results/"
                          "odometry_ba_fallback.md).", choices=("lm", "dogleg"))
    klt_predict = declare(node, "klt_predict", OdometryConfig.klt_predict,
                          "rap, geometry: where each KLT track starts: map (where the "
                          "motion model projects its landmark: the more accurate, "
                          "more keyframes), rotation, or previous (where it was: fewer "
                          "keyframes, lower latency; docs/evaluation.md).",
                          choices=("map", "rotation", "previous"))
    model_intrinsics = declare(node, "model_intrinsics", OdometryConfig.model_intrinsics,
                               "rap without camera_info: start from the model's intrinsics "
                               "(its first window's frames wait for them) instead of a 60 "
                               "deg field of view alone (the guess stays a second start): the "
                               "focal ends 8.4 % off (median) against 14.2 % "
                               "(benchmarks/results/odometry_no_camera_info_rap_defaults.md).")
    image_transport = declare(node, "image_transport", "raw",
                              "raw: subscribe 'image' (sensor_msgs/Image); "
                              "compressed: 'image/compressed' (CompressedImage).",
                              choices=("raw", "compressed"))
    qos_reliability = declare(node, "qos_reliability", "best_effort",
                              "Reliability of the image subscription "
                              "(best_effort = sensor-data QoS; camera_info is "
                              "always best effort).",
                              choices=("best_effort", "reliable"))
    qos_depth = declare(node, "qos_depth", 5, "Queue depth of the image subscription "
                        "(keep last).", 1, 100)
    queue_size = declare(node, "queue_size", 2,
                         "rap, geometry: decoded frames waiting for the tracker; "
                         "when full the oldest is dropped and counted.", 1, 100)
    frame_interval = declare(node, "frame_interval", -1.0,
                             "Take at most one frame every frame_interval seconds "
                             "(header stamps); 0 takes every frame; negative: the "
                             "method's default (rap, geometry 0; model 0.1, its "
                             "training rate).", -1.0, 10.0)
    if frame_interval < 0:
        frame_interval = 0.1 if method == "model" else 0.0
    window_stride = declare(node, "window_stride", DEFAULT_STRIDE,
                            "model: frames between the starts of consecutive windows "
                            "(1 .. T-1, T the model's window length).", 1, 1000)
    camera_info_timeout = declare(node, "camera_info_timeout", 1.0,
                                  "rap, geometry: seconds of frames to wait for "
                                  "camera_info at start before going on without "
                                  "(then a 60 deg field of view, self-calibrated; rap "
                                  "with model_intrinsics: the model's).", 0.0, 3600.0)
    rectified = declare(node, "rectified", False,
                        "The images are rectified (image_rect): use camera_info P "
                        "and no undistortion; false: K and D of camera_info.")
    max_image_pixels = declare(node, "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS,
                               "Larger images are downscaled on arrival (counted), "
                               "intrinsics with them.", 64 * 64, 100_000_000)
    odom_frame = declare(node, "odom_frame", "odom",
                         "Fixed frame of the estimate (REP-105 odom).")
    base_frame = declare(node, "base_frame", "base_link",
                         "Robot base frame: the node publishes odom -> base_frame. "
                         "Empty: odom -> the camera frame itself.")
    camera_frame = declare(node, "camera_frame", "",
                           "Camera optical frame (x right, y down, z forward); "
                           "empty: the images' header.frame_id.")
    mount_source = declare(node, "mount_source", "tf",
                           "tf: the base -> camera mount from /tf_static and /tf "
                           "(URDF); parameters: camera_mount_xyz/rpy.",
                           choices=("tf", "parameters"))
    mount_timeout = declare(node, "mount_timeout", 2.0,
                            "Seconds of frames to wait for the mount on /tf before "
                            "using the mount parameters (with a warning).", 0.0, 3600.0)
    T_base_camera_parameters = declare_mount_parameters(node)
    publish_mount_tf = declare(node, "publish_mount_tf", False,
                               "Publish base_frame -> camera_frame from the mount "
                               "parameters on /tf_static (only without a URDF), once "
                               "mount_timeout s of frames found no parent of the camera "
                               "frame. With mount_source tf, rap and geometry hold the "
                               "frames of that wait (at most queue_size) and track them "
                               "once it is published.")
    scale = declare(node, "scale", 1.0,
                    "Metres per odometry unit until wheel odometry gives the scale "
                    "(settable at run time). Monocular units: the first "
                    "initialisation baseline (rap, geometry), the first window's "
                    "mean camera displacement (model).", 1e-6, 1e6, read_only=False)
    publish_tf = declare(node, "publish_tf", True, "Publish the pose on /tf.")
    publish_map_points = declare(node, "publish_map_points", True,
                                 "rap, geometry: publish the local map's landmarks "
                                 "on map_points (PointCloud2, odom_frame, metres) "
                                 "after each keyframe.")
    map_points_max = declare(node, "map_points_max", 2000,
                             "Most landmarks per map_points message (evenly "
                             "thinned beyond).", 1, 1000000)
    max_path_length = declare(node, "max_path_length", 10000,
                              "Poses kept in the published path (the latest).",
                              1, 1000000)
    consistency_every = declare(node, "consistency_every", 0,
                                "model: closed-loop consistency check on every N-th "
                                "window (3 extra model jobs); 0 disables.", 0, 100000)
    diagnostics_period = declare(node, "diagnostics_period", 1.0,
                                 "Seconds between /diagnostics messages.", 0.05, 60.0)
    if not odom_frame:
        raise ParameterError("parameter 'odom_frame' must not be empty")
    if odom_frame in (base_frame, camera_frame):
        raise ParameterError(f"odom_frame '{odom_frame}' is also the published child")
    if publish_mount_tf and not (base_frame and camera_frame):
        raise ParameterError("publish_mount_tf needs base_frame and camera_frame set")
    return EstimatorSettings(
        method=method, model=model, samples=samples, refine=refine, ba_fallback=ba_fallback,
        klt_predict=klt_predict, model_intrinsics=model_intrinsics,
        image_transport=image_transport, qos_reliability=qos_reliability,
        qos_depth=qos_depth, queue_size=queue_size, frame_interval=frame_interval,
        window_stride=window_stride, camera_info_timeout=camera_info_timeout, rectified=rectified,
        max_image_pixels=max_image_pixels, odom_frame=odom_frame, base_frame=base_frame,
        camera_frame=camera_frame, mount_source=mount_source, mount_timeout=mount_timeout,
        T_base_camera_parameters=T_base_camera_parameters, publish_mount_tf=publish_mount_tf,
        scale=scale, publish_tf=publish_tf, publish_map_points=publish_map_points,
        map_points_max=map_points_max, max_path_length=max_path_length,
        consistency_every=consistency_every, diagnostics_period=diagnostics_period)
