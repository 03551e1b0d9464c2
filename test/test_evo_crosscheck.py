"""rap_ros.metrics against a real peer: evo (GPL, test-only; requirements-dev.txt).

The same TUM files are scored by evo's Python API (file_interface, sync, trajectory.align,
metrics.APE/RPE) and by ``rap_ros.metrics`` through the evaluator's own TUM reader. ATE with
Sim(3) and SE(3) Umeyama alignment and RPE (delta 1 frame, translation and rotation angle in
degrees, after Sim(3) alignment) must agree within 1e-6 relative.
"""
import copy
import json

import numpy as np
import pytest

evo_trajectory = pytest.importorskip("evo.core.trajectory")
from evo.core import metrics as evo_metrics  # noqa: E402
from evo.core import sync as evo_sync  # noqa: E402
from evo.tools import file_interface  # noqa: E402

from rap_ros import metrics  # noqa: E402
from rap_ros.io.stamped import associate  # noqa: E402
from rap_ros.io.tum import read_tum_trajectory  # noqa: E402
from rap_ros.evaluation.report import write_tum  # noqa: E402
from rap_ros.geometry import pose_from_rt, random_rotation, rotation_from_axis_angle  # noqa: E402

RTOL = 1e-6


def evo_scores(gt_file, est_file, max_diff=0.01):
    """evo's numbers for a ground-truth and an estimate TUM file."""
    ref = file_interface.read_tum_trajectory_file(str(gt_file))
    est = file_interface.read_tum_trajectory_file(str(est_file))
    ref, est = evo_sync.associate_trajectories(ref, est, max_diff=max_diff)
    out = {}
    for name, scale in (("sim3", True), ("se3", False)):
        aligned = copy.deepcopy(est)
        aligned.align(ref, correct_scale=scale)
        ape = evo_metrics.APE(evo_metrics.PoseRelation.translation_part)
        ape.process_data((ref, aligned))
        out[f"ate_{name}"] = ape.get_statistic(evo_metrics.StatisticsType.rmse)
        if name == "sim3":
            for relation, key in ((evo_metrics.PoseRelation.translation_part, "rpe_trans"),
                                  (evo_metrics.PoseRelation.rotation_angle_deg, "rpe_rot_deg")):
                rpe = evo_metrics.RPE(relation, delta=1, delta_unit=evo_metrics.Unit.frames,
                                      all_pairs=False)
                rpe.process_data((ref, aligned))
                out[key] = rpe.get_statistic(evo_metrics.StatisticsType.rmse)
    out["path_length"] = ref.path_length
    out["pairs"] = ref.num_poses
    return out


def our_scores(gt_file, est_file, max_diff=0.01):
    """rap_ros.metrics on the same files (read and associated by the evaluator's code)."""
    gt = read_tum_trajectory(gt_file)
    est = read_tum_trajectory(est_file)
    i_est, i_gt = associate(est.stamps, gt.stamps, max_diff)
    est_c2w, gt_c2w = est.c2w[i_est], gt.c2w[i_gt]
    aligned = metrics.align_trajectory(est_c2w, gt_c2w, "sim3")
    rel = metrics.rpe(aligned, gt_c2w, delta=1)
    return {"ate_sim3": metrics.ate(est_c2w, gt_c2w, "sim3")["rmse"],
            "ate_se3": metrics.ate(est_c2w, gt_c2w, "se3")["rmse"],
            "rpe_trans": rel["trans_rmse"], "rpe_rot_deg": rel["rot_deg_rmse"],
            "path_length": metrics.path_length(gt_c2w), "pairs": len(i_est)}


def assert_agree(ours, theirs):
    assert ours["pairs"] == theirs["pairs"]
    for key in ("ate_sim3", "ate_se3", "rpe_trans", "rpe_rot_deg", "path_length"):
        assert ours[key] == pytest.approx(theirs[key], rel=RTOL, abs=1e-12), \
            f"{key}: rap_ros.metrics {ours[key]!r} vs evo {theirs[key]!r}"


