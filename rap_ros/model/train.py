"""Training: stage `codec` (reconstruction), then stage `dit` (flow matching on frozen latents).

One loop per stage, readable top to bottom (nanoGPT style). Works in one CPU process and under
`torchrun` (DistributedDataParallel over gloo; each rank draws its own data from
seed + rank + step, so runs are deterministic and resumable without saving RNG state).

Fine-tuning (`finetune_dit`) adapts exported weights instead: the shipped codec stays frozen,
the denoiser continues from its EMA weights on synthetic clips mixed with pseudo-labelled
clips of the user's recordings (`evaluation.pseudo_labels`, written by `rap-ros train
--finetune` into real_cache/), through the same loop (`fit_dit`).

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
"""
import csv
import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from rap_ros.contract import preprocess
from rap_ros.contract.files import file_sha256
from rap_ros.contract.config import ModelConfig
from rap_ros.geometry.raxels import decode_raxels, encode_raxels
from rap_ros.geometry.rotations import rotation_angle_deg
from rap_ros.model import data as data_mod
from rap_ros.model.checkpoint import (CheckpointError, load_checkpoint, load_weights,
                                      save_checkpoint, save_weights, weights_from_run)
from rap_ros.model.codec import CausalVideoCodec, decode_raxels_latent, encode_raxels_latent
from rap_ros.model.config import RunConfig
from rap_ros.model.dit import RaxelDiT, add_warp_condition, count_parameters
from rap_ros.model.flow import draw_jobs, flow_loss, job_batch_masks, sample

VIEW_JOB = preprocess.JOBS.index("images_camera_to_video")  # the job the warp condition serves


# ---------------------------------------------------------------- run helpers


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
                                   tc.render_workers, log=run.log)
        data_mod.build_frame_cache(run.dir / "val_cache", tc.val_clips, mc.frames, mc.image_size,
                                   tc.render_workers, split="val", log=run.log)
    run.barrier()
    return data_mod.FrameCache(run.dir / "cache"), data_mod.FrameCache(run.dir / "val_cache")


def _wrap(model, run):
    if run.world > 1:
        return torch.nn.parallel.DistributedDataParallel(model)
    return model


# ---------------------------------------------------------------- stage 1: codec


def resume_stage(path, optimizer, **modules):
    """Load a stage checkpoint: each module from its key (model, ema) and the optimizer.
    Returns (step, elapsed seconds, the checkpoint dict)."""
    ck = load_checkpoint(path)
    for key, module in modules.items():
        module.load_state_dict(ck[key])
    optimizer.load_state_dict(ck["optimizer"])
    return ck["step"], ck["elapsed"], ck


