"""Quality of a trained model on held-out synthetic data it never saw (seeds >= 10**9).

Prints and writes (``--out``, default benchmarks/results/model_quality.{json,md}):

1. video -> camera on short clips (one window each), intrinsics known and unknown, next to
   two baselines that ignore the model: identity poses and the classical OpenCV VO, with
   2 vs 16 flow steps, and with the optical-flow refinement the node applies by default;
2. video -> camera on long drives, windows chained exactly as the node and the evaluator do
   (``rap_ros.evaluation.run.evaluate_input``), next to OpenCV VO on the same drives;
3. images + camera -> video: PSNR/SSIM of predicted frames against the rendered truth, next
   to copying the source frame;
4. closed loop: frames generated from poses the model estimated on the true video (as the
   model gives them, and refined against optical flow as the trajectory node does by
   default), against frames generated from the true poses (all scored against the truth),
   and a control that shows whether the generator uses the camera at all: frames generated
   along another clip's path (a closed-loop gap is only meaningful where this control scores
   clearly lower).

Every figure comes from the shipped model through the same pipeline the nodes use.
Run:  .venv/bin/python benchmarks/eval_model.py [--backend onnx] [--clips 64] [--drives 3]

``--aspect W:H`` (issue 12 "Full frame") renders the clips and drives at that aspect (the
longer side ``--size``) instead of square; the model frames them as its weights say
(``config.framing``: the centred square, or the whole image letterboxed). Image scores are
then taken on the model's view of the image only (the bounding box of
``Framing.content_mask``: the letterbox's padding is not scored), so the two framings are
each scored on what they show of the truth. With letterbox weights, the camera rows
``*_fit_padding`` also fit the raxels the model predicts in the padding.
"""
import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np

from rap_ros.backend.shared import get_backend
from rap_ros.evaluation.report import write_benchmark
from rap_ros.evaluation.run import RunOptions, evaluate_input
from rap_ros.evaluation.vo import estimate_trajectory
from rap_ros.geometry import relative_to_first, rotation_angle_deg
from rap_ros.io.sequence import write_sequence
from rap_ros.metrics import ate, path_length, psnr, rpe, ssim
from rap_ros.pipeline import TrajectoryPipeline, ViewPipeline, prepare_frames
from rap_ros.pipeline.framing import framing_of
from rap_ros.synth.dataset import held_out_seed, make_drive, sample_clip

RESULTS = pathlib.Path(__file__).parent / "results"


def pose_errors(est, gt):
    """Errors of one window's poses est against gt, both (T, 4, 4) camera-to-world.

    ate_pct: Sim(3)-aligned ATE RMSE in % of the true path length; rot_rel_deg: mean
    rotation error of consecutive relative poses (RPE, delta 1); rot_last_deg: rotation
    error of the last camera relative to the first; dir_deg: angle between the estimated
    and true direction of travel first -> last (NaN when the camera barely moves).
    """
    est, gt = relative_to_first(est)[0], relative_to_first(gt)[0]
    errors = {"ate_pct": 100.0 * sim3_ate(est, gt) / max(path_length(gt), 1e-9),
              "rot_rel_deg": float(np.mean(rpe(est, gt, delta=1)["rot_deg_errors"])),
              "rot_last_deg": float(rotation_angle_deg(est[-1, :3, :3].T @ gt[-1, :3, :3]))}
    a, b = est[-1, :3, 3], gt[-1, :3, 3]
    moved = np.linalg.norm(b) > 1e-6 and np.linalg.norm(a) > 1e-9
    errors["dir_deg"] = float(np.degrees(np.arccos(np.clip(
        a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1)))) if moved else np.nan
    return errors


def sim3_ate(est, gt):
    """Sim(3)-aligned ATE RMSE; for an estimate whose centres coincide (the identity
    baseline), where Umeyama is undefined, the best Sim(3) has scale 0 and the error is
    the spread of the true centres about their mean."""
    try:
        return ate(est, gt, mode="sim3")["rmse"]
    except ValueError:
        centres = gt[:, :3, 3]
        return float(np.sqrt(np.mean(np.sum((centres - centres.mean(0)) ** 2, axis=1))))


