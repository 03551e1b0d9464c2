"""Flow-matching sampling on the backend's networks, and the raxel latents.

Flow matching (docs/architecture.md): x_t = (1 - t) x_0 + t noise, v = noise - x_0; sampling
integrates t from 1 (noise) to 0 on the noised latent frames only; clean (conditioning)
frames keep flow time 0. Every network call goes through a ``rap_ros.backend`` Backend;
shapes: video latents (B, t, C, s, s), raxel latents (B, t, 2C, s, s), motion (B, t, M, s, s).
"""
import numpy as np

SAMPLERS = ("euler", "heun")


def integrate_flow(backend, video, raxel, clean_video, clean_raxel, motion, steps,
                   sampler="euler", t_start=1.0, warp=None):
    """Integrate the flow from t = t_start to t = 0 on the noised latent frames.

    video (B, t, C, s, s), raxel (B, t, 2C, s, s): clean latents at the frames marked
    in clean_video, clean_raxel ((t,) bool), elsewhere noise (t_start = 1) or a guess noised
    to flow time t_start ((1 - t_start) guess + t_start noise, as SDEdit starts from a
    guide image); motion (B, t, M, s, s); warp (B, t, C+1, s, s) or None: the geometry
    condition of a warp-conditioned model (``conditioning.warp_condition``), passed to every
    denoiser call (None: not passed, so backends without the input work as before).
    ``steps`` uniform steps of Euler (one velocity call each) or Heun (two calls each,
    the second at the step's end, including the last step to t = 0).
    Clean frames keep flow time 0 and are never changed. Returns (video, raxel).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 < t_start <= 1.0:
        raise ValueError(f"t_start must be in (0, 1], got {t_start}")
    batch = video.shape[0]
    noised_v = ~np.asarray(clean_video, bool)
    noised_r = ~np.asarray(clean_raxel, bool)
    mask_v = noised_v[None, :, None, None, None].astype(np.float32)
    mask_r = noised_r[None, :, None, None, None].astype(np.float32)

    def velocity(v, r, time_):
        t_video = np.broadcast_to(np.where(noised_v, time_, 0.0), (batch, len(noised_v)))
        t_raxel = np.broadcast_to(np.where(noised_r, time_, 0.0), (batch, len(noised_r)))
        if warp is None:
            return backend.velocity(v, r, t_video.astype(np.float32),
                                    t_raxel.astype(np.float32), motion)
        return backend.velocity(v, r, t_video.astype(np.float32), t_raxel.astype(np.float32),
                                motion, warp)

    times = np.linspace(t_start, 0.0, steps + 1, dtype=np.float32)
    video = np.array(video, dtype=np.float32)
    raxel = np.array(raxel, dtype=np.float32)
    for t0, t1 in zip(times[:-1], times[1:]):
        dt = np.float32(t1 - t0)  # negative
        v_video, v_raxel = velocity(video, raxel, t0)
        if sampler == "heun":
            video_end = video + dt * mask_v * v_video
            raxel_end = raxel + dt * mask_r * v_raxel
            v2_video, v2_raxel = velocity(video_end, raxel_end, t1)
            v_video = 0.5 * (v_video + v2_video)
            v_raxel = 0.5 * (v_raxel + v2_raxel)
        video = video + dt * mask_v * v_video
        raxel = raxel + dt * mask_r * v_raxel
    return video, raxel


def encode_raxel_latents(backend, raxels):
    """Normalised raxels (B, T, 6, S, S) -> raxel latents (B, t, 2C, s, s).

    The direction and origin halves are encoded as two videos in one batched call.
    """
    B = raxels.shape[0]
    halves = np.concatenate([raxels[:, :, 0:3], raxels[:, :, 3:6]], axis=0)  # (2B, T, 3, S, S)
    z = backend.encode(halves)                                              # (2B, t, C, s, s)
    return np.concatenate([z[:B], z[B:]], axis=2)


def decode_raxel_latents(backend, z, frames):
    """Raxel latents (B, t, 2C, s, s) -> normalised raxels (B, T, 6, S, S), one call."""
    B, C = z.shape[0], z.shape[2] // 2
    halves = np.concatenate([z[:, :, :C], z[:, :, C:]], axis=0)            # (2B, t, C, s, s)
    x = backend.decode(halves, frames)                                      # (2B, T, 3, S, S)
    return np.concatenate([x[:B], x[B:]], axis=2)