def train_codec(run: Run, minutes: float, resume: bool, max_steps: int = 0, crop: int = 32):
    mc, tc = run.config.model, run.config.train
    cache, val = ensure_caches(run)
    torch.manual_seed(tc.seed)
    codec = CausalVideoCodec(mc).to(run.device)
    opt = torch.optim.AdamW(codec.parameters(), lr=tc.codec_lr, weight_decay=0.0)
    step, elapsed = 0, 0.0
    path = run.dir / "codec.pt"
    if resume and path.is_file():
        step, elapsed, ck = resume_stage(path, opt, model=codec)
        if ck.get("done") and elapsed >= minutes * 60.0:
            run.log(f"codec: {path} is finished (step {step}); skipping the stage")
            return codec
        run.log(f"codec: resumed from step {step} ({elapsed / 60:.1f} min)")
    run.log(f"codec: {count_parameters(codec):,} parameters, world {run.world}")
    model = _wrap(codec, run)
    budget = minutes * 60.0
    n_raxel = max(1, round(tc.codec_batch * tc.codec_raxel_fraction / 2))
    n_video = max(1, tc.codec_batch - 2 * n_raxel)
    last_save, t_start, el0 = time.time(), time.time(), elapsed
    bar = run.progress(budget, elapsed, "codec")
    gpu = run.device.type == "cuda"

    def draw(step):
        rng, _ = run.rng("codec", step)
        return data_mod.codec_batch(cache, rng, n_video, n_raxel, mc.raxel_encoding, crop)

    batches = prefetched(draw, step, background=gpu)

    def save(done=False):
        if run.main:
            save_checkpoint(path, {"model": codec.state_dict(), "optimizer": opt.state_dict(),
                                   "step": step, "elapsed": elapsed, "done": done,
                                   "config": run.config.to_dict()})

    while True:
        stop = elapsed >= budget or (max_steps and step >= max_steps)
        if run.stop_agreed(stop):
            break
        x, is_raxel = next(batches)
        x = torch.from_numpy(x).to(run.device)                         # (B, T, 3, c, c)
        is_raxel = torch.from_numpy(is_raxel).to(run.device)           # (B,) bool
        lr = lr_at(tc.codec_lr, step, 50, elapsed / budget)
        for g in opt.param_groups:
            g["lr"] = lr
        recon = model(x)                                               # (B, T, 3, c, c)
        err = recon - x
        weight = (1.0 + is_raxel.float()).view(-1, 1, 1, 1, 1)        # raxel clips count 2x
        loss = ((err.abs() + err ** 2) * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
        opt.step()
        step += 1
        now = time.time()
        elapsed = el0 + (now - t_start)
        bar.update(int(elapsed) - bar.n)
        if step % tc.log_every == 0:
            with torch.no_grad():
                mse_v = float((err[~is_raxel] ** 2).mean())
                mse_r = float((err[is_raxel] ** 2).mean())
            run.log_row({"stage": "codec", "step": step, "minutes": round(elapsed / 60, 3),
                         "loss": round(float(loss.detach()), 6), "mse_video": round(mse_v, 6),
                         "mse_raxel": round(mse_r, 6), "cosine": "", "lr": f"{lr:.2e}",
                         "grad_norm": ""})
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", step=step)
        if now - last_save > tc.save_every_s:
            save()
            last_save = now
    bar.close()
    batches.close()
    codec.cpu()
    # latent scale: unit std of the latents of the training mix (video + raxel halves)
    if run.main:
        with torch.no_grad():
            rng = np.random.default_rng(tc.seed + 7)
            x, _ = data_mod.codec_batch(cache, rng, 8, 4, mc.raxel_encoding, 0)
            codec.latent_scale.fill_(1.0)
            std = float(codec.encode(torch.from_numpy(x)).std())
            codec.latent_scale.fill_(1.0 / max(std, 1e-6))
        run.log(f"codec: latent std {std:.4f} -> latent_scale {1 / std:.4f}")
    save(done=True)
    run.barrier()
    if run.world > 1:  # everyone takes rank 0's latent scale
        codec.load_state_dict(load_checkpoint(path)["model"])
    run.log(f"codec: finished at step {step} ({elapsed / 60:.1f} min)")
    if run.main:
        metrics = evaluate_codec(codec.to(run.device), val, mc)
        codec.cpu()
        run.log("codec eval (held-out): " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    return codec


@torch.no_grad()
def evaluate_codec(codec, val: data_mod.FrameCache, config: ModelConfig, n: int = 64):
    """Held-out reconstruction: video PSNR (dB, uint8 images) and the pose error of cameras
    decoded (known K) from codec-reconstructed raxels."""
    codec.eval()
    device = next(codec.parameters()).device
    n = min(n, len(val))
    S = config.image_size
    psnrs, rot_err, pos_err = [], [], []
    for start in range(0, n, 16):
        idx = list(range(start, min(n, start + 16)))
        frames = np.stack([np.asarray(val.frames[i]) for i in idx])
        recon = codec(torch.from_numpy(preprocess.images_to_model(frames)).to(device))
        rec_u8 = preprocess.model_to_images(recon.cpu().numpy())
        mse = ((rec_u8.astype(np.float64) - frames) ** 2).mean(axis=(1, 2, 3, 4))
        psnrs += list(10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10)))
        rax = np.stack([data_mod.raxels_for(val.K[i], val.c2w[i], S, config.raxel_encoding)
                        for i in idx])
        rec = decode_raxels_latent(codec, encode_raxels_latent_t(codec, rax), rax.shape[1])
        rec = preprocess.denormalize_raxels(rec.cpu().numpy())
        for j, i in enumerate(idx):
            dec = decode_raxels(rec[j], K=val.K[i], encoding=config.raxel_encoding)
            rot_err += list(rotation_angle_deg(dec.c2w[:, :3, :3].transpose(0, 2, 1)
                                               @ val.c2w[i][:, :3, :3]))
            pos_err += list(np.linalg.norm(dec.c2w[:, :3, 3] - val.c2w[i][:, :3, 3], axis=-1))
    rot_err = np.asarray(rot_err)
    return {"video_psnr_db": float(np.mean(psnrs)), "raxel_rot_err_deg_mean": float(rot_err.mean()),
            "raxel_rot_err_deg_max": float(rot_err.max()),
            "raxel_pos_err_mean": float(np.mean(pos_err))}


