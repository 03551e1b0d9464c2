"""From frames to poses and from poses to frames: the model's jobs as numpy pipelines.

One code path serves the ROS nodes, the evaluator and the benchmarks. Every network call
goes through a ``rap_ros.backend`` Backend (ONNX Runtime or torch); everything else is
numpy/OpenCV, and nothing here imports torch or rclpy.

* ``framing``: input images of any size -> the model's square, intrinsics included.
* ``sampling``: flow-matching samplers (Euler, Heun) and the raxel latents.
* ``trajectory``: ``TrajectoryPipeline``, video -> camera for one window (or a batch).
* ``refine``: a window's rotations and directions of travel against optical flow.
* ``chaining``: ``TrajectoryChainer``, overlapping windows -> one trajectory.
* ``streaming``: ``WindowStream``, a stream of frames -> windows -> chained poses, and the
  ``PoseStream`` interface every pose source of the evaluator implements.
* ``views``: ``ViewPipeline``, images + camera -> video, and the closed-loop test.
* ``goal_scores``: how much a preview looks like a goal image (planners ranking paths).
* ``conditioning``: the warp condition of a warp-conditioned model (issue 12), for training
  and inference alike.
* ``plans``: planned paths -> the camera poses the view job needs.

Frames, axes and the tensor layout are those of docs/architecture.md: OpenCV camera axes,
camera-to-world 4x4 poses, intrinsics in pixels with pixel centres at integer coordinates,
images uint8 RGB (H, W, 3).
"""
from rap_ros.pipeline.chaining import ChainedPoses, TrajectoryChainer
from rap_ros.pipeline.framing import Framing, prepare_frames
from rap_ros.pipeline.sampling import SAMPLERS, integrate_flow
from rap_ros.pipeline.streaming import DEFAULT_STRIDE, FixedPoses, PoseStream, WindowStream
from rap_ros.pipeline.trajectory import TrajectoryPipeline, WindowEstimate
from rap_ros.pipeline.views import ClosedLoopResult, ViewPipeline

__all__ = ["DEFAULT_STRIDE", "SAMPLERS", "ChainedPoses", "ClosedLoopResult", "FixedPoses",
           "Framing", "PoseStream", "TrajectoryChainer", "TrajectoryPipeline", "ViewPipeline",
           "WindowEstimate", "WindowStream", "integrate_flow", "prepare_frames"]
