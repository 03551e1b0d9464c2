"""Training data: synthetic clips rendered ahead into a cache, then latents encoded ahead.

Rendering on 2 CPU cores is far slower than a training step, so `build_frame_cache` renders
`n` clips from train seeds once (`synth.dataset.sample_clip`) into uint8 .npy memmaps under the
run folder (git-ignored `runs/`), resumably (rendering continues where it stopped), in the
clip cache format of `io.clip_cache` (read with its `FrameCache`). After the
codec is trained, `build_latent_cache` encodes every clip with the frozen codec (video, both
raxel halves) and computes the motion channels, so a denoiser step only reads arrays.

    cache/frames.npy   uint8   (N, T, S, S, 3)
    cache/K.npy        float64 (N, 3, 3)
    cache/c2w.npy      float64 (N, T, 4, 4)  relative to the first camera, unit mean distance
    cache/depth.npy    float32 (N, S, S)     true z-depth of frame 0, same units (inf: sky)
    cache/meta.json    sizes, seeds, number of clips done
    latents_<tag>.npz  video (N, t, C, s, s), raxel (N, t, 2C, s, s), motion (N, t, M, s, s),
                       with config.warp_condition also warp (N, t, C+1, s, s): each clip's
                       frame 0 warped into every frame's camera (``warp_clip``), encoded, and
                       its validity (``preprocess.warp_validity_channel``)
"""
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import torch

from rap_ros.contract import preprocess
from rap_ros.geometry.cameras import relative_to_first
from rap_ros.geometry.raxels import encode_raxels
from rap_ros.io.clip_cache import (CACHE_VERSION, FrameCache,  # noqa: F401 (the cache format)
                                   write_clip_cache)
from rap_ros.model.codec import encode_raxels_latent
from rap_ros.synth import dataset
from rap_ros.synth.trajectories import FOV_DEG

# Letterboxed training clips (issue 12 "Full frame", ``letterbox_cache``): each rendered
# square clip keeps the centred strip of one of these aspects (width / height: 4:3, 16:9,
# 2:1, KITTI's 1226:370, and portrait 3:4, 9:16), the rest of the square padded, as the
# letterbox framing (``pipeline.framing``) shows such an image to the model.
LETTERBOX_ASPECTS = (4 / 3, 16 / 9, 2.0, 1226 / 370, 3 / 4, 9 / 16)
# share of a letterbox fine-tune's synthetic batches drawn from the letterboxed clips (the
# rest: the square clips, which letterboxing leaves as they are)
LETTERBOX_SHARE = 0.6

# Validation clips: held-out seeds (synth.dataset.held_out_seed), from an index far above the
# ones evaluation tools start at, so reported validation numbers never use training seeds.
VAL_INDEX_START = 500_000


def clip_seed(split: str, index: int) -> int:
    """Seed of clip `index` of a split: "train" -> dataset.train_seed (seeds < 10**9),
    "val" -> dataset.held_out_seed(VAL_INDEX_START + index)."""
    if split == "train":
        return int(dataset.train_seed(index))
    if split == "val":
        return int(dataset.held_out_seed(VAL_INDEX_START + index))
    raise ValueError(f"unknown split {split!r}")


def _render_one(args):
    seed, frames, size, fov_deg = args
    torch.set_num_threads(1)
    clip, depth = dataset.sample_clip(seed, frames, size, size, depth=True, fov_deg=fov_deg)
    rel, scale = relative_to_first(clip.c2w)
    return (np.asarray(clip.frames, np.uint8), np.asarray(clip.K, np.float64), rel,
            (depth / scale).astype(np.float32))


