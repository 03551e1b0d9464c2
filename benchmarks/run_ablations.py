"""The paper's three ablations on short runs, each against the default recipe on equal terms.

Every variant trains a denoiser from scratch for the same number of steps on the same clips,
on top of the frozen codec of a base run (default ``runs/default``), and is scored on the
held-out validation clips of that run (seeds the training never sees):

* ``default``   the shipped recipe (raxels = ray direction + origin, DSCA, cosine loss)
* ``plucker``   Plücker raxels (direction + moment) instead of direction + origin
* ``joint``     one joint self-attention over both modalities instead of DSCA
* ``no_cosine`` without the cosine loss on decoded ray directions

Scores: the held-out flow-matching loss of the video -> camera job (raxel MSE and the angular
term, same noise for every variant) and the pose errors of 2-step Euler sampling with K known
(`evaluate.evaluate_pose`), beside the identity-pose baseline.

Caveat stated in the results: the codec is the base run's, trained on direction + origin
raxels; the Plücker variant reuses it (its moments are encoded by a codec never trained on
them), as a shared latent space is the point of the design.

Run (resumable; about 15 min per variant and 500 steps on one core):
    .venv/bin/python benchmarks/run_ablations.py --steps 500 --clips 1500 --threads 1
"""
import argparse
import json
import os
import pathlib
import time

import numpy as np
import torch

from rap_ros.contract import preprocess
from rap_ros.model import data as data_mod
from rap_ros.model.checkpoint import load_checkpoint, load_weights, weights_from_run
from rap_ros.model.codec import encode_raxels_latent
from rap_ros.model.config import load_run_config
from rap_ros.model.flow import flow_loss, job_batch_masks
from rap_ros.model.evaluate import evaluate_pose
from rap_ros.model.train import run_training

RESULTS = pathlib.Path(__file__).parent / "results"

VARIANTS = {
    "default": [],
    "plucker": ["model.raxel_encoding=plucker"],
    "joint": ["model.attention=joint"],
    "no_cosine": ["train.cosine_weight=0.0"],
}


def link(src: pathlib.Path, dst: pathlib.Path):
    if not dst.exists():
        os.symlink(src.resolve(), dst)


def subset_data(base: pathlib.Path, out: pathlib.Path, clips: int, codec_step: int):
    """The first `clips` clips of the base run's frame cache (and of its latents, which hold
    direction + origin raxels) under out/. Returns (cache dir, latents path)."""
    cache = out / "cache"
    meta_path = cache / "meta.json"
    if not meta_path.is_file():
        src = data_mod.FrameCache(base / "cache")
        if clips > len(src):
            raise ValueError(f"--clips {clips} > {len(src)} clips in {base / 'cache'}")
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / "frames.npy", np.asarray(src.frames[:clips]))
        np.save(cache / "K.npy", src.K[:clips])
        np.save(cache / "c2w.npy", src.c2w[:clips])
        meta = dict(src.meta, n=clips, done=clips)
        meta_path.write_text(json.dumps(meta))
    latents = out / f"latents_{codec_step}.npz"
    if not latents.is_file():
        with np.load(base / f"latents_{codec_step}.npz") as z:
            np.savez(latents, **{k: z[k][:clips] for k in z.files})
    return cache, latents


@torch.no_grad()
def held_out_loss(codec, dit, val, config, n: int = 64, repeats: int = 4):
    """Mean flow-matching loss terms of the video -> camera job (K known) on n held-out clips,
    with fixed noise and times (the same for every variant)."""
    n = min(n, len(val))
    frames = np.stack([np.asarray(val.frames[i]) for i in range(n)])
    video = codec.encode(torch.from_numpy(preprocess.images_to_model(frames)))
    rax = np.stack([data_mod.raxels_for(val.K[i], val.c2w[i], config.image_size,
                                        config.raxel_encoding) for i in range(n)])
    raxel = encode_raxels_latent(codec, torch.from_numpy(rax))
    motion = torch.from_numpy(np.stack([preprocess.motion_channels(f, config) for f in frames]))
    dirs = torch.from_numpy(rax[:, :, 0:3])
    cv, cr = job_batch_masks("video_to_camera", n, config.latent_frames, k_known=True)
    totals = {}
    for r in range(repeats):
        _, stats = flow_loss(dit, video, raxel, motion, cv, cr, codec=codec, dirs=dirs,
                             cosine_weight=1.0, cosine_samples=n, time_shift=3.0,
                             generator=torch.Generator().manual_seed(r))
        for key in ("mse_raxel", "cosine"):
            totals[key] = totals.get(key, 0.0) + stats[key] / repeats
    return totals