def summarise(rows):
    """Mean (NaN-aware) of each key over a list of dicts."""
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


def render_shape(size, aspect):
    """(height, width) of a render of aspect (width, height) with its longer side ``size``."""
    w, h = aspect
    if w >= h:
        return max(1, round(size * h / w)), size
    return size, max(1, round(size * w / h))


def short_clips(backend, clips, frames, size, aspect=(1, 1)):
    """Section 1: one window per clip; model vs baselines."""
    identity, vo, steps2, steps16, refined, unknown, focal = [], [], [], [], [], [], []
    padding, padding_unknown, padding_focal = [], [], []
    fast = TrajectoryPipeline(backend, steps=2, sampler="euler")
    slow = TrajectoryPipeline(backend, steps=16, sampler="euler")
    fast_refined = TrajectoryPipeline(backend, steps=2, sampler="euler", refine=True)
    # the same noise draws as ``fast`` (seed 0, same order), the padding's raxels fitted too
    fast_padding = TrajectoryPipeline(backend, steps=2, sampler="euler", fit_padding=True)
    height, width = render_shape(size, aspect)
    for i in range(clips):
        clip = sample_clip(held_out_seed(i), frames=frames, height=height, width=width)
        gt = clip.c2w
        identity.append(pose_errors(np.repeat(np.eye(4)[None], frames, 0), gt))
        vo.append(pose_errors(estimate_trajectory(clip.frames, clip.K), gt))
        steps2.append(pose_errors(fast.estimate_window(clip.frames, clip.K).c2w, gt))
        steps16.append(pose_errors(slow.estimate_window(clip.frames, clip.K).c2w, gt))
        refined.append(pose_errors(fast_refined.estimate_window(clip.frames, clip.K).c2w, gt))
        blind = fast.estimate_window(clip.frames, None)
        unknown.append(pose_errors(blind.c2w, gt))
        focal.append(100.0 * abs(blind.K[0, 0] - clip.K[0, 0]) / clip.K[0, 0])
        padding.append(pose_errors(fast_padding.estimate_window(clip.frames, clip.K).c2w, gt))
        blind = fast_padding.estimate_window(clip.frames, None)
        padding_unknown.append(pose_errors(blind.c2w, gt))
        padding_focal.append(100.0 * abs(blind.K[0, 0] - clip.K[0, 0]) / clip.K[0, 0])
    return {"clips": clips, "frames": frames, "size": size, "height": height, "width": width,
            "rap_2_steps_fit_padding": summarise(padding),
            "rap_2_steps_K_unknown_fit_padding": summarise(padding_unknown),
            "focal_error_pct_K_unknown_fit_padding": {
                "mean": float(np.mean(padding_focal)),
                "median": float(np.median(padding_focal))},
            "identity": summarise(identity), "opencv_vo": summarise(vo),
            "rap_2_steps": summarise(steps2), "rap_16_steps": summarise(steps16),
            "rap_2_steps_refined": summarise(refined),
            "rap_2_steps_K_unknown": summarise(unknown),
            "focal_error_pct_K_unknown": {"mean": float(np.mean(focal)),
                                          "median": float(np.median(focal))}}


def long_drives(backend_spec, drives, frames, size, workdir, aspect=(1, 1)):
    """Section 2: chained windows over long drives, through the evaluator's code path."""
    runs = {"rap": ("model", False), "rap refined": ("model", True),
            "opencv-vo": ("opencv-vo", False)}
    results = {name: [] for name in runs}
    height, width = render_shape(size, aspect)
    for j in range(drives):
        drive = make_drive(held_out_seed(10_000 + j), frames=frames, height=height,
                           width=width)
        folder = write_sequence(pathlib.Path(workdir, f"drive{j}"), drive)
        for name, (method, refine) in runs.items():
            metrics = evaluate_input(folder, pathlib.Path(workdir, f"out{j}_{name}"),
                                     options=RunOptions(method=method, backend=backend_spec,
                                                        refine=refine, progress=False))
            if metrics["status"] != "ok":
                raise RuntimeError(f"{name} on drive {j}: {metrics['error']}")
            results[name].append({k: metrics[k] for k in (
                "ate_rmse_pct", "rpe_rot_deg_rmse", "rpe_trans_rmse", "fps")})
    return {"drives": drives, "frames": frames, "size": size,
            **{m: summarise(r) for m, r in results.items()}}


