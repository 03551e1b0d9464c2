"""`rap-ros train --finetune`: pseudo-labels from the odometry core, then adaptation of
weights on them (tiny model, real solver, real files)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rap_ros.evaluation.pseudo_labels import MIN_MOTION, label_recording  # noqa: E402
from rap_ros.geometry.cameras import relative_to_first  # noqa: E402
from rap_ros.geometry.rotations import rotation_angle_deg  # noqa: E402
from rap_ros.io.clip_cache import FrameCache  # noqa: E402
from rap_ros.io.sequence import write_sequence  # noqa: E402
from rap_ros.pipeline.framing import prepare_frames  # noqa: E402
from rap_ros.synth.dataset import held_out_seed, make_drive  # noqa: E402

FRAMES = 100


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A synthetic drive written as a sequence folder (cameras.json + images/)."""
    clip = make_drive(held_out_seed(71), frames=FRAMES, height=240, width=320, scene="room")
    path = write_sequence(tmp_path_factory.mktemp("recording") / "drive", clip)
    return path, clip


def test_pseudo_labels_follow_the_true_motion(recording, tmp_path):
    """Clips cut from the odometry core's poses: relative to their first camera at unit mean
    distance, and close to the truth (rotation, direction of travel)."""
    path, clip = recording
    labels = label_recording(path, clip_frames=9, size=64, stride=4)
    report = labels.report[0]
    assert report["frames"] == FRAMES and report["clips"] >= 6, report
    assert labels.frames.shape[1:] == (9, 64, 64, 3) and labels.frames.dtype == np.uint8
    assert np.allclose(labels.c2w[:, 0], np.eye(4), atol=1e-9)
    distances = np.linalg.norm(labels.c2w[:, 1:, :3, 3], axis=-1).mean(axis=1)
    np.testing.assert_allclose(distances, 1.0, rtol=1e-6)
    starts = [s for s in range(0, FRAMES - 8, 4)]
    errors_deg, direction_deg = [], []
    for label in labels.c2w:  # match each label to the window of the truth it came from
        best = min(starts, key=lambda s: np.abs(relative_to_first(clip.c2w[s:s + 9])[0]
                                                - label).sum())
        truth = relative_to_first(clip.c2w[best:best + 9])[0]
        errors_deg.append(rotation_angle_deg(
            np.swapaxes(label[:, :3, :3], 1, 2) @ truth[:, :3, :3]).max())
        a, b = label[-1, :3, 3], truth[-1, :3, 3]
        direction_deg.append(np.degrees(np.arccos(np.clip(
            a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))
    assert max(errors_deg) < 1.0, errors_deg
    assert np.median(direction_deg) < 5.0, direction_deg
    # A span keeps the held-out stretch out of the clips.
    late = label_recording(path, clip_frames=9, size=64, stride=4, span=(0.5, 1.0))
    assert late.report[0]["frames"] == FRAMES // 2
    assert len(late.frames)
    held_out, _, _ = prepare_frames(clip.frames[:FRAMES // 2], clip.K, 64)
    used, _, _ = prepare_frames(clip.frames[FRAMES // 2:], clip.K, 64)
    for first in late.frames[:, 0]:
        assert any(np.array_equal(first, f) for f in used)
        assert not any(np.array_equal(first, f) for f in held_out)
    # Written as a clip cache the trainer reads.
    cache = FrameCache(labels.save(tmp_path / "real"))
    assert len(cache) == len(labels.frames) and cache.meta["split"] == "pseudo"
    assert MIN_MOTION < 1.0


def test_cli_finetune_adapts_weights_on_a_recording(recording, tmp_path):
    """`rap-ros train --finetune SEQUENCE --weights W`: the denoiser moves, the codec (the
    latent space of the ONNX graphs) stays, and the weights say where they came from."""
    from rap_ros.backend.export import random_modules
    from rap_ros.contract.config import rap_tiny
    from rap_ros.contract.files import file_sha256
    from rap_ros.model.checkpoint import load_checkpoint, save_weights
    from rap_ros.tools import cli

    path, _ = recording
    base = tmp_path / "base.pt"
    save_weights(base, rap_tiny(), *random_modules(rap_tiny(), seed=3))
    run_dir = tmp_path / "ft"
    assert cli.main(["train", "--finetune", str(path), "--weights", str(base), "--config",
                     "tiny", "--run-dir", str(run_dir), "--max-steps", "3", "--quiet",
                     "--set", "train.render_workers=1"]) == 0
    tuned, original = load_checkpoint(run_dir / "rap_small.pt"), load_checkpoint(base)
    assert tuned["meta"]["finetuned_from_sha256"] == file_sha256(base)
    assert tuned["meta"]["real_clips"] > 0 and tuned["meta"]["recordings"]
    assert all(torch.equal(tuned["codec"][k], original["codec"][k]) for k in original["codec"])
    assert any(not torch.equal(tuned["dit"][k], original["dit"][k]) for k in original["dit"])
    assert load_checkpoint(run_dir / "dit.pt")["step"] == 3
    # A recording the core cannot pose (a folder without images) is a clear error.
    (tmp_path / "empty").mkdir()
    assert cli.main(["train", "--finetune", str(tmp_path / "empty"), "--weights", str(base),
                     "--run-dir", str(tmp_path / "ft2"), "--quiet"]) == 1


def test_cli_finetune_keeps_the_warp_condition_of_conditioned_weights(recording, tmp_path):
    """The shipped weights are warp-conditioned (warp skip on): `--finetune` without
    `--warp-condition` trains them with the warps (synthetic and real clips) and keeps it."""
    from rap_ros.backend.export import random_modules
    from rap_ros.contract.config import ModelConfig, rap_tiny
    from rap_ros.model.checkpoint import load_checkpoint, save_weights
    from rap_ros.tools import cli

    path, _ = recording
    config = ModelConfig.from_dict({**rap_tiny().to_dict(), "warp_condition": True,
                                    "warp_skip": True})
    base = tmp_path / "base.pt"
    save_weights(base, config, *random_modules(config, seed=3))
    run_dir = tmp_path / "ft"
    assert cli.main(["train", "--finetune", str(path), "--weights", str(base), "--config",
                     "tiny", "--run-dir", str(run_dir), "--max-steps", "2", "--quiet",
                     "--set", "train.render_workers=1"]) == 0
    tuned = load_checkpoint(run_dir / "rap_small.pt")
    assert ModelConfig.from_dict(tuned["config"]) == config
    assert tuned["meta"]["warp_condition"] and "warp_skip.proj.weight" in tuned["dit"]
    assert all("warp" in np.load(f).files for f in run_dir.glob("latents_*.npz"))
