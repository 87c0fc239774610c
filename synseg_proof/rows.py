"""The stage-3 runs of the proof: the learning-rate sweep, the extension-weight sweeps and the table's rows.

Runs are named by their settings, so a row whose settings equal a sweep run's reuses that run.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import Stage3Section
from .stage3 import Stage3Run

# Variants of the caption-only recipe: (label, training overrides). "film" is the paper's recipe.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "film": ("init + MCCL, synergy source = FiLM output (paper)", ()),
    "unconditioned": ("init + MCCL, synergy source = reduced tokens before FiLM",
                      ("model.overrides.synergy.source=unconditioned",)),
    "no_sep": ("init + MCCL without L_sep", ("model.overrides.loss.sep_weight=0",)),
    "align_cont": ("init + MCCL with only L_align + L_cont",
                   ("model.overrides.loss.back_weight=0", "model.overrides.loss.sep_weight=0")),
    "area": ("init + MCCL + area prior (extension)", ()),  # its loss.area_target comes from Stage3Section
    "absent": ("init + MCCL + absent negatives (extension)", ()),
    "random": ("MCCL from a random decoder (FiLM output)", ()),
}
KEY_VARIANTS = ("film", "area", "absent")  # rows run with every seed


def stage3_run(variant: str, lr: float, seed: int, weight: float | None = None, area_target: float | None = None
               ) -> Stage3Run:
    """The run of `variant` at learning rate `lr` (and extension weight `weight` for area / absent; `area_target`
    for area).

    Raises:
        ValueError: unknown variant, or a weight missing for (or given to) a variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown stage-3 variant {variant!r}; valid ones are {list(VARIANTS)}")
    weighted = {"area": "area_weight", "absent": "absent_weight"}
    if (weight is None) == (variant in weighted):
        raise ValueError(f"variant {variant!r} {'needs an' if variant in weighted else 'takes no'} extension weight "
                         f"(the weighted ones are {sorted(weighted)})")
    overrides = list(VARIANTS[variant][1]) + [f"optim.lr={lr:g}"]
    name = f"{variant}_lr{lr:g}"
    if weight is not None:
        overrides.append(f"model.overrides.loss.{weighted[variant]}={weight:g}")
        name = f"{variant}{weight:g}_lr{lr:g}"
    if variant == "area":
        if area_target is None:
            raise ValueError("variant 'area' needs its area_target")
        overrides.append(f"model.overrides.loss.area_target={area_target:g}")
        name = f"area{weight:g}t{area_target:g}_lr{lr:g}"
    return Stage3Run(name=f"{name}_s{seed}", overrides=tuple(overrides), seed=seed, from_init=variant != "random")


@dataclass(frozen=True)
class Row:
    """One line of the results table: a stage-3 run, or a model that is not caption-trained."""

    row_id: str
    label: str
    variant: str
    seed: int | None = None
    run: Stage3Run | None = None


def stage3_rows(section: Stage3Section, lr: float, area: tuple[float, float], absent: tuple[float, float]
                ) -> list[Row]:
    """The table's caption-trained rows at the chosen settings (key variants with every seed, others the first).

    Args:
        lr: the paper recipe's learning rate (every variant but the extensions and the random decoder).
        area, absent: (learning rate, weight) chosen for each extension.
    """
    chosen = {"area": area, "absent": absent}
    rows = []
    for variant, (label, _) in VARIANTS.items():
        seeds = section.seeds if variant in KEY_VARIANTS else section.seeds[:1]
        run_lr, weight = chosen.get(variant, (section.random_decoder_lr if variant == "random" else lr, None))
        for seed in seeds:
            run = stage3_run(variant, run_lr, seed, weight, section.area_target if variant == "area" else None)
            rows.append(Row(f"{variant}_s{seed}", label, variant, seed, run))
    return rows