def view_synthesis(backend, clips, frames, size, aspect=(1, 1)):  # size: rendered input size
    """Sections 3 and 4: predicted frames vs truth, copy-source baseline, closed loop; scored
    on the model's view of the image (the bounding box of the framing's content mask)."""
    views = ViewPipeline(backend)  # the default: expected frames (1 Euler step from noise)
    # a sample of the model's distribution: sharper than the expectation, and further from
    # the truth wherever the future is uncertain
    sampled_views = ViewPipeline(backend, steps=8, sampler="heun")
    estimator = TrajectoryPipeline(backend, steps=2)
    # the poses as the trajectory node estimates them by default (config: refine: true),
    # the ones its closed-loop consistency is computed on
    refined_estimator = TrajectoryPipeline(backend, steps=2, refine=True)
    rows = []
    height, width = render_shape(size, aspect)
    for i in range(clips):
        clip = sample_clip(held_out_seed(i), frames=frames, height=height, width=width)
        truth_model, K_model, framing = prepare_frames(
            clip.frames, clip.K, backend.config.image_size, framing_of(backend.config))
        mask = framing.content_mask()
        rows_in, cols_in = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (slice(rows_in[0], rows_in[-1] + 1), slice(cols_in[0], cols_in[-1] + 1))

        def seen(video):  # (T, S, S, 3) -> the model's view of the image
            return video[:, box[0], box[1]]

        truth = seen(truth_model[1:]) / 255.0
        rel = relative_to_first(clip.c2w)[0]
        estimated = estimator.estimate_window(clip.frames, clip.K).c2w
        refined = refined_estimator.estimate_window(clip.frames, clip.K).c2w
        other = sample_clip(held_out_seed(clips + i), frames=frames, height=height,
                            width=width)
        wrong = relative_to_first(other.c2w)[0]
        from_truth, from_estimate, from_refined, from_wrong = (
            seen(v) for v in views.predict_batch(clip.frames[0], clip.K,
                                                 np.stack([rel, estimated, refined, wrong])))
        copy = np.repeat(seen(truth_model[:1]) / 255.0, frames - 1, 0)
        sampled = seen(sampled_views.predict(clip.frames[0], clip.K, rel))
        rows.append({
            "psnr_pred": float(psnr(from_truth[1:] / 255.0, truth).mean()),
            "ssim_pred": float(ssim(from_truth[1:] / 255.0, truth).mean()),
            "psnr_sampled": float(psnr(sampled[1:] / 255.0, truth).mean()),
            "ssim_sampled": float(ssim(sampled[1:] / 255.0, truth).mean()),
            "psnr_copy_source": float(psnr(copy, truth).mean()),
            "ssim_copy_source": float(ssim(copy, truth).mean()),
            "psnr_from_estimated_poses": float(psnr(from_estimate[1:] / 255.0, truth).mean()),
            "psnr_from_refined_poses": float(psnr(from_refined[1:] / 255.0, truth).mean()),
            "psnr_from_other_clip_poses": float(psnr(from_wrong[1:] / 255.0, truth).mean())})
    result = summarise(rows)
    result["closed_loop_gap_db"] = result["psnr_pred"] - result["psnr_from_estimated_poses"]
    result["closed_loop_gap_refined_db"] = result["psnr_pred"] - \
        result["psnr_from_refined_poses"]
    result["clips"] = clips
    return result


