"""Flow matching on joint video/raxel latents: training loss and samplers.

Convention (docs/architecture.md): x_t = (1 - t) x_0 + t * noise, velocity target
v = noise - x_0, so x_0 = x_t - t * v; sampling integrates t from 1 to 0.

Every latent frame carries its own time: clean (conditioning) frames have t = 0 and are never
changed; noised frames share one t per sample. Per sample the training loop draws one of the
three jobs (preprocess.JOBS), which fixes the clean frames.
"""
import numpy as np
import torch
import torch.nn.functional as F

from rap_ros.contract.preprocess import JOBS, job_masks


def draw_jobs(batch: int, latent_frames: int, job_probs, p_k_known: float,
              generator: torch.Generator = None):
    """Random jobs for a batch -> (job index (B,), clean_video (B, t), clean_raxel (B, t)) bool.
    K is known (raxel frame 0 clean) with probability p_k_known in the jobs where it matters."""
    probs = torch.tensor(job_probs, dtype=torch.float64)
    jobs = torch.multinomial(probs / probs.sum(), batch, replacement=True, generator=generator)
    known = torch.rand(batch, generator=generator) < p_k_known
    cv = np.zeros((batch, latent_frames), bool)
    cr = np.zeros((batch, latent_frames), bool)
    for i in range(batch):
        cv[i], cr[i] = job_masks(int(jobs[i]), latent_frames, k_known=bool(known[i]))
    return jobs, torch.from_numpy(cv), torch.from_numpy(cr)


