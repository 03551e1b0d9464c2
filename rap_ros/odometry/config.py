"""Tuning of the odometry core (`VisualOdometry`), one dataclass with named defaults.

Units: pixels of the image as passed in, degrees where the name says ``deg``, frames for
counts of frames. Lengths in pixels that scale with the image are given as a fraction of the
image diagonal (``*_frac``) so one default serves 320x240 and 1226x370 alike.
"""
from dataclasses import dataclass


@dataclass
class OdometryConfig:
    # -- front end ------------------------------------------------------------------------
    max_features: int = 300          # live KLT tracks kept
    min_features: int = 150          # fewer live tracks: detect more at the next keyframe/frame
    quality_level: float = 0.01      # Shi-Tomasi quality (relative to the image's best corner)
    corner_noise_ratio: float = 2.0  # and a corner_strength at least this many times the
    #                                  frame's noise variance (frontend.noise_sigma): corners
    #                                  of sensor noise alone (a bare wall) score at most 1
    #                                  times it (median 0.6); the 5 % weakest corners of
    #                                  motion-blurred synthetic frames 1.7 (9 % below 2), of
    #                                  sharp ones 13-17, of KITTI over 100
    min_distance_frac: float = 0.012  # corner spacing, fraction of the diagonal
    grid_cells: int = 48             # once tracking, new corners are taken round the cells of
    #                                  a grid of about this many (the fewest-held cells first;
    #                                  frontend.Tracker._spread); 0: the strongest anywhere.
    #                                  The initialisation takes the strongest (spread, a turn
    #                                  in place initialised 15 frames later).
    #                                  benchmarks/results/odometry_frontend_robustness_*.md
    lk_window: int = 0               # KLT window side, pixels; 0: 15 for images at least
    #                                  320 px wide, else 21 (measured: 15 was faster and more
    #                                  accurate over 11 sequences at 320-1226 px, 21 better on
    #                                  a 160x120 drive; benchmarks/results/odometry.md)
    lk_levels: int = 3               # KLT pyramid levels
    fb_threshold: float = 1.0        # forward-backward error allowed, pixels
    klt_predict: str = "map"         # where each KLT track starts (``Tracker.track``):
    #                                  "previous" (where the point was; before session 11;
    #                                  not "off", which a ROS parameter reads as false), "rotation"
    #                                  (moved by the homography of the constant-velocity
    #                                  rotation), "map" (a map point's landmark projected into
    #                                  the constant-velocity pose; others as "rotation");
    #                                  benchmarks/results/odometry_klt_predict_*.md
    normalise_mean: float = 128.0    # image normalisation target (against exposure jumps)
    normalise_std: float = 48.0
    moving_mask_frac: float = 0.0    # no new corners within this fraction of the diagonal of
    #                                  tracks just dropped as moving (0: off). 0.06 on the
    #                                  camera-effects clips: moving object 1.91 -> 1.26 %, all
    #                                  1.15x better; on the standard set 0.96x (4 % worse):
    #                                  off by default (benchmarks/results/odometry_moving_mask_*)
    moving_mask_cluster: int = 1     # mask only around a dropped track with at least this
    #                                  many dropped tracks (itself included) within the mask
    #                                  radius: an object moving on its own drops tracks side by
    #                                  side, noise and occlusion edges one here and there.
    #                                  3 with the 0.06 mask: 1.05x [0.93, 1.22] the defaults on
    #                                  the camera-effects clips (odometry_moving_mask_clustered_*)
    # -- pose from the map ----------------------------------------------------------------
    epipolar_px: float = 2.0         # after PnP, tracks without a landmark farther than this
    #                                  from the epipolar line of where the last keyframe saw
    #                                  them are dropped (they move on their own); 0: off.
    #                                  Only with camera_info or a self-calibrated focal
    min_pnp_points: int = 12         # fewer map points in view: fall back
    pnp_reprojection_px: float = 2.0  # PnP RANSAC inlier threshold
    pnp_min_inlier_ratio: float = 0.5
    # -- initialisation -------------------------------------------------------------------
    init_parallax_frac: float = 0.015  # rotation-compensated median parallax to initialise
    init_min_points: int = 40        # triangulated points needed
    init_min_angle_deg: float = 1.0  # median triangulation angle needed
    init_renew_ratio: float = 0.5    # renew the reference frame while initialising when it
    #                                  holds fewer than this share of the live tracks (in a
    #                                  scene with few corners the reference keeps too few to
    #                                  triangulate init_min_points while top-ups refill the
    #                                  live ones; 0: only when fewer than init_min_points are
    #                                  left). benchmarks/results/odometry_init_renew_*.md
    loss_scale: str = "speed"        # the scale of the map made after a loss: "speed" (the
    #                                  baseline is the speed before the loss times the frames
    #                                  since), "depth" (the new map's median landmark depth
    #                                  equals the lost map's, as ORB-SLAM sets its first map's
    #                                  median depth to 1: losses come at low parallax, i.e.
    #                                  slow motion, and tracking returns once the camera is
    #                                  faster, so "speed" makes the new map too small) or
    #                                  "blend" (halfway in log scale). Slow street turn
    #                                  (trace_odometry.py --seed 62): 7.40 / 4.93 / 2.77 % ATE.
    #                                  Against "speed", three starts per clip: "depth" standard
    #                                  set 0.95x [0.86, 1.04] (5 better, 4 worse: a 640x480
    #                                  street 5.1 -> 6.8 %), variety 0.99x [0.97, 1.00];
    #                                  "blend" 0.99x on both (benchmarks/results/
    #                                  odometry_loss_scale_*.md). Not significant: "speed" stays.
    twoview_min_inlier_ratio: float = 0.3  # two-view motion (initialisation, fallback)
    twoview_min_inliers: int = 15    # trusted only if this fraction of the tracks, and this
    #                                  many, fit it (a bare wall's noise tracks fit no motion)
    prior_init_after: int = 0        # with a prior: frames of too little parallax before the
    #                                  model's direction of travel initialises the map (0:
    #                                  never). Off by default: on slow starts it began
    #                                  tracking 13 frames sooner at 4.3x the ATE
    #                                  (benchmarks/results/model_init.md)
    # -- triangulation checks -------------------------------------------------------------
    tri_min_angle_deg: float = 1.0
    tri_min_angle_weak_deg: float = 0.0  # at a keyframe of weak tracking (fewer PnP inliers
    #                                  than kf_min_tracked) new landmarks need only this angle
    #                                  (0: tri_min_angle_deg), so a slow turn keeps points in
    #                                  view for PnP; their depth is poor, their bearing good.
    #                                  Against 0, three starts per clip: standard set 0.93x
    #                                  [0.85, 1.01] (pure rotation 9.1 -> 5.3 %), variety 1.01x
    #                                  [0.99, 1.03], no camera_info 1.00x [0.94, 1.06]
    #                                  (benchmarks/results/odometry_weak_triangulation_*.md).
    #                                  Off: with it two tests' margins broke (a pure rotation
    #                                  tracked on 78 % of frames, pseudo-labels 1.29 deg off)
    tri_max_reprojection_px: float = 2.0
    # -- keyframes and map ----------------------------------------------------------------
    kf_parallax_frac: float = 0.012  # rotation-compensated median parallax for a keyframe
    kf_min_survival: float = 0.6     # map points tracked / those at the last keyframe
    kf_min_tracked: int = 60         # fewer map points tracked: keyframe
    kf_max_gap: int = 30             # keyframe at least every this many frames
    window_keyframes: int = 8        # keyframes in the local map and the BA window (16:
    #                                  0.94x the ATE [0.87, 1.03] over 46 clips, not
    #                                  significant, at about 5x the BA time: odometry_ba_
    #                                  window_*.md, ba_window_cost.md)
    # -- bundle adjustment ----------------------------------------------------------------
    ba: bool = True
    ba_solver: str = "isam2"         # "isam2" (the window graph in ISAM2; an ill-posed window
    #                                  falls back to LM) or "lm" (Levenberg-Marquardt)
    ba_fixed: int = 2                # oldest keyframes of the window held fixed (gauge, scale)
    ba_fallback: str = "lm"          # a window iSAM2's Gauss-Newton step cannot solve: "lm"
    #                                  (Levenberg-Marquardt) or "dogleg" (iSAM2 with Powell's
    #                                  dogleg, then LM)
    max_deferred_keyframes: int = 2  # push(optimise=False): keyframes whose BA may wait for
    #                                  optimise() before the next push runs it first
    ba_iterations: int = 8           # LM's iteration cap (the LM solver and iSAM2's fallback;
    #                                  iSAM2 itself takes one Gauss-Newton step per window)
    ba_pixel_sigma: float = 1.0      # projection noise, pixels
    ba_huber: float = 1.345          # Huber threshold, in sigmas
    # The BA runs in ``push`` (or ``optimise``), before the next frame. Neither a worker
    # thread (GTSAM holds the GIL while it optimises) nor a worker process (commit c5e8a07;
    # on this 2-core machine the node's p95 latency went from 42 to 844 ms) overlapped it
    # with the tracking usefully: benchmarks/results/node_latency.md, "Session 10"
    ba_covariance: bool = True       # marginal covariance of the newest keyframe ("all": of
    #                                  every free keyframe of the window; False: none)
    max_reprojection_px: float = 4.0  # landmarks beyond this after BA are removed
    # -- focal self-calibration (only when no K is given: camera_info missing) --------------
    focal_refinements: int = 3       # accepted window solves with the focal free (0: off)
    focal_every: int = 4             # keyframes between attempts, from a full window on
    focal_attempts: int = 10         # attempts at most (each ~0.1-0.2 s at 320x240 here)
    model_intrinsics: bool = True    # rap: K from the model's first window (its frames wait
    #                                  for it, then are tracked) instead of the
    #                                  default_hfov_deg guess geometry starts from. Since
    #                                  session 17 the shipped weights were fine-tuned on
    #                                  training cameras as narrow as real ones (25-100 deg):
    #                                  with focal_start_guess, over 24 clips without
    #                                  camera_info from six starts each, the focal the core
    #                                  ends with is 8.4 % off (median) against geometry's
    #                                  14.2 %, its ATE 0.95x geometry's [0.70, 1.25], 11
    #                                  clips better, 11 worse (odometry_no_camera_info_rap_
    #                                  defaults.md). The weights before read ~70 deg whatever
    #                                  the camera and were 1.44x geometry's ATE with this on
    #                                  (model_focal_draws.md)
    focal_start_guess: bool = True   # with the model's K (rap, model_intrinsics), the solves
    #                                  also start from the default_hfov_deg guess and the
    #                                  accepted solve with the lower error is kept: a wrong
    #                                  model focal (KITTI's 29 deg read as 69) then costs less
    #                                  (odometry_focal_start_guess.md, session 13: 2.57 ->
    #                                  2.29 %). (GTSAM's stdout lines, once a reason against
    #                                  it, are kept out since session 14:
    #                                  selfcal._quiet_cpp_stdout)
    focal_max_sigma: float = 0.05    # accept only if f's standard deviation <= this x f
    focal_starts: tuple = (1.0,)     # each solve starts from these multiples of the current
    #                                  focal; the accepted solve with the lowest error is kept.
    #                                  (1, 0.6, 1.6): rap's ATE without camera_info 2.46 ->
    #                                  2.12 %, geometry's 2.51 -> 2.63 % (odometry_focal_
    #                                  starts.md; then GTSAM also printed a line for every
    #                                  landmark a far start puts behind a camera)
    # -- motion prior (method "rap") ------------------------------------------------------
    prior_stride: int = 0            # frames between model windows; 0: window length - 1
    prior_rot_floor_deg: float = 2.0  # floor of the prior's rotation sigma per factor
    prior_trans_floor: float = 0.20  # floor of its translation sigma, fraction of the step
    prior_huber: float = 1.345
    prior_factors: str = "off"       # between-factors from the model's windows: "off" (none;
    #                                  the model gives K without camera_info and the
    #                                  disagreement health signal),
    #                                  "weak" (only from windows where the geometry is weak: a
    #                                  frame not placed by PnP, or fewer than 2 x
    #                                  degraded_inliers), "always" (every window). "off" is the
    #                                  default because both others raised the ATE on most
    #                                  sequences measured (benchmarks/results/odometry.md)
    prior_on_fallback: bool = False  # place frames the map cannot place by the model's motion
    #                                  (else: two-view rotation + constant-velocity step);
    #                                  off by default for the same reason
    prior_schedule: str = "weak"     # when the model runs on a full window: "always" (every
    #                                  ``prior_stride`` frames) or "weak" (with factors on: only
    #                                  windows where the geometry is weak; with factors off: only
    #                                  a health check every ``prior_check_every`` frames)
    prior_check_every: int = 96      # with schedule "weak": frames between health checks (0: none)
    prior_async: bool = False        # scheduled model windows run on a worker thread and are
    #                                  used a few frames later (a node's latency); the
    #                                  initialisation and the intrinsics stay synchronous
    prior_nice: int = 10             # with prior_async: niceness added to the model's worker
    #                                  thread (Linux), so the frame path keeps the CPU when the
    #                                  model and the tracking compete for it (0: unchanged)
    # -- tracking health ------------------------------------------------------------------
    degraded_inliers: int = 30       # PnP inliers below: degraded
    lost_after: int = 3              # consecutive frames without a map pose: lost
    disagreement_deg: float = 5.0    # model vs geometry rotation over a window: degraded
    # -- bookkeeping ----------------------------------------------------------------------
    history: bool = True             # keep every frame's pose for trajectory(); False keeps
    #                                  only the window (memory flat for a node)
    retained_frames: int = 300       # without history: frame records kept at most this far back
    default_hfov_deg: float = 60.0   # K guess when none is given and there is no prior
