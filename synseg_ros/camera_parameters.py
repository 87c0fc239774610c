"""Per-camera settings: each camera's topics and its overrides of the node-wide input parameters.

Without the `cameras` parameter the node has one camera on `image` with outputs under `~/`; with it, one per name
on `<name>/image` with outputs under `<name>/`. Each camera may override `image_reliability`, `image_depth` and
`max_rate_hz` with the parameters `<name>.<parameter>` (in YAML a nested block under the camera's name); an unset
override follows the node-wide value. Overrides are described and checked like the node-wide parameters
(synseg_ros/parameters.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from synseg_core.config import ConfigError
from synseg_ros.parameters import DESCRIPTIONS, NodeParameters, ParameterError, check_values, typed_value

CAMERA_OVERRIDES = ("image_reliability", "image_depth", "max_rate_hz")  # per-camera `<name>.<parameter>`
LIVE_CAMERA_OVERRIDES = frozenset({"max_rate_hz"})


@dataclass(frozen=True)
class CameraSettings:
    """One camera's topics and its input settings (node-wide values with its overrides applied)."""

    name: str  # "" for the single camera of a node without `cameras`
    input_topic: str  # relative: "image" or "<name>/image"
    output_prefix: str  # "~/" or "<name>/"
    image_reliability: str
    image_depth: int
    max_rate_hz: float


def camera_override_name(camera: str, parameter: str) -> str:
    return f"{camera}.{parameter}"


def camera_override_description(parameter: str) -> str:
    """A per-camera override's description, from the node-wide parameter's."""
    return f"this camera's {parameter}, unset = the node's value ({DESCRIPTIONS[parameter]})"


def split_camera_override(name: str) -> tuple[str, str] | None:
    """(camera, parameter) when `name` is a per-camera override such as "front.max_rate_hz", else None."""
    camera, dot, parameter = name.rpartition(".")
    return (camera, parameter) if dot and camera and parameter in CAMERA_OVERRIDES else None


def camera_settings(params: NodeParameters, overrides: Mapping[str, Any]) -> list[CameraSettings]:
    """The cameras of `params` with their overrides ({"front.max_rate_hz": 5.0, ...}; None = unset) applied.

    Raises ParameterError naming every bad override.
    """
    node_wide = {name: getattr(params, name) for name in CAMERA_OVERRIDES}
    if not params.cameras:
        return [CameraSettings("", "image", "~/", **node_wide)]
    problems, cameras = [], []
    for camera in params.cameras:
        values = dict(node_wide)
        for name in CAMERA_OVERRIDES:
            value = overrides.get(camera_override_name(camera, name))
            if value is not None:
                try:
                    values[name] = typed_value(name, value, where=f"parameter.{camera}")
                except ConfigError as exc:
                    problems.append(str(exc))
        if not problems:
            problems += check_values(dataclasses.replace(params, **values), prefix=f"{camera}.",
                                     names=CAMERA_OVERRIDES)
        cameras.append(CameraSettings(camera, f"{camera}/image", f"{camera}/", **values))
    if problems:
        raise ParameterError("invalid parameter(s): " + "; ".join(problems))
    return cameras


def declare_camera_overrides(node: Node, cameras: Iterable[str]) -> None:
    """Declare `<camera>.<parameter>` for each camera, unset unless given (YAML or -p); the node-wide value applies."""
    for camera in cameras:
        for name in CAMERA_OVERRIDES:
            full = camera_override_name(camera, name)
            if not node.has_parameter(full):
                node.declare_parameter(full, None, ParameterDescriptor(
                    description=camera_override_description(name), dynamic_typing=True))


def read_camera_overrides(node: Node, cameras: Iterable[str]) -> dict[str, Any]:
    """The declared per-camera overrides of `cameras` that are set ({"front.max_rate_hz": 5.0, ...})."""
    names = [camera_override_name(camera, name) for camera in cameras for name in CAMERA_OVERRIDES]
    return {name: node.get_parameter(name).value for name in names
            if node.has_parameter(name) and node.get_parameter(name).value is not None}