def build_frame_cache(cache_dir, n: int, frames: int, size: int, workers: int = 2,
                      split: str = "train", log=print, fov_deg=FOV_DEG):
    """Render (or finish rendering) n clips of a split ("train" or "val") into cache_dir,
    their horizontal fields of view drawn from ``fov_deg`` (degrees). Returns the cache
    dir."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta_path = cache_dir / "meta.json"
    meta = {"version": CACHE_VERSION, "n": n, "frames": frames, "size": size,
            "split": split, "depth": True, "done": 0}
    if tuple(fov_deg) != FOV_DEG:  # caches made before the range was a setting lack the key
        meta["fov_deg"] = list(fov_deg)
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if all(old.get(k) == meta.get(k)
               for k in ("version", "n", "frames", "size", "split", "depth", "fov_deg")):
            meta = old
        else:
            log(f"cache {cache_dir} has other sizes ({old}); rebuilding")
    mode = "r+" if meta["done"] > 0 else "w+"
    fr = np.lib.format.open_memmap(cache_dir / "frames.npy", mode=mode, dtype=np.uint8,
                                   shape=(n, frames, size, size, 3))
    Ks = np.lib.format.open_memmap(cache_dir / "K.npy", mode=mode, dtype=np.float64,
                                   shape=(n, 3, 3))
    cs = np.lib.format.open_memmap(cache_dir / "c2w.npy", mode=mode, dtype=np.float64,
                                   shape=(n, frames, 4, 4))
    ds = np.lib.format.open_memmap(cache_dir / "depth.npy", mode=mode, dtype=np.float32,
                                   shape=(n, size, size))
    start = meta["done"]
    if start >= n:
        return cache_dir
    log(f"rendering clips {start}..{n - 1} into {cache_dir} with {workers} workers")
    jobs = [(clip_seed(split, i), frames, size, tuple(fov_deg)) for i in range(start, n)]
    t0 = time.time()
    chunk = 64

    def results():
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                yield from pool.imap(_render_one, jobs, chunksize=4)
        else:
            yield from map(_render_one, jobs)

    for k, (f, K, rel, depth) in enumerate(results()):
        i = start + k
        fr[i], Ks[i], cs[i], ds[i] = f, K, rel, depth
        if (k + 1) % chunk == 0 or i == n - 1:
            fr.flush(), Ks.flush(), cs.flush(), ds.flush()
            meta["done"] = i + 1
            meta_path.write_text(json.dumps(meta))
            rate = (k + 1) / (time.time() - t0)
            log(f"  rendered {i + 1}/{n} ({rate:.1f} clips/s)")
    return cache_dir


def letterbox_box(aspect: float, size: int):
    """(x0, y0, w, h) of the centred strip of aspect ``aspect`` (w / h) in an S x S image,
    its longer side S: where the letterbox framing puts a w x h image (same offsets)."""
    if aspect >= 1.0:
        w, h = size, max(1, min(size, int(round(size / aspect))))
    else:
        w, h = max(1, min(size, int(round(size * aspect)))), size
    return (size - w) // 2, (size - h) // 2, w, h


def letterbox_cache(source_dir, cache_dir, seed: int = 0, aspects=LETTERBOX_ASPECTS,
                    log=print):
    """Letterboxed clips from a rendered square clip cache (issue 12 "Full frame"): clip i
    gets an aspect drawn from ``aspects`` (rng [seed, i]); its frames keep the centred strip
    of that aspect (``letterbox_box``), the rest set to ``preprocess.LETTERBOX_PAD``. That is
    exactly the letterbox framing of the strip rendered on its own (the strip's longer side
    is S: no resampling), with the same K (the strip's principal point lands back where it
    was) and the renderer's field of view on the strip's longer side; the rays (raxels) of
    the padding are the camera's. box.npy (N, 4) holds each clip's strip (x0, y0, w, h),
    which the warp condition uses (``_clip_inputs``). Written once; returns the folder."""
    cache_dir = Path(cache_dir)
    if (cache_dir / "meta.json").is_file() and (cache_dir / "box.npy").is_file():
        return cache_dir
    source = FrameCache(source_dir)
    n, size = len(source), source.frames.shape[2]
    frames = np.array(source.frames)                        # (N, T, S, S, 3), ~170 MB
    boxes = np.zeros((n, 4), np.int64)
    for i in range(n):
        aspect = aspects[int(np.random.default_rng([seed, i]).integers(len(aspects)))]
        x0, y0, w, h = boxes[i] = letterbox_box(aspect, size)
        keep = np.zeros((size, size), bool)
        keep[y0:y0 + h, x0:x0 + w] = True
        frames[i][:, ~keep] = preprocess.LETTERBOX_PAD
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache_dir / "box.npy", boxes)
    if source.depth is not None:
        np.save(cache_dir / "depth.npy", np.asarray(source.depth))
    write_clip_cache(cache_dir, frames, source.K, source.c2w, "letterbox",
                     source=str(source_dir), aspects=[float(a) for a in aspects])
    log(f"letterboxed {n} clips of {source_dir} -> {cache_dir}")
    return cache_dir


def _box(cache: FrameCache, i: int):
    """Clip i's strip (x0, y0, w, h) in a letterboxed cache (box.npy), or None."""
    if not hasattr(cache, "_boxes"):
        path = Path(cache.dir) / "box.npy"
        cache._boxes = np.load(path) if path.is_file() else None
    return None if cache._boxes is None else tuple(int(v) for v in cache._boxes[i])


