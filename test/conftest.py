"""Test-wide set-up: DDS stays on localhost, and each test run gets its own domain."""
import os

from rap_ros.ros_env import prepare_ros_environment

prepare_ros_environment(force_localhost=True)
# A domain of our own, so parallel runs (a developer's and CI's) never cross-talk.
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
