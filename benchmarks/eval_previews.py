"""Previews a planner can trust? The driven path hidden among candidates, ranked by goal score.

As a planner uses `preview_paths` (Navigation World Models' ranking): from a source frame, the
path the camera really took over the next T-1 frames (T: the model's window) is hidden among 9
candidates: itself, the same path turned about the source camera's vertical (y) axis by
+-10, +-20, +-35 degrees (positions and headings), standing still, and mirrored left-right.
Each candidate is previewed by each method; the preview's last frame is scored against the
real goal frame (the real frame at the path's end) and the candidates ranked. Reported: the
driven path's top-1 rate (ties split evenly) and mean rank (1 best, 9 worst; chance: 11 %, 5),
by each score of ``rap_ros.pipeline.views.goal_scores`` (SSIM; gradient-correlation distance;
census distance).

Methods (``ViewPipeline`` preview modes):
* model: the model alone (64x64 of the centred square, 1 Euler step: the node's default)
* copy source: the source image for every candidate (all tie: chance)
* rotation warp: homography K R^T K^-1 of each frame's rotation (the scene at infinity)
* plane warp (fallback depth): homography of a fronto-parallel plane at FALLBACK_DEPTH path
  units (metres for the synthetic drives and KITTI, Blender units for lego), pushed beyond 3x
  the path's forward reach (``warp.fallback_plane_depth``), translation included: the honest
  depth warp without a depth estimate (the node's ``warp_depth``)
* oracle depth warp (synthetic only): the renderer's true depth map, forward-warped with a
  z-buffer
* warp+model (...): the composite: the warp where it has data, the model's frame (mapped back
  onto the full frame) where it has not, feathered; with each of the warps above.
* guided (...): the same composite, the model's frames generated from the warp (SDEdit from
  flow time 0.5) instead of from noise.
Warp modes preview the full frame at the source's resolution; model-mode previews and their
goal are the centred square at 64 px. Scores are computed with the longer side at most 128 px.

Quality: the driven path's previews (frames 1..T-1) against the real frames, PSNR and SSIM,
(a) on the centred square at 64 px, where every method has an image, and (b) on the full frame
(longer side 128 px) for the methods that preview it.

Data: held-out synthetic drives (``held_out_seed``; street, room and corridor scenes in turn,
rendered at --size), and the real sequences of ../shared/data (KITTI 1226x370 at full size,
NeRF lego 400x400; skipped when absent).

Command: ``python benchmarks/eval_previews.py`` (about 10 minutes on 2 shared CPU cores).
Writes benchmarks/results/previews.{md,json}.
"""
import argparse
import pathlib
import platform
import sys
import time

import cv2
import numpy as np

from rap_ros.backend.shared import get_backend
from rap_ros.evaluation.report import write_benchmark
from rap_ros.geometry.cameras import invert_pose, relative_to_first
from rap_ros.geometry.rotations import rotation_from_axis_angle
from rap_ros.io.sequence import read_sequence
from rap_ros.metrics import psnr, ssim
from rap_ros.pipeline.framing import prepare_frames
from rap_ros.pipeline.views import GOAL_SCORE_SIDE, ViewPipeline, goal_scores
from rap_ros.pipeline.warp import fallback_plane_depth
from rap_ros.synth import scenes, trajectories
from rap_ros.synth.dataset import SUPERSAMPLE, held_out_seed
from rap_ros.synth.render import NO_HIT, camera_rays, intersect, render

RESULTS = pathlib.Path(__file__).parent / "results"
TURNS_DEG = (10.0, -10.0, 20.0, -20.0, 35.0, -35.0)
CANDIDATES = ("driven",) + tuple(f"turned {a:+.0f} deg" for a in TURNS_DEG) + (
    "standing still", "mirrored")
FALLBACK_DEPTH = 5.0  # path units (metres): the plane of the honest depth warp
SCORES = {"ssim": +1, "gradient_distance": -1, "census_distance": -1}  # +1: higher is better
SEQUENCES = {"kitti_vo_seq1": 3, "nerf_synthetic_lego_test": 10}  # window start spacing


# ------------------------------------------------------------------ data