def random_pair(rng, n):
    """A smooth random ground truth and a noisy, rotated, scaled estimate of it."""
    steps = rng.normal(0, 0.3, (n, 3)).cumsum(axis=0)
    positions = np.cumsum(steps * 0.1, axis=0)
    angles = np.cumsum(rng.normal(0, 0.05, (n, 3)), axis=0)
    R = np.stack([rotation_from_axis_angle(a, np.linalg.norm(a) + 1e-9) for a in angles])
    gt = pose_from_rt(R, positions)
    noise_R = np.stack([rotation_from_axis_angle(rng.normal(size=3), rng.normal(0, 0.03))
                        for _ in range(n)])
    est = gt.copy()
    est[:, :3, :3] = gt[:, :3, :3] @ noise_R
    est[:, :3, 3] += rng.normal(0, 0.05, (n, 3))
    world = pose_from_rt(random_rotation(rng, 1)[0], rng.normal(0, 5, 3))
    est = world @ est
    est[:, :3, 3] *= rng.uniform(0.2, 5.0)  # a monocular estimate's arbitrary scale
    return gt, est


@pytest.mark.parametrize("seed", range(5))
def test_random_trajectories_agree_with_evo(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 120))
    gt, est = random_pair(rng, n)
    stamps = 1000.0 + np.arange(n) * 0.1
    # Estimate stamps jittered within the association window, with a few frames missing.
    est_stamps = stamps + rng.uniform(-0.004, 0.004, n)
    keep = rng.random(n) > 0.1
    write_tum(tmp_path / "gt.txt", stamps, gt)
    write_tum(tmp_path / "est.txt", est_stamps[keep], est[keep])
    assert_agree(our_scores(tmp_path / "gt.txt", tmp_path / "est.txt"),
                 evo_scores(tmp_path / "gt.txt", tmp_path / "est.txt"))


def test_evaluator_output_agrees_with_evo(tmp_path):
    """The TUM files and metrics.json the evaluator writes score the same in evo."""
    from rap_ros.io.tum import tum_rows
    from rap_ros.evaluation.run import RunOptions, evaluate_input

    rng = np.random.default_rng(7)
    # A small rendered TUM RGB-D folder, evaluated with opencv-vo; then evo reads what the
    # evaluator wrote.
    folder = tmp_path / "seq"
    (folder / "rgb").mkdir(parents=True)
    import cv2
    from rap_ros.synth.render import render
    from rap_ros.synth.scenes import make_scene
    from rap_ros.synth.trajectories import make_trajectory, sample_intrinsics

    traj = make_trajectory("forward", rng, 24, 10.0)
    K = sample_intrinsics(rng, 128, 96)
    images = render(make_scene("room", rng, traj), K, traj.c2w, 96, 128)
    lines = []
    for i, (stamp, image) in enumerate(zip(traj.stamps, images)):
        cv2.imwrite(str(folder / "rgb" / f"{i:04d}.png"), image[..., ::-1])
        lines.append(f"{stamp + 100.0:.6f} rgb/{i:04d}.png")
    (folder / "rgb.txt").write_text("# timestamp filename\n" + "\n".join(lines) + "\n")
    rows = tum_rows(traj.stamps + 100.0, traj.c2w)
    np.savetxt(folder / "groundtruth.txt", rows, fmt="%.9f")
    (folder / "intrinsics.json").write_text(json.dumps(
        {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]}))
    result = evaluate_input(folder, tmp_path / "out", options=RunOptions(
        method="opencv-vo", progress=False))
    assert result["status"] == "ok", result.get("error")
    out = tmp_path / "out"
    theirs = evo_scores(out / "groundtruth_tum.txt", out / "estimate_tum.txt", max_diff=0.02)
    assert_agree(our_scores(out / "groundtruth_tum.txt", out / "estimate_tum.txt", 0.02), theirs)
    written = json.loads((out / "metrics.json").read_text())
    assert written["ate_rmse"] == pytest.approx(theirs["ate_sim3"], rel=RTOL)
    assert written["ate_se3_rmse"] == pytest.approx(theirs["ate_se3"], rel=RTOL)
    assert written["rpe_trans_rmse"] == pytest.approx(theirs["rpe_trans"], rel=RTOL)
    assert written["rpe_rot_deg_rmse"] == pytest.approx(theirs["rpe_rot_deg"], rel=RTOL)
    assert written["path_length"] == pytest.approx(theirs["path_length"], rel=RTOL)
