"""From frames to poses and from poses to frames: the model's jobs as numpy pipelines.

One code path serves the ROS nodes, the bag evaluator and the benchmarks. Every network
call goes through a ``rap_ros.backend`` Backend (ONNX Runtime or torch); everything else is
numpy/OpenCV, and this module never imports torch.

* ``TrajectoryPipeline``: video -> camera. A window of T frames -> camera-to-world poses
  relative to its first frame (translation at the contract's normalised scale), the
  intrinsics, and a pose covariance from several samples.
* ``ViewPipeline``: images + camera -> video. A source image and camera paths relative to
  it -> predicted frames; ``closed_loop`` scores a prediction by estimating the poses back
  from it and regenerating (the paper's closed-loop consistency test).
* ``TrajectoryChainer``: overlapping window estimates -> one continuous trajectory.

Frames, axes and the tensor layout are those of docs/architecture.md: OpenCV camera axes,
camera-to-world 4x4 poses, intrinsics in pixels with pixel centres at integer coordinates,
images uint8 RGB (H, W, 3). Flow matching: x_t = (1 - t) x_0 + t noise, v = noise - x_0;
sampling integrates t from 1 to 0 on the noised latent frames only.
"""

import threading
import time
from dataclasses import dataclass

import numpy as np

from rap_ros.geometry import (decode_raxels, encode_raxels, pose_from_rt, project_to_so3,
                              quat_from_matrix, relative_to_first, rotation_angle_deg,
                              scale_intrinsics)
from rap_ros.metrics import psnr
from rap_ros.model import preprocess
from rap_ros.refine import refine_at_resolution

SAMPLERS = ("euler", "heun")

# Preprocess's optical flow keeps one OpenCV DIS object per process, which is not safe
# to use from two threads at once (two nodes in one process); calls are serialised.
_FLOW_LOCK = threading.Lock()


# ---------------------------------------------------------------- images and intrinsics


