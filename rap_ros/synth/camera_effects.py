"""What a real camera adds to a clean render: a rolling shutter, an independently moving
object, sensor noise, auto-exposure with vignetting, and JPEG compression.

The renderer gives global-shutter, noise-free, evenly exposed frames of a static world;
odometry tuned on those alone can fail on a robot's camera in ways no synthetic benchmark
shows. Each effect here is named in EFFECTS; ``film`` renders a scene with some of them (as
``sample_clip(effects=...)`` does):

- geometric effects re-render the clip's scene: ``rolling_shutter`` (rows read top to bottom
  over ``readout`` frame intervals, the middle row at the frame's stamp, so the ground-truth
  pose stays the frame's pose) and ``moving_object`` (a textured box crossing the view in
  front of the camera for part of the clip, moving on its own);
- photometric effects change the frames: ``sensor_noise`` (shot and read noise),
  ``auto_exposure`` (a drifting gain with occasional jumps, over a fixed vignette) and
  ``jpeg`` (compressed at ``JPEG_QUALITY``, as ``image_transport``'s compressed topics are).

Conventions as in ``rap_ros.synth.dataset``: frames uint8 RGB (N, H, W, 3), poses c2w (N, 4, 4)
with OpenCV camera axes, metres.
"""
from dataclasses import replace

import cv2
import numpy as np

from rap_ros.geometry.rotations import matrix_from_rotation_vector, rotation_vector
from rap_ros.synth.render import render
from rap_ros.synth.scenes import Scene
from rap_ros.synth.textures import TEXTURE_NAMES

EFFECTS = ("rolling_shutter", "moving_object", "sensor_noise", "auto_exposure", "jpeg")
GEOMETRIC = ("rolling_shutter", "moving_object")

READOUT = 0.5          # rolling shutter: frame intervals from the first row to the last
SHUTTER_BANDS = 24     # rows rendered from one pose (a band of height / SHUTTER_BANDS rows)
OBJECT_FRAMES = (0.35, 0.75)  # moving object: in view over this share of the clip
OBJECT_DEPTH = 1.8     # metres in front of the camera (inside the rooms' clearance)
OBJECT_HALF_SIZE = (0.35, 0.35, 0.5)  # metres, scene frame (x, y horizontal, z up)
OBJECT_SWEEP = 1.6     # metres each side of the optical axis it crosses between
READ_NOISE = 2.0       # sensor noise: grey levels, standard deviation
SHOT_GAIN = 0.12       # and a variance of SHOT_GAIN * intensity (grey levels)
EXPOSURE_DRIFT = 0.04  # auto-exposure: log-gain random walk step per frame
EXPOSURE_JUMP = 0.35   # a jump of up to this log-gain ...
JUMP_PROBABILITY = 0.05  # ... with this probability per frame
GAIN_RANGE = (0.55, 1.8)
VIGNETTE = 0.35        # brightness lost in the image corners
JPEG_QUALITY = 40


def film(scene: Scene, K, c2w, height: int, width: int, effects=(),
         rng: np.random.Generator = None, supersample: int = 1) -> np.ndarray:
    """Frames (N, H, W, 3) of ``scene`` seen from ``c2w`` with ``effects`` (names of EFFECTS;
    the geometric ones in the render, then the photometric ones in the order given, drawing
    from ``rng``). No effects: exactly ``render.render``."""
    unknown = [e for e in effects if e not in EFFECTS]
    if unknown:
        raise ValueError(f"unknown camera effects {unknown}; expected some of {EFFECTS}")
    if effects and rng is None:
        raise ValueError("camera effects need a random generator")
    if not any(e in GEOMETRIC for e in effects):
        frames = render(scene, K, c2w, height, width, supersample)
    else:
        mover = moving_box(scene, c2w, rng) if "moving_object" in effects else None
        readout = READOUT if "rolling_shutter" in effects else 0.0
        frames = render_with(scene, K, c2w, height, width, readout=readout, mover=mover,
                             supersample=supersample)
    for effect in effects:
        if effect == "sensor_noise":
            frames = sensor_noise(frames, rng)
        elif effect == "auto_exposure":
            frames = auto_exposure(frames, rng)
        elif effect == "jpeg":
            frames = jpeg(frames)
    return frames


# ------------------------------------------------------------------ geometric effects
def poses_at(c2w: np.ndarray, offset: float) -> np.ndarray:
    """Poses (N, 4, 4) ``offset`` frame intervals after each of ``c2w`` (N, 4, 4), N >= 2:
    rotation along the geodesic to the neighbouring frame, translation linear (constant
    velocity within an interval; the last frame uses the interval before it)."""
    n = len(c2w)
    if n < 2 or offset == 0:
        return c2w.copy()
    step = 1 if offset > 0 else -1
    other = np.clip(np.arange(n) + step, 0, n - 1)
    flipped = other == np.arange(n)  # at an end: the interval on the other side, reversed
    other[flipped] = np.arange(n)[flipped] - step
    fraction = np.where(flipped, -abs(offset), abs(offset))
    R0, R1 = c2w[:, :3, :3], c2w[other, :3, :3]
    relative = rotation_vector(np.swapaxes(R0, 1, 2) @ R1)  # (N, 3) in each frame's camera
    out = c2w.copy()
    out[:, :3, :3] = R0 @ matrix_from_rotation_vector(fraction[:, None] * relative)
    out[:, :3, 3] += fraction[:, None] * (c2w[other, :3, 3] - c2w[:, :3, 3])
    return out