def score(run_dir: pathlib.Path, val, n: int):
    """Held-out scores of a variant's EMA weights (exported as the shipped ones are)."""
    weights = weights_from_run(run_dir, run_dir / "rap_small.pt")
    config, codec, dit = load_weights(weights)
    meta = load_checkpoint(weights)["meta"]
    out = {"steps": meta["dit_step"], "train_minutes": round(meta["dit_minutes"], 1)}
    out.update({f"held_out_{k}": v for k, v in held_out_loss(codec, dit, val, config, n).items()})
    out.update(evaluate_pose(codec, dit, val, config, n, steps=2, method="euler"))
    return out


def write_report(results: dict, args, path_md: pathlib.Path):
    keys = [("held_out_mse_raxel", "held-out raxel MSE", 4),
            ("held_out_cosine", "held-out 1-cos", 5),
            ("rel_rot_err_deg", "rel. rot. err °", 3),
            ("rot_err_deg", "rot. err vs frame 0 °", 3),
            ("last_translation_dir_err_deg", "last-centre direction err °", 2)]
    first = next(iter(results.values()))
    lines = ["# Ablations on short runs",
             "",
             f"Command: `.venv/bin/python benchmarks/run_ablations.py --steps {args.steps} "
             f"--clips {args.clips} --threads {args.threads}` (base run `{args.base}`).",
             "",
             f"Each variant: a denoiser trained from scratch for {args.steps} steps of batch "
             f"{args.batch} on the same {args.clips} training clips, over the base run's frozen "
             f"codec; scored on {args.val} held-out clips (EMA weights, video -> camera, "
             "K known, 2 Euler steps for poses).",
             "",
             "| variant | " + " | ".join(k[1] for k in keys) + " | train min |",
             "|---" * (len(keys) + 2) + "|"]
    for name, r in results.items():
        cells = [f"{r[k]:.{d}f}" for k, _, d in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['train_minutes']} |")
    lines += ["| identity poses (no model) | | | "
              f"{first['identity_rel_rot_err_deg']:.3f} | {first['identity_rot_err_deg']:.3f} | "
              f"{first['forward_translation_dir_err_deg']:.2f} (straight ahead) | |",
              "",
              "The Plücker variant reuses the base codec, which was trained on direction + "
              "origin raxels only.",
              ""]
    path_md.write_text("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", default="runs/default", help="run with a finished codec")
    p.add_argument("--out-dir", default="runs/ablations")
    p.add_argument("--config", default="default")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--clips", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--val", type=int, default=64, help="held-out clips scored")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--out", default=str(RESULTS / "ablations"))
    args = p.parse_args()

    base, out = pathlib.Path(args.base), pathlib.Path(args.out_dir)
    codec_step = load_checkpoint(base / "codec.pt")["step"]
    data_dir = out / "data"
    cache, latents = subset_data(base, data_dir, args.clips, codec_step)
    val = data_mod.FrameCache(base / "val_cache")
    results = {}
    for name in args.variants:
        run_dir = out / name
        run_dir.mkdir(parents=True, exist_ok=True)
        link(cache, run_dir / "cache")
        link(base / "val_cache", run_dir / "val_cache")
        link(base / "codec.pt", run_dir / "codec.pt")
        overrides = VARIANTS[name] + [f"train.train_clips={args.clips}",
                                      f"train.val_clips={len(val)}",
                                      f"train.batch={args.batch}",
                                      f"train.threads={args.threads}"]
        config = load_run_config(args.config, overrides)
        if config.model.raxel_encoding == "raydir_origin":
            link(latents, run_dir / latents.name)
        t0 = time.time()
        print(f"[{name}] training {args.steps} steps ({' '.join(overrides)})", flush=True)
        run_training(config, run_dir, stage="dit", resume=True, minutes=1e6,
                     max_steps=args.steps, quiet=True)
        results[name] = score(run_dir, val, args.val)
        print(f"[{name}] {time.time() - t0:.0f} s: {results[name]}", flush=True)
    out_json = pathlib.Path(args.out).with_suffix(".json")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    write_report(results, args, out_json.with_suffix(".md"))
    print(out_json.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
