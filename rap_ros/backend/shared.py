"""One model per process: backends shared by every node and tool that asks for the same spec.

Specs (strings):

* ``"onnx"``: the default model in ONNX Runtime (see ``default_onnx_dir``).
* ``"onnx:DIR"``: the ONNX model folder DIR (written by ``rap-ros export``).
* ``"onnx:FILE.pt"``: a torch checkpoint, exported once to the cache and run in ONNX Runtime.
* ``"torch"``: the default weights in eager torch.
* ``"torch:FILE.pt"``: a torch checkpoint in eager torch.

Where the default ONNX model comes from, first match wins:

1. ``rap_ros/model/weights/onnx/``, the graphs shipped with the package (written by
   ``rap-ros export`` after training and committed; all weights together stay under the
   20 MB budget), used when its manifest records the sha256 of the shipped weights, or
   when there are no torch weights to compare with (installs without them);
2. the cache ``$RAP_ROS_CACHE`` (default ``$XDG_CACHE_HOME/rap_ros``, i.e.
   ``~/.cache/rap_ros``), folder ``onnx-<first 16 hex digits of the weights' sha256>``;
3. otherwise the shipped weights are exported into that cache folder now (once; this
   needs torch, and takes seconds).

This module never imports torch at module level (the runtime install has none): exporting a
checkpoint on first use imports ``rap_ros.backend.export`` then, or says torch is missing.
"""

import os
import shutil
import tempfile
import threading
from pathlib import Path

from rap_ros.backend.base import Backend
from rap_ros.backend.onnx_backend import MODEL_FILES, OnnxBackend, read_manifest
from rap_ros.contract.files import ModelFileError, file_sha256

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "model" / "weights"
DEFAULT_WEIGHTS_NAME = "rap_small.pt"
SHIPPED_ONNX_DIR = WEIGHTS_DIR / "onnx"
KINDS = ("onnx", "torch")

_lock = threading.Lock()
_backends = {}


def default_weights():
    """Path of the shipped torch checkpoint.

    ``$RAP_ROS_WEIGHTS`` if set; else ``rap_ros/model/weights/rap_small.pt``; else the only
    ``*.pt`` file in that folder. Raises ModelFileError when there is none.
    """
    if os.environ.get("RAP_ROS_WEIGHTS"):
        path = Path(os.environ["RAP_ROS_WEIGHTS"])
        if not path.is_file():
            raise ModelFileError(path, "model weights named by $RAP_ROS_WEIGHTS not found")
        return path
    path = WEIGHTS_DIR / DEFAULT_WEIGHTS_NAME
    if path.is_file():
        return path
    candidates = sorted(WEIGHTS_DIR.glob("*.pt"))
    if len(candidates) == 1:
        return candidates[0]
    raise ModelFileError(path, "default model weights not found")


def cache_dir():
    """Folder for exported models: $RAP_ROS_CACHE or $XDG_CACHE_HOME/rap_ros."""
    if os.environ.get("RAP_ROS_CACHE"):
        return Path(os.environ["RAP_ROS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rap_ros"


def _complete(model_dir):
    return all((Path(model_dir) / name).is_file() for name in MODEL_FILES)


def onnx_dir_for(weights):
    """ONNX model folder for the checkpoint ``weights``, exporting it on first use.

    The export goes to ``cache_dir() / "onnx-<sha256[:16]>"`` through a temporary folder
    renamed into place, so concurrent processes never see half a model.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise ModelFileError(weights, "model weights not found")
    target = cache_dir() / f"onnx-{file_sha256(weights)[:16]}"
    if _complete(target):
        return target
    try:  # optional dependency: torch (and onnx) are not part of the runtime install
        from rap_ros.backend.export import export_onnx
    except ImportError as error:
        raise ModelFileError(target, f"no exported ONNX model for {weights} and torch is not "
                                     f"available to export one ({error}); run `rap-ros export` "
                                     f"where torch is installed and copy the folder") from error
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".onnx-export-", dir=target.parent))
    try:
        export_onnx(weights, staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not _complete(target):  # not a concurrent export that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def default_onnx_dir():
    """The default ONNX model folder (shipped, cached or freshly exported; see module doc)."""
    try:
        weights = default_weights()
    except ModelFileError:
        if os.environ.get("RAP_ROS_WEIGHTS"):
            raise  # asked for explicitly: never fall back silently
        weights = None
    if _complete(SHIPPED_ONNX_DIR):
        exported_from = read_manifest(SHIPPED_ONNX_DIR).get("source_sha256")
        if weights is None or exported_from == file_sha256(weights):
            return SHIPPED_ONNX_DIR
    if weights is None:
        raise ModelFileError(SHIPPED_ONNX_DIR / "denoiser.onnx",
                             "no shipped ONNX model and no torch weights to export "
                             f"({WEIGHTS_DIR / DEFAULT_WEIGHTS_NAME} is missing too)")
    return onnx_dir_for(weights)


def parse_spec(spec):
    """``"kind"`` or ``"kind:path"`` -> (kind, Path or None)."""
    kind, _, path = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ValueError(f"backend spec must start with one of {KINDS}, got {spec!r}")
    return kind, (Path(path).expanduser().resolve() if path else None)


def create_backend(spec="onnx", providers=None, threads=None):
    """A new backend for ``spec`` (not shared; see ``get_backend``)."""
    kind, path = parse_spec(spec)
    if kind == "torch":  # optional dependency: torch
        from rap_ros.backend.torch_backend import TorchBackend

        return TorchBackend(path or default_weights(), threads=threads)
    if path is None:
        model_dir = default_onnx_dir()
    elif path.suffix == ".pt":
        model_dir = onnx_dir_for(path)
    else:
        model_dir = path
    return OnnxBackend(model_dir, providers=providers, threads=threads)


def get_backend(spec="onnx", providers=None, threads=None):
    """The process-wide backend for ``spec``, created on first use (thread-safe).

    Every caller with the same spec and options gets the same instance, so two nodes in
    one process share one model in memory. A Backend instance is returned as is.
    """
    if isinstance(spec, Backend):
        return spec
    kind, path = parse_spec(spec)
    key = (kind, str(path) if path else None,
           tuple(providers) if providers is not None else None, threads)
    with _lock:
        backend = _backends.get(key)
        if backend is None:
            backend = create_backend(spec, providers=providers, threads=threads)
            _backends[key] = backend
        return backend


def clear_backends():
    """Drop every shared backend (they are freed once no caller holds them)."""
    with _lock:
        _backends.clear()
