"""Test-wide set-up: DDS stays on localhost, and each test run gets its own domain."""
import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# A domain of our own, so a parallel run (a developer and CI) never cross-talks.
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
