"""Inference backends: one interface (``Backend``) over ONNX Runtime and eager torch.

``get_backend(spec)`` returns the process-wide instance for a spec ("onnx", "torch",
"onnx:DIR", "torch:FILE.pt"); see ``rap_ros.backend.shared``. ``OnnxBackend`` is in
``rap_ros.backend.onnx_backend``; ``TorchBackend`` (``rap_ros.backend.torch_backend``) and the
ONNX export (``rap_ros.backend.export``) need torch and ``rap_ros.model``, so this package
does not import them: importing it never imports torch.
"""

from rap_ros.backend.base import Backend
from rap_ros.backend.onnx_backend import OnnxBackend
from rap_ros.backend.shared import clear_backends, create_backend, get_backend
from rap_ros.contract.files import ModelFileError

__all__ = ["Backend", "ModelFileError", "OnnxBackend", "clear_backends", "create_backend",
           "get_backend"]