def true_depth(scene, K, c2w, height, width):
    """z-depth (H, W) in metres of ``scene`` from camera c2w (inf: sky), by the renderer's
    ray-box intersection."""
    v, u = np.mgrid[:height, :width].reshape(2, -1).astype(np.float64)
    rays = camera_rays(K, u, v)  # (M, 3) unit, camera frame
    to_scene = scene.world_from_scene.T
    direction = rays @ (to_scene @ c2w[:3, :3]).T
    origin = np.repeat((to_scene @ c2w[:3, 3])[None], len(rays), axis=0)
    t, _ = intersect(origin, direction, scene.lo, scene.hi)
    t = np.where(t < NO_HIT, t.astype(np.float64), np.inf)
    return (t * rays[:, 2]).reshape(height, width)


def synthetic_drive(index, frames, height, width):
    """A held-out drive as make_drive renders it, plus its scene (for true depth)."""
    kind = scenes.KINDS[index % len(scenes.KINDS)]
    rng = np.random.default_rng(held_out_seed(40_000 + index))
    K = trajectories.sample_intrinsics(rng, width, height)
    path = trajectories.drive_trajectory(rng, frames, 10.0)
    scene = scenes.make_scene(kind, rng, path)
    images = render(scene, K, path.c2w, height, width, SUPERSAMPLE)
    return {"name": f"drive {index} ({kind})", "frames": images, "K": K, "c2w": path.c2w,
            "scene": scene}


def candidates(c2w_future):
    """The 9 candidate paths (metric, relative to the source camera), driven first; each
    starts at the source camera (frame 0 = I)."""
    rel = invert_pose(c2w_future[0]) @ c2w_future
    out = [rel]
    for angle in TURNS_DEG:
        turn = np.eye(4)
        turn[:3, :3] = rotation_from_axis_angle(np.array([0.0, 1.0, 0.0]), np.radians(angle))
        turned = turn @ rel
        turned[0] = np.eye(4)
        out.append(turned)
    out.append(np.tile(np.eye(4), (len(rel), 1, 1)))
    mirror = np.diag([-1.0, 1.0, 1.0, 1.0])
    out.append(mirror @ rel @ mirror)
    return np.stack(out)


def rank_of_driven(values, sign):
    """(rank 1..P with ties split, top-1 share) of candidate 0 under score ``values``."""
    values = sign * np.asarray(values, dtype=np.float64)
    values = np.nan_to_num(values, nan=-np.inf)
    better = int(np.sum(values[1:] > values[0]))
    ties = int(np.sum(values[1:] == values[0]))
    return 1.0 + better + 0.5 * ties, (1.0 / (1 + ties)) if better == 0 else 0.0


# ------------------------------------------------------------------ methods


def methods(backend, synthetic):
    """name -> (ViewPipeline, depth kind: None | "plane" | "oracle" | "copy")."""
    out = {"model": (ViewPipeline(backend, preview="model", seed=1), None),
           "copy source": (ViewPipeline(backend, preview="warp"), "copy"),
           "rotation warp": (ViewPipeline(backend, preview="warp"), None),
           "plane warp (fallback depth)": (ViewPipeline(backend, preview="warp"), "plane")}
    if synthetic:
        out["oracle depth warp"] = (ViewPipeline(backend, preview="warp"), "oracle")
    out["warp+model (rotation)"] = (ViewPipeline(backend, preview="warp+model", seed=1), None)
    out["warp+model (plane)"] = (ViewPipeline(backend, preview="warp+model", seed=1), "plane")
    out["guided (plane)"] = (ViewPipeline(backend, preview="guided", seed=1), "plane")
    if synthetic:
        out["warp+model (oracle depth)"] = (
            ViewPipeline(backend, preview="warp+model", seed=1), "oracle")
        out["guided (oracle depth)"] = (ViewPipeline(backend, preview="guided", seed=1),
                                        "oracle")
    return out


