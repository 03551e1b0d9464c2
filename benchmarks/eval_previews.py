"""Previews a planner can trust? The driven path hidden among candidates, ranked by goal score.

As a planner uses `preview_paths` (Navigation World Models' ranking): from a source frame, the
path the camera really took over the next T-1 frames (T: the model's window) is hidden among 9
candidates: itself, the same path turned about the source camera's vertical (y) axis by
+-10, +-20, +-35 degrees (positions and headings), standing still, and mirrored left-right.
Each candidate is previewed by each method; the preview's last frame is scored against the
real goal frame (the real frame at the path's end) and the candidates ranked. Reported: the
driven path's top-1 rate (ties split evenly) and mean rank (1 best, 9 worst; chance: 11 %, 5),
by each score of ``rap_ros.pipeline.goal_scores.goal_scores`` (SSIM; gradient-correlation
distance; census distance).

Methods (``ViewPipeline`` preview modes):
* model: the model alone (64x64 of the centred square, 1 Euler step: the node's default); a
  warp-conditioned model (the shipped one since issue 12) is fed the rotation warp (no depth)
* copy source: the source image for every candidate (all tie: chance)
* rotation warp: homography K R^T K^-1 of each frame's rotation (the scene at infinity)
* plane warp (fallback depth): homography of a fronto-parallel plane at FALLBACK_DEPTH path
  units (metres for the synthetic drives and KITTI, Blender units for lego), pushed beyond 3x
  the path's forward reach (``warp.fallback_plane_depth``), translation included: the honest
  depth warp without a depth estimate (the node's ``warp_depth``)
* oracle depth warp (synthetic only): the renderer's true depth map, forward-warped with a
  z-buffer
* map depth warp: the depth the odometry's map gives, as the view_predictor's
  ``depth_source: map`` uses it: the geometry odometry (``make_odometry("geometry")``, the
  true K) run over the frames up to the source frame, its ``map_points()`` densified into a
  z-depth map of its source camera (``pipeline.depth.depth_from_points``), brought into the
  ground-truth units by the scale the trajectory_estimator gets from wheel odometry
  (``WheelScale``: summed distances between the keyframes of the odometry's window, true
  over estimated), fed the true camera centres (a perfect wheel odometry); forward-warped
  with a z-buffer; the plane warp where the odometry has no map or no scale yet (0.3 units
  driven in its window) or too few points in view
* warp+model (...): the composite: the warp where it has data, the model's frame (mapped back
  onto the full frame) where it has not, feathered; with each of the warps above.
* guided (...): the same composite, the model's frames generated from the warp (SDEdit from
  flow time 0.5) instead of from noise.
* model (warp-conditioned, ...), warp+model (conditioned, ...) (``--conditioned SPEC``,
  issue 12): weights trained with the warp as an input, fed the warp of each depth above in
  their 64 px view (``pipeline.conditioning``); alone, and in the same composite.
Warp modes preview the full frame at the source's resolution; model-mode previews and their
goal are the model's view at 64 px: the centred square, or with letterbox weights
(``config.framing``, issue 12 "Full frame") the whole frame letterboxed. Scores are computed
with the longer side at most 128 px.

Quality: the driven path's previews (frames 1..T-1) against the real frames, PSNR and SSIM,
(a) "square": on the centred square at 64 px, where every method has an image (model rows of
letterbox weights: on their view of the image, the letterbox without its padding), and (b) on
the full frame (longer side 128 px) for the methods that preview it.

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
from rap_ros.odometry.config import OdometryConfig
from rap_ros.odometry.factory import make_odometry
from rap_ros.odometry.metric_scale import WheelScale
from rap_ros.pipeline.depth import depth_from_points
from rap_ros.pipeline.framing import framing_of, prepare_frames
from rap_ros.pipeline.goal_scores import GOAL_SCORE_SIDE, goal_scores
from rap_ros.pipeline.views import ViewPipeline
from rap_ros.pipeline.warp import fallback_plane_depth
from rap_ros.synth import scenes, trajectories
from rap_ros.synth.dataset import SUPERSAMPLE, held_out_seed
from rap_ros.synth.render import render, true_depth

RESULTS = pathlib.Path(__file__).parent / "results"
TURNS_DEG = (10.0, -10.0, 20.0, -20.0, 35.0, -35.0)
CANDIDATES = ("driven",) + tuple(f"turned {a:+.0f} deg" for a in TURNS_DEG) + (
    "standing still", "mirrored")
FALLBACK_DEPTH = 5.0  # path units (metres): the plane of the honest depth warp
SMALL_PREVIEW_PIXELS = 320 * 240  # a lower max_preview_pixels than the node's 640x480
SCORES = {"ssim": +1, "gradient_distance": -1, "census_distance": -1}  # +1: higher is better
SEQUENCES = {"kitti_vo_seq1": 3, "nerf_synthetic_lego_test": 10}  # window start spacing


# ------------------------------------------------------------------ data


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


def map_depths(frames, K, c2w_truth, sources):
    """source frame -> z-depth (H, W) in ground-truth units from the geometry odometry's map
    after the frames up to it, or None (no map yet, lost, no scale yet, too few points in
    view: the plane is used).

    The odometry (true K, default config) runs once over frames[0 .. max(sources)]; at each
    source frame its ``map_points()`` are densified in its own source camera
    (``trajectory()``, BA-corrected) and multiplied by the scale the trajectory_estimator
    would get from a perfect wheel odometry: ``odometry.metric_scale.WheelScale`` fed the
    true camera centres, over the keyframes of the odometry's current window (the ratio of
    the summed true and estimated distances between them; none until 0.3 units were
    driven in the window, then the last one held)."""
    vo = make_odometry("geometry", K, config=OdometryConfig())
    wheel = WheelScale()
    size = frames.shape[1:3]
    out = {}
    try:
        for i in range(max(sources) + 1):
            wheel.add_wheel(i / 10.0, c2w_truth[i, :3, 3])
            result = vo.push(frames[i], i / 10.0)
            if result.is_keyframe:
                wheel.estimate([(f / 10.0, T[:3, 3])
                                for f, T in sorted(vo.keyframes().items())])
            if i not in sources:
                continue
            out[i] = None
            points = vo.map_points()
            if result.health not in ("ok", "degraded") or not len(points) or not wheel.scale:
                continue
            depth = depth_from_points(points, vo.trajectory()[i], K, size)
            if depth is not None:
                out[i] = depth * np.float32(wheel.scale)
    finally:
        vo.close()
    return out


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


def methods(backend, synthetic, conditioned=None, only=None):
    """name -> (ViewPipeline, depth kind: None | "plane" | "oracle" | "map" | "copy").
    conditioned: a backend of warp-conditioned weights (issue 12): adds its rows (the model
    fed the warp, alone and in the warp+model composite). only: keep these names."""
    out = {"model": (ViewPipeline(backend, preview="model", seed=1), None),
           "copy source": (ViewPipeline(backend, preview="warp"), "copy"),
           "rotation warp": (ViewPipeline(backend, preview="warp"), None),
           "plane warp (fallback depth)": (ViewPipeline(backend, preview="warp"), "plane")}
    if synthetic:
        out["oracle depth warp"] = (ViewPipeline(backend, preview="warp"), "oracle")
    out["map depth warp"] = (ViewPipeline(backend, preview="warp"), "map")
    out["warp+model (rotation)"] = (ViewPipeline(backend, preview="warp+model", seed=1), None)
    out["warp+model (plane)"] = (ViewPipeline(backend, preview="warp+model", seed=1), "plane")
    out["warp+model (map depth)"] = (ViewPipeline(backend, preview="warp+model", seed=1),
                                     "map")
    out["guided (plane)"] = (ViewPipeline(backend, preview="guided", seed=1), "plane")
    # the node's max_preview_pixels lowered to 320x240: what a faster preview_paths costs
    small = {"max_preview_pixels": SMALL_PREVIEW_PIXELS}
    out["map depth warp (320x240 cap)"] = (ViewPipeline(backend, preview="warp", **small),
                                           "map")
    out["warp+model (map depth, 320x240 cap)"] = (
        ViewPipeline(backend, preview="warp+model", seed=1, **small), "map")
    if synthetic:
        out["warp+model (oracle depth)"] = (
            ViewPipeline(backend, preview="warp+model", seed=1), "oracle")
        out["guided (oracle depth)"] = (ViewPipeline(backend, preview="guided", seed=1),
                                        "oracle")
    if conditioned is not None:
        kinds = {"plane": "plane", "map depth": "map"}
        if synthetic:
            kinds["oracle depth"] = "oracle"
        for label, kind in kinds.items():
            out[f"model (warp-conditioned, {label})"] = (
                ViewPipeline(conditioned, preview="model", seed=1), kind)
            out[f"warp+model (conditioned, {label})"] = (
                ViewPipeline(conditioned, preview="warp+model", seed=1), kind)
    if only:
        out = {name: pipe for name, pipe in out.items() if name in only}
    return out


def run_window(pipes, source, K, future_frames, c2w_future, depth_map, map_depth=None):
    """One source frame: every method's ranking and the driven path's quality.
    depth_map: the true z-depth (H, W) (synthetic) or None; map_depth: the odometry map's
    (``map_depths``) or None (the "map" methods then warp with the plane)."""
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
            if depth_kind == "plane" or (depth_kind == "map" and map_depth is None):
                depth = np.array([fallback_plane_depth(p, FALLBACK_DEPTH / s)
                                  for p, s in zip(paths, scales)])
            elif depth_kind == "oracle":
                depth = depth_map[None] / scales[:, None, None]
            elif depth_kind == "map":
                depth = map_depth[None] / scales[:, None, None].astype(np.float32)
            previews = pipe.predict_batch(source, K, paths, depth=depth)
        view = (pipe.goal_view(goal, previews.shape[2:4]) if depth_kind != "copy"
                else goal)
        scores = goal_scores(previews[:, -1], view)
        row = {}
        for score, sign in SCORES.items():
            row[f"rank_{score}"], row[f"top1_{score}"] = rank_of_driven(scores[score], sign)
        driven = previews[0, 1:]
        truth = truth_square
        if pipe.preview == "model" and depth_kind != "copy":
            square = driven
            mode = framing_of(pipe.config)
            if mode != "centre":  # the model's view of the image, without its padding
                truth, _, framing = prepare_frames(future_frames[1:], None, 64, mode)
                mask = framing.content_mask()
                box = (slice(np.flatnonzero(mask.any(axis=1))[0],
                             np.flatnonzero(mask.any(axis=1))[-1] + 1),
                       slice(np.flatnonzero(mask.any(axis=0))[0],
                             np.flatnonzero(mask.any(axis=0))[-1] + 1))
                square, truth = square[:, box[0], box[1]], truth[:, box[0], box[1]] / 255.0
        else:
            square = prepare_frames(driven, None, 64)[0]
        row["psnr_square"] = float(np.mean(psnr(square / 255.0, truth)))
        row["ssim_square"] = float(np.mean(ssim(square / 255.0, truth)))
        if driven.shape[1:3] == source.shape[:2]:
            a = np.stack([_small(f) for f in driven])
            b = np.stack([_small(f) for f in future_frames[1:]])
            row["psnr_full"] = float(np.mean(psnr(a, b)))
            row["ssim_full"] = float(np.mean(ssim(a, b)))
        left, right = CANDIDATES.index("turned +20 deg"), CANDIDATES.index("turned -20 deg")
        row["left_right_diff"] = float(np.mean(np.abs(
            previews[left, -1].astype(np.float64) - previews[right, -1])))
        if depth_kind == "map":
            row["map_used"] = float(map_depth is not None)
            if map_depth is not None and depth_map is not None:  # against the true depth
                finite = np.isfinite(depth_map)
                row["map_depth_error"] = float(np.median(
                    np.abs(map_depth[finite] - depth_map[finite]) / depth_map[finite]))
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


MAP_COMPARISON = ("plane warp (fallback depth)", "map depth warp", "oracle depth warp",
                  "warp+model (plane)", "warp+model (map depth)", "warp+model (oracle depth)")


def summarise_with_map(rows):
    """``summarise`` of the MAP_COMPARISON methods over the source frames where the map
    gave a depth (None if it never did): plane and map compared on the same frames."""
    rows = [r for r in rows if "map depth warp" in r and r["map depth warp"]["map_used"]]
    if not rows:
        return None
    return {name: value for name, value in summarise(rows).items() if name in MAP_COMPARISON}


# ------------------------------------------------------------------ timing


def timing(backend, source, K, T, repeats=3, map_depth=None):
    """Median seconds of one path (T frames) and of 8 paths per preview mode, plane depth;
    with ``map_depth`` (z-depth (H, W) of the source, metres) also warp+model warping with
    it, as the node does (the depth at the preview size)."""
    rel = np.tile(np.eye(4), (T, 1, 1))
    rel[:, 2, 3] = np.linspace(0, 2, T)
    rel, scale = relative_to_first(rel)
    paths = np.stack([rel] * 8)
    runs = [("model", 0, "plane"), ("warp", 0, "plane"), ("warp+model", 0, "plane"),
            ("guided", 0, "plane"), ("warp+model", 640 * 480, "plane"),
            ("warp+model", SMALL_PREVIEW_PIXELS, "plane")]
    if map_depth is not None:
        runs += [("warp+model", 0, "map"), ("warp+model", 640 * 480, "map"),
                 ("warp+model", SMALL_PREVIEW_PIXELS, "map")]
    out = {}
    for mode, pixels, kind in runs:
        pipe = ViewPipeline(backend, preview=mode, max_preview_pixels=pixels)
        depth = FALLBACK_DEPTH
        if kind == "map":
            h, w = pipe.preview_size(*source.shape[:2])
            depth = cv2.resize(map_depth, (w, h), interpolation=cv2.INTER_NEAREST) / scale
        pipe.predict(source, K, rel, depth=depth)  # warm
        one, eight = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            pipe.predict(source, K, rel, depth=depth)
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            pipe.predict_batch(source, K, paths, depth=depth)
            eight.append(time.perf_counter() - t)
        h, w = pipe.preview_size(*source.shape[:2]) if mode != "model" else (64, 64)
        label = mode if kind == "plane" else f"{mode}, map depth"
        label = label if not pixels else f"{label} (max_preview_pixels {pixels})"
        out[label] = {"preview_size": f"{w}x{h}", "one_path_s": float(np.median(one)),
                      "eight_paths_s": float(np.median(eight))}
    return out


# ------------------------------------------------------------------ report


def _table(result):
    """Markdown rows of one table: method -> summarised row."""
    lines = ["| method | top-1 SSIM | rank SSIM | top-1 gradient | rank gradient | "
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
    return lines + [""]


def markdown(report):
    lines = ["# Previews: planner ranking and quality", "",
             f"Command: `{report['command']}`  ",
             f"Backend: {report['backend']}, T = {report['frames']} frames; machine: "
             f"{report['machine']}; {report['seconds']:.0f} s.", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             "Methods: " + "; ".join(report["method_notes"]) + ".", ""]
    for group, result in report["groups"].items():
        any_row = next(iter(result.values()))
        lines += [f"## {group} ({any_row['windows']} source frames)", ""]
        lines += _table(result)
        used = result.get("map depth warp", {})
        if "map_used" in used:
            windows = used["windows"]
            line = (f"Map depth: used at {round(used['map_used'] * windows)} of {windows} "
                    "source frames (the others, the plane: no map, or no scale yet, or "
                    "too few points in view)")
            if "map_depth_error" in used:
                line += (f"; median relative error of the map depth against the true depth "
                         f"where used: {100 * used['map_depth_error']:.0f} %")
            lines += [line + ".", ""]
        subset = report.get("with_map", {}).get(group)
        if subset:
            lines += [f"Only the {next(iter(subset.values()))['windows']} source frames "
                      "with a map depth (plane and map on the same frames):", ""]
            lines += _table(subset)
    lines += ["Columns: top-1: share of source frames where the driven path scored best (ties "
              "split); rank: its mean rank among 9 (chance: 11 %, 5.0); by SSIM, by the "
              "gradient-correlation distance and by the census distance of the last frame to "
              "the goal. PSNR (dB) / SSIM of the driven path's frames 1..T-1 against the real "
              "frames: square = the centred square at 64 px (every method), full = the whole "
              "frame, longer side 128 px (warp methods). +-20 deg diff: mean absolute "
              "difference (0-255) between the last frames of the paths turned 20 deg left and "
              "right.", "", "## Time per call", "",
              f"Source {report['timing_source']}, plane depth unless \"map depth\" (the "
              "odometry map's, densified), medians of 3 (2 shared CPU cores).", "",
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
    parser.add_argument("--conditioned", default=None, metavar="SPEC",
                        help="backend spec of warp-conditioned weights (issue 12), e.g. "
                             "onnx:runs/warp/rap_small.pt: adds the conditioned rows")
    parser.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                        help="only these methods (names as in the tables; the odometry map "
                             "is built only for map methods; no timing table)")
    parser.add_argument("--sequences", nargs="*", default=None, metavar="NAME",
                        help=f"only these real sequences (default: all of {list(SEQUENCES)})")
    parser.add_argument("--timing", action="store_true",
                        help="time the preview modes even with --methods")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    backend = get_backend(args.backend)
    conditioned = get_backend(args.conditioned) if args.conditioned else None

    def map_depths_if_used(pipes, *inputs):
        if any(kind == "map" for _, kind in pipes.values()):
            return map_depths(*inputs)
        return {s: None for s in inputs[-1]}

    T = int(backend.config.frames)
    width, height = (int(x) for x in args.size.split("x"))
    groups, with_map, timing_source = {}, {}, None

    pipes = methods(backend, synthetic=True, conditioned=conditioned, only=args.methods)
    rows = []
    for i in range(args.drives):  # --drives 0: the real sequences only
        frames = args.windows * (T + 3) + 1
        drive = synthetic_drive(i, frames, height, width)
        starts = [w * (T + 3) for w in range(args.windows)]
        mapped = map_depths_if_used(pipes, drive["frames"], drive["K"], drive["c2w"], starts)
        for s in starts:
            depth = true_depth(drive["scene"], drive["K"], drive["c2w"][s], height, width)
            rows.append(run_window(pipes, drive["frames"][s], drive["K"],
                                   drive["frames"][s:s + T], drive["c2w"][s:s + T], depth,
                                   mapped[s]))
        print(f"{drive['name']}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    if rows:
        name = f"synthetic drives ({args.drives} held-out, {width}x{height})"
        groups[name], with_map[name] = summarise(rows), summarise_with_map(rows)

    pipes = methods(backend, synthetic=False, conditioned=conditioned, only=args.methods)
    data = pathlib.Path(args.data)
    for name, spacing in SEQUENCES.items():
        if args.sequences is not None and name not in args.sequences:
            continue
        folder = data / name
        if not (folder / "cameras.json").exists():
            print(f"{folder}: absent, skipped")
            continue
        clip = read_sequence(folder)
        starts = list(range(0, len(clip.frames) - T + 1, spacing))
        mapped = map_depths_if_used(pipes, clip.frames, clip.K, clip.c2w, starts)
        rows = [run_window(pipes, clip.frames[s], clip.K, clip.frames[s:s + T],
                           clip.c2w[s:s + T], None, mapped[s])
                for s in starts]
        h, w = clip.frames.shape[1:3]
        groups[f"{name} ({w}x{h})"] = summarise(rows)
        with_map[f"{name} ({w}x{h})"] = summarise_with_map(rows)
        if timing_source is None or "kitti" in name:
            s = next((s for s in starts if mapped[s] is not None), 0)
            timing_source = (clip.frames[s], clip.K, f"{name} {w}x{h} (frame {s})", mapped[s])
        print(f"{name}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    if timing_source is None:
        drive = synthetic_drive(0, 2, height, width)
        timing_source = (drive["frames"][0], drive["K"], f"synthetic {width}x{height}", None)
    report = {"command": " ".join(["python", "benchmarks/eval_previews.py", *sys.argv[1:]]),
              "backend": backend.name, "frames": T,
              "machine": f"{platform.machine()}, 2 shared CPU cores",
              "fallback_depth": FALLBACK_DEPTH, "candidates": list(CANDIDATES),
              "method_notes": [f"plane warp at {FALLBACK_DEPTH:g} path units (metres; lego: "
                               "Blender units), at least 3x the path's forward reach",
                               "map depth: the geometry odometry's map up to the source "
                               "frame, densified, scaled to the truth's units as the node's "
                               "wheel-odometry scale would with perfect wheels (the plane "
                               "where it has no map or no scale)",
                               f"model: 1 Euler step, 64x64, framing "
                               f"{framing_of(backend.config)}" + (
                                   "; warp-conditioned: fed the warp of each row's depth "
                                   "(the model row: rotation only)"
                                   if backend.config.warp_condition else ""),
                               "warp modes at the source's full resolution"],
              "groups": groups, "with_map": with_map,
              "timing": {} if args.methods and not args.timing else timing(
                  backend, timing_source[0], timing_source[1], T, map_depth=timing_source[3]),
              "timing_source": "not timed (--methods)" if args.methods and not args.timing
              else timing_source[2]}
    if conditioned is not None:
        report["conditioned_backend"] = f"{args.conditioned} ({conditioned.name})"
        report["method_notes"].append(f"warp-conditioned: {args.conditioned} (framing "
                                      f"{framing_of(conditioned.config)}), fed the warp "
                                      "in its 64 px view and its validity (issue 12)")
    report["seconds"] = time.perf_counter() - start
    write_benchmark(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
