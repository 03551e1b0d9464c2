"""The model's sizes: one dataclass shared by the model, the backends and the pipeline.

`ModelConfig` fixes every tensor size of the contract in docs/architecture.md; it is saved
next to the weights as YAML (`save_config` / `load_config`) and inside checkpoints as a plain
dict (`to_dict` / `from_dict`), so `torch.load(..., weights_only=True)` can read it back.

Named sizes: `rap_small()` (the shipped default), `rap_tiny()` (tests; seconds on a CPU).
Training settings (`TrainConfig`, `RunConfig`) live with the trainer in `rap_ros.model.config`.
numpy-free and torch-free: PyYAML only.
"""
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml


def from_known_keys(cls, d: dict, what: str):
    """cls(**d), refusing keys that are not fields of the dataclass cls (a typo in a YAML
    file is an error, not a silently ignored setting)."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} config keys: {sorted(unknown)}")
    return cls(**d)


@dataclass
class ModelConfig:
    # clip
    frames: int = 9                    # T = 1 + temporal_factor * k
    image_size: int = 64               # S, square images
    # codec
    spatial_factor: int = 4            # S / s, a power of two
    temporal_factor: int = 4           # frames per latent frame after the first
    latent_channels: int = 8           # C (raxel latents have 2C)
    codec_widths: tuple = (16, 32, 64)  # conv widths from full resolution down to s
    # denoiser
    patch_size: int = 4                # patch of the latent grid per token
    width: int = 96                    # token width d
    depth: int = 4                     # blocks
    heads: int = 4
    mlp_ratio: float = 4.0
    cond_dim: int = 64                 # timestep embedding width (feeds adaLN)
    attention: str = "dsca"            # "dsca" | "joint" (ablation)
    raxel_encoding: str = "raydir_origin"  # "raydir_origin" | "plucker" (ablation)
    motion_channels: bool = True       # optical-flow channels on the video branch
    prediction: str = "x0"             # "x0" (heads predict clean latents) | "velocity"
    max_latent_frames: int = 8         # size of the learned temporal embedding
    # geometry conditioning (issue 12): the denoiser's video branch also takes the source
    # image forward-warped into each target camera, as latents plus a validity channel
    # ("warp", (B, t, C + 1, s, s)); off: no such input (the shipped weights, old folders)
    warp_condition: bool = False
    # with warp_condition and x0 prediction: the predicted clean video latents also get a
    # per-cell skip from the warp latents (gated by validity), so the denoiser learns a
    # correction of the warp instead of re-deriving it through its tokens
    warp_skip: bool = False
    # how input images map onto the S x S square (issue 12 "Full frame";
    # ``pipeline.framing``): "centre" (the centred square; weights saved without the field)
    # or "letterbox" (the whole image, longer side S, padded)
    framing: str = "centre"

    def __post_init__(self):
        self.codec_widths = tuple(int(w) for w in self.codec_widths)
        if (self.frames - 1) % self.temporal_factor:
            raise ValueError(f"frames={self.frames} is not 1 + temporal_factor * k "
                             f"(temporal_factor={self.temporal_factor})")
        if self.image_size % self.spatial_factor:
            raise ValueError("image_size must be a multiple of spatial_factor")
        if 2 ** (len(self.codec_widths) - 1) != self.spatial_factor:
            raise ValueError(f"codec_widths needs log2(spatial_factor)+1 = "
                             f"{self.spatial_factor.bit_length()} entries, got {self.codec_widths}")
        if self.latent_size % self.patch_size:
            raise ValueError("latent size s must be a multiple of patch_size")
        if self.attention not in ("dsca", "joint"):
            raise ValueError(f"attention must be 'dsca' or 'joint', got {self.attention!r}")
        if self.prediction not in ("x0", "velocity"):
            raise ValueError(f"prediction must be 'x0' or 'velocity', got {self.prediction!r}")
        if self.raxel_encoding not in ("raydir_origin", "plucker"):
            raise ValueError(f"unknown raxel_encoding {self.raxel_encoding!r}")
        if self.latent_frames > self.max_latent_frames:
            raise ValueError(f"{self.latent_frames} latent frames exceed max_latent_frames="
                             f"{self.max_latent_frames}")
        if self.warp_skip and not (self.warp_condition and self.prediction == "x0"):
            raise ValueError("warp_skip needs warp_condition and prediction 'x0'")
        if self.framing not in ("centre", "letterbox"):
            raise ValueError(f"framing must be 'centre' or 'letterbox', got {self.framing!r}")
        if self.width % self.heads:
            raise ValueError("width must be divisible by heads")

    # derived sizes
    @property
    def latent_frames(self) -> int:
        """t = 1 + (T - 1) // temporal_factor."""
        return latent_frames(self.frames, self.temporal_factor)

    @property
    def latent_size(self) -> int:
        """s = S // spatial_factor."""
        return self.image_size // self.spatial_factor

    @property
    def motion_dim(self) -> int:
        """M: (dx, dy) flow for each frame of a latent group (zeros when disabled in the net)."""
        return 2 * self.temporal_factor

    @property
    def warp_dim(self) -> int:
        """C + 1: the warped clip's latents and the warp's validity (``warp_condition``)."""
        return self.latent_channels + 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["codec_widths"] = list(self.codec_widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return from_known_keys(cls, d, "model")


def latent_frames(frames: int, temporal_factor: int) -> int:
    return 1 + (frames - 1) // temporal_factor


# ---------------------------------------------------------------- named sizes


def rap_small() -> ModelConfig:
    """The shipped default: 9 frames at 64x64, ~2M parameters (codec + denoiser)."""
    return ModelConfig()


def rap_tiny() -> ModelConfig:
    """Tests: 5 frames at 16x16, a few thousand parameters, seconds on a CPU."""
    return ModelConfig(frames=5, image_size=16, spatial_factor=4, temporal_factor=2,
                       latent_channels=4, codec_widths=(8, 8, 8), patch_size=1, width=32,
                       depth=2, heads=2, mlp_ratio=2.0, cond_dim=16, max_latent_frames=4)


SIZES = {"small": rap_small, "tiny": rap_tiny}


# ---------------------------------------------------------------- YAML


def save_config(config: ModelConfig, path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def load_config(path) -> ModelConfig:
    """A ModelConfig from YAML: either a bare model dict or a run file with `model:`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model config not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if "model" in data and isinstance(data["model"], dict):
        data = data["model"]
    return ModelConfig.from_dict(data)
