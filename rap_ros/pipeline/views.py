"""Images + camera -> video: frames seen from camera paths that start at a source image, and
the closed-loop consistency test of a prediction (the paper's: estimate the poses back from
the predicted frames, regenerate, compare).

Images are uint8 RGB (H, W, 3) in, (S, S, 3) out; paths are camera-to-world (T, 4, 4) poses
relative to the source camera (OpenCV axes) at the contract's normalised scale
(``geometry.relative_to_first``).
"""
import threading
from dataclasses import dataclass

import numpy as np

from rap_ros.contract import preprocess
from rap_ros.geometry.cameras import relative_to_first
from rap_ros.geometry.raxels import encode_raxels
from rap_ros.geometry.rotations import rotation_angle_deg
from rap_ros.metrics import psnr
from rap_ros.pipeline.framing import prepare_frames
from rap_ros.pipeline.sampling import SAMPLERS, encode_raxel_latents, integrate_flow
from rap_ros.pipeline.trajectory import TrajectoryPipeline


def per_frame_psnr(a, b, cap=100.0):
    """PSNR (dB) of each frame of uint8 videos a, b (T, H, W, 3), capped at ``cap`` (identical
    frames give ``cap``)."""
    values = psnr(a.astype(np.float64) / 255.0, b.astype(np.float64) / 255.0)
    return np.minimum(np.nan_to_num(values, nan=cap, posinf=cap), cap)


@dataclass
class ClosedLoopResult:
    """The closed-loop consistency test of one predicted clip.

    frames: (T, S, S, 3) uint8 predicted from the requested path.
    regenerated: (T, S, S, 3) uint8 predicted again from the poses estimated on frames.
    c2w: (T, 4, 4) poses estimated from frames (normalised, relative to the first).
    psnr: PSNR in dB between frames and regenerated (frames 1.., the source excluded).
    translation_error: RMS distance between estimated and requested camera centres,
        both normalised by ``relative_to_first`` (no further alignment).
    rotation_error_deg: mean rotation angle between estimated and requested poses.
    """

    frames: np.ndarray
    regenerated: np.ndarray
    c2w: np.ndarray
    psnr: float
    translation_error: float
    rotation_error_deg: float


