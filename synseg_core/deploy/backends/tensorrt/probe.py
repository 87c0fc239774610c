"""What this machine offers TensorRT: the lazily imported module, its version, and the GPU (+ Jetson release).

TensorRT comes from JetPack's apt packages on Jetson (`python3-libnvinfer`, version strings like "10.3.0") and
from NVIDIA's wheels elsewhere ("10.16.1.11", "11.4.0.106"). It is imported only when asked for, so the rest of
synseg_core works on machines without it.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from .errors import TensorRTUnavailableError

SUPPORTED_MAJORS = (10, 11)
# Wheel distributions that install the `tensorrt` module, most specific first; none found = a system install.
TENSORRT_DISTRIBUTIONS = ("tensorrt-cu13-bindings", "tensorrt-cu12-bindings", "tensorrt-cu13", "tensorrt-cu12",
                          "tensorrt-cu11", "tensorrt")
L4T_RELEASE_FILE = Path("/etc/nv_tegra_release")


def import_tensorrt() -> ModuleType:
    """Import the `tensorrt` module, or raise TensorRTUnavailableError saying why and how to get it."""
    try:
        return importlib.import_module("tensorrt")
    except (ImportError, OSError) as exc:  # OSError: bindings present but libnvinfer missing
        raise TensorRTUnavailableError(
            f"the tensorrt Python module cannot be imported ({type(exc).__name__}: {exc}); on Jetson install "
            "JetPack's python3-libnvinfer (and create the venv with --system-site-packages), elsewhere NVIDIA's "
            "tensorrt-cu12 / tensorrt-cu13 wheels") from exc


@dataclass(frozen=True)
class TensorRTInfo:
    """The TensorRT in use: full version string, major number and where it was installed from."""

    version: str
    major: int
    distribution: str  # wheel distribution name, or "system" (apt / JetPack)


def tensorrt_info(trt: ModuleType) -> TensorRTInfo:
    """Read the version of an imported tensorrt module; unsupported majors raise TensorRTUnavailableError."""
    version = str(getattr(trt, "__version__", ""))
    match = re.match(r"(\d+)\.", version)
    if match is None:
        raise TensorRTUnavailableError(f"cannot read the TensorRT version from tensorrt.__version__={version!r}")
    major = int(match.group(1))
    if major < SUPPORTED_MAJORS[0]:
        raise TensorRTUnavailableError(f"TensorRT {version} is too old; synseg supports TensorRT "
                                       f"{' and '.join(f'{m}.x' for m in SUPPORTED_MAJORS)}")
    return TensorRTInfo(version=version, major=major, distribution=_distribution())


def _distribution() -> str:
    for name in TENSORRT_DISTRIBUTIONS:
        try:
            importlib.metadata.version(name)
            return name
        except importlib.metadata.PackageNotFoundError:
            continue
    return "system"


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU an engine is built for: engines and timing caches are specific to it."""

    name: str
    compute_capability: str  # "8.7"
    l4t_release: str | None = None  # Jetson only, e.g. "R36.4.3"


def probe_device_info(device: torch.device) -> DeviceInfo:
    """Describe the CUDA device `device` (name, compute capability, L4T release on Jetson)."""
    if device.type != "cuda":
        raise TensorRTUnavailableError(f"TensorRT needs a CUDA device, got device {str(device)!r}")
    if not torch.cuda.is_available():
        raise TensorRTUnavailableError("TensorRT needs a CUDA device but torch.cuda.is_available() is False")
    major, minor = torch.cuda.get_device_capability(device)
    return DeviceInfo(name=torch.cuda.get_device_name(device), compute_capability=f"{major}.{minor}",
                      l4t_release=read_l4t_release())


def read_l4t_release(path: Path = L4T_RELEASE_FILE) -> str | None:
    """The Jetson Linux release ("R36.4.3") from /etc/nv_tegra_release, or None off Jetson."""
    try:
        first_line = path.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    match = re.search(r"R(\d+)\b.*?REVISION:\s*([0-9.]+)", first_line)
    return f"R{match.group(1)}.{match.group(2)}" if match else first_line.strip() or None
