"""A training run: its folder, its ranks, its logs and the helpers both stages share.

Run folder (default runs/<config name>/):
    cache/              rendered training clips (data.build_frame_cache), val_cache/ held-out seeds
    real_cache/         fine-tuning only: pseudo-labelled clips of the recordings
    codec.pt, dit.pt    resumable checkpoints (model, optimizer, step, elapsed, config)
    latents_<tag>.npz   clips encoded by the frozen codec (tag: codec step, or the weights'
                        digest when fine-tuning)
    log.csv, log.txt    one row per logged step; text log
    rap_small.pt        exported weights {"config", "codec", "dit" (EMA), "meta"} (weights_only)

Checkpoints are written atomically every `save_every_s` seconds and at the end, and read with
torch.load(weights_only=True) (`rap_ros.model.checkpoint`); a missing or corrupt file raises
CheckpointError naming it.

Ranks: one CPU process, or `torchrun` (DistributedDataParallel over gloo); each rank draws its
own data from seed + rank + step (`Run.rng`), so runs are deterministic and resumable without
saving RNG state.
"""
import csv
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from rap_ros.model import data as data_mod
from rap_ros.model.checkpoint import load_checkpoint
from rap_ros.model.config import RunConfig


class Run:
    """Run folder, distributed context and logging."""

    def __init__(self, run_dir, config: RunConfig, quiet=False):
        self.dir = Path(run_dir)
        self.config = config
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")
        self.main = self.rank == 0
        self.quiet = quiet
        if self.main:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.barrier()
        torch.set_num_threads(max(1, config.train.threads // self.world)
                              if self.world > 1 else config.train.threads)
        self.device = training_device(config.train.device)

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def log(self, msg):
        if not self.main:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        with open(self.dir / "log.txt", "a") as f:
            f.write(line + "\n")
        if not self.quiet:
            print(line, flush=True)

    def log_row(self, row: dict):
        if not self.main:
            return
        path = self.dir / "log.csv"
        new = not path.is_file()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def stop_agreed(self, stop: bool) -> bool:
        """Rank 0 decides when to stop (time budget); everyone follows."""
        if self.world == 1:
            return stop
        flag = torch.tensor([1 if stop else 0])
        dist.broadcast(flag, 0)
        return bool(flag.item())

    def rng(self, stage: str, step: int):
        """Data RNGs (numpy, torch) for one step of one rank: deterministic and resumable."""
        key = [self.config.train.seed, {"codec": 1, "dit": 2}[stage], self.rank, step]
        seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        return np.random.default_rng(seed), torch.Generator().manual_seed(seed)

    def progress(self, total_s, initial_s, desc):
        return tqdm(total=int(total_s), initial=int(initial_s), unit="s", desc=desc,
                    disable=not self.main or self.quiet, dynamic_ncols=True, mininterval=5)

    def wrap(self, model):
        """``model`` as the ranks train it: DistributedDataParallel over several ranks."""
        if self.world > 1:
            return torch.nn.parallel.DistributedDataParallel(model)
        return model


def training_device(name: str) -> torch.device:
    """train.device: "cpu", "cuda" (an error without one) or "auto" (cuda when available).
    On CUDA, matrix products and convolutions are allowed TF32 (tensor cores; ample precision
    for training)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise ValueError(f"train.device must be cpu, cuda or auto, got {name!r}")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("train.device=cuda but torch sees no CUDA device")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.device(name)


def prefetched(draw, first_step: int, background: bool):
    """draw(step) for step = first_step, first_step + 1, ... With ``background`` the next
    step's draw runs in a thread while the caller trains on this one (on a GPU the numpy data
    work would otherwise leave it idle); the draws are the same either way (each step's RNGs
    come from its step number)."""
    step = first_step
    if not background:
        while True:
            yield draw(step)
            step += 1
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(draw, step)
        while True:
            current = upcoming.result()
            step += 1
            upcoming = pool.submit(draw, step)
            yield current


def lr_at(base, step, warmup, frac):
    """Linear warm-up over `warmup` steps, flat, then linear decay to 10% over the last 15% of
    the time budget (frac = elapsed / budget)."""
    lr = base * min(1.0, (step + 1) / max(1, warmup))
    if frac > 0.85:
        lr *= max(0.1, 1.0 - 0.9 * (frac - 0.85) / 0.15)
    return lr


def ensure_caches(run: Run):
    """Rendered train and validation caches (rank 0 renders, others wait)."""
    mc, tc = run.config.model, run.config.train
    if run.main:
        data_mod.build_frame_cache(run.dir / "cache", tc.train_clips, mc.frames, mc.image_size,
                                   tc.render_workers, log=run.log, fov_deg=tuple(tc.fov_deg))
        data_mod.build_frame_cache(run.dir / "val_cache", tc.val_clips, mc.frames, mc.image_size,
                                   tc.render_workers, split="val", log=run.log)
    run.barrier()
    return data_mod.FrameCache(run.dir / "cache"), data_mod.FrameCache(run.dir / "val_cache")


def resume_stage(path, optimizer, **modules):
    """Load a stage checkpoint: each module from its key (model, ema) and the optimizer.
    Returns (step, elapsed seconds, the checkpoint dict)."""
    ck = load_checkpoint(path)
    for key, module in modules.items():
        module.load_state_dict(ck[key])
    optimizer.load_state_dict(ck["optimizer"])
    return ck["step"], ck["elapsed"], ck
