"""The joint video/camera model: codec, DSCA denoiser, flow matching, training.

Torch-free on import: `rap_ros.model.preprocess` and `rap_ros.model.config` need only numpy,
OpenCV and PyYAML (the ONNX backend uses them without torch). The torch modules are imported
on first use:

    from rap_ros.model.config import ModelConfig, rap_small, rap_tiny, load_config, save_config
    from rap_ros.model.codec import CausalVideoCodec      # encode / decode
    from rap_ros.model.dit import RaxelDiT                # forward(video, raxel, t_v, t_r, motion)
    from rap_ros.model.flow import flow_loss, sample, draw_jobs, job_batch_masks
    from rap_ros.model.train import run_training, load_weights, export_weights
"""
import importlib

_LAZY = {
    "CausalVideoCodec": "rap_ros.model.codec",
    "RaxelDiT": "rap_ros.model.dit",
    "flow_loss": "rap_ros.model.flow",
    "sample": "rap_ros.model.flow",
    "load_weights": "rap_ros.model.train",
    "export_weights": "rap_ros.model.train",
    "run_training": "rap_ros.model.train",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rap_ros.model' has no attribute {name!r}")