def encode_raxels_latent_t(codec, rax: np.ndarray):
    return encode_raxels_latent(codec, torch.from_numpy(rax).to(next(codec.parameters()).device))


# ---------------------------------------------------------------- stage 2: dit


class LatentClips:
    """Training clips of one clip cache, encoded by the frozen codec: video (N, t, C, s, s),
    raxel (N, t, 2C, s, s), motion (N, t, M, s, s) latents, the warp condition (N, t, C+1,
    s, s) when the latents have it (``data.build_latent_cache``; else None), and the cache's
    K and poses for the cosine loss on ray directions."""

    def __init__(self, latents: dict, cache: data_mod.FrameCache, config: ModelConfig):
        self.video = torch.from_numpy(latents["video"])
        self.raxel = torch.from_numpy(latents["raxel"])
        self.motion = torch.from_numpy(latents["motion"])
        self.warp = torch.from_numpy(latents["warp"]) if "warp" in latents else None
        self.cache, self.config = cache, config

    def __len__(self):
        return self.video.shape[0]

    def latents(self, i):
        """Clip i -> (video (t, C, s, s), raxel (t, 2C, s, s), motion (t, M, s, s))."""
        return self.video[i], self.raxel[i], self.motion[i]

    def directions(self, i):
        """Clip i's normalised ray directions (T, 3, S, S), for the cosine loss."""
        mc = self.config
        return data_mod.raxels_for(self.cache.K[i], self.cache.c2w[i], mc.image_size,
                                   mc.raxel_encoding)[:, 0:3]


def draw_batch(sources, weights, rng, batch, cosine_samples):
    """A training batch from LatentClips ``sources`` in proportions ``weights``: each example
    picks its source, then one of its clips, uniformly -> (video, raxel, motion, dirs of the
    first ``cosine_samples`` examples or None, warp (B, t, C+1, s, s) when every source has
    the warp condition, else None)."""
    which = np.sort(rng.choice(len(sources), size=batch, p=np.asarray(weights) / np.sum(weights)))
    picks = [(sources[k], int(rng.integers(0, len(sources[k])))) for k in which]
    video, raxel, motion = (torch.stack([source.latents(i)[j] for source, i in picks])
                            for j in range(3))
    dirs = None
    if cosine_samples:
        dirs = torch.from_numpy(np.stack([source.directions(i)
                                          for source, i in picks[:cosine_samples]]))
    warp = None
    if all(source.warp is not None for source in sources):
        warp = torch.stack([source.warp[i] for source, i in picks])
    return video, raxel, motion, dirs, warp


def warp_for_jobs(warp, jobs, probability, generator):
    """The warp condition a batch trains with: warp (B, t, C+1, s, s) kept for view-job
    examples (``VIEW_JOB``) with probability ``probability``, zeros (no condition) for the
    rest, so the unconditioned view job and the other jobs keep working. jobs (B,) long."""
    keep = (jobs == VIEW_JOB) & (torch.rand(len(jobs), generator=generator) < probability)
    return warp * keep.to(warp).reshape(-1, 1, 1, 1, 1)


def frozen_codec(path):
    """The finished codec of a run (codec.pt), frozen."""
    codec_ck = load_checkpoint(path)
    if not codec_ck.get("done"):
        raise CheckpointError(path, "codec stage not finished; run --stage codec")
    codec = CausalVideoCodec(ModelConfig.from_dict(dict(codec_ck["config"]["model"])))
    codec.load_state_dict(codec_ck["model"])
    return codec.eval().requires_grad_(False), codec_ck["step"]


