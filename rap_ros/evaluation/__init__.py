"""Trajectory evaluation on recorded inputs (the library behind `rap-ros evaluate`).

* ``inputs``: rosbag2 (MCAP/sqlite3), sequence folders and TUM RGB-D folders -> images,
  intrinsics and ground truth, as the options ask (the readers are ``rap_ros.io``).
* ``estimators``: the pose sources behind ``--method`` (``rap``: the odometry core with the
  model as its motion prior; ``geometry``: the core alone; ``model``: the model's window
  stream; ``opencv-vo``), all ``rap_ros.pipeline.streaming.PoseStream``.
* ``vo``: ``opencv-vo``, the classical monocular visual-odometry baseline.
* ``run``: one input or several through a method, offline; scoring.
* ``report``: metrics.json, TUM files, per-frame tracking health (tracking.csv), plots,
  Markdown reports (with the tracking-loss gaps) and summaries.
* ``live``: a bag played over real ROS 2 topics into running nodes (latency, drops).

Poses are camera-to-world 4x4 in OpenCV camera axes (x right, y down, z forward); metrics use
``rap_ros.metrics`` (evo's definitions). Importing this package imports neither rclpy nor
torch (``live`` does import rclpy).
"""
from rap_ros.evaluation.inputs import EvalInput, InputOptions, open_input
from rap_ros.evaluation.estimators import METHODS
from rap_ros.evaluation.run import RunOptions, evaluate_input, evaluate_inputs
from rap_ros.io.errors import InputError
from rap_ros.io.stamped import StampedPoses, associate

__all__ = ["EvalInput", "InputError", "InputOptions", "METHODS", "RunOptions", "StampedPoses",
           "associate", "evaluate_input", "evaluate_inputs", "open_input"]
