#!/usr/bin/env bash
# The GPU recipe (issue 12): train the `base` configuration (rap_ros/model/configs/base.yaml:
# ~11M parameters, warp-conditioned) from scratch on one CUDA GPU, then export its weights.
# About 8 minutes on one H100: ~30 s rendering 12,000 synthetic clips on the CPU cores, 2 min
# codec, ~30 s encoding, 4.5 min denoiser. Needs torch with CUDA, numpy, scipy, opencv,
# scikit-image, pyyaml, tqdm; not ROS.
#
#   scripts/train_gpu.sh [RUN_DIR] [SECTION.KEY=VALUE ...]     # default RUN_DIR runs/base
#   rap-ros up --backend onnx:RUN_DIR/rap_base.pt               # run the result (ONNX, cached)
#
# A dry run on a CPU: scripts/train_gpu.sh /tmp/base train.device=cpu train.minutes=0.2 ...
# The CPU path stays the default: the shipped weights are rap_small (configs/default.yaml).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
run_dir=$(realpath -m "${1:-$repo/runs/base}")   # relative to where it is called from
shift || true
cd "$repo"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import torch; print('torch', torch.__version__, 'CUDA:', torch.cuda.is_available() \
and torch.cuda.get_device_name(0))"
python3 -m rap_ros.tools.cli train --config base --run-dir "$run_dir" --quiet --set "$@"
python3 -m rap_ros.tools.cli train --run-dir "$run_dir" --export "$run_dir/rap_base.pt"
