"""Synthetic clips and drives: a scene, a trajectory, intrinsics and rendered frames, by seed.

Conventions: world z up (x forward, y left at the start); poses camera-to-world with OpenCV
camera axes (x right, y down, z forward), metres; K (3, 3) with pixel centres at integer
coordinates; frames uint8 RGB; stamps in seconds from the first frame.

Seeds: a clip is a pure function of its integer seed (``sample_clip(seed)`` always renders the
same bytes). Training draws only seeds below ``TRAIN_SEED_LIMIT`` = 10**9 (``train_seed``):
``ClipStream`` stream ``s`` (0 <= s < MAX_STREAMS) yields clip ``k`` (0 <= k < STREAM_LENGTH)
with seed ``s * STREAM_LENGTH + k``, so distinct streams never share a clip. Held-out clips and
drives use seeds from ``HELD_OUT_SEED_START`` = 10**9 upwards (``held_out_seed``), which no
training seed reaches.
"""
import numpy as np

from rap_ros.io.clip import Clip  # noqa: F401  (re-exported)
from rap_ros.synth import scenes, trajectories
from rap_ros.synth.camera_effects import film
from rap_ros.synth.render import true_depth

STREAM_LENGTH = 10**6
MAX_STREAMS = 1000
TRAIN_SEED_LIMIT = STREAM_LENGTH * MAX_STREAMS  # 10**9
HELD_OUT_SEED_START = 10**9
SUPERSAMPLE = 2  # sub-pixel rays per pixel side on geometric edges (see render.render)


def _seed_label(seed):
    """``seed`` as a JSON-friendly int for ``Clip.meta``; None for a numpy Generator."""
    return int(seed) if isinstance(seed, (int, np.integer)) else None


def _choose(rng: np.random.Generator, kind, kinds: tuple) -> str:
    """``kind`` if given (checked against ``kinds``), else a random one of ``kinds``."""
    if kind is None:
        return str(rng.choice(kinds))
    if kind not in kinds:
        raise ValueError(f"unknown kind {kind!r}; expected one of {kinds}")
    return kind


def _film(rng: np.random.Generator, path: trajectories.Trajectory, scene_kind: str, K: np.ndarray,
          height: int, width: int, supersample: int, meta: dict, depth: bool = False,
          effects=()):
    """Build a ``scene_kind`` scene around ``path`` and render it into a Clip, with the camera
    ``effects`` (``camera_effects.EFFECTS``); with ``depth``, (clip, z-depth (H, W) of its
    frame 0 in metres, inf: sky)."""
    world = scenes.make_scene(scene_kind, rng, path)
    frames = film(world, K, path.c2w, height, width, effects, rng, supersample)
    clip = Clip(frames=frames, K=K, c2w=path.c2w, stamps=path.stamps, meta=meta)
    if depth:
        return clip, true_depth(world, K, path.c2w[0], height, width)
    return clip


def sample_clip(
    seed: int,
    frames: int = 8,
    height: int = 64,
    width: int = 64,
    fps: float = 10.0,
    trajectory: str = None,
    scene: str = None,
    supersample: int = SUPERSAMPLE,
    depth: bool = False,
    effects: tuple = (),
    fov_deg: tuple = trajectories.FOV_DEG,
) -> Clip:
    """Render the clip of ``seed``: random trajectory kind (trajectories.KINDS) and scene kind
    (scenes.KINDS) unless given, random intrinsics, ``frames`` frames at ``fps`` Hz.
    ``depth``: return (clip, the renderer's true z-depth (H, W) of frame 0 in metres, inf:
    sky; ``render.true_depth``) instead (the same clip). ``effects``: what a real camera adds
    (names of ``camera_effects.EFFECTS``: rolling shutter, a moving object, sensor noise,
    auto-exposure, JPEG); the scene, trajectory and intrinsics are those of the clip without
    them. ``fov_deg``: the range of the horizontal field of view drawn (degrees).

    ``seed`` is an int; a numpy Generator is accepted too (then ``meta["seed"]`` is None)."""
    rng = np.random.default_rng(seed)
    trajectory_kind = _choose(rng, trajectory, trajectories.KINDS)
    scene_kind = _choose(rng, scene, scenes.KINDS)
    K = trajectories.sample_intrinsics(rng, width, height, fov_deg)
    path = trajectories.make_trajectory(trajectory_kind, rng, frames, fps)
    meta = {"scene": scene_kind, "trajectory": trajectory_kind, "seed": _seed_label(seed)}
    if effects:
        meta["effects"] = list(effects)
    return _film(rng, path, scene_kind, K, height, width, supersample, meta, depth, effects)


