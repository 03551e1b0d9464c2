"""Sequences for benchmarks/eval_odometry.py: synthetic drives and degenerate scenarios
(rendered once by rap_ros.synth and cached as .npz), plus the shared real sequences.

Every sequence is a dict: name, frames uint8 (N, H, W, 3), K (3, 3) or None (no
camera_info), K_true (3, 3), c2w (N, 4, 4) ground truth (OpenCV axes, camera-to-world),
kind ("synthetic", "scenario", "real").
"""
import json
import os
from pathlib import Path

import cv2
import numpy as np

from rap_ros.synth import scenes, trajectories
from rap_ros.synth.camera_effects import EFFECTS
from rap_ros.synth.dataset import held_out_seed, make_drive, sample_clip

SCENES = ("room", "corridor", "street")
# held-out seeds, disjoint from those used while developing (held_out_seed(0..9))
DRIVES = [(s, held_out_seed(100 + i), 320, 240) for i, s in enumerate(SCENES * 2)] + \
         [(s, held_out_seed(200 + i), 640, 480) for i, s in enumerate(SCENES)]
SCENARIOS = ("pure_rotation", "stop_and_go", "textureless", "blur", "drop_30", "no_camera_info")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _cached(path, make):
    path = Path(path)
    if path.exists():
        d = np.load(path)
        return {k: d[k] for k in d.files}
    d = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.with_suffix(".tmp.npz"), **d)
    os.replace(path.with_suffix(".tmp.npz"), path)
    return d


def drives(cache, frames=200):
    out = []
    for scene, seed, w, h in DRIVES:
        def make(scene=scene, seed=seed, w=w, h=h):
            c = make_drive(seed, frames=frames, height=h, width=w, scene=scene)
            return dict(frames=c.frames, K=c.K, c2w=c.c2w)
        d = _cached(Path(cache) / f"drive_{scene}_{seed}_{w}x{h}_{frames}.npz", make)
        out.append(dict(name=f"synth-{scene}-{seed - held_out_seed(0)}-{w}x{h}",
                        frames=d["frames"], K=d["K"], K_true=d["K"], c2w=d["c2w"],
                        kind="synthetic"))
    return out


def _clip(cache, name, seed, trajectory, scene, frames=120, effects=()):
    def make():
        c = sample_clip(seed, frames=frames, height=240, width=320, trajectory=trajectory,
                        scene=scene, effects=effects)
        return dict(frames=c.frames, K=c.K, c2w=c.c2w)
    tag = "".join(f"_{e}" for e in effects)
    return _cached(Path(cache) / f"clip_{name}_{seed}_{frames}{tag}.npz", make)


def arc_clip(cache, effects=()):
    """The arc through a room (seed 300): the first base clip of the degradations."""
    return _clip(cache, "arc", held_out_seed(300), "arc", "room", effects=effects)


def variety_clip(cache, trajectory, scene, frames=120, effects=()):
    """One clip of ``variety``: ``trajectory`` kind through a ``scene`` kind (seed 500 + its
    place in the list of every pair), with the camera ``effects`` (none: as rendered)."""
    kinds = [(t, s) for t in trajectories.KINDS for s in scenes.KINDS]
    seed = held_out_seed(500 + kinds.index((trajectory, scene)))
    return _clip(cache, f"variety_{trajectory}_{scene}", seed, trajectory, scene, frames,
                 effects)


DEGRADATION_BASES = ("arc-room", "forward-street", "orbit-corridor")
# the fastest rotation of the variety clips, where a rolling shutter shows most
CAMERA_EFFECT_BASES = DEGRADATION_BASES + ("handheld-room",)


def base_clip(cache, name, effects=()):
    """A base clip by name, "<trajectory>-<scene>" ("arc-room": ``arc_clip``, the others
    ``variety_clip``), filmed with the camera ``effects``."""
    if name == "arc-room":
        return arc_clip(cache, effects)
    trajectory, scene = name.split("-")
    return variety_clip(cache, trajectory, scene, effects=effects)


def degradation_bases(cache):
    """The undegraded clips every degradation is applied to, one per scene kind, each with a
    kind of motion that translates all along (turning in place and stopping are scenarios of
    their own): so a scenario row measures its degradation, not one clip's luck."""
    return {name: base_clip(cache, name) for name in DEGRADATION_BASES}


def camera_effects(cache):
    """Each clip of CAMERA_EFFECT_BASES as rendered ("undegraded (<base>)") and filmed with
    each of ``camera_effects.EFFECTS`` alone ("<effect> (<base>)"): the same scene, path and
    intrinsics, so a row measures what the effect does."""
    out = []
    for effect in ("undegraded",) + EFFECTS:
        for name in CAMERA_EFFECT_BASES:
            clip = base_clip(cache, name, () if effect == "undegraded" else (effect,))
            out.append(dict(name=f"{effect} ({name})", base=name, kind="camera",
                            K_true=clip["K"], **clip))
    return out


