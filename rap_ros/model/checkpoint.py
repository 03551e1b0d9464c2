"""Checkpoints and shipped weights: the one place that writes and reads torch files.

Two kinds of file, both plain dicts of tensors and builtins (read with
``torch.load(..., weights_only=True)``, never pickled code):

* training checkpoints in a run folder (``codec.pt``, ``dit.pt``): whatever the trainer saves
  (model and optimizer state, step, elapsed seconds, run config);
* weights (``rap_small.pt``, what ships and what the backends load):
  ``{"config": ModelConfig.to_dict(), "codec": state dict, "dit": state dict, "meta": {...}}``;
  an ``"ema"`` entry, when present, holds the denoiser weights to use.

Every file is written atomically (a temporary file renamed into place), so an interrupted
save never leaves half a checkpoint. A missing or unreadable file raises ``CheckpointError``
(a ``rap_ros.contract.files.ModelFileError``) naming it.
"""
import os
from pathlib import Path

import torch

from rap_ros.contract.config import ModelConfig, save_config
from rap_ros.contract.files import ModelFileError
from rap_ros.model.codec import CausalVideoCodec
from rap_ros.model.dit import RaxelDiT

WEIGHT_KEYS = ("config", "codec", "dit")


class CheckpointError(ModelFileError):
    """A checkpoint or weights file is missing, unreadable or not what was expected."""


def save_checkpoint(path, obj):
    """Atomic torch.save of ``obj`` at ``path`` (write a temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path):
    """The dict saved at ``path``, read with ``weights_only=True`` on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a torch file, pickled code ...
        raise CheckpointError(path, f"cannot read checkpoint ({error})") from error


def read_weights(path):
    """A weights file -> ``(config, codec_state, dit_state)``; the denoiser state is the EMA
    one when the file has it."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not set(WEIGHT_KEYS) <= set(state):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(path, f"not a rap_ros weights file (need config, codec, dit; "
                                    f"found {keys})")
    try:
        config = ModelConfig.from_dict(dict(state["config"]))
    except Exception as error:
        raise CheckpointError(path, f"bad model config in weights ({error})") from error
    return config, state["codec"], state.get("ema") or state["dit"]


def build_modules(config, codec_state=None, dit_state=None):
    """Codec and denoiser for ``config`` in eval mode, with the given weights if any."""
    codec, dit = CausalVideoCodec(config), RaxelDiT(config)
    if codec_state is not None:
        codec.load_state_dict(codec_state)
    if dit_state is not None:
        dit.load_state_dict(dit_state)
    return codec.eval(), dit.eval()


def load_weights(path):
    """``(config, codec, dit)`` in eval mode from a weights file."""
    config, codec_state, dit_state = read_weights(path)
    try:
        codec, dit = build_modules(config, codec_state, dit_state)
    except RuntimeError as error:  # state dict does not fit the config
        raise CheckpointError(path, f"weights do not match their config ({error})") from error
    return config, codec, dit


def save_weights(path, config, codec, dit, meta=None):
    """Write a weights file of ``config`` and the modules' states (atomic), and the config as
    YAML beside it (same name, ``.yaml``). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"config": config.to_dict(), "codec": _state(codec), "dit": _state(dit),
             "meta": dict(meta or {})}
    save_checkpoint(path, state)
    save_config(config, path.with_suffix(".yaml"))
    return path


def _state(module_or_state):
    return module_or_state.state_dict() if hasattr(module_or_state, "state_dict") \
        else module_or_state


def weights_from_run(run_dir, out_path):
    """The shipped weights of a run folder: its codec (``codec.pt``) and the EMA denoiser of
    ``dit.pt`` (only the EMA weights ship, as ``"dit"``: the file stays within the size
    budget), with the steps and minutes trained in ``"meta"``. Returns ``out_path``."""
    run_dir = Path(run_dir)
    codec_ck = load_checkpoint(run_dir / "codec.pt")
    dit_ck = load_checkpoint(run_dir / "dit.pt")
    config = ModelConfig.from_dict(dict(dit_ck["config"]["model"]))
    meta = {"codec_step": codec_ck["step"], "dit_step": dit_ck["step"],
            "dit_minutes": dit_ck["elapsed"] / 60.0, "dit_weights": "ema"}
    return save_weights(out_path, config, codec_ck["model"], dit_ck["ema"], meta)
