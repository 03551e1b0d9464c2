"""Training clips from the user's own recordings, posed by the odometry core.

The paper's real training videos got their cameras from SLAM; `rap-ros train --finetune`
does the same with this package's odometry core: method ``geometry`` (no model, so the
labels do not learn from the model's own mistakes) poses every frame of a bag or sequence
folder, and windows of consecutive frames that the core tracked become clips of the clip
cache (``io.clip_cache``): frames through the inference framing (``pipeline.framing``) at
the model's size, K of those images, poses relative to each clip's first camera at unit
mean distance (as the synthetic clips). No ground truth is read or needed.

Clips are skipped where the labels cannot be trusted: a frame of the window not tracked
(initialising or lost), or a window that barely moves (its travelled path under
``MIN_MOTION`` of the median window's: at unit mean distance the noise of a standing
camera would become the label).
"""
from dataclasses import dataclass, field

import numpy as np

from rap_ros.evaluation.inputs import InputOptions, open_input
from rap_ros.geometry.cameras import relative_to_first
from rap_ros.io.clip_cache import write_clip_cache
from rap_ros.io.errors import InputError
from rap_ros.metrics import path_length
from rap_ros.odometry import OdometryConfig
from rap_ros.odometry.factory import make_odometry
from rap_ros.pipeline.framing import prepare_frames

TRACKED = ("ok", "degraded")   # the core's health states whose poses become labels
MIN_MOTION = 0.2               # window path below this fraction of the median: skipped


@dataclass
class PseudoLabels:
    """Clips of one or more recordings: frames uint8 (N, T, S, S, 3), K (N, 3, 3) of the
    S x S images, c2w (N, T, 4, 4) relative to each clip's first camera at unit mean
    distance; ``report`` one dict per recording (frames read, tracked, clips kept)."""

    frames: np.ndarray
    K: np.ndarray
    c2w: np.ndarray
    report: list = field(default_factory=list)

    def save(self, cache_dir, **meta):
        """Write as a clip cache (split "pseudo") that the trainer reads."""
        return write_clip_cache(cache_dir, self.frames, self.K, self.c2w, "pseudo",
                                recordings=self.report, **meta)


def label_recording(path, clip_frames, size, stride=None, span=(0.0, 1.0), options=None,
                    framing="centre"):
    """Pose one recording with the odometry core and cut it into clips -> PseudoLabels.

    clip_frames: frames per clip (the model's window); size: the model's image side (px);
    stride: frames between clip starts (default clip_frames // 2); span: the fraction of the
    recording used, e.g. (0.0, 0.6) to hold out the rest for measuring the adaptation;
    framing: the fine-tuned weights' (``pipeline.framing``, "centre" or "letterbox").
    Raises InputError for an unreadable input or one without intrinsics.
    """
    options = options or InputOptions(groundtruth=False)
    source = open_input(path, options)
    if source.K is None:
        raise InputError(f"{path}: pseudo-labels need the camera's intrinsics (a camera_info "
                         "topic or cameras.json); this input has none")
    stride = int(stride or max(1, clip_frames // 2))
    count = source.frame_count
    first, stop = ((int(span[0] * count), int(span[1] * count)) if count
                   else (0, None))
    odometry = make_odometry("geometry", source.K, config=OdometryConfig())
    small, tracked, K_model = [], [], None
    try:
        for index, (stamp, rgb) in enumerate(source.frames()):
            if index < first:
                continue
            if stop is not None and index >= stop:
                break
            result = odometry.push(rgb, stamp)
            tracked.append(result.health in TRACKED)
            frame, K_model, _ = prepare_frames(rgb[None], source.K, size, framing)
            small.append(frame[0])
        c2w = np.asarray(odometry.trajectory(), np.float64)
    finally:
        odometry.close()
    starts = [s for s in range(0, len(small) - clip_frames + 1, stride)
              if all(tracked[s:s + clip_frames])]
    lengths = np.array([path_length(c2w[s:s + clip_frames]) for s in starts])
    keep = [s for s, length in zip(starts, lengths)
            if length >= MIN_MOTION * np.median(lengths)] if len(starts) else []
    clips = [relative_to_first(c2w[s:s + clip_frames])[0] for s in keep]
    report = {"input": str(path), "frames": len(small), "frames_tracked": int(sum(tracked)),
              "span": list(span), "windows_tracked": len(starts), "clips": len(keep)}
    return PseudoLabels(
        frames=np.stack([small[s:s + clip_frames] for s in keep]) if keep
        else np.zeros((0, clip_frames, size, size, 3), np.uint8),
        K=np.repeat(K_model[None], len(keep), 0) if keep else np.zeros((0, 3, 3)),
        c2w=np.stack(clips) if clips else np.zeros((0, clip_frames, 4, 4)),
        report=[report])


def label_recordings(paths, clip_frames, size, stride=None, span=(0.0, 1.0), log=print,
                     framing="centre"):
    """``label_recording`` over several recordings, concatenated -> PseudoLabels."""
    parts = []
    for path in paths:
        labels = label_recording(path, clip_frames, size, stride, span, framing=framing)
        log(f"pseudo-labels: {path}: {labels.report[0]['frames_tracked']}/"
            f"{labels.report[0]['frames']} frames tracked, {len(labels.frames)} clips")
        parts.append(labels)
    return PseudoLabels(frames=np.concatenate([p.frames for p in parts]),
                        K=np.concatenate([p.K for p in parts]),
                        c2w=np.concatenate([p.c2w for p in parts]),
                        report=[r for p in parts for r in p.report])