def make_drive(
    seed: int,
    frames: int = 200,
    height: int = 64,
    width: int = 64,
    fps: float = 10.0,
    scene: str = None,
    supersample: int = SUPERSAMPLE,
) -> Clip:
    """One long robot drive in one scene, mixing forward runs, turns in place, arcs and stops
    (trajectories.drive_trajectory); what demos and evaluation replay."""
    rng = np.random.default_rng(seed)
    scene_kind = _choose(rng, scene, scenes.KINDS)
    K = trajectories.sample_intrinsics(rng, width, height)
    path = trajectories.drive_trajectory(rng, frames, fps)
    meta = {"scene": scene_kind, "trajectory": "drive", "seed": _seed_label(seed)}
    return _film(rng, path, scene_kind, K, height, width, supersample, meta)


def train_seed(index: int) -> int:
    """Seed of training clip ``index``: the index itself, checked to lie below TRAIN_SEED_LIMIT."""
    if not 0 <= index < TRAIN_SEED_LIMIT:
        raise ValueError(f"training clip index {index} outside [0, {TRAIN_SEED_LIMIT})")
    return int(index)


def held_out_seed(index: int) -> int:
    """Seed of held-out clip or drive ``index`` (>= 0): never drawn for training."""
    if index < 0:
        raise ValueError(f"held-out index {index} is negative")
    return HELD_OUT_SEED_START + int(index)


def stream_seed(stream: int, index: int) -> int:
    """Seed of clip ``index`` of training stream ``stream`` (see the module docstring)."""
    if not 0 <= stream < MAX_STREAMS:
        raise ValueError(f"stream {stream} outside [0, {MAX_STREAMS})")
    if not 0 <= index < STREAM_LENGTH:
        raise ValueError(f"clip index {index} outside [0, {STREAM_LENGTH})")
    return train_seed(stream * STREAM_LENGTH + index)


class ClipStream:
    """Endless-looking iterator of training batches rendered on the fly.

    Each item is a dict of numpy arrays: ``frames`` (B, T, H, W, 3) uint8, ``K`` (B, 3, 3)
    float64, ``c2w`` (B, T, 4, 4) float64, ``seeds`` (B,) int64. Batch ``n`` holds clips
    ``start + n * B`` to ``start + n * B + B - 1`` of stream ``seed``; pass ``start`` to resume.
    The stream ends after STREAM_LENGTH clips.
    """

    def __init__(self, seed: int, frames: int = 8, height: int = 64, width: int = 64,
                 batch_size: int = 16, start: int = 0):
        stream_seed(seed, start)  # validates both
        self.stream, self.next_index = seed, start
        self.frames, self.height, self.width, self.batch_size = frames, height, width, batch_size

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.next_index + self.batch_size > STREAM_LENGTH:
            raise StopIteration
        seeds = [stream_seed(self.stream, self.next_index + i) for i in range(self.batch_size)]
        self.next_index += self.batch_size
        clips = [sample_clip(s, self.frames, self.height, self.width) for s in seeds]
        return {
            "frames": np.stack([c.frames for c in clips]),
            "K": np.stack([c.K for c in clips]),
            "c2w": np.stack([c.c2w for c in clips]),
            "seeds": np.array(seeds, np.int64),
        }
