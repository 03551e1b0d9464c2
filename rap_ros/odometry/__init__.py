"""Monocular visual odometry core (no ROS, no torch): KLT front end, PnP against a bounded
local map, sliding-window bundle adjustment on GTSAM, and the joint model as an injected
motion prior.

Conventions everywhere: camera-to-world 4x4 poses with OpenCV camera axes (x right, y down,
z forward), pixels, radians (degrees only where a name says ``deg``), seconds. Covariances
are 6x6, translation then rotation.

Methods: ``VisualOdometry(K, config)`` is "geometry"; ``VisualOdometry(K, config,
prior=ModelPrior(estimator))`` is "rap".
"""
from rap_ros.odometry.config import OdometryConfig
from rap_ros.odometry.core import LOST_COVARIANCE, FrameResult, VisualOdometry
from rap_ros.odometry.health import STATES
from rap_ros.odometry.prior import ModelPrior, MotionPrior, PriorWindow

__all__ = ["FrameResult", "LOST_COVARIANCE", "ModelPrior", "MotionPrior", "OdometryConfig",
           "PriorWindow", "STATES", "VisualOdometry"]
