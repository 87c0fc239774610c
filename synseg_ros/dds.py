"""Camera-size images over DDS: where the shipped Fast DDS profile lives and what to tell a user who loses frames.

Fast DDS's default shared-memory segment is smaller than one camera frame, so such frames travel as UDP fragments,
which a best-effort subscription drops. The shipped profile (config/fastdds_large_frames.xml) gives a process a
shared-memory segment that holds several frames; the segment of the *publishing* process decides, so the camera's
process needs it for the node's input and the node's process for its outputs (docs in the README, "Camera images
over DDS").
"""
from __future__ import annotations

import os
from pathlib import Path

PROFILE_NAME = "fastdds_large_frames.xml"
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


def shipped_profile_path() -> Path:
    """The profile of this install: share/synseg_ros/config in a colcon install, else the checkout's config/."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("synseg_ros")) / "config" / PROFILE_NAME
        if installed.is_file():
            return installed
    except (ImportError, LookupError, OSError):  # no ament index, package not in it, or AMENT_PREFIX_PATH unset
        pass
    return Path(__file__).resolve().parents[1] / "config" / PROFILE_NAME


def lost_frames_advice(topic: str, lost: int, total: int) -> str:
    """The warning for frames lost in transport: what happened, why, and the remedies that work."""
    here = os.environ.get(PROFILE_VARIABLE)
    node_side = (f"this node runs with {PROFILE_VARIABLE}={here}, so the camera's process needs it too"
                 if here else "this node runs without it (the launch file's dds_profile argument applies it)")
    return (f"{lost} frame(s) sent on {topic} never arrived ({total} in all). Over Fast DDS's default transports "
            "camera-size images sent best effort are lost this way. Remedies: start the camera driver's process with "
            f"{PROFILE_VARIABLE}={shipped_profile_path()} (a large shared-memory segment; {node_side}); or export "
            "FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA in every process of the pipeline; or publish the images reliably "
            "and set image_reliability to reliable. (A publisher that outpaces its own history loses frames too.)")
