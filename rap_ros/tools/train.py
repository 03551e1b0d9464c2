"""`rap-ros train`: train the codec, then the denoiser, from a YAML config.

    rap-ros train --config default --run-dir runs/default                 # both stages
    rap-ros train --config default --run-dir runs/default --resume        # continue after a stop
    rap-ros train --config tiny --stage dit --set train.minutes=5 model.attention=joint
    python -m torch.distributed.run --nproc_per_node=2 -m rap_ros.tools.cli train ...  # DDP/gloo
    rap-ros train --run-dir runs/default --export rap_ros/model/weights/rap_small.pt   # export only
    rap-ros train --finetune my.bag other_bag/ --minutes 20    # adapt to your own recordings
    rap-ros train --warp-condition --run-dir runs/warp         # learn the warp condition
    rap-ros train --warp-condition --warp-skip --weights W.pt  # ... and the warp skip

Fine-tuning (``--finetune INPUT...``, bags or sequence folders with intrinsics, no ground
truth needed): the odometry core (method geometry) poses every frame, tracked windows become
pseudo-labelled clips (``evaluation.pseudo_labels``), and the shipped weights (or
``--weights``) are trained further on them mixed with synthetic clips (``--real-fraction``).
The result is <run-dir>/rap_small.pt (default run folder runs/finetune); run it with
``rap-ros up --backend onnx:PATH`` (exported to ONNX once and cached), or export it with
``rap-ros export``.

``--warp-condition`` (issue 12; config default: warp) fine-tunes the weights the same way
with ``model.warp_condition`` on: the denoiser gains a zero-initialised input for the source
image warped into each target camera (``pipeline.conditioning``) and learns it on synthetic
clips (plus the recordings' clips with ``--finetune``). Weights that have the warp condition
already (the shipped ones) keep it, and ``--finetune`` trains them with the warps.

``--framing letterbox`` (issue 12 "Full frame") makes the fine-tuned weights see the whole
image letterboxed (``pipeline.framing``; saved as ``framing`` in their config) and adds
letterboxed synthetic clips of varied aspects to the square ones (``model.data.letterbox_cache``).
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
    parser.add_argument("--finetune", nargs="+", default=None, metavar="INPUT",
                        help="adapt weights to these recordings (bags or sequence folders) "
                             "with pseudo-labels from the odometry core; config default: "
                             "finetune")
    parser.add_argument("--weights", default=None,
                        help="weights to fine-tune (default: the shipped weights)")
    parser.add_argument("--real-fraction", type=float, default=0.5,
                        help="share of each fine-tuning batch drawn from the recordings "
                             "(default 0.5; the rest synthetic)")
    parser.add_argument("--span", nargs=2, type=float, default=(0.0, 1.0),
                        metavar=("START", "END"),
                        help="fine-tune on this fraction of each recording, e.g. 0 0.6 to "
                             "hold out the last 40%% for measuring (default: 0 1)")
    parser.add_argument("--warp-condition", action="store_true",
                        help="fine-tune the weights with the warp condition on (issue 12): "
                             "synthetic clips with their source warped into every camera; "
                             "config default: warp; run folder default: runs/warp")
    parser.add_argument("--warp-skip", action="store_true",
                        help="with --warp-condition: also the zero-initialised skip from the "
                             "warp's latents to the denoiser's clean-video head "
                             "(model.warp_skip)")
    parser.add_argument("--framing", choices=("centre", "letterbox"), default=None,
                        help="with --finetune or --warp-condition: how the fine-tuned weights "
                             "frame their input (model.framing, issue 12 \"Full frame\"): "
                             "letterbox adds letterboxed synthetic clips (varied aspects) to "
                             "the square ones (default: the weights' own framing)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar / console log")
    parser.set_defaults(func=main)


def main(args) -> int:
    # torch is optional (training extra) and slow to import: imported when the tool runs.
    from rap_ros.model import checkpoint, train
    from rap_ros.model.config import load_run_config
    from rap_ros.model.evaluate import evaluate_weights

    args.warp_condition = args.warp_condition or args.warp_skip
    if args.finetune or args.warp_condition:
        return finetune(args)
    if args.framing:
        print("rap-ros train: error: --framing needs --finetune or --warp-condition (a "
              "fine-tune of weights)", file=sys.stderr)
        return 1
    name = Path(args.config).stem
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / name
    try:
        if args.export:
            out = checkpoint.weights_from_run(run_dir, args.export)
            print(f"wrote {out} and {Path(out).with_suffix('.yaml')}")
            return 0
        config = load_run_config(args.config, args.set)
        if args.evaluate:
            for line in evaluate_weights(args.evaluate, config, run_dir):
                print(line, flush=True)
            return 0
        warp_clip = None
        if config.model.warp_condition:  # the model floor cannot import the pipeline
            from rap_ros.pipeline.conditioning import training_warp as warp_clip
        train.run_training(config, run_dir, stage=args.stage, resume=args.resume,
                           minutes=args.minutes, codec_minutes=args.codec_minutes,
                           max_steps=args.max_steps, quiet=args.quiet, warp_clip=warp_clip)
    except (FileNotFoundError, ValueError, checkpoint.CheckpointError) as error:
        print(f"rap-ros train: error: {error}", file=sys.stderr)
        return 1
    return 0


def finetune(args) -> int:
    """``--finetune``: pseudo-label the recordings, then adapt the weights to them;
    ``--warp-condition``: learn the warp condition (with the recordings' clips if any)."""
    # torch is optional (training extra) and slow to import: imported when the tool runs.
    from rap_ros.backend.shared import default_weights
    from rap_ros.contract.files import ModelFileError
    from rap_ros.evaluation.pseudo_labels import label_recordings
    from rap_ros.io.errors import InputError
    from rap_ros.model import checkpoint
    from rap_ros.model.config import RunConfig, load_run_config
    from rap_ros.model.finetune import finetune_dit
    from rap_ros.model.run import Run
    from rap_ros.pipeline.conditioning import training_warp

    name = "warp" if args.warp_condition else "finetune"
    config_name = name if args.config == "default" else args.config
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / name
    real_cache = run_dir / "real_cache" if args.finetune else None
    try:
        weights = Path(args.weights) if args.weights else default_weights()
        model_config = checkpoint.read_weights(weights)[0]
        if args.warp_condition:
            model_config = type(model_config).from_dict(
                {**model_config.to_dict(), "warp_condition": True,
                 "warp_skip": args.warp_skip or model_config.warp_skip})
        if args.framing:
            model_config = type(model_config).from_dict(
                {**model_config.to_dict(), "framing": args.framing})
        config = RunConfig(model_config, load_run_config(config_name, args.set).train)
        if not 0.0 < args.real_fraction <= 1.0:
            raise ValueError(f"--real-fraction must be in (0, 1], got {args.real_fraction}")
        if args.finetune and not (args.resume and (real_cache / "meta.json").is_file()):
            labels = label_recordings(args.finetune, model_config.frames,
                                      model_config.image_size, span=tuple(args.span),
                                      framing=model_config.framing)
            labels.save(real_cache, span=list(args.span))
        run = Run(run_dir, config, quiet=args.quiet)
        run.log(f"fine-tune {weights} on {', '.join(map(str, args.finetune or ['synthetic']))}"
                f"{' with the warp condition' if args.warp_condition else ''}")
        minutes = args.minutes if args.minutes is not None else config.train.minutes
        out = finetune_dit(run, weights, real_cache, minutes, args.resume,
                           max_steps=args.max_steps, real_fraction=args.real_fraction,
                           warp_clip=training_warp if model_config.warp_condition else None)
    except (FileNotFoundError, ValueError, InputError, ModelFileError,
            checkpoint.CheckpointError) as error:
        print(f"rap-ros train: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out} (run it with `rap-ros up --backend onnx:{out}`, or `rap-ros export` it)")
    return 0