def markdown(report):
    s, d, v = report["short_clips"], report["long_drives"], report["view_synthesis"]
    lines = [f"# Model quality on held-out synthetic data\n",
             f"Command: `{report['command']}`  ", f"Backend: {report['backend']}; "
             f"framing {report.get('framing', 'centre')}; "
             f"{report['seconds']:.0f} s on this machine.\n",
             f"## video -> camera, one {s['frames']}-frame window per clip ({s['clips']} clips, "
             f"{s.get('width', s['size'])}x{s.get('height', s['size'])})\n",
             "| method | ATE % of path (Sim3) | rel. rotation err ° | first-to-last rot err ° "
             "| direction of travel err ° |", "|---|---:|---:|---:|---:|"]
    for name in ("identity", "opencv_vo", "rap_2_steps", "rap_16_steps", "rap_2_steps_refined",
                 "rap_2_steps_K_unknown", "rap_2_steps_fit_padding",
                 "rap_2_steps_K_unknown_fit_padding"):
        r = s[name]
        lines.append(f"| {name} | {r['ate_pct']:.2f} | {r['rot_rel_deg']:.3f} | "
                     f"{r['rot_last_deg']:.3f} | {r['dir_deg']:.1f} |")
    f = s["focal_error_pct_K_unknown"]
    g = s["focal_error_pct_K_unknown_fit_padding"]
    lines += [f"\nFocal error with K unknown: mean {f['mean']:.1f} %, median {f['median']:.1f} %"
              f" (fitting the padding too: mean {g['mean']:.1f} %, median "
              f"{g['median']:.1f} %).\n",
              f"## video -> camera, chained windows over {d['drives']} drives of {d['frames']} "
              f"frames\n", "| method | ATE % of path (Sim3) | RPE rot ° (RMSE) | frames/s |",
              "|---|---:|---:|---:|"]
    for name in ("rap", "rap refined", "opencv-vo"):
        r = d[name]
        lines.append(f"| {name} | {r['ate_rmse_pct']:.2f} | {r['rpe_rot_deg_rmse']:.3f} | "
                     f"{r['fps']:.1f} |")
    lines += [f"\n## images + camera -> video ({v['clips']} clips)\n",
              "| frames | PSNR dB | SSIM |", "|---|---:|---:|",
              f"| predicted from true poses (default: expected frames, 1 Euler step) | "
              f"{v['psnr_pred']:.2f} | {v['ssim_pred']:.3f} |",
              f"| sampled from true poses (8 Heun steps) | {v['psnr_sampled']:.2f} | "
              f"{v['ssim_sampled']:.3f} |",
              f"| copy the source frame | {v['psnr_copy_source']:.2f} | "
              f"{v['ssim_copy_source']:.3f} |",
              f"| predicted from poses the model estimated | "
              f"{v['psnr_from_estimated_poses']:.2f} | |",
              f"| predicted from those poses refined against optical flow (the trajectory "
              f"node's default) | {v['psnr_from_refined_poses']:.2f} | |",
              f"| control: predicted along another clip's path | "
              f"{v['psnr_from_other_clip_poses']:.2f} | |",
              f"\nClosed-loop gap (true poses minus estimated poses): "
              f"{v['closed_loop_gap_db']:.2f} dB; with the refined poses "
              f"{v['closed_loop_gap_refined_db']:.2f} dB.\n"]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="onnx", help="backend spec (rap_ros.backend)")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--drives", type=int, default=3)
    parser.add_argument("--drive-frames", type=int, default=120)
    parser.add_argument("--size", type=int, default=128,
                        help="rendered input size (px); the model sees its own resolution, "
                             "the refinement this one")
    parser.add_argument("--aspect", default="1:1", metavar="W:H",
                        help="aspect of the rendered clips and drives, e.g. 1226:370 "
                             "(KITTI), 16:9, 3:4; the longer side is --size (default 1:1)")
    parser.add_argument("--out", default=str(RESULTS / "model_quality"))
    args = parser.parse_args(argv)
    aspect = tuple(float(x) for x in args.aspect.split(":"))
    start = time.perf_counter()
    backend = get_backend(args.backend)
    cfg = backend.config
    report = {"command": " ".join(["python", "benchmarks/eval_model.py", *sys.argv[1:]]),
              "backend": backend.name, "framing": framing_of(cfg), "aspect": args.aspect}
    report["short_clips"] = short_clips(backend, args.clips, cfg.frames, args.size, aspect)
    with tempfile.TemporaryDirectory() as workdir:
        report["long_drives"] = long_drives(args.backend, args.drives, args.drive_frames,
                                            args.size, workdir, aspect)
    report["view_synthesis"] = view_synthesis(backend, args.clips, cfg.frames, args.size,
                                              aspect)
    report["seconds"] = time.perf_counter() - start
    write_benchmark(args.out, report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
