"""`rap-ros up`: trajectory_estimator and view_predictor in one process on one model.

Each node runs on its own executor (``nodes.runner.make_executor``: the estimator on a
single-threaded one, the predictor on a multi-threaded one) and both share one backend (the
process-wide instance of ``rap_ros.backend.shared.get_backend``), so the model is loaded once.

    rap-ros up
    rap-ros up --backend torch --params-file config/rap_ros.yaml
    rap-ros up --ros-args -r image:=/camera/image_raw -r camera_info:=/camera/camera_info \\
        -p trajectory_estimator:scale:=0.5

Everything after ``--ros-args`` goes to rclpy as usual (remappings, ``-p`` parameters,
``--params-file``, ``-r __ns:=/robot``); ``--ros-args`` must come last.
"""
import argparse
import sys


def register(subparsers):
    parser = subparsers.add_parser(
        "up", help="run trajectory_estimator and view_predictor in one process",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default=None,
                        help="backend spec for both nodes ('onnx', 'torch', 'onnx:DIR', "
                             "'torch:FILE.pt'); default: each node's 'backend' parameter")
    parser.add_argument("--params-file", default=None,
                        help="ROS 2 parameters YAML for the nodes (e.g. config/rap_ros.yaml)")
    parser.add_argument("--no-estimator", action="store_true",
                        help="do not start trajectory_estimator")
    parser.add_argument("--no-predictor", action="store_true",
                        help="do not start view_predictor")
    parser.add_argument("--ros-args", nargs=argparse.REMAINDER, dest="ros_args", default=[],
                        help="ROS arguments (remappings, parameters); must come last")
    parser.set_defaults(func=main)
    return parser


def ros_arguments(args):
    """The argv handed to rclpy.init for the parsed ``args``."""
    argv = ["rap-ros"]
    ros = list(args.ros_args or [])
    if args.params_file:
        ros += ["--params-file", args.params_file]
    if ros:
        argv += ["--ros-args", *ros]
    return argv


def main(args):
    # rclpy and the model are imported when the tool runs: `rap-ros --help` imports every
    # tool module and stays at 0.2 s (rclpy, onnxruntime and scipy take over a second).
    from rap_ros.backend.shared import get_backend
    from rap_ros.contract.files import ModelFileError
    from rap_ros.nodes.runner import run_nodes
    from rap_ros.nodes.trajectory_estimator import TrajectoryEstimator
    from rap_ros.nodes.view_predictor import ViewPredictor

    backend = None
    if args.backend:
        try:
            backend = get_backend(args.backend)
        except (ModelFileError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    factories = []
    if not args.no_estimator:
        factories.append(lambda: TrajectoryEstimator(backend=backend))
    if not args.no_predictor:
        factories.append(lambda: ViewPredictor(backend=backend))
    if not factories:
        print("error: nothing to run (--no-estimator and --no-predictor)", file=sys.stderr)
        return 2
    return run_nodes(factories, args=ros_arguments(args))
