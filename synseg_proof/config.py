"""Settings of the proof-of-learning chain: data sizes, the stage-1 CLIP, the decoder, the mask-supervised stages,
the stage-3 sweeps and the evaluation. Two presets: `full_chain()` (the committed run, with the bundled CLIP; its
run time is in docs/proof_of_learning.md) and `fast_chain()` (tiny everything, for CI)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synseg_core.config import ConfigError, DecoderConfig
from synseg_core.training.config import OptimConfig, ScheduleConfig
from .supervised import SupervisedConfig

# The stage-1 CLIP that the repository ships, and the stage-3 training configs.
BUNDLED_STAGE1 = Path(__file__).resolve().parent / "resources" / "stage1"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class DataSection:
    """Split sizes (images) and the base seed; every split gets its own seed (base + a fixed offset). The images
    have the stage-1 CLIP's input size."""

    source_masks: int = 3000
    target_train: int = 4000
    target_val: int = 150
    target_test: int = 300
    seed: int = 800


@dataclass
class Stage1Section:
    """The frozen CLIP.

    Attributes:
        bundled: reuse the stage-1 CLIP committed under synseg_proof/resources/stage1 when it is there.
        captions: caption images generated for pretraining when it is trained here.
        fast: start from the stage-1 trainer's tiny FAST_OVERRIDES.
        overrides: stage-1 settings over those (``ClipPretrainConfig`` keys). The default is the recipe of the
            bundled CLIP (64-px images, 8-px patches, 4 blocks, 2,800 steps of 256 pairs; minutes on a GPU, hours
            on a small CPU; the device is CUDA when available). Only its data differ: one split of ``captions``
            images here, eight shards of 5,000 from seeds 900-907 for the bundled one.
    """

    bundled: bool = True
    captions: int = 40000
    fast: bool = False
    overrides: dict = field(default_factory=lambda: {"image_size": 64, "patch_size": 8, "steps": 2800,
                                                     "batch_size": 256, "vision_layers": 4, "warmup_steps": 200,
                                                     "eval_every": 0})


@dataclass
class Stage3Section:
    """Caption-only MCCL runs (training/configs/proof_*.yaml plus overrides).

    Attributes:
        config: the training YAML every stage-3 run starts from (steps, eval.every, batch size live there).
        lrs: decoder/FiLM learning rates swept for the faithful recipe on the validation split.
        extension_lrs: learning rates swept for each extension (with its weights: a grid), since the recipe's
            best rate may be too low for an extension to act.
        area_weights: `loss.area_weight` values swept for the area-prior extension.
        area_target: `loss.area_target` of the area prior: a floor on each caption category's mean activation,
            below the typical object area (it stops maps from vanishing rather than making them grow).
        absent_weights: `loss.absent_weight` values swept for the absent-negatives extension.
        seeds: seeds of the key rows (the first one is used by every other row).
        random_decoder_lr: learning rate of the MCCL-from-a-random-decoder row (a fresh decoder needs a larger one).
    """

    config: str = str(CONFIG_DIR / "proof_stage3.yaml")
    lrs: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4)
    extension_lrs: tuple[float, ...] = (1e-5, 1e-4)
    area_weights: tuple[float, ...] = (1.0, 10.0)
    area_target: float = 0.05
    absent_weights: tuple[float, ...] = (1.0, 10.0)
    seeds: tuple[int, ...] = (0, 1)
    random_decoder_lr: float = 1e-3


@dataclass
class EvalSection:
    """Background thresholds tried on the validation split, and the picture grid's size."""

    thresholds: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    grid_images: int = 6


@dataclass
class ChainConfig:
    """Everything the chain does; `threads` caps torch's CPU threads (the machines are shared)."""

    data: DataSection = field(default_factory=DataSection)
    stage1: Stage1Section = field(default_factory=Stage1Section)
    # The miniature's decoder: CLIPSeg rd64 with a smaller FFN, sized for a CPU.
    decoder: DecoderConfig = field(default_factory=lambda: DecoderConfig(ffn_dim=256))
    stage2: SupervisedConfig = field(default_factory=SupervisedConfig)
    ceiling: SupervisedConfig = field(default_factory=SupervisedConfig)
    stage3: Stage3Section = field(default_factory=Stage3Section)
    eval: EvalSection = field(default_factory=EvalSection)
    threads: int = 1

    def __post_init__(self) -> None:
        counts = {k: v for k, v in dataclasses.asdict(self.data).items() if k != "seed"}
        bad = {k: v for k, v in counts.items() if v < 1}
        if bad:
            raise ConfigError(f"data split sizes must be >= 1, got {bad}")
        s3 = self.stage3
        if not all((s3.lrs, s3.seeds, s3.extension_lrs, s3.area_weights, s3.absent_weights)):
            raise ConfigError("stage3.lrs, seeds, extension_lrs, area_weights and absent_weights need at least one "
                              "value each")
        if not self.eval.thresholds or any(not 0 < t < 1 for t in self.eval.thresholds):
            raise ConfigError(f"eval.thresholds must be values in (0, 1), got {list(self.eval.thresholds)}")
        if self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _supervised(steps: int, batch_size: int, lr: float, warmup: int, every: int) -> SupervisedConfig:
    return SupervisedConfig(batch_size=batch_size, optim=OptimConfig(lr=lr, projector_lr=lr),
                            schedule=ScheduleConfig(max_steps=steps, warmup_steps=warmup, min_lr=1e-5),
                            checkpoint_every=every)


def full_chain() -> ChainConfig:
    """The committed run's settings (docs/proof_of_learning.md)."""
    return ChainConfig(stage2=_supervised(500, 32, 2e-3, 25, 100), ceiling=_supervised(500, 32, 2e-3, 25, 100))


def fast_chain() -> ChainConfig:
    """Tiny everything, for CI: every row with finite numbers in a few minutes, no claim about quality."""
    return ChainConfig(
        data=DataSection(source_masks=160, target_train=96, target_val=24, target_test=24),
        # Wider than the stage-1 trainer's own FAST_OVERRIDES: the init must tell colours apart to beat the floor.
        stage1=Stage1Section(bundled=False, captions=512, fast=True,
                             overrides={"image_size": 64, "steps": 300, "batch_size": 32, "warmup_steps": 20,
                                        "lr": 2e-3, "vision_layers": 3, "vision_width": 64, "embed_dim": 32,
                                        "text_width": 32}),
        decoder=DecoderConfig(reduce_dim=32, num_heads=2, ffn_dim=64),
        stage2=_supervised(400, 16, 3e-3, 10, 200),
        ceiling=_supervised(200, 16, 3e-3, 10, 200),
        stage3=Stage3Section(config=str(CONFIG_DIR / "proof_stage3_fast.yaml"), lrs=(1e-4, 1e-3),
                             extension_lrs=(1e-4,), area_weights=(1.0,), absent_weights=(1.0,)),
        eval=EvalSection(thresholds=(0.1, 0.2, 0.3, 0.5), grid_images=3),
    )
