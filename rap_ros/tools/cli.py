"""`rap-ros`: one command line, a subcommand per tool.

Each tool module exposes `register(subparsers)`, which adds its parser and sets
`func` to its `main(args) -> int`. Tool modules keep heavy imports (torch, rclpy)
inside `main`, so `rap-ros --help` stays fast.
"""
import argparse
import importlib
import sys

# Subcommand modules under rap_ros.tools, in the order `--help` lists them.
TOOLS = ("synth", "train", "export", "evaluate", "up", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rap-ros",
        description="Rays as Pixels for ROS 2: ego-motion from video, views along paths.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in TOOLS:
        try:
            module = importlib.import_module(f"rap_ros.tools.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"rap_ros.tools.{name}":
                raise
            continue  # tool not part of this build
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