def run_window(pipes, source, K, future_frames, c2w_future, depth_map):
    """One source frame: every method's ranking and the driven path's quality."""
    metric = candidates(c2w_future)
    normalised, scales = zip(*(relative_to_first(p) for p in metric))
    paths, scales = np.stack(normalised), np.array(scales)
    goal = future_frames[-1]
    truth_square = prepare_frames(future_frames[1:], None, 64)[0] / 255.0
    out = {}
    for name, (pipe, depth_kind) in pipes.items():
        if depth_kind == "copy":
            previews = np.repeat(np.repeat(source[None, None], len(paths), 0),
                                 len(future_frames), 1)
        else:
            depth = None
            if depth_kind == "plane":
                depth = np.array([fallback_plane_depth(p, FALLBACK_DEPTH / s)
                                  for p, s in zip(paths, scales)])
            elif depth_kind == "oracle":
                depth = depth_map[None] / scales[:, None, None]
            previews = pipe.predict_batch(source, K, paths, depth=depth)
        view = (pipe.goal_view(goal, previews.shape[2:4]) if depth_kind != "copy"
                else goal)
        scores = goal_scores(previews[:, -1], view)
        row = {}
        for score, sign in SCORES.items():
            row[f"rank_{score}"], row[f"top1_{score}"] = rank_of_driven(scores[score], sign)
        driven = previews[0, 1:]
        square = driven if pipe.preview == "model" and depth_kind != "copy" \
            else prepare_frames(driven, None, 64)[0]
        row["psnr_square"] = float(np.mean(psnr(square / 255.0, truth_square)))
        row["ssim_square"] = float(np.mean(ssim(square / 255.0, truth_square)))
        if driven.shape[1:3] == source.shape[:2]:
            a = np.stack([_small(f) for f in driven])
            b = np.stack([_small(f) for f in future_frames[1:]])
            row["psnr_full"] = float(np.mean(psnr(a, b)))
            row["ssim_full"] = float(np.mean(ssim(a, b)))
        left, right = CANDIDATES.index("turned +20 deg"), CANDIDATES.index("turned -20 deg")
        row["left_right_diff"] = float(np.mean(np.abs(
            previews[left, -1].astype(np.float64) - previews[right, -1])))
        out[name] = row
    return out


def _small(frame):
    h, w = frame.shape[:2]
    s = GOAL_SCORE_SIDE / max(h, w)
    if s < 1:
        frame = cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return frame / 255.0


def summarise(rows):
    """Mean of each key over windows (keys missing in some rows: over those that have it)."""
    names = rows[0].keys()
    out = {}
    for name in names:
        keys = sorted({k for r in rows for k in r[name]})
        out[name] = {k: float(np.mean([r[name][k] for r in rows if k in r[name]]))
                     for k in keys}
        out[name]["windows"] = len(rows)
    return out


# ------------------------------------------------------------------ timing


def timing(backend, source, K, T, repeats=3):
    """Median seconds of one path (T frames) and of 8 paths per preview mode, plane depth."""
    rel = np.tile(np.eye(4), (T, 1, 1))
    rel[:, 2, 3] = np.linspace(0, 2, T)
    rel = relative_to_first(rel)[0]
    paths = np.stack([rel] * 8)
    out = {}
    for mode, pixels in (("model", 0), ("warp", 0), ("warp+model", 0), ("guided", 0),
                         ("warp+model", 640 * 480)):
        pipe = ViewPipeline(backend, preview=mode, max_preview_pixels=pixels)
        pipe.predict(source, K, rel, depth=FALLBACK_DEPTH)  # warm
        one, eight = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            pipe.predict(source, K, rel, depth=FALLBACK_DEPTH)
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            pipe.predict_batch(source, K, paths, depth=FALLBACK_DEPTH)
            eight.append(time.perf_counter() - t)
        h, w = pipe.preview_size(*source.shape[:2]) if mode != "model" else (64, 64)
        label = mode if not pixels else f"{mode} (max_preview_pixels {pixels})"
        out[label] = {"preview_size": f"{w}x{h}", "one_path_s": float(np.median(one)),
                      "eight_paths_s": float(np.median(eight))}
    return out


# ------------------------------------------------------------------ report


