"""Held-out evaluations of the codec and the denoiser, during training and of exported weights.

Every evaluation reads a clip cache of held-out seeds (``data.FrameCache``, the run's
val_cache/) and returns plain numbers: angles in degrees, PSNR in dB of uint8 frames.
"""
import time

import numpy as np
import torch

from rap_ros.contract import preprocess
from rap_ros.contract.config import ModelConfig
from rap_ros.geometry.raxels import decode_raxels, encode_raxels
from rap_ros.geometry.rotations import rotation_angle_deg
from rap_ros.model import data as data_mod
from rap_ros.model.checkpoint import load_weights
from rap_ros.model.codec import decode_raxels_latent, encode_raxels_latent
from rap_ros.model.config import RunConfig
from rap_ros.model.flow import job_batch_masks, sample
from rap_ros.model.run import Run


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
    """Raxels (B, T, 6, S, S) numpy -> their latents on the codec's device."""
    return encode_raxels_latent(codec, torch.from_numpy(rax).to(next(codec.parameters()).device))


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

