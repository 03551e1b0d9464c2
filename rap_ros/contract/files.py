"""Model files: the error every loader raises for a missing or unreadable file, and the
digest that ties an ONNX export to the weights it came from. Standard library only."""
import hashlib


class ModelFileError(RuntimeError):
    """A model file (weights, ONNX graph, config) is missing or unreadable.

    ``path`` names the offending file.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        super().__init__(f"{reason}: {self.path}")


def file_sha256(path):
    """Hex sha256 of a file's bytes (identifies the weights an export came from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
