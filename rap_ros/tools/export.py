"""`rap-ros export`: torch weights -> ONNX model folder (codec encoder/decoder, one
denoiser step, config.yaml, manifest.json), checked against torch with ONNX Runtime."""
import sys


def register(subparsers):
    parser = subparsers.add_parser(
        "export", help="export the model to ONNX (codec encoder/decoder, denoiser step)",
        description="Write codec_encoder.onnx, codec_decoder.onnx, denoiser.onnx (dynamic "
                    "batch and window length), config.yaml and manifest.json to --out, and "
                    "check every graph against torch with ONNX Runtime.")
    parser.add_argument("--weights", default=None,
                        help="torch checkpoint (default: the shipped "
                             "rap_ros/model/weights/rap_small.pt)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: rap_ros/model/weights/onnx, the "
                             "graphs shipped with the package)")
    parser.add_argument("--tiny", action="store_true",
                        help="export a randomly initialised rap_tiny model instead of "
                             "--weights (for tests and benchmarks of the tool chain)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="largest |onnxruntime - torch| accepted per graph (default: 1e-3)")
    parser.set_defaults(func=main)


def main(args) -> int:
    # torch and onnx are optional (training extra); with numpy and onnxruntime they take
    # seconds to import, and `rap-ros --help` imports every tool module (0.2 s): imported here.
    from rap_ros.backend import export
    from rap_ros.backend.shared import SHIPPED_ONNX_DIR, default_weights
    from rap_ros.contract.config import rap_tiny
    from rap_ros.contract.files import ModelFileError

    out = args.out or SHIPPED_ONNX_DIR
    try:
        if args.tiny:
            config = rap_tiny()
            codec, dit = export.random_modules(config, seed=0)
            manifest = export.export_modules(config, codec, dit, out, opset=args.opset)
        else:
            weights = args.weights or default_weights()
            manifest = export.export_onnx(weights, out, opset=args.opset)
    except (ModelFileError, FileNotFoundError) as error:
        print(f"rap-ros export: {error}", file=sys.stderr)
        return 1
    for graph, error in manifest["max_abs_error"].items():
        print(f"{graph:9s} {manifest['graphs'][graph]['file']:20s} "
              f"max |onnxruntime - torch| = {error:.2e}")
    print(f"wrote {out}")
    worst = max(manifest["max_abs_error"].values())
    if worst > args.tolerance:
        print(f"rap-ros export: parity error {worst:.2e} above {args.tolerance:.0e}",
              file=sys.stderr)
        return 1
    return 0
