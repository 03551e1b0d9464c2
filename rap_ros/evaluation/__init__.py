"""Trajectory evaluation on recorded inputs (the library behind `rap-ros evaluate`).

* ``inputs``: rosbag2 (MCAP/sqlite3, via rosbags), sequence folders and TUM RGB-D folders ->
  images, intrinsics and ground truth; timestamp association.
* ``vo``: ``opencv-vo``, the classical monocular visual-odometry baseline.
* ``run``: one input or several through a method (``rap`` or ``opencv-vo``), offline.
* ``report``: metrics.json, TUM files, plots, Markdown reports and summaries.
* ``live``: a bag played over real ROS 2 topics into running nodes (latency, drops).

Poses are camera-to-world 4x4 in OpenCV camera axes (x right, y down, z forward); metrics use
``rap_ros.metrics`` (evo's definitions). Importing this package imports neither rclpy nor
torch.
"""
from rap_ros.evaluation.inputs import (EvalInput, InputError, InputOptions, StampedPoses,
                                       associate, open_input)
from rap_ros.evaluation.run import METHODS, RunOptions, evaluate_input, evaluate_inputs

__all__ = ["EvalInput", "InputError", "InputOptions", "METHODS", "RunOptions", "StampedPoses",
           "associate", "evaluate_input", "evaluate_inputs", "open_input"]