def raxels_for(K, rel_c2w, size: int, encoding: str) -> np.ndarray:
    """Normalised raxels (T, 6, S, S) float32 of one clip."""
    return preprocess.normalize_raxels(encode_raxels(K, rel_c2w, size, size, encoding))


def codec_batch(cache: FrameCache, rng: np.random.Generator, n_video: int, n_raxel: int,
                encoding: str, crop: int = 0):
    """A codec training batch: (x (n_video + 2 n_raxel, T, 3, c, c) float32, is_raxel bool (B,))
    of video clips and raxel halves (directions, origins), randomly cropped to `crop` pixels
    (0 = full frames; the same crop for all frames of a clip)."""
    size = cache.frames.shape[2]
    items, kinds = [], []
    for i in rng.integers(0, len(cache), n_video):
        items.append(preprocess.images_to_model(cache.frames[i]))
        kinds.append(False)
    for i in rng.integers(0, len(cache), n_raxel):
        r = raxels_for(cache.K[i], cache.c2w[i], size, encoding)
        items += [r[:, 0:3], r[:, 3:6]]
        kinds += [True, True]
    if crop and crop < size:
        out = []
        for x in items:
            y0, x0 = rng.integers(0, size - crop + 1, 2)
            out.append(x[:, :, y0:y0 + crop, x0:x0 + crop])
        items = out
    return np.stack(items).astype(np.float32), np.array(kinds)


def _clip_inputs(cache: FrameCache, i: int, config, warp_clip, seed: int):
    """The numpy part of encoding clip i: (frames (T, S, S, 3) uint8, raxels (T, 6, S, S),
    motion (t, M, s, s), and with a ``warp_clip`` (warped (T, S, S, 3) uint8, validity
    channel (t, 1, s, s)), else None)."""
    frames = np.asarray(cache.frames[i])
    rax = raxels_for(cache.K[i], cache.c2w[i], config.image_size, config.raxel_encoding)
    motion = preprocess.motion_channels(frames, config)
    warp = None
    if warp_clip is not None:
        frame0, K, depth = frames[0], cache.K[i], (None if cache.depth is None
                                                   else np.asarray(cache.depth[i]))
        box, extra = _box(cache, i), {}
        if box is not None:  # a letterboxed clip: its strip is warped, framed as inference
            x0, y0, w, h = box
            frame0 = np.ascontiguousarray(frame0[y0:y0 + h, x0:x0 + w])
            K = np.array(K, np.float64)
            K[0, 2] -= x0
            K[1, 2] -= y0
            depth = None if depth is None else np.ascontiguousarray(
                depth[y0:y0 + h, x0:x0 + w])
            extra = {"size": config.image_size, "framing": "letterbox"}
        warped, valid = warp_clip(np.random.default_rng([seed, i]), frame0, K,
                                  cache.c2w[i], depth, **extra)
        warp = (warped, preprocess.warp_validity_channel(valid, config))
    return frames, rax, motion, warp