class ViewPipeline:
    """Images + camera -> video: frames seen from a camera path starting at a source image.

    backend: a ``rap_ros.backend.Backend``; steps, sampler: flow integration. The default,
        one Euler step from noise, returns the model's expected frames (its clean estimate
        at t = 1): the closest to the truth on average (measured: PSNR and SSIM above
        sampling and above copying the source, benchmarks/results/model_quality.md), if
        blurry where the future is uncertain. More steps draw a sample instead: sharper,
        and further from the truth.
    seed: noise generator seed (drawn from in order across calls).
    estimator: the TrajectoryPipeline used by ``closed_loop`` (default: 2 Euler steps,
        one sample, on the same backend).
    """

    def __init__(self, backend, steps=1, sampler="euler", seed=0, estimator=None):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        self.backend = backend
        self.config = backend.config
        self.steps, self.sampler = int(steps), sampler
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        self.estimator = estimator or TrajectoryPipeline(backend, steps=2, sampler="euler",
                                                         samples=1, seed=seed)

    def predict(self, source, K, rel_c2w):
        """Frames along one path.

        source: uint8 (H, W, 3) RGB, any size (centre-cropped and resized to S).
        K: (3, 3) intrinsics of the source at H x W (the path's cameras share them).
        rel_c2w: (T, 4, 4) camera-to-world poses relative to the source camera
            (rel_c2w[0] = I), unit scale per the contract (mean distance of the centres
            from the first = 1, ``geometry.relative_to_first``); T = 1 + tf * k.
        Returns uint8 (T, S, S, 3); frame 0 is the codec's reconstruction of the source.
        """
        return self.predict_batch(source, K, np.asarray(rel_c2w)[None])[0]

    def predict_batch(self, source, K, rel_c2w, chunk_size=None):
        """Frames along P candidate paths from one source.

        rel_c2w: (P, T, 4, 4). Returns uint8 (P, T, S, S, 3).
        chunk_size: paths per model call (None: all P in one call). The noise of all P
            paths is drawn first, so the frames do not depend on the chunk size (up to
            float rounding); memory grows with the chunk, not with P.
        """
        rel_c2w = self._check_paths(rel_c2w, K)
        source_latent = self._source_latent(source, K)
        noise = self._draw_noise(*rel_c2w.shape[:2])
        return np.concatenate([self._predict_chunk(source_latent, rel_c2w[chunk], noise[chunk])
                               for chunk in chunks(len(rel_c2w), chunk_size)])

    def _check_paths(self, rel_c2w, K):
        rel_c2w = np.asarray(rel_c2w, dtype=np.float64)
        if rel_c2w.ndim != 4 or rel_c2w.shape[2:] != (4, 4):
            raise ValueError(f"rel_c2w must be (P, T, 4, 4), got {rel_c2w.shape}")
        if K is None:
            raise ValueError("ViewPipeline needs the source intrinsics K")
        self.backend.check_frames(rel_c2w.shape[1])
        return rel_c2w

    def _source_latent(self, source, K):
        """(K at the model's resolution, the source's latent (1, 1, C, s, s))."""
        source_model, K_model, _ = prepare_frames(np.asarray(source)[None], K,
                                                  self.config.image_size)
        first = self.backend.encode(preprocess.images_to_model(source_model)[None])
        return K_model, first

    def _draw_noise(self, P, T):
        """Initial latent noise (P, t, C, s, s) for P paths of T frames, in order from the
        generator."""
        cfg = self.config
        with self._rng_lock:
            return self._rng.standard_normal(
                (P, self.backend.latent_frames(T), cfg.latent_channels, cfg.latent_size,
                 cfg.latent_size)).astype(np.float32)

    def _predict_chunk(self, source_latent, rel_c2w, noise):
        """Frames (p, T, S, S, 3) along p paths (p, T, 4, 4) in one batched model call."""
        cfg, backend = self.config, self.backend
        K_model, first = source_latent
        P, T = rel_c2w.shape[:2]
        S = cfg.image_size
        raxels = encode_raxels(K_model, rel_c2w.reshape(P * T, 4, 4), S, S,
                               cfg.raxel_encoding)
        raxels = preprocess.normalize_raxels(raxels).reshape(P, T, 6, S, S)
        raxel = encode_raxel_latents(backend, raxels)                 # (P, t, 2C, s, s)
        t_lat, s = raxel.shape[1], raxel.shape[-1]
        if noise.shape[1:] != (t_lat, cfg.latent_channels, s, s):
            raise ValueError(f"noise of shape {noise.shape} for latents of "
                             f"{(t_lat, cfg.latent_channels, s, s)}")
        video = noise.copy()
        video[:, 0] = first[:, 0]
        motion = np.zeros((P, t_lat, cfg.motion_dim, s, s), np.float32)
        clean_video, clean_raxel = preprocess.job_masks("images_camera_to_video", t_lat)
        video, _ = integrate_flow(backend, video, raxel, clean_video, clean_raxel, motion,
                                  self.steps, self.sampler)
        return preprocess.model_to_images(backend.decode(video, T))  # (P, T, S, S, 3)

    def closed_loop(self, source, K, rel_c2w):
        """Closed-loop consistency of the prediction along one path.

        Predicts frames along rel_c2w (as ``predict``), estimates their poses (video ->
        camera with K known), regenerates the frames from the estimated poses and
        compares: PSNR between the two videos (higher is more consistent) and the error
        between estimated and requested poses. Returns a ClosedLoopResult.
        """
        return self.closed_loop_batch(source, K, np.asarray(rel_c2w)[None])[0]

    def closed_loop_batch(self, source, K, rel_c2w, chunk_size=None):
        """``closed_loop`` for P paths (P, T, 4, 4); returns P results.

        chunk_size: paths per model call (None: all P at once). Each chunk is predicted,
        estimated and regenerated before the next starts, so memory grows with the chunk,
        not with P; the noise of all P paths is drawn first, so the results do not depend
        on the chunk size (up to float rounding).
        """
        rel_c2w = self._check_paths(rel_c2w, K)
        source_latent = self._source_latent(source, K)
        K_model = source_latent[0]
        P, T = rel_c2w.shape[:2]
        noise = self._draw_noise(P, T)
        noise_again = self._draw_noise(P, T)
        results = []
        for chunk in chunks(P, chunk_size):
            frames = self._predict_chunk(source_latent, rel_c2w[chunk], noise[chunk])
            estimates = self.estimator.estimate_batch(frames, K_model)
            c2w_est = np.stack([e.c2w for e in estimates])
            regenerated = self._predict_chunk(source_latent, c2w_est, noise_again[chunk])
            for i, estimate in enumerate(estimates):
                results.append(self._closed_loop_result(
                    rel_c2w[chunk.start + i], frames[i], regenerated[i], estimate.c2w))
        return results

    @staticmethod
    def _closed_loop_result(requested, frames, regenerated, c2w):
        requested, _ = relative_to_first(requested)
        score = float(np.mean(per_frame_psnr(frames[1:], regenerated[1:])))
        return ClosedLoopResult(
            frames=frames, regenerated=regenerated, c2w=c2w, psnr=score,
            translation_error=float(np.sqrt(np.mean(np.sum(
                (c2w[:, :3, 3] - requested[:, :3, 3]) ** 2, axis=-1)))),
            rotation_error_deg=float(np.mean(rotation_angle_deg(
                np.swapaxes(c2w[:, :3, :3], -1, -2) @ requested[:, :3, :3]))))


def chunks(count, size=None):
    """Slices covering range(count) in order, ``size`` items each (the last may be
    shorter); size None or < 1: one slice of everything."""
    if not size or size < 1 or size >= count:
        return [slice(0, count)]
    return [slice(i, min(i + size, count)) for i in range(0, count, int(size))]
