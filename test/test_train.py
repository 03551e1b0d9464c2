"""Training tests on the tiny config: one process, resume, checkpoints, torchrun with gloo."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rap_ros.model.checkpoint import CheckpointError, load_checkpoint, load_weights
from rap_ros.model.config import load_run_config
from rap_ros.model.train import run_training

ROOT = Path(__file__).resolve().parent.parent


def _tiny(*overrides):
    return load_run_config("tiny", ["train.render_workers=1", *overrides])


def test_train_both_stages_resume_and_export(tmp_path):
    run_dir = tmp_path / "run"
    run_training(_tiny(), run_dir, stage="all", max_steps=3, quiet=True)
    for name in ("codec.pt", "dit.pt", "rap_small.pt", "rap_small.yaml", "log.csv", "log.txt"):
        assert (run_dir / name).is_file(), name
    ck = load_checkpoint(run_dir / "dit.pt")
    assert ck["step"] == 3
    # resume continues from step 3
    run_training(_tiny(), run_dir, stage="dit", resume=True, max_steps=5, quiet=True)
    assert load_checkpoint(run_dir / "dit.pt")["step"] == 5
    config, codec, dit = load_weights(run_dir / "rap_small.pt")
    assert config.frames == 5
    rows = (run_dir / "log.csv").read_text().splitlines()
    assert rows[0].startswith("stage,step") and any(r.startswith("dit,") for r in rows)


def test_training_from_scratch_with_the_warp_condition_and_skip(tmp_path):
    """`rap-ros train` with model.warp_condition (the GPU recipe's base config does this):
    the clips' warps are made, the denoiser trains on them, the export keeps the switches."""
    from rap_ros.pipeline.conditioning import training_warp
    config = _tiny("model.warp_condition=true", "model.warp_skip=true")
    run_training(config, tmp_path, stage="all", max_steps=2, quiet=True,
                 warp_clip=training_warp)
    config, _, dit = load_weights(tmp_path / "rap_small.pt")
    assert config.warp_condition and config.warp_skip and dit.warp_skip is not None
    assert list(tmp_path.glob("latents_*_warp.npz"))
    with pytest.raises(ValueError, match="warp_clip"):
        run_training(_tiny("model.warp_condition=true"), tmp_path / "no_warp", stage="all",
                     max_steps=1, quiet=True)


def test_training_device_and_prefetched_draws():
    from rap_ros.model.run import prefetched, training_device
    assert training_device("cpu").type == "cpu"
    assert training_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        training_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            training_device("cuda")
    draw = lambda step: (step, step * step)  # noqa: E731
    for background in (False, True):
        stream = prefetched(draw, 3, background)
        assert [next(stream) for _ in range(4)] == [(3, 9), (4, 16), (5, 25), (6, 36)]
        stream.close()


def test_latent_cache_workers_give_the_same_arrays(tmp_path):
    from rap_ros.model import data as data_mod
    from rap_ros.model.codec import CausalVideoCodec
    from rap_ros.pipeline.conditioning import training_warp
    config = _tiny("model.warp_condition=true").model
    cache = data_mod.FrameCache(data_mod.build_frame_cache(tmp_path / "cache", 4, config.frames,
                                                           config.image_size, workers=1))
    codec = CausalVideoCodec(config)
    one, two = (data_mod.build_latent_cache(tmp_path / f"{w}.npz", cache, codec, config,
                                            batch=3, log=lambda m: None,
                                            warp_clip=training_warp, workers=w)
                for w in (1, 2))
    assert set(one) == {"video", "raxel", "motion", "warp"}
    for key in one:
        assert np.array_equal(one[key], two[key]), key


def test_checkpoint_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_checkpoint(missing)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt"):
        load_weights(tmp_path / "other.pt")


def test_cli_train_registers():
    from rap_ros.tools.cli import build_parser
    args = build_parser().parse_args(["train", "--config", "tiny", "--max-steps", "2"])
    assert args.func.__module__ == "rap_ros.tools.train" and args.max_steps == 2


def test_torchrun_two_gloo_ranks(tmp_path):
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--standalone", "-m", "rap_ros.tools.cli", "train", "--config", "tiny",
           "--run-dir", str(run_dir), "--max-steps", "3", "--quiet",
           "--set", "train.render_workers=1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
        stdout, stderr = proc.communicate()
        pytest.fail("torchrun timed out:\n" + stdout[-2000:] + stderr[-2000:])
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank}/2 finished" in stdout, stdout[-3000:]
    ck = load_checkpoint(run_dir / "dit.pt")
    assert ck["step"] == 3
    load_weights(run_dir / "rap_small.pt")
