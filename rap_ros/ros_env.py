"""Environment for processes that start rclpy.

DDS discovery must stay on this machine unless the user says otherwise: every entry
point calls `localhost_discovery()` before `rclpy.init()` (the rmw layer reads the
variable at init).
"""
import os


def localhost_discovery(force: bool = False) -> None:
    """Limit DDS discovery to localhost; `force` overrides a user's own setting (demos, tests)."""
    if force:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    else:
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
