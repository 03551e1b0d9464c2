"""Running rap_ros nodes: one process, one executor, any number of nodes (`rap-ros up`, the
console entry points of the nodes)."""
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from rap_ros.contract.files import ModelFileError
from rap_ros.nodes.params import ParameterError
from rap_ros.ros_env import prepare_ros_environment


def run_nodes(factories, args=None):
    """Init rclpy (after ``prepare_ros_environment``), build nodes with
    ``factories`` (callables returning Nodes) and spin them on one MultiThreadedExecutor
    until Ctrl-C. A node that cannot start for a bad parameter or model file ends the process
    with a one-line error and exit code 2. Returns a process exit code."""
    prepare_ros_environment()
    rclpy.init(args=args)
    nodes = []
    try:
        try:
            for factory in factories:
                nodes.append(factory())
        except (ParameterError, ModelFileError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        executor = MultiThreadedExecutor(num_threads=max(4, 2 * len(nodes) + 2))
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in reversed(nodes):
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
