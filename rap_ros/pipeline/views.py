"""Images + camera -> video: frames seen from camera paths that start at a source image, and
the closed-loop consistency test of a prediction (the paper's: estimate the poses back from
the predicted frames, regenerate, compare).

Images are uint8 RGB (H, W, 3) in; paths are camera-to-world (T, 4, 4) poses relative to the
source camera (OpenCV axes) at the contract's normalised scale
(``geometry.relative_to_first``). What comes out depends on the preview mode
(``PREVIEW_MODES``):

* ``"model"``: the model's frames, (S, S, 3): the source framed as the weights say
  (``framing``, ``config.framing``: its centred square, or the whole image letterboxed)
  resized to S.
* ``"warp"``: the source warped into each camera of the path (``warp``: rotation-only or
  plane homography, or a depth map's z-buffered splat), the pixels the warp has no data for
  filled from its neighbours; at the source's resolution (full frame, at most
  ``max_preview_pixels``).
* ``"warp+model"``: geometry carries, the model does what geometry cannot: the warp where it
  has data, the model's frame (mapped back onto the full frame through the inverse of the
  framing) where it has not (out of view, disocclusions), blended over a feathered band.
* ``"guided"``: as "warp+model", but the model's frames are generated from the warp (SDEdit:
  the warp's latents, hole-filled, noised to flow time ``guide_t`` and denoised from there),
  so what the model fills continues the warped scene instead of being drawn from noise.
  Training-free: it needs no model trained with warps as input.

With a warp-conditioned model (``config.warp_condition``, issue 12) the "model",
"warp+model" and "guided" modes also feed the model the warps in its view and their validity
(``conditioning``: the same warps the model was trained with), so its frames continue the
warped scene where the warp has data and fill what it cannot (disocclusions, out of view);
the composite of "warp+model" stays.

``pipeline.goal_scores`` compares previews with a goal image, for planners ranking
candidate paths.
"""
import functools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from rap_ros.contract import preprocess
from rap_ros.geometry.cameras import relative_to_first, scale_intrinsics
from rap_ros.geometry.raxels import encode_raxels
from rap_ros.geometry.rotations import rotation_angle_deg
from rap_ros.metrics import psnr
from rap_ros.pipeline.conditioning import (condition_source, condition_warps, warp_condition,
                                           warp_path)
from rap_ros.pipeline.framing import framing_of, prepare_frames
from rap_ros.pipeline.sampling import SAMPLERS, encode_raxel_latents, integrate_flow
from rap_ros.pipeline.trajectory import TrajectoryPipeline
from rap_ros.pipeline.warp import composite, fill_invalid

PREVIEW_MODES = ("model", "warp", "warp+model", "guided")
WARP_MODES = ("warp", "warp+model", "guided")      # modes that warp the source


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
    model_frames: np.ndarray = None  # (T, S, S, 3): the model's own frames, scored above


@dataclass
class _Source:
    """One source image prepared for a call: the model's view and the preview's view."""

    image: np.ndarray  # (h, w, 3) uint8 at the preview size
    K: np.ndarray  # (3, 3) at the preview size
    K_model: np.ndarray  # (3, 3) at the model's S x S
    latent: np.ndarray  # (1, 1, C, s, s) or None (warp mode)
    model_to_preview: np.ndarray  # (2, 3) affine: model pixel -> preview pixel
    model_valid: np.ndarray  # (h, w) bool: preview pixels the model's square covers
    source_shape: tuple  # (H, W) of the source as given
    condition: tuple = None  # ``conditioning.condition_source`` of image (made when needed)


@dataclass
class _PathWarps:
    """One path's warps: at the preview size for the previews (warp modes), and seen as the
    model sees its frames for the model (guided, warp-conditioned); None where not needed.
    Either may be a Future of its value while the workers make it (``ViewPipeline``)."""

    preview: object = None  # (warped (T, h, w, 3) uint8, valid (T, h, w) bool)
    model_view: object = None  # (warped (T, S, S, 3) uint8, validity (T, S, S) float32)

    def preview_warp(self):
        """(warped, valid) at the preview size, waiting for them if they are being made."""
        return _result(self.preview)

    def model_view_warp(self):
        """(warped, validity) in the model's view, waiting for them if they are being made."""
        return _result(self.model_view)


