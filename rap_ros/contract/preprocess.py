"""Model-side pre- and post-processing, numpy + OpenCV only (no torch).

The ONNX backend uses this module without torch, so everything here is plain numpy:

* images: uint8 (T, H, W, 3) <-> float32 (T, 3, H, W) in [-1, 1]
* raxels: (T, 6, H, W) from `geometry.encode_raxels` <-> the normalised model layout
  (channels 3:6 multiplied by RAXEL_ORIGIN_SCALE), and the split into two 3-channel videos
* motion channels: DIS optical flow between consecutive frames, pooled to the latent grid and
  grouped per latent frame like the codec groups frames
* job masks: which latent frames are clean (conditioning) for each of the three jobs
"""
import cv2
import numpy as np

# Ray origins (or Plücker moments) of a clip relative to its first camera have a mean distance
# of 1 from the first centre; a 9-frame clip reaches about 2. Half of that keeps them in [-1, 1].
RAXEL_ORIGIN_SCALE = 0.5

JOBS = ("video_to_camera", "images_camera_to_video", "image_to_video_camera")


# ---------------------------------------------------------------- images

# uint8 grey of the letterbox padding (``pipeline.framing``, ``model.data.letterbox_cache``):
# 128 is ~0 in the model's [-1, 1]
LETTERBOX_PAD = 128


def images_to_model(frames: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1]."""
    frames = np.asarray(frames)
    if frames.shape[-1] != 3:
        raise ValueError(f"frames must end in 3 RGB channels, got {frames.shape}")
    x = frames.astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def model_to_images(x: np.ndarray) -> np.ndarray:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float32), -3, -1)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (T, H, W, 3) -> (T, size, size, 3) with area interpolation (no crop: the caller
    scales K with `geometry.scale_intrinsics(K, size / W, size / H)`)."""
    frames = np.asarray(frames)
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


# ---------------------------------------------------------------- raxels


def normalize_raxels(raxels: np.ndarray) -> np.ndarray:
    """(..., 6, H, W) raxels -> model layout: directions unchanged, channels 3:6 scaled."""
    out = np.array(raxels, dtype=np.float32)
    out[..., 3:6, :, :] *= RAXEL_ORIGIN_SCALE
    return out


def denormalize_raxels(raxels: np.ndarray) -> np.ndarray:
    """Inverse of `normalize_raxels`."""
    out = np.array(raxels, dtype=np.float32)
    out[..., 3:6, :, :] /= RAXEL_ORIGIN_SCALE
    return out


def split_raxels(raxels: np.ndarray):
    """(..., 6, H, W) -> (directions (..., 3, H, W), origins (..., 3, H, W)): the two videos
    the codec encodes."""
    return raxels[..., 0:3, :, :], raxels[..., 3:6, :, :]


# ---------------------------------------------------------------- motion


_DIS = None


def _dis():
    global _DIS
    if _DIS is None:
        _DIS = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    return _DIS


def optical_flow(frames: np.ndarray) -> np.ndarray:
    """DIS flow between consecutive frames: uint8 (T, H, W, 3) -> float32 (T-1, 2, H, W) with
    flow[i] taking frame i to frame i+1, (dx, dy) divided by (W, H)."""
    frames = np.asarray(frames)
    T, H, W = frames.shape[:3]
    if T < 2:
        return np.zeros((0, 2, H, W), np.float32)
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    out = np.zeros((T - 1, 2, H, W), np.float32)
    if min(H, W) < 16:  # DIS needs a few patches; tiny test images get no flow
        return out
    dis = _dis()
    for i in range(T - 1):
        flow = dis.calc(gray[i], gray[i + 1], None)
        out[i, 0] = flow[..., 0] / W
        out[i, 1] = flow[..., 1] / H
    return out


def motion_channels(frames: np.ndarray, config) -> np.ndarray:
    """Motion channels for the video branch: uint8 (T, H, W, 3) -> float32 (t, M, s, s).

    Latent frame 0 (frame 0 alone) gets zeros. Latent frame j >= 1 covers frames
    1 + (j-1)*tf ... j*tf; its channels 2k, 2k+1 hold the flow (dx/W, dy/H) from frame i-1 to
    frame i for the k-th frame i of that group, average-pooled to the s x s latent grid.
    Frames must already be at `config.image_size`.
    """
    frames = np.asarray(frames)
    T, S = frames.shape[0], config.image_size
    if frames.shape[1:3] != (S, S):
        raise ValueError(f"frames must be {S}x{S}, got {frames.shape[1:3]}")
    if (T - 1) % config.temporal_factor:
        raise ValueError(f"{T} frames is not 1 + {config.temporal_factor} * k")
    tf, s, f = config.temporal_factor, config.latent_size, config.spatial_factor
    t = 1 + (T - 1) // tf
    flow = optical_flow(frames)                                         # (T-1, 2, S, S)
    pooled = flow.reshape(T - 1, 2, s, f, s, f).mean(axis=(3, 5))      # (T-1, 2, s, s)
    out = np.zeros((t, 2 * tf, s, s), np.float32)
    if T > 1:
        out[1:] = pooled.reshape(t - 1, tf * 2, s, s)
    return out


def warp_validity_channel(valid: np.ndarray, config) -> np.ndarray:
    """The warp condition's validity channel: (T, S, S) in [0, 1] (bool or the share of each
    model pixel the warp has data for) -> float32 (t, 1, s, s), the mean over the frames of
    each latent frame (frame 0 alone, then groups of temporal_factor) and over each
    spatial_factor x spatial_factor cell of the latent grid."""
    valid = np.asarray(valid, np.float32)
    T, S = valid.shape[0], config.image_size
    if valid.shape[1:] != (S, S):
        raise ValueError(f"validity must be (T, {S}, {S}), got {valid.shape}")
    if (T - 1) % config.temporal_factor:
        raise ValueError(f"{T} frames is not 1 + {config.temporal_factor} * k")
    tf, s, f = config.temporal_factor, config.latent_size, config.spatial_factor
    cells = valid.reshape(T, s, f, s, f).mean(axis=(2, 4))               # (T, s, s)
    out = np.empty((1 + (T - 1) // tf, 1, s, s), np.float32)
    out[0, 0] = cells[0]
    out[1:, 0] = cells[1:].reshape(-1, tf, s, s).mean(axis=1)
    return out


# ---------------------------------------------------------------- jobs


def job_masks(job, latent_frames: int, k_known=None):
    """Which latent frames are clean (conditioning) for a job.

    job: a name from JOBS or its index. Returns (clean_video, clean_raxel), bool (t,) each.

    * video_to_camera: all video latents clean; raxel frame 0 clean when K is known
      (default True: camera 0 is the identity, so its raxels follow from K alone).
    * images_camera_to_video: all raxels clean; video frame 0 (the source image) clean.
    * image_to_video_camera: video frame 0 clean; the rest of both noised (raxel frame 0 clean
      only with k_known=True; default False).
    """
    name = JOBS[job] if isinstance(job, (int, np.integer)) else job
    t = int(latent_frames)
    clean_video = np.zeros(t, bool)
    clean_raxel = np.zeros(t, bool)
    if name == "video_to_camera":
        clean_video[:] = True
        clean_raxel[0] = True if k_known is None else bool(k_known)
    elif name == "images_camera_to_video":
        clean_raxel[:] = True
        clean_video[0] = True
    elif name == "image_to_video_camera":
        clean_video[0] = True
        clean_raxel[0] = False if k_known is None else bool(k_known)
    else:
        raise ValueError(f"unknown job {job!r}; expected one of {JOBS}")
    return clean_video, clean_raxel
