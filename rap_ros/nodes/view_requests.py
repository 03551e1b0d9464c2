"""The view_predictor's requests: a plan (nav_msgs/Path) or preview_paths -> predicted frames.

``ViewRequests`` turns each path into T camera poses (``rap_ros.pipeline.plans.plan_cameras``:
plan_pose @ T_base_camera, prefixed with the current camera pose, resampled by arc length,
relative to the current camera and in the model's normalised unit), runs them through the
``ViewPipeline`` from the latest source image (intrinsics and the warp's depth:
``PredictorInputs``, ``WarpDepths``) and answers with rap_ros_msgs/PredictedView messages:
frames stamped at path times, camera poses (camera to the plan's frame, OpenCV optical axes,
metres) and closed-loop consistency scores (PSNR, dB). A request it cannot serve is
reported (``bad_input``, the logger, /diagnostics) and answered without frames; the node
keeps serving. No rclpy: ``current_camera(plan_frame, first_plan_pose)`` gives the current
camera pose (tf2 or odometry) and ``publish(view)`` sends a plan's view.
"""
import math
import time

import numpy as np

from rap_ros.io import messages
from rap_ros.nodes import conversions as cv
from rap_ros.pipeline.plans import plan_cameras
from rap_ros.pipeline.goal_scores import goal_scores
from rap_ros.pipeline.views import per_frame_psnr
from rap_ros_msgs.msg import PredictedView

# The distance returned as goal_distance, chosen by benchmarks/results/previews.md.
GOAL_DISTANCE = "census_distance"