DEGRADATIONS = ("undegraded", "textureless", "blur", "drop_30", "no_camera_info")


def degrade(base, degradation, rng):
    """``base`` (frames, K, c2w) with one degradation: "textureless" (a bare grey wall fills
    the view for frames 50-64), "blur" (a 15-px horizontal motion streak on frames 50-69),
    "drop_30" (30 % of the frames after the first dropped at random), "no_camera_info" (K
    withheld), "undegraded" (as is)."""
    frames, K, c2w = base["frames"], base["K"], base["c2w"]
    if degradation == "textureless":
        frames = frames.copy()
        wall = np.full_like(frames[0], 150)
        for i in range(50, 65):
            frames[i] = np.clip(wall + rng.normal(0, 2, wall.shape), 0, 255).astype(np.uint8)
    elif degradation == "blur":
        frames = frames.copy()
        kernel = np.zeros((15, 15), np.float32)
        kernel[7, :] = 1 / 15
        for i in range(50, 70):
            frames[i] = cv2.filter2D(frames[i], -1, kernel)
    elif degradation == "drop_30":
        n = len(frames)
        keep = np.sort(np.r_[0, rng.choice(np.arange(1, n), int(0.7 * (n - 1)), replace=False)])
        frames, c2w = frames[keep], c2w[keep]
    elif degradation == "no_camera_info":
        K = None
    elif degradation != "undegraded":
        raise ValueError(f"unknown degradation {degradation!r}")
    return dict(frames=frames, K=K, c2w=c2w, K_true=base["K"])


def scenarios(cache):
    """The degenerate cases, 320x240: pure rotation in place and stop-and-go (seeds 301, 302),
    and every degradation of DEGRADATIONS on each clip of ``degradation_bases``, named
    "<degradation> (<base>)"."""
    rng = np.random.default_rng(0)
    out = [dict(name="pure_rotation",
                **_clip(cache, "turn", held_out_seed(301), "turn_in_place", "room")),
           dict(name="stop_and_go",
                **_clip(cache, "stopgo", held_out_seed(302), "stop_and_go", "street"))]
    for base_name, base in degradation_bases(cache).items():
        for degradation in DEGRADATIONS:
            out.append(dict(name=f"{degradation} ({base_name})", degradation=degradation,
                            base=base_name, **degrade(base, degradation, rng)))
    for s in out:
        s.setdefault("K_true", s["K"])
        s["kind"] = "scenario"
    return out


def variety(cache, frames=120, effects=()):
    """Every trajectory kind in every scene kind once: 21 clips of ``frames`` frames at 320x240
    (held-out seeds 500+), for comparing settings on more than a handful of sequences (a
    single setting moves single sequences by factors of 3-20 in both directions); filmed
    with the camera ``effects`` if given (``rolling_shutter``)."""
    out = []
    for trajectory in trajectories.KINDS:
        for scene in scenes.KINDS:
            d = variety_clip(cache, trajectory, scene, frames, effects)
            out.append(dict(name=f"{trajectory}-{scene}", K_true=d["K"],
                            kind="_".join(effects) or "variety", **d))
    return out


def rolling_shutter(cache, frames=120):
    """The ``variety`` clips filmed with a rolling shutter (``camera_effects.READOUT`` frame
    intervals from the first row to the last)."""
    return variety(cache, frames, effects=("rolling_shutter",))


def real(root=SHARED, max_frames=None):
    out = []
    for name in ("kitti_vo_seq1", "nerf_synthetic_lego_test"):
        folder = Path(root) / name
        if not (folder / "cameras.json").exists():
            continue
        meta = json.loads((folder / "cameras.json").read_text())
        intr = meta["intrinsics"]
        K = np.array([[intr["fx"], 0, intr["cx"]], [0, intr["fy"], intr["cy"]], [0, 0, 1.0]])
        frames, poses = [], []
        for fr in meta["frames"][:max_frames]:
            path = folder / fr["file"] if (folder / fr["file"]).exists() else folder / "images" / fr["file"]
            im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if im.ndim == 3 and im.shape[2] == 4:  # RGBA over white (NeRF synthetic)
                a = im[..., 3:4].astype(np.float32) / 255
                im = (im[..., :3] * a + 255 * (1 - a)).astype(np.uint8)
            im = cv2.cvtColor(im, cv2.COLOR_BGR2RGB) if im.ndim == 3 else \
                cv2.cvtColor(im, cv2.COLOR_GRAY2RGB)
            frames.append(im)
            poses.append(np.array(fr["c2w"], float))
        out.append(dict(name=name, frames=np.stack(frames), K=K, K_true=K,
                        c2w=np.stack(poses), kind="real"))
    return out


if __name__ == "__main__":  # render the cache
    import sys
    cache = sys.argv[1] if len(sys.argv) > 1 else "/tmp/rap_odometry_cache"
    for s in scenarios(cache):
        print(s["name"], s["frames"].shape, flush=True)
    for d in drives(cache):
        print(d["name"], d["frames"].shape, flush=True)
