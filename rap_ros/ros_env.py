"""Environment for processes that start rclpy.

- DDS discovery is the user's choice: node entry points leave ``ROS_AUTOMATIC_DISCOVERY_RANGE``
  as they find it, so a node on a robot is visible to RViz on a laptop of the same network
  (same ``ROS_DOMAIN_ID``). Only the demo and the tests keep discovery on this machine
  (``force_localhost=True``; the Makefile and the test config set the variable too).
- In a virtual environment with ROS 2 from PyPI nothing sources a setup script, so the
  venv's own ament index is made visible when AMENT_PREFIX_PATH is unset.

Call ``prepare_ros_environment()`` before ``rclpy.init()``: the rmw layer reads the variables
at init.
"""
import os
import pathlib
import sys


def prepare_ros_environment(force_localhost: bool = False) -> None:
    """Expose the venv's ament index; with ``force_localhost`` (demos and tests only) limit
    DDS discovery to this machine whatever the user's setting."""
    if force_localhost:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if not os.environ.get("AMENT_PREFIX_PATH"):
        if pathlib.Path(sys.prefix, "share", "ament_index").is_dir():
            os.environ["AMENT_PREFIX_PATH"] = sys.prefix
