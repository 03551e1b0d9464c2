"""The warp condition of a warp-conditioned model (``ModelConfig.warp_condition``, issue 12):
the source image forward-warped into each target camera, seen as the model sees its frames,
with the warp's validity. One path for training and inference, so both see the same warps:
``ViewPipeline`` (previews) warps the source downscaled to ``CONDITION_OVERSAMPLE`` pixels a
model pixel (``condition_source``; the previews' own warps are at the preview size) and maps
the warps into the model's view (``condition_warps``);
``training_warp`` (the latent cache of ``model.data``, passed in by the trainer's caller, as
the model floor does not import the pipeline) does the same with the clip's S x S frame 0,
drawing the depth a robot might have.

Conventions (docs/architecture.md): paths are camera-to-world (T, 4, 4) relative to the source
camera (rel_c2w[0] = I), OpenCV axes, in the path's units; depth is z-depth in those units;
images uint8 RGB.
"""
import cv2
import numpy as np

from rap_ros.contract import preprocess
from rap_ros.geometry.cameras import scale_intrinsics
from rap_ros.pipeline.framing import prepare_frames
from rap_ros.pipeline.warp import (fallback_plane_depth, fill_invalid, splat, splat_source,
                                   warp_homography)

# Depth a training clip's warp uses, drawn per clip (``training_warp``): the renderer's true
# depth; true depth with a global scale error and smooth multiplicative noise (a monocular or
# sparse-map estimate); a fronto-parallel plane at a random depth (the node's ``warp_depth``
# fallback); rotation only (the scene at infinity: no depth at all).
DEPTH_KINDS = ("true", "noisy", "plane", "rotation")
DEPTH_KIND_PROBS = (0.3, 0.3, 0.25, 0.15)
NOISY_SCALE = (0.7, 1.4)          # global scale error, uniform
NOISY_SIGMA = 0.15                # std of the log of the smooth multiplicative noise
NOISY_GRID = 4                    # the noise is drawn on a grid this size, upsampled (cubic)
PLANE_DEPTH = (1.0, 30.0)         # normalised path units, log-uniform, then fallback_plane_depth
# ``ViewPipeline`` warps its condition at this many pixels per model pixel (the source
# downscaled first, ``condition_source``), not at the preview size: the model sees the warp
# at S x S only (benchmarks/results/preview_speed.md: same rankings, a fraction of the time)
CONDITION_OVERSAMPLE = 2