def encoded_clips(run: Run, cache, codec, tag, warp_clip=None):
    """LatentClips of ``cache``, encoded once into run.dir/latents_<tag>.npz (rank 0); with
    the warp condition (``data.build_latent_cache``'s ``warp_clip``) when the model has it."""
    path = run.dir / f"latents_{tag}.npz"
    if run.main and not path.is_file():
        run.log(f"encoding {len(cache)} clips with the frozen codec -> {path}")
        data_mod.build_latent_cache(path, cache, codec, run.config.model, log=run.log,
                                    warp_clip=warp_clip, seed=run.config.train.seed,
                                    workers=run.config.train.render_workers, device=run.device)
    run.barrier()
    clips = LatentClips(data_mod.build_latent_cache(path, cache, codec, run.config.model),
                        cache, run.config.model)
    run.log(f"{tag}: latents video std {float(clips.video.std()):.3f}, raxel std "
            f"{float(clips.raxel.std()):.3f}, motion abs mean "
            f"{float(clips.motion.abs().mean()):.4f}")
    return clips


def train_dit(run: Run, minutes: float, resume: bool, max_steps: int = 0, warp_clip=None):
    """Stage 2: the denoiser from scratch on the synthetic clips' latents (with
    ``model.warp_condition``: and their warps, made by ``warp_clip``, as in
    ``encoded_clips``)."""
    cache, val = ensure_caches(run)
    codec, codec_step = frozen_codec(run.dir / "codec.pt")
    tag = str(codec_step) + ("_warp" if run.config.model.warp_condition else "")
    synthetic = encoded_clips(run, cache, codec, tag, warp_clip)
    torch.manual_seed(run.config.train.seed)
    dit = RaxelDiT(run.config.model)
    fit_dit(run, codec, dit, [synthetic], [1.0], minutes, resume, max_steps)
    if run.main:
        out = weights_from_run(run.dir, run.dir / "rap_small.pt")
        run.log(f"exported weights -> {out}")
    return dit


def dit_step(model, dit, ema, opt, codec, drawn, gen, step, lr, config: RunConfig):
    """One denoiser step: a batch ``drawn`` by ``draw_batch`` (on the CPU), its step's torch
    generator ``gen`` (jobs, flow times, noise), then flow-matching loss, AdamW at ``lr``
    (times each group's lr_scale) and the EMA update, on the device of ``dit``. ``model`` is
    ``dit`` or its DistributedDataParallel wrapper. Returns (loss stats, gradient norm)."""
    mc, tc = config.model, config.train
    device = next(dit.parameters()).device
    video, raxel, motion, dirs, warp = (None if x is None else x.to(device) for x in drawn)
    jobs, clean_v, clean_r = draw_jobs(video.shape[0], mc.latent_frames, tc.job_probs,
                                       tc.p_k_known, gen)
    clean_v, clean_r = clean_v.to(device), clean_r.to(device)
    if mc.warp_condition:
        if warp is None:
            raise ValueError("model.warp_condition needs clips with the warp condition")
        warp = warp_for_jobs(warp, jobs, tc.warp_probability, gen)
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    loss, stats = flow_loss(model, video, raxel, motion, clean_v, clean_r, codec=codec,
                            dirs=dirs, cosine_weight=tc.cosine_weight,
                            cosine_samples=tc.cosine_samples,
                            raxel_loss_weight=tc.raxel_loss_weight,
                            time_shift=tc.time_shift, generator=gen,
                            warp=warp if mc.warp_condition else None)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(dit.parameters(), tc.grad_clip)
    opt.step()
    with torch.no_grad():
        decay = min(tc.ema, (1 + step) / (10 + step))
        for pe, p in zip(ema.parameters(), dit.parameters()):
            pe.lerp_(p, 1 - decay)
    return stats, gnorm


