"""`rap-ros synth`: render a synthetic robot drive to a sequence folder or a rosbag2.

Heavy imports (the renderer, rosbags) happen inside `main`, so `rap-ros --help` stays fast.
"""
import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output: a sequence folder (images/, cameras.json, poses_tum.txt; "
                             "may exist) or, with --bag, the rosbag2 folder (must not exist)")
    parser.add_argument("--frames", type=int, default=200, help="number of frames (default 200)")
    parser.add_argument("--seed", type=int, default=10**9,
                        help="drive seed (default 1000000000, the first held-out seed)")
    parser.add_argument("--width", type=int, default=64, help="image width in pixels (default 64)")
    parser.add_argument("--height", type=int, default=64,
                        help="image height in pixels (default 64)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate in Hz (default 10)")
    parser.add_argument("--scene", choices=("room", "corridor", "street"),
                        help="scene kind (default: drawn from the seed)")
    parser.add_argument("--bag", action="store_true",
                        help="write a rosbag2 at DIR instead: /camera/image_raw (rgb8), "
                             "/camera/camera_info, /ground_truth/pose (camera-to-world in 'map'), "
                             "stamps from 1.7e9 s")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                        help="rosbag2 storage with --bag (default mcap)")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="render a synthetic robot drive (sequence folder or rosbag2)",
        description="Render one seeded robot drive (forward runs, turns, arcs, stops) through a "
                    "procedural room, corridor or street, with exact ground-truth poses.")
    add_arguments(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from rap_ros.synth.dataset import make_drive

    if args.frames < 1 or args.width < 1 or args.height < 1 or args.fps <= 0:
        print("synth: --frames, --width, --height and --fps must be positive", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.bag and out.exists():
        print(f"synth: {out} exists; a rosbag2 needs a new folder", file=sys.stderr)
        return 2
    clip = make_drive(args.seed, args.frames, args.height, args.width, args.fps, scene=args.scene)
    if args.bag:
        from rap_ros.io.bag import write_bag

        write_bag(out, clip, storage=args.storage)
    else:
        from rap_ros.io.sequence import write_sequence

        write_sequence(out, clip)
    kind = f"rosbag2 ({args.storage})" if args.bag else "sequence"
    print(f"synth: wrote {len(clip)} frames of a {clip.meta['scene']} drive as a {kind} to {out}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="rap-ros synth", description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
