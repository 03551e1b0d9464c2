"""Inference backends: one interface (``Backend``) over ONNX Runtime and eager torch.

``get_backend(spec)`` returns the process-wide instance for a spec ("onnx", "torch",
"onnx:DIR", "torch:FILE.pt"); see ``rap_ros.backend.shared``. ``OnnxBackend`` and
``TorchBackend`` are imported lazily, so importing this package pulls in neither
onnxruntime nor torch.
"""

from rap_ros.backend.base import Backend, ModelFileError
from rap_ros.backend.shared import clear_backends, create_backend, get_backend


def __getattr__(name):
    if name == "OnnxBackend":
        from rap_ros.backend.onnx_backend import OnnxBackend

        return OnnxBackend
    if name == "TorchBackend":
        from rap_ros.backend.torch_backend import TorchBackend

        return TorchBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Backend", "ModelFileError", "OnnxBackend", "TorchBackend", "clear_backends",
           "create_backend", "get_backend"]
