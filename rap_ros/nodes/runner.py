"""Running rap_ros nodes: one process, an executor per node, any number of nodes (`rap-ros
up`, the console entry points of the nodes)."""
import sys
import threading

import rclpy
from rclpy.executors import (ExternalShutdownException, MultiThreadedExecutor,
                              SingleThreadedExecutor)

from rap_ros.contract.files import ModelFileError
from rap_ros.nodes.params import ParameterError
from rap_ros.ros_env import prepare_ros_environment


def make_executor(node):
    """The executor for ``node``: nodes whose callbacks only queue work for a thread of their
    own (``node.short_callbacks``, the trajectory estimator) get a SingleThreadedExecutor,
    which runs the callbacks one after another in the spin thread: with a
    MultiThreadedExecutor, its
    thread went straight back to rebuilding the wait set in Python while the pool ran the
    callbacks, ~75 % of a core at 30 Hz of images (py-spy), taken from the tracker through
    the GIL. Others (the view predictor runs model jobs in callbacks) keep a
    MultiThreadedExecutor. (rclpy's experimental EventsExecutor hung here.)"""
    if getattr(node, "short_callbacks", False):
        return SingleThreadedExecutor()
    return MultiThreadedExecutor(num_threads=4)


def run_nodes(factories, args=None):
    """Init rclpy (after ``prepare_ros_environment``), build nodes with ``factories``
    (callables returning Nodes) and spin each on its executor (``make_executor``; the first
    in this thread, the others in threads of their own) until Ctrl-C. A node that cannot
    start for a bad parameter or model file ends the process with a one-line error and exit
    code 2. Returns a process exit code."""
    prepare_ros_environment()
    rclpy.init(args=args)
    nodes, executors, spinners = [], [], []
    try:
        try:
            for factory in factories:
                nodes.append(factory())
        except (ParameterError, ModelFileError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for node in nodes:
            executors.append(make_executor(node))
            executors[-1].add_node(node)
        for executor in executors[1:]:
            spinners.append(threading.Thread(target=_spin, args=(executor,), daemon=True))
            spinners[-1].start()
        executors[0].spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for executor in executors:
            executor.shutdown(timeout_sec=1.0)
        if all(spinner_stopped(spinner) for spinner in spinners):
            for node in reversed(nodes):
                node.destroy_node()
        else:  # destroying its nodes under it would hang; the process ends anyway
            print("warning: an executor thread did not stop; nodes left to the OS",
                  file=sys.stderr)
        rclpy.try_shutdown()
    return 0


def spinner_stopped(spinner, timeout_s=10.0):
    """Wait up to ``timeout_s`` for a thread spinning an executor (already shut down) to
    leave ``spin``; True once it has. Nodes may be destroyed only after that: rclpy's
    ``Executor.shutdown`` does not wait for a spinning thread (Jazzy), and destroying a node
    whose subscriptions that thread still held in its wait set deadlocked the process, the
    spinning thread busy inside rmw with the GIL and the main thread never scheduled again
    (a CI run hung so in `rap-ros evaluate --live`). A thread never started counts as
    stopped."""
    if spinner.is_alive():
        spinner.join(timeout_s)
    return not spinner.is_alive()


def _spin(executor):
    try:
        executor.spin()
    except ExternalShutdownException:
        pass
