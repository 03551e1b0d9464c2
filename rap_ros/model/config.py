"""Training configuration: the trainer's settings beside the model's sizes.

A run YAML under `rap_ros/model/configs/` has a `model:` section (a
`rap_ros.contract.config.ModelConfig`) and a `train:` section (`TrainConfig`);
`load_run_config` reads both, with `section.key=value` overrides.
"""
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from rap_ros.contract.config import ModelConfig, from_known_keys

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class TrainConfig:
    # data (rendered ahead into runs/<name>/cache; train seeds only)
    train_clips: int = 4000
    val_clips: int = 64
    fov_deg: tuple = (25.0, 100.0)     # horizontal field of view of the training clips, degrees
    #                                    (the validation clips keep 45-100). The model sees a
    #                                    camera through its centre square: 47 deg for a 60 deg
    #                                    640x480 camera, 29 deg for KITTI. Legs 1-5 of the
    #                                    shipped weights drew 45-100 (the renderer's range), the
    #                                    focal fine-tune 25-100 (docs/model.md)
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
    warp_probability: float = 0.8      # view-job examples given the warp condition (issue 12)
    warp_lr_scale: float = 1.0         # learning-rate multiplier of the warp input's projection
    # bookkeeping
    seed: int = 0
    save_every_s: float = 180.0
    log_every: int = 10
    threads: int = 2
    device: str = "cpu"                # "cpu" | "cuda" | "auto" (cuda when there is one)

    def __post_init__(self):
        self.job_probs = tuple(float(p) for p in self.job_probs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["job_probs"] = list(self.job_probs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return from_known_keys(cls, d, "train")


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