_WORKER_CACHE = None


def _clip_inputs_worker(args):
    """``_clip_inputs`` in a pool worker: the cache is opened once per worker process."""
    global _WORKER_CACHE
    cache_dir, i, config, warp_clip, seed = args
    if _WORKER_CACHE is None or _WORKER_CACHE.dir != cache_dir:
        torch.set_num_threads(1)
        _WORKER_CACHE = FrameCache(cache_dir)
    return _clip_inputs(_WORKER_CACHE, i, config, warp_clip, seed)


def build_latent_cache(path, cache: FrameCache, codec, config, batch: int = 32, log=print,
                       warp_clip=None, seed: int = 0, workers: int = 1, device="cpu"):
    """Encode every cached clip with the frozen codec and compute motion channels; save to
    `path` (.npz). Returns a dict of arrays.

    With ``config.warp_condition``, also each clip's warp condition (N, t, C+1, s, s): the
    clip's frame 0 warped into every frame's camera by ``warp_clip(rng, frame0 (S, S, 3)
    uint8, K, rel_c2w (T, 4, 4), depth (S, S) or None) -> (warped (T, S, S, 3) uint8, valid
    (T, S, S) float in [0, 1])`` (``pipeline.conditioning.training_warp``: it draws the
    depth the warp uses; passed in, as the model floor cannot import the pipeline), encoded
    by the codec, and its validity channel; rng = default_rng([seed, clip index]).

    workers > 1: the per-clip numpy work (raxels, motion, warps) runs in that many spawned
    processes while this one encodes on ``device`` (the codec is moved there and back)."""
    path = Path(path)
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    n = len(cache)
    out = {"video": [], "raxel": [], "motion": []}
    with_warp = bool(getattr(config, "warp_condition", False))
    if with_warp:
        if warp_clip is None:
            raise ValueError("config.warp_condition needs warp_clip to build the warp latents")
        out["warp"] = []
    warp_clip = warp_clip if with_warp else None
    t0 = time.time()
    codec.eval().to(device)

    def encode(x):                                          # (B, T, 3, S, S) numpy -> numpy
        return codec.encode(torch.from_numpy(x).to(device)).cpu().numpy()

    def clip_inputs():
        if workers > 1:
            jobs = ((cache.dir, i, config, warp_clip, seed) for i in range(n))
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                yield from pool.imap(_clip_inputs_worker, jobs, chunksize=8)
        else:
            yield from (_clip_inputs(cache, i, config, warp_clip, seed) for i in range(n))

    def flush(items):
        frames, rax, motion, warps = zip(*items)
        out["video"].append(encode(np.stack([preprocess.images_to_model(f) for f in frames])))
        out["raxel"].append(encode_raxels_latent(
            codec, torch.from_numpy(np.stack(rax)).to(device)).cpu().numpy())
        out["motion"].append(np.stack(motion))
        if with_warp:
            latents = encode(np.stack([preprocess.images_to_model(w) for w, _ in warps]))
            out["warp"].append(np.concatenate([latents, np.stack([v for _, v in warps])],
                                              axis=2))

    with torch.no_grad():
        items = []
        for k, item in enumerate(clip_inputs()):
            items.append(item)
            if len(items) == batch or k == n - 1:
                flush(items)
                items = []
                if (k // batch) % 20 == 0 or k == n - 1:
                    log(f"  encoded {k + 1}/{n} clips ({time.time() - t0:.0f} s)")
    codec.cpu()
    arrays = {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays
