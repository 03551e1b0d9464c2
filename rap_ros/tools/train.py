"""`rap-ros train`: train the codec, then the denoiser, from a YAML config.

    rap-ros train --config default --run-dir runs/default                 # both stages
    rap-ros train --config default --run-dir runs/default --resume        # continue after a stop
    rap-ros train --config tiny --stage dit --set train.minutes=5 model.attention=joint
    python -m torch.distributed.run --nproc_per_node=2 -m rap_ros.tools.cli train ...  # DDP/gloo
    rap-ros train --run-dir runs/default --export rap_ros/model/weights/rap_small.pt   # export only
"""
import sys
from pathlib import Path


def register(subparsers):
    parser = subparsers.add_parser(
        "train", help="train the codec and the denoiser (resumable, CPU or torchrun)",
        description="Stage `codec` (reconstruction of video and raxel clips), then stage `dit` "
                    "(flow matching on the frozen codec's latents). Checkpoints, logs and the "
                    "rendered data cache live in the run folder.")
    parser.add_argument("--config", default="default",
                        help="YAML run config: a path, or a name under rap_ros/model/configs "
                             "(default, tiny); default: default")
    parser.add_argument("--run-dir", default=None,
                        help="run folder (default: runs/<config name>)")
    parser.add_argument("--stage", choices=("codec", "dit", "all"), default="all",
                        help="which stage(s) to run (default: all = codec then dit)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the run folder's latest checkpoints")
    parser.add_argument("--minutes", type=float, default=None,
                        help="time budget of the dit stage (default: train.minutes)")
    parser.add_argument("--codec-minutes", type=float, default=None,
                        help="time budget of the codec stage (default: train.codec_minutes)")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="stop each stage after this many steps (0: time budget only)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                        help="config overrides, e.g. train.batch=8 model.attention=joint")
    parser.add_argument("--export", default=None, metavar="PATH",
                        help="only export the run's weights (codec.pt + dit.pt) to PATH "
                             "(+ PATH.yaml) and exit")
    parser.add_argument("--evaluate", default=None, metavar="WEIGHTS",
                        help="only evaluate exported weights on the run's held-out clips "
                             "(codec PSNR and pose error through the codec; video->camera "
                             "rotation error with Euler/Heun at 1, 2, 4 steps) and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar / console log")
    parser.set_defaults(func=main)


def main(args) -> int:
    # torch is optional (training extra) and slow to import: imported when the tool runs.
    from rap_ros.model import checkpoint, train
    from rap_ros.model.config import load_run_config

    name = Path(args.config).stem
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / name
    try:
        if args.export:
            out = checkpoint.weights_from_run(run_dir, args.export)
            print(f"wrote {out} and {Path(out).with_suffix('.yaml')}")
            return 0
        config = load_run_config(args.config, args.set)
        if args.evaluate:
            for line in train.evaluate_weights(args.evaluate, config, run_dir):
                print(line, flush=True)
            return 0
        train.run_training(config, run_dir, stage=args.stage, resume=args.resume,
                           minutes=args.minutes, codec_minutes=args.codec_minutes,
                           max_steps=args.max_steps, quiet=args.quiet)
    except (FileNotFoundError, ValueError, checkpoint.CheckpointError) as error:
        print(f"rap-ros train: error: {error}", file=sys.stderr)
        return 1
    return 0
