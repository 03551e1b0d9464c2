"""Video -> camera: a window of frames -> camera-to-world poses, intrinsics, covariance.

One code path for the ROS nodes, the evaluator and the benchmarks (windows of a stream go
through ``rap_ros.pipeline.streaming``). Frames are uint8 RGB (T, H, W, 3) of any size;
poses are relative to the window's first camera at the contract's normalised scale (mean
distance of the centres from the first = 1); K is (3, 3) in pixels. Every network call goes
through a ``rap_ros.backend`` Backend; everything else is numpy/OpenCV (no torch).
"""
import threading
import time
from dataclasses import dataclass

import numpy as np

from rap_ros.contract import preprocess
from rap_ros.geometry.cameras import relative_to_first
from rap_ros.geometry.poses import mean_pose, pose_covariance
from rap_ros.geometry.raxels import decode_raxels, encode_raxels
from rap_ros.pipeline.framing import framing_of, prepare_frames
from rap_ros.pipeline.refine import refine_at_resolution
from rap_ros.pipeline.sampling import (SAMPLERS, decode_raxel_latents, encode_raxel_latents,
                                       integrate_flow)

# Preprocess's optical flow keeps one OpenCV DIS object per process, which is not safe
# to use from two threads at once (two nodes in one process); calls are serialised.
_FLOW_LOCK = threading.Lock()


@dataclass
class WindowEstimate:
    """Cameras of one window of frames.

    c2w: (T, 4, 4) camera-to-world poses relative to the first frame (c2w[0] = I),
        translation at the normalised scale (mean distance of the centres from the
        first = 1, see ``geometry.relative_to_first``); the mean over samples.
    K: (3, 3) intrinsics at the input resolution (the given K, or the estimate).
    covariance: (T, 6, 6) pose covariance over the samples in the frame of c2w:
        translation offset then rotation vector of the world-frame rotation offset
        (normalised units, radians); zeros with one sample.
    timings: seconds spent in resize, encode (codec and motion channels), denoise,
        decode (codec decoder and raxel fit), refine (with refine=True), and total.
    samples: (N, T, 4, 4) every sample's poses, normalised like c2w.
    K_model: (3, 3) intrinsics at the model resolution S x S.
    residual_deg: (T,) mean angle between decoded rays and the fitted cameras
        (over samples), a self-check of the decoded raxels.
    model_c2w: (T, 4, 4) the model's poses before refinement (equal to c2w without it).
    """

    c2w: np.ndarray
    K: np.ndarray
    covariance: np.ndarray
    timings: dict
    samples: np.ndarray = None
    K_model: np.ndarray = None
    residual_deg: np.ndarray = None
    model_c2w: np.ndarray = None


