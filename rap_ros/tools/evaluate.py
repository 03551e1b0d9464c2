"""`rap-ros evaluate`: trajectory accuracy of `rap`, `geometry`, `model` or `opencv-vo` on
recorded inputs.

The library is ``rap_ros.evaluation`` (inputs, vo, run, report, live); this module only
parses the command line. Exit status: 0 when every input was evaluated completely, 1 when
one failed or was only partly read, 2 for bad arguments.
"""
import shlex
import sys

# The methods of rap_ros.evaluation.estimators.METHODS (importing that module here would pull
# onnxruntime and OpenCV into `rap-ros --help`); test_evaluate checks the two agree.
METHODS = ("rap", "geometry", "model", "opencv-vo")

DEFAULT_OUT = "evaluation_out"

def register(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate trajectory estimates on rosbag2 recordings, sequence or TUM folders",
        description=(
            "Estimate the camera trajectory of each INPUT (a rosbag2 folder or .mcap/.db3 file, "
            "a sequence folder with cameras.json, or a TUM RGB-D folder with rgb.txt) and "
            "compare it with the ground truth: ATE after Sim(3) and SE(3) Umeyama alignment, "
            "RPE over consecutive frames after Sim(3) scale correction, speed. Writes "
            "DIR/<name>/{metrics.json, estimate_tum.txt, groundtruth_tum.txt, *.png, report.md} "
            "and, for several inputs, DIR/summary.{md,json}. Topic defaults are those "
            "`rap-ros synth --bag` writes; message types are read from the bag."))
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="inputs to evaluate")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--method", choices=METHODS, default="rap",
                        help="estimator: rap (default: odometry on a local map with bundle "
                             "adjustment, the model as its motion prior), geometry (the same "
                             "odometry without the model), model (the model alone, windows "
                             "chained) or opencv-vo (classical monocular baseline). rap and "
                             "geometry also write per-frame tracking health (tracking.csv) "
                             "and mark tracking-loss gaps (lost_frames)")
    topics = parser.add_argument_group("bag topics (types detected from the bag)")
    topics.add_argument("--image-topic", help="sensor_msgs/Image or CompressedImage "
                        "(default /camera/image_raw, else the bag's only image topic)")
    topics.add_argument("--camera-info-topic", help="sensor_msgs/CameraInfo "
                        "(default /camera/camera_info, else the only one)")
    topics.add_argument("--gt-topic", help="ground truth: PoseStamped, PoseWithCovarianceStamped, "
                        "TransformStamped, Odometry or TFMessage, camera-to-world "
                        "(default /ground_truth/pose, else the only pose topic)")
    topics.add_argument("--gt-frames", nargs=2, metavar=("PARENT", "CHILD"),
                        help="ground truth from /tf (+ /tf_static): the pose of CHILD in PARENT, "
                             "chain composed and interpolated")
    topics.add_argument("--gt-tum", metavar="FILE",
                        help="ground truth from a TUM file instead (camera-to-world)")
    topics.add_argument("--max-time-diff", type=float, default=0.02, metavar="SECONDS",
                        help="largest image/ground-truth stamp difference to associate "
                             "(default 0.02)")
    camera = parser.add_argument_group("intrinsics (override the input's)")
    for name in ("fx", "fy", "cx", "cy"):
        camera.add_argument(f"--{name}", type=float, help=f"{name} in pixels")
    camera.add_argument("--intrinsics", metavar="FILE",
                        help="YAML/JSON with fx, fy, cx, cy or K / camera_matrix")
    camera.add_argument("--rectified", action="store_true",
                        help="the bag's images are rectified (image_rect): use camera_info's "
                             "P and no undistortion (default: K and D, distortion removed), "
                             "as the node's `rectified` parameter")
    # default None: the node's default (rap_ros.io.camera_frames.DEFAULT_MAX_IMAGE_PIXELS,
    # resolved in main: importing it here would pull OpenCV into `rap-ros --help`)
    camera.add_argument("--max-image-pixels", type=int, default=None, metavar="N",
                        help="images with more pixels are downscaled on arrival, intrinsics "
                             "with them, as the node's `max_image_pixels` parameter (default: "
                             "the node's default, 1280x1024; 0: no limit)")
    model = parser.add_argument_group("method")
    model.add_argument("--steps", type=int, default=2,
                       help="rap, model: flow integration steps per model window (default 2)")
    model.add_argument("--no-refine", dest="refine", action="store_false",
                       help="model: the model's poses alone, without the optical-flow "
                            "refinement (rap's motion prior never uses it)")
    model.add_argument("--stride", type=int, default=None,
                       help="model: frames between window starts (default: half a window)")
    model.add_argument("--batch", type=int, default=4,
                       help="model: windows per model call (default 4)")
    model.add_argument("--backend", default="onnx",
                       help="rap, model: backend spec for get_backend (default onnx: the shipped "
                            "model)")
    model.add_argument("--consistency-windows", type=int, default=2, metavar="N",
                       help="model: windows on which closed-loop consistency PSNR is measured "
                            "(default 2; 0 = off)")
    model.add_argument("--max-frames", type=int, default=None, metavar="N",
                       help="use at most the first N frames of each input")
    run = parser.add_argument_group("running")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="evaluate N inputs in parallel processes (default 1)")
    run.add_argument("--ray", action="store_true",
                     help="run the inputs as Ray tasks (needs the ray package; RAY_ADDRESS "
                          "selects a cluster)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    live = parser.add_argument_group("live (through real ROS topics)")
    live.add_argument("--live", action="store_true",
                      help="play each bag over ROS 2 topics into `rap-ros up` nodes started in "
                           "a subprocess and record /tf, the path, odometry and diagnostics; "
                           "measures latency and drops")
    live.add_argument("--rate", type=float, default=1.0,
                      help="--live playback rate relative to recorded time (default 1.0)")
    live.add_argument("--up-args", default="--no-predictor",
                      help="--live: arguments for `rap-ros up` before its --ros-args (one "
                           "quoted string; default --no-predictor)")
    parser.set_defaults(func=main)
    return parser


def main(args) -> int:
    # Start-up: `rap-ros --help` imports every tool module (0.2 s); the evaluator pulls in
    # scipy, onnxruntime and OpenCV (1.4 s measured), so it is imported when the tool runs.
    from rap_ros.evaluation.inputs import InputOptions, intrinsics_from_flags
    from rap_ros.evaluation.run import RunOptions, evaluate_inputs
    from rap_ros.io.camera_frames import DEFAULT_MAX_IMAGE_PIXELS
    from rap_ros.io.errors import InputError
    from rap_ros.io.intrinsics import load_intrinsics

    command = getattr(args, "command_line", None)
    if command is None and sys.argv[1:2] == ["evaluate"]:
        command = "rap-ros " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        K = intrinsics_from_flags(args.fx, args.fy, args.cx, args.cy)
        if args.intrinsics:
            if K is not None:
                raise InputError("give either --fx --fy --cx --cy or --intrinsics, not both")
            K = load_intrinsics(args.intrinsics)
        if args.max_frames is not None and args.max_frames < 1:
            raise InputError("--max-frames must be >= 1")
        max_image_pixels = args.max_image_pixels
        if max_image_pixels is None:
            max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS
        if max_image_pixels < 0:
            raise InputError("--max-image-pixels must be >= 0 (0: no limit)")
        if args.workers < 1:
            raise InputError("--workers must be >= 1")
        if args.rate <= 0:
            raise InputError("--rate must be > 0")
        if args.ray:
            try:  # optional dependency
                import ray  # noqa: F401
            except ImportError:
                raise InputError("--ray needs the `ray` package, which is not installed "
                                 "(pip install 'ray[default]'); or use --workers N") from None
    except InputError as error:
        print(f"rap-ros evaluate: error: {error}", file=sys.stderr)
        return 2
    input_options = InputOptions(image_topic=args.image_topic,
                                 camera_info_topic=args.camera_info_topic,
                                 gt_topic=args.gt_topic, gt_frames=args.gt_frames,
                                 gt_tum=args.gt_tum, K=K, max_time_diff=args.max_time_diff,
                                 rectified=args.rectified,
                                 max_image_pixels=max_image_pixels)
    options = RunOptions(method=args.method, steps=args.steps, refine=args.refine,
                         stride=args.stride,
                         batch=args.batch, backend=args.backend, max_frames=args.max_frames,
                         consistency_windows=args.consistency_windows,
                         progress=not args.no_progress and sys.stderr.isatty(), command=command)
    if args.live:  # rclpy: only for --live
        from rap_ros.evaluation.live import LiveOptions, evaluate_live

        results = evaluate_live(args.inputs, args.out, input_options, options,
                                LiveOptions(rate=args.rate, up_args=shlex.split(args.up_args)))
    else:
        results = evaluate_inputs(args.inputs, args.out, input_options, options,
                                  workers=args.workers, use_ray=args.ray)
    failed = 0
    for result in results:
        line = f"{result['name']}: {result['status']}"
        if result.get("ate_rmse") is not None:
            line += (f"  ATE {result['ate_rmse']:.4g} ({result.get('ate_rmse_pct') or 0:.3g} % of "
                     f"{result.get('path_length', 0):.4g})  RPE {result.get('rpe_trans_rmse', 0):.4g} / "
                     f"{result.get('rpe_rot_deg_rmse', 0):.3g} deg  {result.get('fps') or 0:.1f} fps")
        print(line)
        if result.get("error"):
            print(f"  error: {result['error']}", file=sys.stderr)
        failed += result["status"] != "ok"
    print(f"results in {args.out}")
    return 1 if failed else 0
