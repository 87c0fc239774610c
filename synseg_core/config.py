"""Model and inference configuration: architecture as data (one JSON file per model variant).

Every choice the paper leaves open is a field here with the proposed default (docs/method.md §9 describes each
field). Unknown keys are errors that list the valid keys.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, get_args, get_origin, get_type_hints

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names it and what is allowed."""


@dataclass
class BackboneConfig:
    """The frozen CLIP: an open_clip architecture plus where its weights come from."""

    model_name: str | None = "ViT-B-16"  # open_clip architecture name; None when `clip_config` is given inline
    clip_config: dict | None = None  # inline open_clip config (embed_dim, vision_cfg, text_cfg) for custom/tiny CLIPs
    pretrained: str | None = "openai"  # open_clip pretrained tag; None = random init or `weights` below
    weights: str | None = None  # local CLIP weights (.safetensors); relative paths resolve against the config file
    extract_layers: tuple[int, ...] = (3, 6, 9)  # 0-indexed blocks whose residual-stream outputs feed the decoder
    # open_clip's vision block type: "custom" computes attention with PyTorch's scaled_dot_product_attention, "default"
    # with nn.MultiheadAttention. Same parameters and state-dict keys, outputs equal to ~2e-6; "custom" is the faster
    # one on the CPU (benchmarks/segmenter_speed.py prints both).
    vision_block: Literal["default", "custom"] = "custom"


@dataclass
class DecoderConfig:
    """CLIPSeg rd64 decoder (docs/method.md §4)."""

    reduce_dim: int = 64
    num_heads: int = 4
    ffn_dim: int = 2048
    layer_norm_eps: float = 1e-5
    conditional_layer: int = 0  # FiLM is applied after reduce of the deepest extracted layer
    upsampler: Literal["simple", "refined"] = "refined"


@dataclass
class SynergyConfig:
    """Feature Synergy Structure (training only, docs/method.md §5)."""

    source: Literal["film_output", "unconditioned", "decoder_tokens"] = "film_output"
    projector: Literal["conv1x1", "mlp"] = "conv1x1"


@dataclass
class LossConfig:
    """MCCL weights and clipping (docs/method.md §6), plus the off-by-default extensions of §6.1."""

    align_weight: float = 1.0
    cont_weight: float = 1.0
    back_weight: float = 1.0
    sep_weight: float = 1.0
    clip_min: float = 0.005
    clip_max: float = 0.995
    clamp: Literal["hard", "straight_through"] = "hard"
    # Beyond the paper (0 = off): keep each map's mean activation near the init's, and push down maps of
    # categories that other images in the batch mention but this image does not.
    area_weight: float = 0.0
    area_target: float = 0.15
    absent_weight: float = 0.0


@dataclass
class PreprocessConfig:
    """Image normalisation travels with the model (CLIPSeg weights expect ImageNet statistics)."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    train_size: int = 224


@dataclass
class InferenceConfig:
    """How `Segmenter` turns an image into maps (docs/method.md §8; TCL protocol defaults)."""

    short_side: int = 448  # resize so the short side has this length, keeping the aspect ratio
    long_side_cap: int = 2048  # ...unless the long side would exceed this (mmseg img_scale=(2048, 448))
    window: int | None = 448  # sliding-window size; None = resize the whole image to short_side x short_side
    stride: int = 224
    templates: str = "single"  # prompt-template set name (synseg_core/resources/templates.json)
    mask_threshold: float = 0.5
    background_threshold: float = 0.5
    background: bool = True  # False: every pixel gets its best category (datasets without background)
    max_categories: int = 64


@dataclass
class SynSegConfig:
    """One model variant: architecture, preprocessing, training loss and default inference settings."""

    name: str = "vitb16-rd64-refined"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    synergy: SynergyConfig = field(default_factory=SynergyConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SynSegConfig":
        return from_dict(cls, data)


T = TypeVar("T")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a type hint, converting lists to tuples and nested dicts to dataclasses."""
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {hint.__name__}, got {value!r}")
        return from_dict(hint, value, where)
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(hint))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = get_args(hint)[0] if get_args(hint) else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    args = get_args(hint)
    if args and type(None) in args:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint in (str, bool, dict) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str | None = None) -> T:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types raise ConfigError."""
    where = where or cls.__name__
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {names}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def list_models() -> list[str]:
    """Names of the bundled model configs."""
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))


def get_model_config(name: str) -> SynSegConfig:
    """Load a bundled model config by name (see `list_models()`)."""
    path = MODEL_CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"unknown model config {name!r}; bundled configs: {list_models()}")
    return load_config_file(path)


def load_config_file(path: str | Path) -> SynSegConfig:
    """Load a SynSegConfig JSON file; a relative `backbone.weights` resolves against the file's folder."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read model config {path}: {exc}") from exc
    cfg = SynSegConfig.from_dict(data)
    if cfg.backbone.weights and not Path(cfg.backbone.weights).is_absolute():
        cfg.backbone.weights = str((path.parent / cfg.backbone.weights).resolve())
    return cfg


def replace_inference(cfg: InferenceConfig, **overrides: Any) -> InferenceConfig:
    """A copy of `cfg` with overrides applied and validated (unknown names are errors)."""
    merged = {**dataclasses.asdict(cfg), **overrides}
    return from_dict(InferenceConfig, merged, "inference")