def fit_dit(run: Run, codec, dit, sources, weights, minutes, resume, max_steps=0):
    """The denoiser loop (flow matching, AdamW, EMA), resumable from run.dir/dit.pt, on
    batches drawn from ``sources`` (LatentClips) in proportions ``weights``. Ends with the
    held-out pose evaluation of the EMA weights on the run's synthetic validation clips."""
    mc, tc = run.config.model, run.config.train
    device = run.device
    dit.to(device)
    codec.to(device)                                        # decodes for the cosine loss
    ema = RaxelDiT(mc).requires_grad_(False).to(device)
    ema.load_state_dict(dit.state_dict())
    # the zero-initialised warp inputs learn at warp_lr_scale x the learning rate (own group)
    warp_names = ("warp_embed.", "warp_skip.")
    warp_params = [p for n, p in dit.named_parameters() if n.startswith(warp_names)]
    groups = [{"params": [p for n, p in dit.named_parameters()
                          if not n.startswith(warp_names)], "lr_scale": 1.0}]
    if warp_params:
        groups.append({"params": warp_params, "lr_scale": tc.warp_lr_scale})
    opt = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay, betas=(0.9, 0.99))
    step, elapsed = 0, 0.0
    path = run.dir / "dit.pt"
    if resume and path.is_file():
        step, elapsed, _ = resume_stage(path, opt, model=dit, ema=ema)
        run.log(f"dit: resumed from step {step} ({elapsed / 60:.1f} min)")
    run.log(f"dit: {count_parameters(dit):,} parameters (codec {count_parameters(codec):,}), "
            f"clips {' + '.join(str(len(s)) for s in sources)} drawn {weights}, "
            f"batch {tc.batch} x {run.world} ranks")
    model = _wrap(dit, run)
    budget = minutes * 60.0
    last_save, t_start, el0 = time.time(), time.time(), elapsed
    bar = run.progress(budget, elapsed, "dit")
    cosine_samples = min(tc.cosine_samples, tc.batch) if tc.cosine_weight > 0 else 0

    def draw(step):
        rng, gen = run.rng("dit", step)
        return draw_batch(sources, weights, rng, tc.batch, cosine_samples), gen

    batches = prefetched(draw, step, background=device.type == "cuda")

    def save():
        if run.main:
            save_checkpoint(path, {"model": dit.state_dict(), "ema": ema.state_dict(),
                                   "optimizer": opt.state_dict(), "step": step,
                                   "elapsed": elapsed, "config": run.config.to_dict()})

    while True:
        stop = elapsed >= budget or (max_steps and step >= max_steps)
        if run.stop_agreed(stop):
            break
        drawn, gen = next(batches)
        lr = lr_at(tc.lr, step, tc.warmup_steps, elapsed / budget)
        stats, gnorm = dit_step(model, dit, ema, opt, codec, drawn, gen, step, lr, run.config)
        step += 1
        now = time.time()
        elapsed = el0 + (now - t_start)
        bar.update(int(elapsed) - bar.n)
        if step % tc.log_every == 0:
            run.log_row({"stage": "dit", "step": step, "minutes": round(elapsed / 60, 3),
                         "loss": round(stats["loss"], 6),
                         "mse_video": round(stats["mse_video"], 6),
                         "mse_raxel": round(stats["mse_raxel"], 6),
                         "cosine": round(stats.get("cosine", float("nan")), 6),
                         "lr": f"{lr:.2e}", "grad_norm": round(float(gnorm), 4)})
            bar.set_postfix(loss=f"{stats['loss']:.4f}", step=step)
        if step % (tc.log_every * 20) == 0:
            run.log(f"dit: step {step} {elapsed / 60:.1f} min loss {stats['loss']:.4f} "
                    f"mse_v {stats['mse_video']:.4f} mse_r {stats['mse_raxel']:.4f} "
                    f"cos {stats.get('cosine', float('nan')):.4f}")
        if now - last_save > tc.save_every_s:
            save()
            last_save = now
    bar.close()
    batches.close()
    save()
    run.barrier()
    run.log(f"dit: finished at step {step} ({elapsed / 60:.1f} min)")
    if run.main:
        val = data_mod.FrameCache(run.dir / "val_cache")
        metrics = evaluate_pose(codec, ema.eval(), val, mc)
        run.log("pose eval (held-out, video->camera, EMA): "
                + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    dit.cpu(), ema.cpu(), codec.cpu()
    return ema


def finetune_dit(run: Run, weights, real_cache, minutes, resume, max_steps=0,
                 real_fraction=0.5, warp_clip=None):
    """Adapt shipped weights to pseudo-labelled real clips (a clip cache,
    ``evaluation.pseudo_labels``), drawn in proportion ``real_fraction`` with the synthetic
    training clips so the model keeps what it knew. The codec stays as shipped (frozen: the
    latent space the ONNX graphs and the real clips' latents share); the denoiser starts
    from the weights' EMA denoiser. Writes run.dir/rap_small.pt with the provenance in
    ``meta``, and the frozen codec as run.dir/codec.pt (so ``weights_from_run`` exports the
    run's checkpoints too). Returns its path.

    real_cache None: synthetic clips only. With ``run.config.model.warp_condition`` on and
    weights trained without it, the denoiser gains the zero-initialised warp input
    (``dit.add_warp_condition``, with the warp skip if the run's config has it: it starts
    exactly where the weights are) and learns it;
    ``warp_clip`` (``pipeline.conditioning.training_warp``) makes the clips' warps."""
    config, codec, dit = load_weights(weights)
    codec.requires_grad_(False)
    warp = run.config.model.warp_condition
    if warp:
        dit = add_warp_condition(dit, skip=run.config.model.warp_skip)
        config = dit.config
    framing = getattr(run.config.model, "framing", "centre")
    if config.framing != framing:  # the framing changes the data, not the networks
        config = dataclasses.replace(config, framing=framing)
        dit.config = config
    if config != run.config.model:
        raise ValueError(f"run config {run.config.model} is not the weights' {config}")
    cache, _ = ensure_caches(run)
    digest = file_sha256(weights)[:12] + ("_warp" if warp else "")
    if run.main:
        save_checkpoint(run.dir / "codec.pt", {"model": codec.state_dict(), "step": 0,
                                               "elapsed": 0.0, "done": True,
                                               "config": run.config.to_dict(),
                                               "frozen_from": str(weights)})
    synthetic = encoded_clips(run, cache, codec, f"synthetic_{digest}", warp_clip)
    sources, mix, real_clips = [synthetic], [1.0], None
    if real_cache is not None:
        real_clips = data_mod.FrameCache(real_cache)  # framed as run.config.model.framing
        if not len(real_clips):
            raise ValueError(f"no pseudo-labelled clips in {real_cache}: the odometry core "
                             "tracked no window of the recordings")
        labels = file_sha256(Path(real_cache) / "c2w.npy")[:12]   # new labels: encoded anew
        sources.append(encoded_clips(run, real_clips, codec, f"real_{digest}_{labels}",
                                     warp_clip))
        mix = [1.0 - real_fraction, real_fraction]
    if framing == "letterbox":  # square clips and their letterboxed strips (issue 12)
        if run.main:
            data_mod.letterbox_cache(run.dir / "cache", run.dir / "letterbox_cache",
                                     seed=run.config.train.seed, log=run.log)
        run.barrier()
        boxed = data_mod.FrameCache(run.dir / "letterbox_cache")
        sources.insert(1, encoded_clips(run, boxed, codec, f"letterbox_{digest}", warp_clip))
        share = data_mod.LETTERBOX_SHARE
        mix = [mix[0] * (1.0 - share), mix[0] * share] + mix[1:]
    dit.train()
    ema = fit_dit(run, codec, dit, sources, mix, minutes, resume, max_steps)
    out = run.dir / "rap_small.pt"
    if run.main:
        meta = {"finetuned_from": str(weights), "finetuned_from_sha256": file_sha256(weights),
                "framing": framing,
                "real_clips": len(sources[-1]) if real_clips is not None else 0,
                "real_fraction": real_fraction if real_clips is not None else 0.0,
                "recordings": real_clips.meta.get("recordings", []) if real_clips else [],
                "warp_condition": warp, "dit_weights": "ema"}
        save_weights(out, config, codec, ema, meta)
        run.log(f"fine-tuned weights -> {out}")
    return out


@torch.no_grad()
def evaluate_pose(codec, dit, val: data_mod.FrameCache, config: ModelConfig, n: int = 64,
                  steps: int = 2, method: str = "euler", seed: int = 0):
    """video -> camera on held-out clips with known K: rotation error (deg) of every frame
    against the truth and of consecutive relative rotations, vs. the identity baseline, and
    the angle between the predicted and true direction of the last camera centre (clips whose
    last camera moved more than 0.2 of the normalised scale)."""
    n = min(n, len(val))
    S, t_lat = config.image_size, config.latent_frames
    gen = torch.Generator().manual_seed(seed)
    device = next(dit.parameters()).device              # codec and dit on the same device
    err, rel_err, base, base_rel, dir_err, dir_base = [], [], [], [], [], []
    for start in range(0, n, 16):
        idx = list(range(start, min(n, start + 16)))
        frames = np.stack([np.asarray(val.frames[i]) for i in idx])
        video = codec.encode(torch.from_numpy(preprocess.images_to_model(frames)).to(device))
        motion = torch.from_numpy(np.stack([preprocess.motion_channels(f, config)
                                            for f in frames])).to(device)
        rax0 = np.stack([preprocess.normalize_raxels(encode_raxels(
            val.K[i], np.repeat(np.eye(4)[None], config.frames, 0), S, S, config.raxel_encoding))
            for i in idx])
        raxel = encode_raxels_latent(codec, torch.from_numpy(rax0).to(device))  # frame 0 exact
        cv, cr = (m.to(device) for m in job_batch_masks("video_to_camera", len(idx), t_lat,
                                                         k_known=True))
        _, rx = sample(dit, video, raxel, cv, cr, motion, steps=steps, method=method,
                       generator=gen)
        rec = preprocess.denormalize_raxels(
            decode_raxels_latent(codec, rx, config.frames).cpu().numpy())
        for j, i in enumerate(idx):
            R_true = val.c2w[i][:, :3, :3]
            decoded_c2w = decode_raxels(rec[j], K=val.K[i], encoding=config.raxel_encoding).c2w
            R_pred = decoded_c2w[:, :3, :3]
            err += list(rotation_angle_deg(R_pred.transpose(0, 2, 1) @ R_true)[1:])
            base += list(rotation_angle_deg(R_true)[1:])
            rp = R_pred[:-1].transpose(0, 2, 1) @ R_pred[1:]
            rt = R_true[:-1].transpose(0, 2, 1) @ R_true[1:]
            rel_err += list(rotation_angle_deg(rp.transpose(0, 2, 1) @ rt))
            base_rel += list(rotation_angle_deg(rt))
            c_true = val.c2w[i][-1, :3, 3]
            c_pred = decoded_c2w[-1, :3, 3]
            if np.linalg.norm(c_true) > 0.2:  # the last camera moved: compare directions
                cos = c_true @ c_pred / (np.linalg.norm(c_true) * np.linalg.norm(c_pred) + 1e-12)
                dir_err.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
                fwd = c_true[2] / np.linalg.norm(c_true)   # baseline: straight ahead (+z)
                dir_base.append(np.degrees(np.arccos(np.clip(fwd, -1, 1))))
    return {"rot_err_deg": float(np.mean(err)), "identity_rot_err_deg": float(np.mean(base)),
            "rel_rot_err_deg": float(np.mean(rel_err)),
            "identity_rel_rot_err_deg": float(np.mean(base_rel)),
            "last_translation_dir_err_deg": float(np.mean(dir_err)) if dir_err else float("nan"),
            "forward_translation_dir_err_deg": float(np.mean(dir_base)) if dir_base else float("nan")}


@torch.no_grad()
def evaluate_view(codec, dit, val: data_mod.FrameCache, config: ModelConfig, warps=None,
                  n: int = 64, steps: int = 1, seed: int = 0):
    """images + camera -> video on held-out clips (frame 0 and every true camera given, K
    known): PSNR in dB (uint8 frames, S x S) of the generated frames 1..T-1 against the truth,
    mean over clips. warps: None (no warp condition), or per clip (warped (T, S, S, 3) uint8,
    validity (T, S, S)) in the model's view (``pipeline.conditioning``), fed as the warp
    condition of a warp-conditioned ``dit``. steps Euler steps from noise (1: the
    ViewPipeline default, the model's expected frames)."""
    n = min(n, len(val))
    S, t_lat = config.image_size, config.latent_frames
    gen = torch.Generator().manual_seed(seed)
    psnrs = []
    for start in range(0, n, 16):
        idx = list(range(start, min(n, start + 16)))
        frames = np.stack([np.asarray(val.frames[i]) for i in idx])
        video = codec.encode(torch.from_numpy(preprocess.images_to_model(frames)))
        rax = np.stack([data_mod.raxels_for(val.K[i], val.c2w[i], S, config.raxel_encoding)
                        for i in idx])
        raxel = encode_raxels_latent(codec, torch.from_numpy(rax))
        warp = None
        if warps is not None:
            warped = np.stack([warps[i][0] for i in idx])
            latents = codec.encode(torch.from_numpy(preprocess.images_to_model(
                warped.reshape(-1, S, S, 3)).reshape(warped.shape[:2] + (3, S, S))))
            validity = torch.from_numpy(np.stack([
                preprocess.warp_validity_channel(warps[i][1], config) for i in idx]))
            warp = torch.cat([latents, validity], dim=2)
        cv, cr = job_batch_masks("images_camera_to_video", len(idx), t_lat)
        vx, _ = sample(dit, video, raxel, cv, cr, torch.zeros(len(idx), t_lat, config.motion_dim,
                                                               *video.shape[3:]),
                       steps=steps, generator=gen, warp=warp)
        out = preprocess.model_to_images(codec.decode(vx, frames=config.frames).numpy())
        mse = ((out[:, 1:].astype(np.float64) - frames[:, 1:]) ** 2).mean(axis=(1, 2, 3, 4))
        psnrs += list(10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10)))
    return float(np.mean(psnrs))


