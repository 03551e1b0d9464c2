"""A node in a process of its own: republishes what arrives on `in/<name>` to `out/<name>`.

Used by the smoke test to show real messages crossing process boundaries over DDS.
"""
import sys

import rclpy
from nav_msgs.msg import Path
from rclpy.node import Node
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

from rap_ros_msgs.msg import PredictedView

TYPES = {"image": Image, "path": Path, "tf": TFMessage, "predicted_view": PredictedView}


class Echo(Node):
    def __init__(self):
        super().__init__("echo")
        self._publishers = {name: self.create_publisher(kind, f"out/{name}", 10)
                            for name, kind in TYPES.items()}
        self._subscriptions = [
            self.create_subscription(kind, f"in/{name}", self._publishers[name].publish, 10)
            for name, kind in TYPES.items()]


def main():
    rclpy.init()
    node = Echo()
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