def _result(value):
    return value.result() if isinstance(value, Future) else value


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
    preview: what ``predict``/``predict_batch`` return (``PREVIEW_MODES``, module
        docstring): "model" (the default here: the model's S x S frames), "warp" or
        "warp+model" (full frame, at most ``max_preview_pixels``, 0: the source's size).
    feather_px: width in preview pixels of the blend between warp and model.
    guide_t: flow time the "guided" mode starts from (0: the warp unchanged, 1: pure noise,
        as "warp+model"); 0.5, half noise, was chosen a priori, not tuned.
    workers: threads that warp and composite the paths of a call side by side (OpenCV and
        NumPy release the GIL in their loops; the model's ONNX calls run between, on their
        own threads); 1: one path after the other. The results do not depend on it.
    """

    def __init__(self, backend, steps=1, sampler="euler", seed=0, estimator=None,
                 preview="model", max_preview_pixels=0, feather_px=4.0, guide_t=0.5,
                 workers=2):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if preview not in PREVIEW_MODES:
            raise ValueError(f"preview must be one of {PREVIEW_MODES}, got {preview!r}")
        self.preview = preview
        self.max_preview_pixels = int(max_preview_pixels)
        self.feather_px = float(feather_px)
        if not 0.0 < guide_t <= 1.0:
            raise ValueError(f"guide_t must be in (0, 1], got {guide_t}")
        self.guide_t = float(guide_t)
        self.backend = backend
        self.config = backend.config
        # a warp-conditioned model gets the warps in its view (module docstring)
        self.conditioned = bool(getattr(self.config, "warp_condition", False)) \
            and preview != "warp"
        self.steps, self.sampler = int(steps), sampler
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        self.estimator = estimator or TrajectoryPipeline(backend, steps=2, sampler="euler",
                                                         samples=1, seed=seed)
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._pool = ThreadPoolExecutor(int(workers), thread_name_prefix="preview") \
            if int(workers) > 1 else None

    def _submit_each_path(self, fn, *per_path):
        """[fn(*items) for items in zip(*per_path)] as Futures on the ``workers`` threads
        (values, made now, with one worker)."""
        if self._pool is None:
            return list(map(fn, *per_path))
        return [self._pool.submit(fn, *items) for items in zip(*per_path)]

    def _each_path(self, fn, *per_path):
        """[fn(*items) for items in zip(*per_path)], on the ``workers`` threads."""
        return [_result(value) for value in self._submit_each_path(fn, *per_path)]

    def predict(self, source, K, rel_c2w, depth=None):
        """Frames along one path.

        source: uint8 (H, W, 3) RGB, any size.
        K: (3, 3) intrinsics of the source at H x W (the path's cameras share them).
        rel_c2w: (T, 4, 4) camera-to-world poses relative to the source camera
            (rel_c2w[0] = I), unit scale per the contract (mean distance of the centres
            from the first = 1, ``geometry.relative_to_first``); T = 1 + tf * k.
        depth: the scene depth for the warp modes (see ``predict_batch``).
        Returns uint8 (T, h, w, 3): (T, S, S, 3) in "model" mode (frame 0 the codec's
        reconstruction of the source), the preview size in the warp modes (frame 0 the
        source).
        """
        if depth is not None and np.ndim(depth) in (0, 2):
            depth = np.asarray(depth)[None]
        return self.predict_batch(source, K, np.asarray(rel_c2w)[None], depth=depth)[0]

    def predict_batch(self, source, K, rel_c2w, chunk_size=None, depth=None):
        """Frames along P candidate paths from one source.

        rel_c2w: (P, T, 4, 4). Returns uint8 (P, T, h, w, 3) (see ``predict``).
        chunk_size: paths per model call (None: all P in one call). The noise of all P
            paths is drawn first, so the frames do not depend on the chunk size (up to
            float rounding); memory grows with the chunk, not with P.
        depth (warp modes): None: rotation-only warp (the scene at infinity); a number or
            (P,) numbers: a fronto-parallel plane at that z-depth in each path's units (the
            fallback when no depth is known); an (h, w) or (P, h, w) z-depth map of the
            source in the path's units (inf: no surface): forward-warped, z-buffered. A map
            is of the source's field of view at any size (the source's, or the preview's,
            ``preview_size``, which keeps P maps small), resized (nearest) to the preview.
            Maps: the renderer's true depth (benchmarks) or the odometry's map densified
            (``pipeline.depth.depth_from_points``).
        """
        rel_c2w = self._check_paths(rel_c2w, K)
        depths = self._check_depth(depth, len(rel_c2w), np.shape(source)[:2])
        prepared = self._prepare_source(source, K)
        noise = None if self.preview == "warp" else self._draw_noise(*rel_c2w.shape[:2])
        out = []
        for chunk in chunks(len(rel_c2w), chunk_size):
            warps = self._chunk_warps(prepared, rel_c2w[chunk], depths[chunk])
            model = None
            if noise is not None:
                model = self._model_frames(prepared, rel_c2w[chunk], noise[chunk], warps,
                                           guided=self.preview == "guided")
            out.append(self._previews(prepared, warps, model))
        return np.concatenate(out)

    # ------------------------------------------------------------ previews

    def preview_size(self, height, width):
        """(h, w) of the warp modes' previews for a source of height x width."""
        pixels = height * width
        if self.max_preview_pixels <= 0 or pixels <= self.max_preview_pixels:
            return height, width
        scale = np.sqrt(self.max_preview_pixels / pixels)
        return max(1, int(height * scale)), max(1, int(width * scale))

    def goal_view(self, goal, shape):
        """The goal image (H, W, 3) uint8 framed as the previews of shape (h, w): in "model"
        mode as the model frames its input (``config.framing``) at S, resized to (h, w)
        otherwise."""
        goal = np.asarray(goal)
        if self.preview == "model":
            return prepare_frames(goal[None], None, shape[0], framing_of(self.config))[0][0]
        if goal.shape[:2] == tuple(shape):
            return goal
        return cv2.resize(goal, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)

    @staticmethod
    def _check_depth(depth, P, source_shape):
        """depth as P items: None, a plane depth (float) or a map (h, w) of the source's
        field of view (any size; float32 maps stay float32)."""
        if depth is None:
            return np.array([None] * P, dtype=object)
        depth = np.asarray(depth)
        if depth.dtype != np.float32:
            depth = depth.astype(np.float64)
        if depth.ndim == 0:
            depth = np.full(P, float(depth))
        if depth.ndim == 2:
            depth = np.broadcast_to(depth, (P,) + depth.shape)
        if depth.ndim not in (1, 3) or depth.shape[0] != P or (
                depth.ndim == 3 and min(depth.shape[1:]) < 1):
            raise ValueError(f"depth of shape {depth.shape} for {P} paths of a "
                             f"{source_shape} source: give a number, (P,), (h, w) or "
                             f"(P, h, w)")
        if depth.ndim == 1 and not np.all(depth > 0):
            raise ValueError("plane depths must be > 0")
        items = np.empty(P, dtype=object)
        for i in range(P):
            items[i] = float(depth[i]) if depth.ndim == 1 else depth[i]
        return items

    def _prepare_source(self, source, K):
        """The source at the model's size (its latent, unless warp mode) and at the
        preview size, with the map between them."""
        source = np.asarray(source)
        source_model, K_model, _ = prepare_frames(source[None], K, self.config.image_size,
                                                  framing_of(self.config))
        latent = None
        if self.preview != "warp":
            latent = self.backend.encode(preprocess.images_to_model(source_model)[None])
        H, W = source.shape[:2]
        h, w = self.preview_size(H, W)
        K = np.asarray(K, dtype=np.float64)
        image, K_preview = source, K
        if (h, w) != (H, W):
            image = cv2.resize(source, (w, h), interpolation=cv2.INTER_AREA)
            K_preview = scale_intrinsics(K, w / W, h / H)
        to_preview = (K_preview @ np.linalg.inv(K_model))[:2]  # same camera, other pixels
        S = self.config.image_size
        model_valid = cv2.warpAffine(np.ones((S, S), np.uint8), to_preview, (w, h),
                                     flags=cv2.INTER_NEAREST, borderValue=0).astype(bool)
        return _Source(image=image, K=K_preview, K_model=K_model, latent=latent,
                       model_to_preview=to_preview, model_valid=model_valid,
                       source_shape=(H, W))

    def _warp(self, prepared, rel_c2w, depth):
        """The source warped along one path: (T, h, w, 3) uint8 and valid (T, h, w)
        (``conditioning.warp_path``)."""
        return warp_path(prepared.image, prepared.K, rel_c2w, depth)

    def _chunk_warps(self, prepared, rel_c2w, depths, previews=True):
        """The ``_PathWarps`` of each path: at the preview size in a warp mode (unless not
        ``previews``), in the model's view for "guided" or a warp-conditioned model; None
        when neither is needed. The model's view is warped from the source downscaled to
        ``CONDITION_OVERSAMPLE`` pixels a model pixel (``conditioning.condition_warps``),
        not from the preview's warp: the model sees S x S pixels only."""
        preview = previews and self.preview in WARP_MODES
        model = self.conditioned or self.preview == "guided"
        if not (preview or model):
            return None
        if model and prepared.condition is None:
            prepared.condition = condition_source(prepared.image, prepared.K,
                                                  prepared.model_to_preview)
        S = self.config.image_size
        # made on the workers while the model encodes the paths' raxels (the model's view)
        # and runs (the previews'); in this order, so the model waits for its own only
        model_views = self._submit_each_path(
            lambda path, depth: condition_warps(*prepared.condition, path, depth, S),
            rel_c2w, depths) if model else [None] * len(rel_c2w)
        previews = self._submit_each_path(lambda path, depth: self._warp(prepared, path, depth),
                                          rel_c2w, depths) \
            if preview else [None] * len(rel_c2w)
        return [_PathWarps(preview=p, model_view=m) for p, m in zip(previews, model_views)]

    @staticmethod
    def _warps_and_validity_in_model_view(warps):
        """The warps (list of p ``_PathWarps``) seen as the model sees its frames, holes
        filled: uint8 (p, T, S, S, 3), and their validity there, float32 (p, T, S, S)
        (``conditioning.condition_warps``)."""
        views = [w.model_view_warp() for w in warps]
        return np.stack([v[0] for v in views]), np.stack([v[1] for v in views])

    def _previews(self, prepared, warps, model):
        """Previews (p, T, h, w, 3) of p paths in the pipeline's mode from the model's
        frames ``model`` (p, T, S, S, 3) (None in warp mode) and the ``warps`` (p
        ``_PathWarps``; None in model mode)."""
        if self.preview == "model":
            return model
        h, w = prepared.image.shape[:2]

        def path_previews(path_warps, path_model):
            warped, valid = path_warps.preview_warp()
            out = np.empty((len(warped), h, w, 3), np.uint8)
            for j in range(len(warped)):
                if self.preview == "warp" or valid[j].all():  # all valid: the warp as is
                    out[j] = fill_invalid(warped[j], valid[j])
                    continue
                model_full = cv2.warpAffine(path_model[j], prepared.model_to_preview, (w, h),
                                            flags=cv2.INTER_LINEAR,
                                            borderMode=cv2.BORDER_REPLICATE)
                out[j] = composite(warped[j], valid[j], model_full, prepared.model_valid,
                                   self.feather_px)
            return out
        return np.stack(self._each_path(path_previews, warps,
                                        [None] * len(warps) if model is None else model))

    def _check_paths(self, rel_c2w, K):
        rel_c2w = np.asarray(rel_c2w, dtype=np.float64)
        if rel_c2w.ndim != 4 or rel_c2w.shape[2:] != (4, 4):
            raise ValueError(f"rel_c2w must be (P, T, 4, 4), got {rel_c2w.shape}")
        if K is None:
            raise ValueError("ViewPipeline needs the source intrinsics K")
        self.backend.check_frames(rel_c2w.shape[1])
        return rel_c2w

    def _draw_noise(self, P, T):
        """Initial latent noise (P, t, C, s, s) for P paths of T frames, in order from the
        generator."""
        cfg = self.config
        with self._rng_lock:
            return self._rng.standard_normal(
                (P, self.backend.latent_frames(T), cfg.latent_channels, cfg.latent_size,
                 cfg.latent_size)).astype(np.float32)

    def _model_frames(self, prepared, rel_c2w, noise, warps, guided=False):
        """The model's frames (p, T, S, S, 3) along p paths (p, T, 4, 4): from ``noise``, or
        with ``guided`` from the ``warps`` (p ``_PathWarps``) noised to ``guide_t``;
        a warp-conditioned model is also fed the warps in its view (``conditioning``)."""
        in_view = functools.cache(lambda: self._warps_and_validity_in_model_view(warps))
        # called by _predict_chunk once the raxels are encoded (the warps may still be made)
        guide = (lambda: in_view()[0]) if guided else None
        warp = (lambda: warp_condition(self.backend, *in_view())) if self.conditioned else None
        return self._predict_chunk(prepared.latent, prepared.K_model, rel_c2w, noise, guide,
                                   warp)

    def _predict_chunk(self, first, K_model, rel_c2w, noise, guide=None, warp=None):
        """The model's frames (p, T, S, S, 3) along p paths (p, T, 4, 4) in one batched
        call, from the source's latent ``first`` and intrinsics ``K_model`` at S x S;
        from noise, or from ``guide`` (p, T, S, S, 3) uint8 noised to ``guide_t``; warp
        (p, t, C+1, s, s): the warp condition of a warp-conditioned model, or None. Either
        may be given as a function returning it, called after the raxels are encoded."""
        cfg, backend = self.config, self.backend
        P, T = rel_c2w.shape[:2]
        S = cfg.image_size
        raxels = encode_raxels(K_model, rel_c2w.reshape(P * T, 4, 4), S, S,
                               cfg.raxel_encoding)
        raxels = preprocess.normalize_raxels(raxels).reshape(P, T, 6, S, S)
        raxel = encode_raxel_latents(backend, raxels)                 # (P, t, 2C, s, s)
        guide = guide() if callable(guide) else guide
        warp = warp() if callable(warp) else warp
        t_lat, s = raxel.shape[1], raxel.shape[-1]
        if noise.shape[1:] != (t_lat, cfg.latent_channels, s, s):
            raise ValueError(f"noise of shape {noise.shape} for latents of "
                             f"{(t_lat, cfg.latent_channels, s, s)}")
        video, t_start = noise.copy(), 1.0
        if guide is not None:
            guess = backend.encode(preprocess.images_to_model(
                guide.reshape(P * T, S, S, 3)).reshape(P, T, 3, S, S))  # (P, t, C, s, s)
            t_start = self.guide_t
            video = (1.0 - t_start) * guess + t_start * noise
        video[:, 0] = first[:, 0]
        motion = np.zeros((P, t_lat, cfg.motion_dim, s, s), np.float32)
        clean_video, clean_raxel = preprocess.job_masks("images_camera_to_video", t_lat)
        video, _ = integrate_flow(backend, video, raxel, clean_video, clean_raxel, motion,
                                  self.steps, self.sampler, t_start=t_start, warp=warp)
        return preprocess.model_to_images(backend.decode(video, T))  # (P, T, S, S, 3)

    def closed_loop(self, source, K, rel_c2w, depth=None):
        """Closed-loop consistency of the prediction along one path.

        Predicts the model's frames along rel_c2w, estimates their poses (video -> camera
        with K known), regenerates the frames from the estimated poses and compares: PSNR
        between the two videos (higher is more consistent) and the error between estimated
        and requested poses. The test is of the model in every preview mode (in "warp"
        mode too); ``frames`` are the previews of the mode (as ``predict``), and
        ``model_frames`` the model's. Returns a ClosedLoopResult.
        """
        if depth is not None and np.ndim(depth) in (0, 2):
            depth = np.asarray(depth)[None]
        return self.closed_loop_batch(source, K, np.asarray(rel_c2w)[None], depth=depth)[0]

    def closed_loop_batch(self, source, K, rel_c2w, chunk_size=None, depth=None):
        """``closed_loop`` for P paths (P, T, 4, 4); returns P results.

        chunk_size: paths per model call (None: all P at once). Each chunk is predicted,
        estimated and regenerated before the next starts, so memory grows with the chunk,
        not with P; the noise of all P paths is drawn first, so the results do not depend
        on the chunk size (up to float rounding). depth: as in ``predict_batch``.
        """
        rel_c2w = self._check_paths(rel_c2w, K)
        depths = self._check_depth(depth, len(rel_c2w), np.shape(source)[:2])
        prepared = self._prepare_source(source, K)
        if prepared.latent is None:  # warp mode: the consistency is the model's anyway
            source_model = prepare_frames(np.asarray(source)[None], K,
                                          self.config.image_size, framing_of(self.config))[0]
            prepared.latent = self.backend.encode(
                preprocess.images_to_model(source_model)[None])
        K_model = prepared.K_model
        P, T = rel_c2w.shape[:2]
        noise = self._draw_noise(P, T)
        noise_again = self._draw_noise(P, T)
        results = []
        for chunk in chunks(P, chunk_size):
            warps = self._chunk_warps(prepared, rel_c2w[chunk], depths[chunk])
            frames = self._model_frames(prepared, rel_c2w[chunk], noise[chunk], warps)
            estimates = self.estimator.estimate_batch(frames, K_model)
            c2w_est = np.stack([e.c2w for e in estimates])
            # a warp-conditioned model regenerates from the warps along the estimated poses
            warps_est = self._chunk_warps(prepared, c2w_est, depths[chunk], previews=False) \
                if self.conditioned else None
            regenerated = self._model_frames(prepared, c2w_est, noise_again[chunk], warps_est)
            shown = None if self.preview == "warp" else frames
            if self.preview == "guided":  # the previews are generated from the warps
                shown = self._model_frames(prepared, rel_c2w[chunk], noise[chunk], warps,
                                           guided=True)
            previews = self._previews(prepared, warps, shown)
            for i, estimate in enumerate(estimates):
                result = self._closed_loop_result(
                    rel_c2w[chunk.start + i], frames[i], regenerated[i], estimate.c2w)
                result.model_frames, result.frames = result.frames, previews[i]
                results.append(result)
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

