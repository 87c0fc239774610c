"""The optimisation profile: min/opt/max shapes of every dynamic ONNX input, from named axis ranges."""
from __future__ import annotations

from dataclasses import dataclass

from ...export import INPUT_IMAGES as IMAGES_INPUT
from ...export import INPUT_TEXT as TEXT_INPUT
from ...export import OUTPUT as PROBABILITIES_OUTPUT
from .config import TensorRTConfig
from .errors import TensorRTError
from .onnx_info import OnnxInput

__all__ = ["BATCH_AXIS", "CATEGORY_AXIS", "IMAGES_INPUT", "PROBABILITIES_OUTPUT", "TEXT_INPUT", "InputProfile",
           "axis_ranges", "resolve_profile"]

# Names synseg_core.deploy.export gives the dynamic axes (ONNX dim_param).
BATCH_AXIS = "batch"
CATEGORY_AXIS = "categories"
PROFILE_MIN = 1  # every profile starts at one image and one category


@dataclass(frozen=True)
class InputProfile:
    """min/opt/max shapes of one input (equal where the input's axis is fixed)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def as_key(self) -> list:
        return [self.name, list(self.min), list(self.opt), list(self.max)]


def axis_ranges(config: TensorRTConfig) -> dict[str, tuple[int, int, int]]:
    """(min, opt, max) per named dynamic axis, from the config."""
    return {BATCH_AXIS: (PROFILE_MIN, config.opt_batch, config.max_batch),
            CATEGORY_AXIS: (PROFILE_MIN, config.opt_categories, config.max_categories)}


def resolve_profile(inputs: list[OnnxInput], ranges: dict[str, tuple[int, int, int]]) -> tuple[InputProfile, ...]:
    """Shapes for every input that has a dynamic axis.

    A range for an axis the ONNX does not have is unused (an export with a fixed batch ignores the batch range);
    a dynamic axis without a range is an error naming the axis and the configured ones.
    """
    profiles = []
    for item in inputs:
        if all(isinstance(dim, int) for dim in item.dims):
            continue
        shapes: list[list[int]] = [[], [], []]
        for axis, dim in enumerate(item.dims):
            if isinstance(dim, int):
                bounds = (dim, dim, dim)
            elif dim in ranges:
                bounds = ranges[dim]
            else:
                raise TensorRTError(f"ONNX input {item.name!r} axis {axis} is dynamic ({dim!r}) but the profile "
                                    f"has no range for it; ranges exist for {sorted(ranges)}")
            for shape, value in zip(shapes, bounds):
                shape.append(value)
        profiles.append(InputProfile(item.name, *(tuple(shape) for shape in shapes)))
    return tuple(profiles)
