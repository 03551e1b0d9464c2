"""Environment for processes that start rclpy.

- DDS discovery stays on this machine unless the user says otherwise: every entry point
  calls `prepare_ros_environment()` before `rclpy.init()` (the rmw layer reads the
  variable at init).
- In a virtual environment with ROS 2 from PyPI nothing sources a setup script, so the
  venv's own ament index is made visible when AMENT_PREFIX_PATH is unset.
"""
import os
import pathlib
import sys


def prepare_ros_environment(force_localhost: bool = False) -> None:
    """Limit DDS discovery to localhost (`force_localhost` overrides the user's own
    setting: demos and tests) and expose the venv's ament index."""
    if force_localhost:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    else:
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if not os.environ.get("AMENT_PREFIX_PATH"):
        if pathlib.Path(sys.prefix, "share", "ament_index").is_dir():
            os.environ["AMENT_PREFIX_PATH"] = sys.prefix
