"""Model and training configuration: one dataclass, named sizes as small functions.

`ModelConfig` fixes every tensor size of the contract in docs/architecture.md; it is saved
next to the weights as YAML (`save_config` / `load_config`) and inside checkpoints as a plain
dict, so `torch.load(..., weights_only=True)` can read it back.

Named sizes: `rap_small()` (the shipped default), `rap_tiny()` (tests; seconds on a CPU).
YAML files under `rap_ros/model/configs/` hold the same values plus training settings.
"""
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"




def _from_known_keys(cls, d: dict, what: str):
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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["codec_widths"] = list(self.codec_widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return _from_known_keys(cls, d, "model")


def latent_frames(frames: int, temporal_factor: int) -> int:
    return 1 + (frames - 1) // temporal_factor


@dataclass
class TrainConfig:
    # data (rendered ahead into runs/<name>/cache; train seeds only)
    train_clips: int = 4000
    val_clips: int = 64
    render_workers: int = 2
    # codec stage
    codec_batch: int = 16
    codec_lr: float = 2e-3
    codec_minutes: float = 8.0
    codec_raxel_fraction: float = 0.5  # share of clips in a codec batch that are raxel clips
    # dit stage
    batch: int = 32
    lr: float = 6e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    grad_clip: float = 1.0
    minutes: float = 160.0
    max_steps: int = 0                 # 0: limited by minutes only
    job_probs: tuple = (0.7, 0.2, 0.1)  # in the order of preprocess.JOBS
    p_k_known: float = 0.8             # raxel frame 0 clean (K known) in jobs that allow it
    raxel_loss_weight: float = 2.0
    time_shift: float = 3.0            # flow-time shift towards t = 1 (1 = uniform)
    cosine_weight: float = 1.0         # 0 = the "without cosine loss" ablation
    cosine_samples: int = 8            # clips per batch decoded for the cosine term
    ema: float = 0.999
    # bookkeeping
    seed: int = 0
    save_every_s: float = 180.0
    log_every: int = 10
    threads: int = 2

    def __post_init__(self):
        self.job_probs = tuple(float(p) for p in self.job_probs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["job_probs"] = list(self.job_probs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return _from_known_keys(cls, d, "train")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return cls(ModelConfig.from_dict(d.get("model", {})),
                   TrainConfig.from_dict(d.get("train", {})))


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


def load_run_config(path, overrides=None) -> RunConfig:
    """Read a run YAML (`model:` and `train:` sections) and apply `key=value` overrides,
    e.g. ``["train.minutes=5", "model.attention=joint"]`` (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        named = CONFIG_DIR / f"{path.name}.yaml" if path.suffix == "" else None
        if named is not None and named.is_file():
            path = named
        else:
            raise FileNotFoundError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    for item in overrides or ():
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"override must look like section.key=value, got {item!r}")
        section, name = key.split(".", 1)
        data.setdefault(section, {})[name] = yaml.safe_load(value)
    return RunConfig.from_dict(data)


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
