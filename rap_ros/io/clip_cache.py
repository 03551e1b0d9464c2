"""The clip cache: training clips on disk, torch-free, for the renderer and for
pseudo-labelled recordings alike.

A cache is one folder:

    frames.npy   uint8   (N, T, S, S, 3)  RGB at the model's size, through the inference framing
    K.npy        float64 (N, 3, 3)        intrinsics of those S x S images, pixels
    c2w.npy      float64 (N, T, 4, 4)     camera-to-world, OpenCV axes, relative to each clip's
                                          first camera, unit mean distance from it
    depth.npy    float32 (N, S, S)        optional (rendered caches): z-depth of each clip's
                                          frame 0 in the clip's normalised units (inf: sky),
                                          for the warp condition (issue 12)
    meta.json    {"version", "n", "frames", "size", "split", "done", ...}; clips [0, done) are
                 valid (the renderer fills a cache resumably)

``model.data.build_frame_cache`` renders synthetic clips into one; ``write_clip_cache`` writes
finished arrays (``evaluation.pseudo_labels``); ``FrameCache`` reads either.
"""
import json
import os
from pathlib import Path

import numpy as np

CACHE_VERSION = 1


class FrameCache:
    """Read access to a complete clip cache (memory-mapped frames)."""

    def __init__(self, cache_dir):
        cache_dir = Path(cache_dir)
        meta_path = cache_dir / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"frame cache not found: {meta_path}")
        self.dir = cache_dir
        self.meta = json.loads(meta_path.read_text())
        if self.meta["done"] < self.meta["n"]:
            raise RuntimeError(f"frame cache {cache_dir} is incomplete "
                               f"({self.meta['done']}/{self.meta['n']}); rebuild it")
        self.frames = np.load(cache_dir / "frames.npy", mmap_mode="r")
        self.K = np.load(cache_dir / "K.npy")
        self.c2w = np.load(cache_dir / "c2w.npy")
        depth = cache_dir / "depth.npy"
        self.depth = np.load(depth, mmap_mode="r") if depth.is_file() else None  # or None

    def __len__(self):
        return self.frames.shape[0]


def write_clip_cache(cache_dir, frames, K, c2w, split, **meta):
    """Write finished clips as a cache (see the module docstring for shapes); ``meta`` adds
    provenance to meta.json. meta.json is written last, so a cache interrupted while
    writing is never read as complete. Returns the folder."""
    frames = np.asarray(frames, np.uint8)
    K = np.asarray(K, np.float64)
    c2w = np.asarray(c2w, np.float64)
    n, t, size = frames.shape[0], frames.shape[1], frames.shape[2]
    if frames.shape[2:] != (size, size, 3) or K.shape != (n, 3, 3) or c2w.shape != (n, t, 4, 4):
        raise ValueError(f"clip cache arrays disagree: frames {frames.shape}, K {K.shape}, "
                         f"c2w {c2w.shape}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "meta.json").unlink(missing_ok=True)
    for name, array in (("frames", frames), ("K", K), ("c2w", c2w)):
        np.save(cache_dir / f"{name}.npy", array)
    info = {"version": CACHE_VERSION, "n": n, "frames": t, "size": size, "split": split,
            "done": n, **meta}
    tmp = cache_dir / "meta.json.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, cache_dir / "meta.json")
    return cache_dir