def moving_box(scene: Scene, c2w: np.ndarray, rng: np.random.Generator) -> dict:
    """A box that crosses the camera's view: (frame index -> its centre, scene frame) for the
    frames OBJECT_FRAMES of the clip, and its texture. It keeps OBJECT_DEPTH in front of the
    camera and sweeps sideways across the optical axis (left to right or back), so its image
    motion has nothing to do with the camera's."""
    n = len(c2w)
    first, last = (int(round(f * n)) for f in OBJECT_FRAMES)
    direction = rng.choice((-1.0, 1.0))
    centres = {}
    for i in range(first, last):
        s = (i - first) / max(last - first - 1, 1)
        lateral = direction * OBJECT_SWEEP * (2 * s - 1)
        world = c2w[i, :3, :3] @ np.array([lateral, 0.0, OBJECT_DEPTH]) + c2w[i, :3, 3]
        centres[i] = scene.to_scene_frame(world)
    return dict(centres=centres, texture=int(rng.integers(len(TEXTURE_NAMES))))


def _with_box(scene: Scene, centre: np.ndarray, texture: int) -> Scene:
    half = np.asarray(OBJECT_HALF_SIZE, np.float32)
    return replace(
        scene,
        lo=np.vstack([scene.lo, (centre - half)[None]]).astype(np.float32),
        hi=np.vstack([scene.hi, (centre + half)[None]]).astype(np.float32),
        texture=np.r_[scene.texture, texture].astype(np.int32),
        tile=np.r_[scene.tile, 0.5].astype(np.float32),
        uv_offset=np.vstack([scene.uv_offset, [[0.0, 0.0]]]).astype(np.float32),
        tint=np.vstack([scene.tint, [[1.0, 1.0, 1.0]]]).astype(np.float32))


def render_with(scene: Scene, K, c2w, height: int, width: int, readout: float = 0.0,
                mover: dict = None, supersample: int = 1) -> np.ndarray:
    """Frames (N, H, W, 3) of ``scene`` with a rolling shutter of ``readout`` frame intervals
    (0: global shutter) and the moving box ``mover`` (``moving_box``; None: none).

    The rolling shutter is rendered in SHUTTER_BANDS bands of rows, each from the pose at its
    middle row's time (a camera whose principal point is moved up renders just those rows)."""
    K = np.asarray(K, float)
    out = np.empty((len(c2w), height, width, 3), np.uint8)
    boxed = {} if mover is None else mover["centres"]  # frame -> the box's centre
    bands = SHUTTER_BANDS if readout else 1
    edges = np.linspace(0, height, bands + 1).round().astype(int)
    for top, bottom in zip(edges[:-1], edges[1:]):
        offset = readout * ((top + bottom) / 2 / height - 0.5)
        poses = poses_at(c2w, offset)
        K_band = K.copy()
        K_band[1, 2] -= top
        still = [i for i in range(len(c2w)) if i not in boxed]
        if still:
            out[still, top:bottom] = render(scene, K_band, poses[still], bottom - top, width,
                                            supersample)
        for i, centre in boxed.items():  # the box moves: one scene per frame
            box_scene = _with_box(scene, centre, mover["texture"])
            out[i, top:bottom] = render(box_scene, K_band, poses[i:i + 1], bottom - top,
                                        width, supersample)[0]
    return out


# ---------------------------------------------------------------- photometric effects
def sensor_noise(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shot and read noise: each value gets Gaussian noise of variance READ_NOISE**2 +
    SHOT_GAIN * value (grey levels), independently per pixel, channel and frame."""
    x = frames.astype(np.float32)
    sigma = np.sqrt(READ_NOISE ** 2 + SHOT_GAIN * x)
    x += sigma * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def auto_exposure(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frames times a per-frame gain (a log-space random walk of EXPOSURE_DRIFT per frame,
    jumps of up to EXPOSURE_JUMP with JUMP_PROBABILITY, within GAIN_RANGE) and a fixed radial
    vignette (1 - VIGNETTE r^2, r = 1 in the corners), clipped at 255 as a sensor saturates."""
    n, height, width = frames.shape[:3]
    log_gain = np.zeros(n)
    for i in range(1, n):
        step = rng.normal(0.0, EXPOSURE_DRIFT)
        if rng.random() < JUMP_PROBABILITY:
            step += rng.uniform(-EXPOSURE_JUMP, EXPOSURE_JUMP)
        log_gain[i] = np.clip(log_gain[i - 1] + step, *np.log(GAIN_RANGE))
    v, u = np.mgrid[:height, :width].astype(np.float32)
    r2 = ((u - (width - 1) / 2) ** 2 + (v - (height - 1) / 2) ** 2) / \
        (((width - 1) / 2) ** 2 + ((height - 1) / 2) ** 2)
    vignette = (1 - VIGNETTE * r2)[..., None]
    out = np.empty_like(frames)
    for i, (frame, g) in enumerate(zip(frames, np.exp(log_gain))):
        out[i] = np.clip(np.round(frame * (g * vignette)), 0, 255)
    return out


def jpeg(frames: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """Each frame JPEG-encoded at ``quality`` and decoded (blocking, ringing, chroma
    subsampling)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        ok, data = cv2.imencode(".jpg", frame[..., ::-1], params)  # OpenCV wants BGR
        out[i] = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
    return out
