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


FASTDDS_SHM_SEGMENT_BYTES = 512 * 1024  # Fast DDS's default shared-memory segment per participant


def large_message_warning(size_bytes, environ=None):
    """A warning (str) when messages of ``size_bytes`` outgrow the default transport: Fast DDS
    (rmw_fastrtps_cpp, ROS 2's default rmw) with no profile file keeps a 512 KB shared-memory
    segment, so larger messages go between processes as fragmented UDP, which lost up to half
    of 640x480 rgb8 frames at 30 Hz here (docs/nodes.md, "Large images and Fast DDS"); None
    otherwise (a smaller message, another rmw, or a profile given, whose segment it trusts).
    ``environ``: the environment to read (default ``os.environ``)."""
    environ = os.environ if environ is None else environ
    rmw = environ.get("RMW_IMPLEMENTATION") or "rmw_fastrtps_cpp"
    profile = environ.get("FASTRTPS_DEFAULT_PROFILES_FILE") or \
        environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
    if size_bytes <= FASTDDS_SHM_SEGMENT_BYTES or "fastrtps" not in rmw or profile:
        return None
    return (f"raw images of {size_bytes} bytes are larger than Fast DDS's default shared-memory "
            f"segment ({FASTDDS_SHM_SEGMENT_BYTES} bytes): between processes they travel as "
            f"fragmented UDP and frames can be lost. Load rap_ros's "
            f"config/fastdds_large_images.xml through FASTRTPS_DEFAULT_PROFILES_FILE in every "
            f"process that sends or receives them, or subscribe to compressed images")
