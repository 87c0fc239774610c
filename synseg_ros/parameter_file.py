"""Renders config/synseg.yaml from the parameters' one description (synseg_ros/parameters.py).

    python -m synseg_ros.parameter_file                           # print the rendering
    python -m synseg_ros.parameter_file --write config/synseg.yaml  # regenerate the shipped file

A test keeps the shipped file equal to the rendering, so its comments and defaults never drift from the code.
Unset inference settings appear commented out, with the generic ViT-B/16 value as an example.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Sequence

from synseg_core.config import InferenceConfig
from synseg_ros.camera_parameters import CAMERA_OVERRIDES
from synseg_ros.parameters import DESCRIPTIONS, SECTIONS, NodeParameters

WIDTH = 118
INDENT = "    "
HEADER = """\
# Parameters of the synseg segmentation node. Rendered from synseg_ros/parameters.py, which describes each parameter
# once: regenerate with `python -m synseg_ros.parameter_file --write config/synseg.yaml` (a test checks it).
# Start: ros2 run synseg_ros synseg_node --ros-args --params-file config/synseg.yaml
#    or: ros2 launch synseg_ros segment.launch.py
# "/**" applies these values whatever the node's name or namespace.
/**:
  ros__parameters:
"""
CAMERA_EXAMPLE = f"""\
# Per-camera overrides of {', '.join(CAMERA_OVERRIDES)} (unset = the values above), e.g.:
# front:
#   image_reliability: "reliable"
#   max_rate_hz: 5.0
"""


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH - len(INDENT) - 2, initial_indent="# ", subsequent_indent="# ")


def _example(name: str) -> object:
    """The value shown for an unset inference setting: the generic (ViT-B/16, TCL protocol) one."""
    value = getattr(InferenceConfig(), name)
    return 0 if name == "window" and value is None else value


def render() -> str:
    """The parameter file's text: every parameter with its description and default, grouped by section."""
    defaults = NodeParameters()
    lines = []
    for title, names in SECTIONS:
        lines.append(f"# --- {title} " + "-" * max(3, WIDTH - len(INDENT) - len(title) - 7))
        for name in names:
            lines += _comment(DESCRIPTIONS[name])
            value = getattr(defaults, name)
            lines.append(f"{name}: {json.dumps(value)}" if value is not None
                         else f"# {name}: {json.dumps(_example(name))}")
            if name == "cameras":
                lines += CAMERA_EXAMPLE.splitlines()
    return HEADER + "".join(f"{INDENT}{line}\n" for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", metavar="PATH", help="write the rendering to PATH instead of printing it")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(render())
        return 0
    try:
        Path(args.write).write_text(render())
    except OSError as exc:
        print(f"parameter_file: error: cannot write {args.write}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