class TrajectoryPipeline:
    """Video -> camera: estimate the poses (and intrinsics) of a window of frames.

    backend: a ``rap_ros.backend.Backend``.
    steps: flow integration steps; sampler: "euler" or "heun".
    samples: independent samples drawn in one batched call; their spread gives the
        covariance (1: no covariance).
    seed: seed of the noise generator, drawn from in order across calls.
    refine: refine each window's rotations and directions of travel against optical flow of
        the input frames, keeping the model's step lengths (``rap_ros.pipeline.refine``); the
        model's own poses stay in ``WindowEstimate.model_c2w``.
    fit_padding: with letterbox weights (``config.framing``), also fit the cameras (and K)
        to the raxels the model predicts in the padding (rays of the camera beyond the image,
        seen by no pixel); default False: only the model pixels at least half inside the
        image (``Framing.content_mask``) are fitted, as the padding's rays are extrapolated
        from nothing the model sees (measured: no difference either way,
        benchmarks/results/full_frame.md).
    """

    def __init__(self, backend, steps=2, sampler="euler", samples=1, seed=0, refine=False,
                 fit_padding=False):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if samples < 1 or steps < 1:
            raise ValueError("steps and samples must be >= 1")
        self.backend = backend
        self.config = backend.config
        self.steps, self.sampler, self.samples = int(steps), sampler, int(samples)
        self.refine = bool(refine)
        self.fit_padding = bool(fit_padding)
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()

    def estimate_window(self, frames, K=None):
        """Cameras of one window.

        frames: uint8 (T, H, W, 3) RGB, any size (framed as the weights say,
            ``config.framing``: centre-cropped to a square, or letterboxed, and resized to
            S); T = 1 + temporal_factor * k.
        K: (3, 3) intrinsics at H x W, or None to estimate them from the raxels.
        Returns a WindowEstimate.
        """
        return self.estimate_batch(np.asarray(frames)[None], K)[0]

    def estimate_batch(self, frames, K=None):
        """Cameras of several windows of the same size in one batched model call.

        frames: uint8 (P, T, H, W, 3); K: (3, 3) shared by all, or None.
        Returns a list of P WindowEstimates (timings are those of the whole batch).
        """
        cfg, backend = self.config, self.backend
        frames = np.asarray(frames)
        if frames.ndim != 5:
            raise ValueError(f"frames must be (P, T, H, W, 3), got {frames.shape}")
        P, T = frames.shape[:2]
        backend.check_frames(T)
        S, N = cfg.image_size, self.samples
        K_known = K is not None
        timings = {}
        start = time.perf_counter()

        model_frames, K_model, framing = prepare_frames(frames.reshape(P * T, *frames.shape[2:]),
                                                        K, S, framing_of(cfg))
        model_frames = model_frames.reshape(P, T, S, S, 3)
        timings["resize"] = time.perf_counter() - start

        mark = time.perf_counter()
        video = backend.encode(preprocess.images_to_model(model_frames))  # (P, t, C, s, s)
        t_lat = video.shape[1]
        s = video.shape[-1]
        if cfg.motion_channels:
            with _FLOW_LOCK:
                motion = np.stack([preprocess.motion_channels(f, cfg) for f in model_frames])
        else:
            motion = np.zeros((P, t_lat, cfg.motion_dim, s, s), np.float32)
        clean_video, clean_raxel = preprocess.job_masks("video_to_camera", t_lat,
                                                        k_known=K_known)
        first_raxel = None
        if K_known:
            raxels0 = encode_raxels(K_model, np.eye(4)[None], S, S, cfg.raxel_encoding)
            raxels0 = preprocess.normalize_raxels(raxels0)[None]   # (1, 1, 6, S, S)
            first_raxel = encode_raxel_latents(backend, raxels0)[:, 0]  # (1, 2C, s, s)
        timings["encode"] = time.perf_counter() - mark

        mark = time.perf_counter()
        video = np.repeat(video, N, axis=0)            # (P*N, t, C, s, s), window-major
        motion = np.repeat(motion, N, axis=0)
        with self._rng_lock:
            raxel = self._rng.standard_normal(
                (P * N, t_lat, 2 * cfg.latent_channels, s, s)).astype(np.float32)
        if first_raxel is not None:
            raxel[:, 0] = first_raxel
        _, raxel = integrate_flow(backend, video, raxel, clean_video, clean_raxel, motion,
                                  self.steps, self.sampler)
        timings["denoise"] = time.perf_counter() - mark

        mark = time.perf_counter()
        raxels = preprocess.denormalize_raxels(decode_raxel_latents(backend, raxel, T))
        if framing.padded and not self.fit_padding:  # NaN raxels are not fitted
            raxels[..., ~framing.content_mask()] = np.nan
        decoded = decode_raxels(raxels.reshape(P * N * T, 6, S, S), K=K_model,
                                encoding=cfg.raxel_encoding)
        timings["decode"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - start

        c2w_all = decoded.c2w.reshape(P, N, T, 4, 4)
        K_all = decoded.K.reshape(P, N * T, 3, 3)
        residual = decoded.residual_deg.reshape(P, N, T).mean(axis=1)
        estimates = []
        for p in range(P):
            samples = np.stack([relative_to_first(c)[0] for c in c2w_all[p]])
            mean = mean_pose(samples)
            if K_known:
                K_est_model, K_est = K_model, np.asarray(K, dtype=np.float64)
            else:
                K_est_model = np.median(K_all[p], axis=0)
                K_est = framing.to_input(K_est_model)
            c2w = mean
            if self.refine:
                mark = time.perf_counter()
                c2w, _ = refine_at_resolution(frames[p], K_est, mean)
                elapsed = time.perf_counter() - mark
                timings["refine"] = timings.get("refine", 0.0) + elapsed
                timings["total"] += elapsed
            estimates.append(WindowEstimate(
                c2w=c2w, K=K_est, covariance=pose_covariance(samples, mean),
                timings=dict(timings), samples=samples, K_model=K_est_model,
                residual_deg=residual[p], model_c2w=mean))
        return estimates