class ViewRequests:
    """Plans and preview requests over ``pipeline`` (a ViewPipeline of ``frames`` frames)
    with ``settings`` (PredictorSettings)."""

    def __init__(self, pipeline, settings, *, frames, inputs, depths, diagnostics, logger,
                 bad_input, current_camera):
        self.pipeline, self.settings, self.frames = pipeline, settings, frames
        self.inputs, self.depths, self.diagnostics = inputs, depths, diagnostics
        self.logger, self.bad_input, self.current_camera = logger, bad_input, current_camera

    def prepare(self, plan, source):
        """nav_msgs/Path -> (world poses, stamps, rel poses) for the model; ValueError if
        the plan is unusable."""
        plan_stamps, plan_poses = messages.path_to_arrays(plan, self.settings.max_plan_poses)
        T_now, _ = self.current_camera(plan.header.frame_id, plan_poses[0])
        return plan_cameras(plan_poses, plan_stamps, T_now, source.seconds,
                            self.settings.T_base_camera, self.frames,
                            self.settings.default_speed)

    def predict(self, source, rel, worlds, plan_frame):
        """From ``source`` (a ``predictor_inputs.Source``: the image with its own K): frames
        (P, T, h, w, 3) uint8, scores (P, T) dB (None without consistency) and the warp's
        depth source."""
        rgb = source.rgb
        chunk_size = self.settings.preview_chunk_size
        K, _ = self.inputs.intrinsics(rgb.shape[1], rgb.shape[0], source.K)  # rgb's own K
        depth, depth_used = self.depths.depths(source, K, worlds, plan_frame)
        self.diagnostics.set_value("warp depth", depth_used)
        start = time.perf_counter()
        if self.settings.consistency:
            results = self.pipeline.closed_loop_batch(rgb, K, rel, depth=depth,
                                                      chunk_size=chunk_size)
            frames = np.stack([r.frames for r in results])
            scores = np.stack([per_frame_psnr(r.model_frames, r.regenerated)
                               for r in results])
        else:
            frames = self.pipeline.predict_batch(rgb, K, rel, depth=depth,
                                                 chunk_size=chunk_size)
            scores = None
        self.diagnostics.latency("prediction", time.perf_counter() - start)
        return frames, scores, depth_used

    def view_message(self, path, source, world, stamps, frames, scores):
        """rap_ros_msgs/PredictedView of one path (its header's frame and stamp)."""
        header_frame = path.header.frame_id
        view = PredictedView()
        view.header.frame_id = header_frame
        view.header.stamp = path.header.stamp
        view.source_stamp = source.stamp
        stamp_msgs = [cv.seconds_to_stamp(max(0.0, s)) for s in stamps]
        view.frames = [cv.array_to_image(frame, "rgb8", stamp, self.settings.camera_frame)
                       for frame, stamp in zip(frames, stamp_msgs)]
        view.poses = [cv.matrix_to_pose_stamped(T, stamp, header_frame)
                      for T, stamp in zip(world, stamp_msgs)]
        view.scores = [] if scores is None else [float(s) for s in scores]
        return view

    def plan(self, plan, publish):
        """Predict the frames along a plan and ``publish`` its PredictedView."""
        self.diagnostics.tick("plans")
        source = self.inputs.source
        if source is None:
            self.bad_input("plan ignored: no image received yet")
            return
        try:
            world, stamps, rel = self.prepare(plan, source)
        except ValueError as error:
            self.diagnostics.count("plans rejected")
            self.bad_input(f"plan rejected: {error}")
            return
        try:
            frames, scores, _ = self.predict(source, rel[None], world[None],
                                             plan.header.frame_id)
        except Exception as error:  # keep serving; report
            self.diagnostics.error(f"prediction failed: {error}")
            self.logger.error(f"prediction failed: {type(error).__name__}: {error}")
            return
        publish(self.view_message(plan, source, world, stamps, frames[0],
                                  None if scores is None else scores[0]))
        self.diagnostics.tick("output")
        self.diagnostics.count("predictions")
        if scores is not None:
            self.diagnostics.set_value("closed-loop consistency (dB)", float(scores[0].mean()))

    def _refuse(self, response, message):
        response.message = message
        self.bad_input(f"preview_paths: {message}")
        return response

    def preview(self, request, response):
        """Answer a rap_ros_msgs/PreviewPaths request (success false and why, when not)."""
        response.success = False
        source = self.inputs.source
        if source is None:
            response.message = "no image received yet"
            return response
        if not request.paths:
            response.message = "no paths given"
            return response
        most = self.settings.max_preview_paths
        if len(request.paths) > most:
            self.diagnostics.count("previews refused")
            return self._refuse(response, f"{len(request.paths)} paths requested; at most "
                                          f"{most} per request (parameter max_preview_paths): "
                                          f"send fewer or split the request")
        prepared = []
        for i, path in enumerate(request.paths):
            try:
                prepared.append(self.prepare(path, source))
            except ValueError as error:
                return self._refuse(response, f"path {i} rejected: {error}")
        goal = None
        if request.goal_image.height and request.goal_image.width:
            try:
                goal = self.inputs.limit_size(messages.image_to_rgb8(request.goal_image),
                                              "goal image")
            except ValueError as error:
                return self._refuse(response, f"goal image rejected: {error}")
        rel = np.stack([p[2] for p in prepared])
        try:
            frames, scores, depth_used = self.predict(source, rel, [p[0] for p in prepared],
                                                      request.paths[0].header.frame_id)
        except Exception as error:
            response.message = f"prediction failed: {type(error).__name__}: {error}"
            self.diagnostics.error(response.message)
            self.logger.error(response.message)
            return response
        for i, (path, (world, stamps, _)) in enumerate(zip(request.paths, prepared)):
            response.previews.append(self.view_message(
                path, source, world, stamps, frames[i], None if scores is None else scores[i]))
        response.consistency = ([float(s.mean()) for s in scores] if scores is not None
                                else [math.nan] * len(prepared))
        if goal is not None:
            # the goal framed as the previews (full frame, or the model's centre square)
            goal_scored = goal_scores(frames[:, -1], self.pipeline.goal_view(goal,
                                                                             frames.shape[2:4]))
            response.goal_similarity = [float(v) for v in goal_scored["ssim"]]
            response.goal_distance = [float(v) for v in goal_scored[GOAL_DISTANCE]]
        response.success = True
        response.message = (f"{len(prepared)} previews of {frames.shape[1]} frames; warp "
                            f"depth: {depth_used}")
        self.diagnostics.count("previews", len(prepared))
        return response