@dataclass
class Framing:
    """How an input image maps onto the model's S x S square.

    The centred square of side ``side`` starting at column ``x0``, row ``y0`` is cut out,
    then resized by ``scale = S / side``. Pixel (u, v) of the input lands at
    scale * (u - x0 + 0.5) - 0.5 in the model image.
    """

    x0: int
    y0: int
    side: int
    size: int

    @classmethod
    def centre_square(cls, height, width, size):
        side = min(height, width)
        return cls(x0=(width - side) // 2, y0=(height - side) // 2, side=side, size=size)

    @property
    def scale(self):
        return self.size / self.side

    def crop(self, images):
        """uint8 (..., H, W, 3) -> (..., side, side, 3)."""
        return images[..., self.y0:self.y0 + self.side, self.x0:self.x0 + self.side, :]

    def to_model(self, K):
        """Intrinsics (..., 3, 3) of the input image -> of the model image."""
        K = np.array(K, dtype=np.float64)
        K[..., 0, 2] -= self.x0
        K[..., 1, 2] -= self.y0
        return scale_intrinsics(K, self.scale, self.scale)

    def to_input(self, K):
        """Intrinsics (..., 3, 3) of the model image -> of the input image."""
        K = scale_intrinsics(K, 1.0 / self.scale, 1.0 / self.scale)
        K[..., 0, 2] += self.x0
        K[..., 1, 2] += self.y0
        return K


def prepare_frames(frames, K, size):
    """Centre-crop to a square and resize to the model's size, keeping K consistent.

    frames: uint8 (T, H, W, 3); K: (3, 3) at H x W or None.
    Returns (frames (T, size, size, 3) uint8, K at size x size or None, Framing).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    framing = Framing.centre_square(frames.shape[1], frames.shape[2], size)
    resized = preprocess.resize_frames(np.ascontiguousarray(framing.crop(frames)), size)
    if K is not None:
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K must be (3, 3), got {K.shape}")
        K = framing.to_model(K)
    return resized, K, framing


# ---------------------------------------------------------------- sampling


def integrate_flow(backend, video, raxel, clean_video, clean_raxel, motion, steps,
                   sampler="euler"):
    """Integrate the flow from t = 1 (noise) to t = 0 on the noised latent frames.

    video (B, t, C, s, s), raxel (B, t, 2C, s, s): clean latents at the frames marked
    in clean_video, clean_raxel ((t,) bool), noise elsewhere; motion (B, t, M, s, s).
    ``steps`` uniform steps of Euler (one velocity call each) or Heun (two calls each,
    the second at the step's end, including the last step to t = 0).
    Clean frames keep flow time 0 and are never changed. Returns (video, raxel).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    batch = video.shape[0]
    noised_v = ~np.asarray(clean_video, bool)
    noised_r = ~np.asarray(clean_raxel, bool)
    mask_v = noised_v[None, :, None, None, None].astype(np.float32)
    mask_r = noised_r[None, :, None, None, None].astype(np.float32)

    def velocity(v, r, time_):
        t_video = np.broadcast_to(np.where(noised_v, time_, 0.0), (batch, len(noised_v)))
        t_raxel = np.broadcast_to(np.where(noised_r, time_, 0.0), (batch, len(noised_r)))
        return backend.velocity(v, r, t_video.astype(np.float32), t_raxel.astype(np.float32),
                                motion)

    times = np.linspace(1.0, 0.0, steps + 1, dtype=np.float32)
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


# ---------------------------------------------------------------- video -> camera


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
        the input frames, keeping the model's step lengths (``rap_ros.refine``); the model's
        own poses stay in ``WindowEstimate.model_c2w``.
    """

    def __init__(self, backend, steps=2, sampler="euler", samples=1, seed=0, refine=False):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if samples < 1 or steps < 1:
            raise ValueError("steps and samples must be >= 1")
        self.backend = backend
        self.config = backend.config
        self.steps, self.sampler, self.samples = int(steps), sampler, int(samples)
        self.refine = bool(refine)
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()

    def estimate_window(self, frames, K=None):
        """Cameras of one window.

        frames: uint8 (T, H, W, 3) RGB, any size (centre-cropped to a square and
            resized to S); T = 1 + temporal_factor * k.
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
                                                        K, S)
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


# ---------------------------------------------------------------- images + camera -> video


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

    def predict_batch(self, source, K, rel_c2w):
        """Frames along P candidate paths from one source, in one batched call.

        rel_c2w: (P, T, 4, 4). Returns uint8 (P, T, S, S, 3).
        """
        cfg, backend = self.config, self.backend
        rel_c2w = np.asarray(rel_c2w, dtype=np.float64)
        if rel_c2w.ndim != 4 or rel_c2w.shape[2:] != (4, 4):
            raise ValueError(f"rel_c2w must be (P, T, 4, 4), got {rel_c2w.shape}")
        if K is None:
            raise ValueError("ViewPipeline needs the source intrinsics K")
        P, T = rel_c2w.shape[:2]
        backend.check_frames(T)
        S = cfg.image_size
        source_model, K_model, _ = prepare_frames(np.asarray(source)[None], K, S)

        raxels = encode_raxels(K_model, rel_c2w.reshape(P * T, 4, 4), S, S,
                               cfg.raxel_encoding)
        raxels = preprocess.normalize_raxels(raxels).reshape(P, T, 6, S, S)
        raxel = encode_raxel_latents(backend, raxels)                 # (P, t, 2C, s, s)
        first = backend.encode(preprocess.images_to_model(source_model)[None])  # (1, 1, C, s, s)
        t_lat, s = raxel.shape[1], raxel.shape[-1]
        with self._rng_lock:
            video = self._rng.standard_normal(
                (P, t_lat, cfg.latent_channels, s, s)).astype(np.float32)
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

    def closed_loop_batch(self, source, K, rel_c2w):
        """``closed_loop`` for P paths (P, T, 4, 4), batched; returns P results."""
        rel_c2w = np.asarray(rel_c2w, dtype=np.float64)
        S = self.config.image_size
        source = np.asarray(source)
        _, K_model, _ = prepare_frames(source[None], K, S)
        frames = self.predict_batch(source, K, rel_c2w)              # (P, T, S, S, 3)
        estimates = self.estimator.estimate_batch(frames, K_model)
        c2w_est = np.stack([e.c2w for e in estimates])
        regenerated = self.predict_batch(source, K, c2w_est)
        results = []
        for p, estimate in enumerate(estimates):
            requested, _ = relative_to_first(rel_c2w[p])
            a = frames[p, 1:].astype(np.float64) / 255.0
            b = regenerated[p, 1:].astype(np.float64) / 255.0
            score = float(np.mean(np.minimum(psnr(a, b), 100.0)))  # identical frames: 100 dB
            results.append(ClosedLoopResult(
                frames=frames[p], regenerated=regenerated[p], c2w=estimate.c2w, psnr=score,
                translation_error=float(np.sqrt(np.mean(np.sum(
                    (estimate.c2w[:, :3, 3] - requested[:, :3, 3]) ** 2, axis=-1)))),
                rotation_error_deg=float(np.mean(rotation_angle_deg(
                    np.swapaxes(estimate.c2w[:, :3, :3], -1, -2) @ requested[:, :3, :3])))))
        return results


# ---------------------------------------------------------------- pose statistics


def rotation_vector(R):
    """Rotation vector (axis times angle, radians) of rotations R (..., 3, 3) -> (..., 3).

    Computed from the unit quaternion (w >= 0): angle = 2 atan2(|v|, w), which is
    accurate near 0 and near pi.
    """
    q = quat_from_matrix(R)
    v, w = q[..., :3], q[..., 3]
    norm = np.linalg.norm(v, axis=-1)
    angle = 2.0 * np.arctan2(norm, w)
    # angle / norm -> 2 / w as norm -> 0
    factor = np.where(norm > 1e-12, angle / np.maximum(norm, 1e-300), 2.0 / np.maximum(w, 1e-12))
    return v * factor[..., None]


def mean_pose(c2w):
    """Mean of poses c2w (N, ..., 4, 4) over the first axis.

    Translation: arithmetic mean. Rotation: chordal L2 mean (the rotation nearest to
    the mean rotation matrix). Returns (..., 4, 4).
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    return pose_from_rt(project_to_so3(c2w[..., :3, :3].mean(axis=0)), c2w[..., :3, 3].mean(axis=0))


def pose_covariance(c2w, mean=None):
    """Sample covariance of poses c2w (N, T, 4, 4) around ``mean`` (T, 4, 4).

    The tangent vector of sample i at frame j is (C_ij - C_j, log(R_ij R_j^T)): the
    translation offset, then the rotation vector of the world-frame (left) rotation
    offset, both in the world frame. Returns (T, 6, 6); zeros for N = 1.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    n, frames = c2w.shape[:2]
    if mean is None:
        mean = mean_pose(c2w)
    if n < 2:
        return np.zeros((frames, 6, 6))
    d_translation = c2w[..., :3, 3] - mean[None, :, :3, 3]
    d_rotation = rotation_vector(c2w[..., :3, :3] @ np.swapaxes(mean[None, :, :3, :3], -1, -2))
    tangent = np.concatenate([d_translation, d_rotation], axis=-1)  # (N, T, 6)
    return np.einsum("ntj,ntk->tjk", tangent, tangent) / (n - 1)


def apply_sim3(c2w, scale, R, t):
    """Map poses c2w (..., 4, 4) by the similarity x -> scale R x + t.

    Orientations become R R_i and centres scale R C_i + t.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    out = np.array(c2w)
    out[..., :3, :3] = R @ c2w[..., :3, :3]
    out[..., :3, 3] = scale * np.einsum("ij,...j->...i", R, c2w[..., :3, 3]) + t
    return out


def align_sim3(source, target, fallback_scale=1.0, min_spread=1e-6):
    """Similarity (scale, R, t) taking poses ``source`` (N, 4, 4) onto ``target`` (N, 4, 4).

    The rotation comes from the orientations, R = argmin sum_i ||R Rs_i - Rt_i||_F
    (chordal mean of Rt_i Rs_i^T), so it is defined even for one frame or collinear
    centres, where Umeyama's rotation from centres alone is not. Given R, scale and
    translation are the least-squares fit of the centres (Umeyama with R fixed):
    scale = sum <dt_i, R ds_i> / sum |ds_i|^2 over centred centres. When the source
    centres spread less than ``min_spread`` (RMS) or the fit is not positive, the
    scale is ``fallback_scale``.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    R = project_to_so3(np.einsum("nij,nkj->ik", target[:, :3, :3], source[:, :3, :3]))
    cs, ct = source[:, :3, 3], target[:, :3, 3]
    ds, dt = cs - cs.mean(axis=0), ct - ct.mean(axis=0)
    spread = float((ds ** 2).sum())
    scale = fallback_scale
    if spread > len(ds) * min_spread ** 2:
        fitted = float((dt * (ds @ R.T)).sum()) / spread
        if fitted > 0:
            scale = fitted
    t = ct.mean(axis=0) - scale * R @ cs.mean(axis=0)
    return scale, R, t


# ---------------------------------------------------------------- chaining


@dataclass
class ChainedPoses:
    """Poses a chainer has fixed for good.

    first: index of the first of these frames in the whole run.
    c2w: (n, 4, 4) camera-to-world in the run's frame (the first window's first
        camera; scale of the first window).
    covariance: (n, 6, 6) in the same frame (translation, rotation vector), or None.
    """

    first: int
    c2w: np.ndarray
    covariance: np.ndarray = None


class TrajectoryChainer:
    """Stitch overlapping window estimates into one continuous trajectory.

    Windows hold ``window`` consecutive frames, each starting ``stride`` frames after
    the previous one (1 <= stride < window), so consecutive windows share
    ``overlap = window - stride`` frames. Each window comes in its own frame
    (relative to its first camera, normalised scale, as ``TrajectoryPipeline``
    returns it). It is mapped into the run's frame by the Sim(3) that best aligns
    its first ``overlap`` poses with the poses already fixed for those frames
    (``align_sim3``: rotation from the orientations, scale and translation from
    the camera centres). Poses of the overlap keep their earlier estimate; the
    window's last ``stride`` poses are new.

    Only the last ``overlap`` poses are kept, so each window costs the same however
    long the run. Windows are normalised one by one, so the scale between them comes
    from the overlap alone: use an overlap of at least 2 frames. When the overlap does
    not fix the scale (one shared frame, or a static camera) the previous window's
    scale is kept, which assumes the speed did not change much.
    """

    def __init__(self, window, stride, min_spread=1e-3):
        if not 1 <= stride < window:
            raise ValueError(f"need 1 <= stride < window, got window={window}, stride={stride}")
        self.window, self.stride = int(window), int(stride)
        self.overlap = self.window - self.stride
        self.min_spread = float(min_spread)
        self.reset()

    def reset(self):
        """Forget the run: the next window starts a new trajectory at frame 0."""
        self._tail = None  # (overlap, 4, 4) fixed poses of the latest overlap frames
        self._scale = 1.0  # scale of the latest window's map into the run's frame
        self.frames = 0  # frames fixed so far

    @property
    def scale(self):
        """Scale of the latest window's map into the run's frame (run units per window
        unit); the fallback scale for the next window, and for aligning a last partial
        window by hand with ``align_sim3``."""
        return self._scale

    def push(self, c2w, covariance=None):
        """Add the next window, c2w (window, 4, 4) and optional covariance (window, 6, 6).

        Returns ChainedPoses for the frames fixed by this window: all ``window`` frames
        for the first window, the last ``stride`` frames after that.
        """
        c2w = np.asarray(c2w, dtype=np.float64)
        if c2w.shape != (self.window, 4, 4):
            raise ValueError(f"expected c2w of shape ({self.window}, 4, 4), got {c2w.shape}")
        if covariance is not None:
            covariance = np.asarray(covariance, dtype=np.float64)
        if self._tail is None:
            scale, R, t = 1.0, np.eye(3), np.zeros(3)
            new = slice(0, self.window)
        else:
            scale, R, t = align_sim3(c2w[:self.overlap], self._tail, self._scale,
                                     self.min_spread)
            new = slice(self.overlap, self.window)
        self._scale = scale
        aligned = apply_sim3(c2w, scale, R, t)
        if self._tail is not None:
            aligned[:self.overlap] = self._tail
        self._tail = aligned[-self.overlap:].copy()
        first = self.frames
        self.frames += new.stop - new.start
        cov = None
        if covariance is not None:
            A = np.zeros((6, 6))
            A[:3, :3], A[3:, 3:] = scale * R, R
            cov = A @ covariance[new] @ A.T
        return ChainedPoses(first=first, c2w=aligned[new], covariance=cov)
