"""Training: stage `codec` (reconstruction), then stage `dit` (flow matching on frozen latents).

One loop per stage, readable top to bottom (nanoGPT style). Works in one CPU process and under
`torchrun` (DistributedDataParallel over gloo; each rank draws its own data from
seed + rank + step, so runs are deterministic and resumable without saving RNG state).

The run's folder, ranks and logs: ``run``; the held-out evaluations each stage ends with:
``evaluate``; fine-tuning exported weights on recordings through the denoiser loop
(``fit_dit``): ``finetune``.
"""
import time

import numpy as np
import torch
import torch.distributed as dist

from rap_ros.contract import preprocess
from rap_ros.contract.config import ModelConfig
from rap_ros.model import data as data_mod
from rap_ros.model.checkpoint import (CheckpointError, load_checkpoint, save_checkpoint,
                                      weights_from_run)
from rap_ros.model.codec import CausalVideoCodec
from rap_ros.model.config import RunConfig
from rap_ros.model.dit import RaxelDiT, count_parameters
from rap_ros.model.evaluate import evaluate_codec, evaluate_pose
from rap_ros.model.flow import draw_jobs, flow_loss
from rap_ros.model.run import Run, ensure_caches, lr_at, prefetched, resume_stage

VIEW_JOB = preprocess.JOBS.index("images_camera_to_video")  # the job the warp condition serves


# ---------------------------------------------------------------- stage 1: codec


def train_codec(run: Run, minutes: float, resume: bool, max_steps: int = 0, crop: int = 32):
    """Stage 1: the codec from scratch on reconstruction (L1 + L2) of rendered video clips and
    of raxel clips (counted twice), ``crop`` x ``crop`` crops; resumable from run.dir/codec.pt.
    Ends by setting the latent scale (unit std latents) and the held-out codec evaluation.
    Returns the codec (on the CPU)."""
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
    model = run.wrap(codec)
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
    model = run.wrap(dit)
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