def warp_path(image, K, rel_c2w, depth):
    """The source ``image`` (h, w, 3) uint8 with intrinsics K warped into every camera of one
    path rel_c2w (T, 4, 4): depth None: rotation only (the scene at infinity); a number: a
    fronto-parallel plane at that z-depth; an (h', w') z-depth map of the source (inf: no
    surface), resized (nearest) to (h, w) and forward-warped with a z-buffer.
    Returns (warped (T, h, w, 3) uint8, valid (T, h, w) bool). ``ViewPipeline``'s warps."""
    if isinstance(depth, np.ndarray):
        h, w = image.shape[:2]
        if depth.shape != (h, w):
            depth = cv2.resize(np.ascontiguousarray(depth), (w, h),
                               interpolation=cv2.INTER_NEAREST)
        identity = (image.copy(), np.ones((h, w), bool))  # frame 0: the source itself
        source = splat_source(image, depth)  # forward_warp_depth's per-source work, once
        pairs = [identity if np.allclose(pose, np.eye(4), rtol=0.0, atol=1e-12)
                 else splat(source, K, pose) for pose in rel_c2w]
    else:
        plane = np.inf if depth is None else depth
        pairs = [warp_homography(image, K, pose, plane) for pose in rel_c2w]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def in_model_view(warped, valid, model_to_preview, size):
    """Warps of one path at the preview size, seen as the model sees its frames: the holes
    filled (``fill_invalid``), mapped through the inverse of the framing's affine
    ``model_to_preview`` (2, 3) (model pixel -> preview pixel) onto the S x S square.
    warped (T, h, w, 3) uint8, valid (T, h, w) bool -> (warped (T, S, S, 3) uint8, validity
    (T, S, S) float32 in [0, 1]: the share of each model pixel the warp has data for)."""
    to_model = cv2.invertAffineTransform(np.asarray(model_to_preview, np.float64))
    images = np.stack([cv2.warpAffine(fill_invalid(frame, ok), to_model, (size, size),
                                      flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
                       for frame, ok in zip(warped, valid)])
    validity = np.stack([cv2.warpAffine(ok.astype(np.float32), to_model, (size, size),
                                        flags=cv2.INTER_AREA, borderValue=0.0)
                         for ok in valid])
    return images, np.clip(validity, 0.0, 1.0)


def condition_source(image, K, model_to_image, oversample=CONDITION_OVERSAMPLE):
    """The source ``image`` (h, w, 3) uint8 with intrinsics K, whose pixels the model's map
    to by the affine ``model_to_image`` (2, 3), downscaled (area) to ``oversample`` pixels a
    model pixel, for warps the model sees only in its S x S view (``condition_warps``): the
    warp's cost falls with the pixels, its view hardly changes. Kept as is when it is no
    larger. Returns (image, K, model_to_image) of the downscaled source."""
    A = np.asarray(model_to_image, np.float64)
    scale = oversample / np.sqrt(abs(np.linalg.det(A[:, :2])))
    h, w = image.shape[:2]
    size = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    if scale >= 1.0 or size == (w, h):
        return image, np.asarray(K, np.float64), A
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    K_small = scale_intrinsics(K, size[0] / w, size[1] / h)
    to_small = K_small @ np.linalg.inv(np.asarray(K, np.float64))
    return small, K_small, (to_small @ np.vstack([A, [0.0, 0.0, 1.0]]))[:2]


def condition_warps(image, K, model_to_image, rel_c2w, depth, size):
    """The warps of one path rel_c2w (T, 4, 4) as the model sees them: ``warp_path`` of
    ``image`` (h, w, 3) (a ``condition_source``) with its K and ``depth`` (as
    ``warp_path``'s), then ``in_model_view`` through ``model_to_image`` onto S = ``size``.
    Returns (warped (T, S, S, 3) uint8, validity (T, S, S) float32)."""
    warped, valid = warp_path(image, K, rel_c2w, depth)
    return in_model_view(warped, valid, model_to_image, size)


def warp_condition(backend, warped, validity):
    """The denoiser's warp input from warps in the model's view: warped (P, T, S, S, 3) uint8,
    validity (P, T, S, S) -> (P, t, C+1, s, s) float32: the codec's latents of the warped
    clips (one batched ``backend.encode``) and ``preprocess.warp_validity_channel``."""
    P, T, S = warped.shape[:3]
    x = preprocess.images_to_model(warped.reshape(P * T, S, S, 3)).reshape(P, T, 3, S, S)
    latents = backend.encode(x)                                         # (P, t, C, s, s)
    channel = np.stack([preprocess.warp_validity_channel(v, backend.config) for v in validity])
    return np.concatenate([latents, channel], axis=2).astype(np.float32)


def perturbed_depth(rng, depth):
    """``depth`` (S, S) times a global scale error (uniform NOISY_SCALE) and smooth
    multiplicative noise (exp of a NOISY_GRID^2 normal field, std NOISY_SIGMA, upsampled
    bicubically); inf stays inf. float32."""
    h, w = depth.shape
    field = rng.normal(0.0, NOISY_SIGMA, (NOISY_GRID, NOISY_GRID)).astype(np.float32)
    field = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
    return (np.asarray(depth, np.float32) * np.float32(rng.uniform(*NOISY_SCALE))
            * np.exp(field)).astype(np.float32)


def draw_depth(rng, rel_c2w, depth=None):
    """The depth argument of ``warp_path`` for a training clip: one of DEPTH_KINDS drawn with
    DEPTH_KIND_PROBS (without a true ``depth`` (S, S), the map kinds become the plane).
    Returns (kind, depth: map, plane depth or None)."""
    kind = DEPTH_KINDS[int(rng.choice(len(DEPTH_KINDS), p=DEPTH_KIND_PROBS))]
    if depth is None and kind in ("true", "noisy"):
        kind = "plane"
    if kind == "true":
        return kind, np.asarray(depth, np.float32)
    if kind == "noisy":
        return kind, perturbed_depth(rng, depth)
    if kind == "plane":
        d = float(np.exp(rng.uniform(*np.log(PLANE_DEPTH))))
        return kind, fallback_plane_depth(rel_c2w, d)
    return kind, None


def model_view_warp(source, K, rel_c2w, depth, size, framing="centre"):
    """``source`` (H, W, 3) uint8 with intrinsics K warped along rel_c2w (T, 4, 4) at its own
    size (``warp_path``) and seen in the model's S x S view (``in_model_view`` through the
    inference framing ``framing``, ``framing.prepare_frames``). Returns (warped (T, S, S, 3)
    uint8, validity (T, S, S) float32)."""
    K = np.asarray(K, np.float64)
    _, K_model, _ = prepare_frames(np.asarray(source)[None], K, size, framing)
    warped, valid = warp_path(source, K, rel_c2w, depth)
    return in_model_view(warped, valid, (K @ np.linalg.inv(K_model))[:2], size)


def training_warp(rng, frame0, K, rel_c2w, depth=None, size=None, framing="centre"):
    """A training clip's warp condition images: its frame 0 (S, S, 3) uint8 with intrinsics K
    warped into every camera of rel_c2w (T, 4, 4) (normalised units) with a drawn depth
    (``draw_depth``; ``depth``: the renderer's true z-depth (S, S) or None).
    A letterboxed clip (``model.data.letterbox_cache``) passes its image before the padding
    (h, w, 3) with its K and depth (h, w), ``size`` S and ``framing`` "letterbox": warped at
    its own size and seen in the model's view exactly as at inference.
    Returns (warped (T, S, S, 3) uint8, validity (T, S, S) float32)."""
    _, drawn = draw_depth(rng, rel_c2w, depth)
    return model_view_warp(frame0, K, rel_c2w, drawn, size or frame0.shape[0], framing)