def markdown(report):
    lines = ["# Previews: planner ranking and quality", "",
             f"Command: `{report['command']}`  ",
             f"Backend: {report['backend']}, T = {report['frames']} frames; machine: "
             f"{report['machine']}; {report['seconds']:.0f} s.", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             "Methods: " + "; ".join(report["method_notes"]) + ".", ""]
    for group, result in report["groups"].items():
        any_row = next(iter(result.values()))
        lines += [f"## {group} ({any_row['windows']} source frames)", "",
                  "| method | top-1 SSIM | rank SSIM | top-1 gradient | rank gradient | "
                  "top-1 census | rank census | PSNR square | SSIM square | PSNR full | "
                  "SSIM full | +-20 deg diff |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in result.items():
            full = (f"{r['psnr_full']:.2f} | {r['ssim_full']:.3f}" if "psnr_full" in r
                    else "– | –")
            lines.append(
                f"| {name} | {100 * r['top1_ssim']:.0f} % | {r['rank_ssim']:.2f} | "
                f"{100 * r['top1_gradient_distance']:.0f} % | "
                f"{r['rank_gradient_distance']:.2f} | {100 * r['top1_census_distance']:.0f} % | "
                f"{r['rank_census_distance']:.2f} | {r['psnr_square']:.2f} | "
                f"{r['ssim_square']:.3f} | {full} | {r['left_right_diff']:.1f} |")
        lines.append("")
    lines += ["Columns: top-1: share of source frames where the driven path scored best (ties "
              "split); rank: its mean rank among 9 (chance: 11 %, 5.0); by SSIM, by the "
              "gradient-correlation distance and by the census distance of the last frame to "
              "the goal. PSNR (dB) / SSIM of the driven path's frames 1..T-1 against the real "
              "frames: square = the centred square at 64 px (every method), full = the whole "
              "frame, longer side 128 px (warp methods). +-20 deg diff: mean absolute "
              "difference (0-255) between the last frames of the paths turned 20 deg left and "
              "right.", "", "## Time per call", "",
              f"Source {report['timing_source']}, plane depth, medians of 3 (2 shared CPU "
              "cores).", "",
              "| mode | preview size | one path (T frames) s | 8 paths s |", "|---|---|---:|---:|"]
    for mode, t in report["timing"].items():
        lines.append(f"| {mode} | {t['preview_size']} | {t['one_path_s']:.3f} | "
                     f"{t['eight_paths_s']:.3f} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--drives", type=int, default=6)
    parser.add_argument("--windows", type=int, default=5, help="source frames per drive")
    parser.add_argument("--size", default="128x96", help="synthetic render WxH")
    parser.add_argument("--data", default=str(pathlib.Path(__file__).resolve().parents[2]
                                              / "shared" / "data"))
    parser.add_argument("--out", default=str(RESULTS / "previews"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    backend = get_backend(args.backend)
    T = int(backend.config.frames)
    width, height = (int(x) for x in args.size.split("x"))
    groups, timing_source = {}, None

    pipes = methods(backend, synthetic=True)
    rows = []
    for i in range(args.drives):
        frames = args.windows * (T + 3) + 1
        drive = synthetic_drive(i, frames, height, width)
        for w in range(args.windows):
            s = w * (T + 3)
            depth = true_depth(drive["scene"], drive["K"], drive["c2w"][s], height, width)
            rows.append(run_window(pipes, drive["frames"][s], drive["K"],
                                   drive["frames"][s:s + T], drive["c2w"][s:s + T], depth))
        print(f"{drive['name']}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    groups[f"synthetic drives ({args.drives} held-out, {width}x{height})"] = summarise(rows)

    pipes = methods(backend, synthetic=False)
    data = pathlib.Path(args.data)
    for name, spacing in SEQUENCES.items():
        folder = data / name
        if not (folder / "cameras.json").exists():
            print(f"{folder}: absent, skipped")
            continue
        clip = read_sequence(folder)
        rows = [run_window(pipes, clip.frames[s], clip.K, clip.frames[s:s + T],
                           clip.c2w[s:s + T], None)
                for s in range(0, len(clip.frames) - T + 1, spacing)]
        h, w = clip.frames.shape[1:3]
        groups[f"{name} ({w}x{h})"] = summarise(rows)
        if timing_source is None or "kitti" in name:
            timing_source = (clip.frames[0], clip.K, f"{name} {w}x{h}")
        print(f"{name}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    if timing_source is None:
        drive = synthetic_drive(0, 2, height, width)
        timing_source = (drive["frames"][0], drive["K"], f"synthetic {width}x{height}")
    report = {"command": " ".join(["python", "benchmarks/eval_previews.py", *sys.argv[1:]]),
              "backend": backend.name, "frames": T,
              "machine": f"{platform.machine()}, 2 shared CPU cores",
              "fallback_depth": FALLBACK_DEPTH, "candidates": list(CANDIDATES),
              "method_notes": [f"plane warp at {FALLBACK_DEPTH:g} path units (metres; lego: "
                               "Blender units), at least 3x the path's forward reach", "model: 1 Euler step, 64x64 centre square",
                               "warp modes at the source's full resolution"],
              "groups": groups,
              "timing": timing(backend, timing_source[0], timing_source[1], T),
              "timing_source": timing_source[2]}
    report["seconds"] = time.perf_counter() - start
    write_benchmark(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