def evaluate_weights(weights, run_config: RunConfig, run_dir, n: int = 64):
    """Held-out numbers of exported weights (a generator of report lines): codec PSNR and pose
    error through the codec, then video -> camera rotation errors for a few samplers."""
    config, codec, dit = load_weights(weights)
    run_config = RunConfig(config, run_config.train)
    run_config.train.val_clips = max(run_config.train.val_clips, n)
    run = Run(run_dir, run_config, quiet=True)
    data_mod.build_frame_cache(run.dir / "val_cache", run_config.train.val_clips, config.frames,
                               config.image_size, run_config.train.render_workers, split="val",
                               log=lambda m: None)
    val = data_mod.FrameCache(run.dir / "val_cache")
    m = evaluate_codec(codec, val, config, n)
    yield "codec: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items())
    for method, steps in (("euler", 1), ("euler", 2), ("heun", 2), ("euler", 4), ("euler", 8)):
        t0 = time.time()
        m = evaluate_pose(codec, dit, val, config, n, steps=steps, method=method)
        yield (f"video->camera {method} {steps} steps: "
               + ", ".join(f"{k} {v:.4g}" for k, v in m.items())
               + f" ({time.time() - t0:.1f} s for {min(n, len(val))} clips)")


# ---------------------------------------------------------------- entry point


def run_training(config: RunConfig, run_dir, stage="all", resume=False, minutes=None,
                 codec_minutes=None, max_steps=0, quiet=False, warp_clip=None):
    """Run stage "codec", "dit" or "all" (codec, then dit). Returns the Run. warp_clip: the
    warp condition's maker (``encoded_clips``), needed with ``model.warp_condition``."""
    run = Run(run_dir, config, quiet=quiet)
    run.log(f"start: stage {stage}, resume {resume}, world {run.world}, config "
            f"{config.to_dict()}")
    if stage in ("codec", "all"):
        cm = codec_minutes if codec_minutes is not None else config.train.codec_minutes
        train_codec(run, cm, resume or stage == "all", max_steps=max_steps)
    if stage in ("dit", "all"):
        m = minutes if minutes is not None else config.train.minutes
        train_dit(run, m, resume, max_steps=max_steps, warp_clip=warp_clip)
    if run.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        print(f"rank {run.rank}/{run.world} finished", flush=True)
    return run
