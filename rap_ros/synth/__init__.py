"""Synthetic training and test data: procedural textured scenes, robot-like camera
trajectories, a batched CPU ray-casting renderer, and seeded clips and drives."""
from rap_ros.synth.dataset import (HELD_OUT_SEED_START, TRAIN_SEED_LIMIT, Clip, ClipStream,
                                   make_drive, sample_clip)

__all__ = ["Clip", "ClipStream", "HELD_OUT_SEED_START", "TRAIN_SEED_LIMIT", "make_drive",
           "sample_clip"]
