"""Training tests on the tiny config: one process, resume, checkpoints, torchrun with gloo."""
import os
import signal
import subprocess
import sys
from pathlib import Path

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