def frame_to_latent_index(frames: int, temporal_factor: int) -> torch.Tensor:
    """Latent frame of each video frame: 0 for frame 0, then 1 + (i - 1) // tf. (T,) long."""
    i = torch.arange(frames)
    return torch.where(i == 0, torch.zeros_like(i), 1 + (i - 1) // temporal_factor)


def _bcast(x, like):
    """(B, t) -> (B, t, 1, 1, 1) to broadcast over latent frames."""
    return x.reshape(*x.shape, *([1] * (like.dim() - x.dim())))


def visible_motion(motion, clean_video):
    """Motion channels as inference can know them: the flow of a latent frame exists only
    where its video is given (clean); noised (generated) frames get zeros.
    motion (B, t, M, s, s) or None; clean_video (B, t) bool."""
    if motion is None:
        return None
    return motion * _bcast(clean_video.to(motion.dtype), motion)


def flow_loss(dit, video, raxel, motion, clean_video, clean_raxel, *, codec=None, dirs=None,
              cosine_weight=0.0, cosine_samples=4, raxel_loss_weight=1.0, time_shift=1.0,
              generator: torch.Generator = None, warp=None):
    """Flow-matching loss for one batch.

    video (B, t, C, s, s), raxel (B, t, 2C, s, s): clean latents; motion (B, t, M, s, s),
    zeroed on noised video frames (``visible_motion``) as at inference;
    clean_video, clean_raxel (B, t) bool masks of conditioning frames;
    warp (B, t, C+1, s, s) or None: the geometry condition of a warp-conditioned denoiser
    (``dit`` docstring; zeros for the examples that go without).
    Flow times: t = s u / (1 + (s - 1) u), u ~ U(0, 1), s = time_shift (1: uniform; s > 1 puts
    more samples near t = 1, where the model must read the conditioning, SD3's shift).
    MSE between predicted and target velocity on noised frames only (mean over their elements,
    raxel term weighted by raxel_loss_weight). With cosine_weight > 0, the frozen codec decodes
    the direction half of the predicted clean raxel latents x_0 = x_t - t v of the first
    `cosine_samples` clips, and 1 - cos(angle) to the true ray directions dirs (B, T, 3, S, S)
    is averaged over the frames of noised latent frames.
    Returns (loss, dict of float stats).
    """
    B = video.shape[0]
    # random draws on the CPU generator (reproducible on any device), then moved
    u = torch.rand(B, generator=generator).to(video.device)            # (B,)
    tau = time_shift * u / (1 + (time_shift - 1) * u)                  # shifted towards 1
    t_video = tau[:, None] * (~clean_video).float()                    # (B, t), 0 on clean
    t_raxel = tau[:, None] * (~clean_raxel).float()                    # (B, t)
    noise_v = torch.randn(video.shape, generator=generator).to(video.device)
    noise_r = torch.randn(raxel.shape, generator=generator).to(raxel.device)
    xv = (1 - _bcast(t_video, video)) * video + _bcast(t_video, video) * noise_v
    xr = (1 - _bcast(t_raxel, raxel)) * raxel + _bcast(t_raxel, raxel) * noise_r
    conditions = (visible_motion(motion, clean_video),) + (() if warp is None else (warp,))
    pred_v, pred_r = dit(xv, xr, t_video, t_raxel, *conditions)

    mask_v = _bcast((~clean_video).float(), video)                     # (B, t, 1, 1, 1)
    mask_r = _bcast((~clean_raxel).float(), raxel)
    per_v = video[0, 0].numel()
    per_r = raxel[0, 0].numel()
    mse_v = ((pred_v - (noise_v - video)) ** 2 * mask_v).sum() / (mask_v.sum() * per_v).clamp(min=1)
    mse_r = ((pred_r - (noise_r - raxel)) ** 2 * mask_r).sum() / (mask_r.sum() * per_r).clamp(min=1)
    loss = mse_v + raxel_loss_weight * mse_r
    stats = {"mse_video": float(mse_v.detach()), "mse_raxel": float(mse_r.detach())}

    if cosine_weight > 0 and codec is not None and dirs is not None:
        k = min(cosine_samples, B)
        C = video.shape[2]
        x0_r = xr[:k] - _bcast(t_raxel[:k], raxel) * pred_r[:k]        # (k, t, 2C, s, s)
        T = dirs.shape[1]
        pred_dirs = codec.decode(x0_r[:, :, :C], frames=T)             # (k, T, 3, S, S)
        cos = F.cosine_similarity(pred_dirs, dirs[:k], dim=2, eps=1e-6)  # (k, T, S, S)
        idx = frame_to_latent_index(T, codec.tf).to(clean_raxel.device)
        fmask = (~clean_raxel[:k])[:, idx].float()                     # (k, T)
        cos_loss = ((1 - cos).mean(dim=(2, 3)) * fmask).sum() / fmask.sum().clamp(min=1)
        loss = loss + cosine_weight * cos_loss
        stats["cosine"] = float(cos_loss.detach())
    stats["loss"] = float(loss.detach())
    return loss, stats


@torch.no_grad()
def sample(dit, video, raxel, clean_video, clean_raxel, motion=None, *, steps=8,
           method="euler", num_samples=1, generator: torch.Generator = None, warp=None):
    """Integrate the flow from t = 1 to 0 on the noised latent frames only.

    video (B, t, C, s, s), raxel (B, t, 2C, s, s): values of the clean frames (anything where
    noised); clean_video, clean_raxel (B, t) bool; warp (B, t, C+1, s, s) or None: the
    geometry condition of a warp-conditioned denoiser. num_samples K > 1 draws K samples per input
    (outputs (B*K, ...), sample k of input b at b*K + k). method "euler" (N model calls) or
    "heun" (2N calls: Euler predictor, trapezoidal corrector on every step).
    Clean frames are returned bit-identical. Returns (video, raxel).
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    if num_samples > 1:
        rep = lambda x: None if x is None else x.repeat_interleave(num_samples, dim=0)  # noqa: E731
        video, raxel, clean_video, clean_raxel, motion, warp = map(
            rep, (video, raxel, clean_video, clean_raxel, motion, warp))
    cv, cr = _bcast(clean_video, video), _bcast(clean_raxel, raxel)
    noise_v = torch.randn(video.shape, generator=generator, dtype=video.dtype).to(video.device)
    noise_r = torch.randn(raxel.shape, generator=generator, dtype=raxel.dtype).to(raxel.device)
    xv, xr = torch.where(cv, video, noise_v), torch.where(cr, raxel, noise_r)
    noised_v, noised_r = (~clean_video).to(video.dtype), (~clean_raxel).to(raxel.dtype)
    motion = visible_motion(motion, clean_video)
    times = torch.linspace(1.0, 0.0, steps + 1)

    def velocity(xv, xr, t):
        if warp is None:  # denoisers without the warp input keep their signature
            return dit(xv, xr, t * noised_v, t * noised_r, motion)
        return dit(xv, xr, t * noised_v, t * noised_r, motion, warp)

    for i in range(steps):
        t_cur, t_next = float(times[i]), float(times[i + 1])
        dt = t_next - t_cur
        v1, r1 = velocity(xv, xr, t_cur)
        nv, nr = xv + dt * v1, xr + dt * r1
        if method == "heun":
            v2, r2 = velocity(torch.where(cv, xv, nv), torch.where(cr, xr, nr), t_next)
            nv, nr = xv + dt * 0.5 * (v1 + v2), xr + dt * 0.5 * (r1 + r2)
        xv, xr = torch.where(cv, xv, nv), torch.where(cr, xr, nr)
    return xv, xr


def job_batch_masks(job, batch: int, latent_frames: int, k_known=None):
    """Masks of one job for a whole batch: (clean_video, clean_raxel) bool (B, t)."""
    cv, cr = job_masks(job, latent_frames, k_known)
    return (torch.from_numpy(cv)[None].expand(batch, -1).clone(),
            torch.from_numpy(cr)[None].expand(batch, -1).clone())


__all__ = ["JOBS", "draw_jobs", "flow_loss", "sample", "job_batch_masks",
           "frame_to_latent_index"]
