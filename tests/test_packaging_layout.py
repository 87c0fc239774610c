"""What a robot installs: the runtime imports without the training packages, the requirement files pin exactly the
names pyproject.toml declares, and a built wheel holds the core and the node only (no proof package, no stage-1
weights, no file naming issues, the internal spec or dates)."""
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRAINING_ONLY = ("webdataset", "lemminflect", "matplotlib", "tensorboard")
STALE_TEXT = re.compile(rb"issue [0-9]|paper_spec|20[0-9][0-9]-[0-9][0-9]-")

# Runs in a fresh interpreter where the training-only packages cannot be imported at all, then segments an image
# with the runtime API and checks that none of them was even looked up successfully.
RUNTIME_SCRIPT = f"""
import importlib.abc, sys
BLOCKED = {TRAINING_ONLY!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is training-only")
sys.meta_path.insert(0, Block())
import numpy as np
import synseg_core, synseg_core.deploy.backends.factory, synseg_core.inference, synseg_core.model
import synseg_core.serving, synseg_core.deploy
from synseg_core import Segmenter
result = Segmenter.from_checkpoint("tiny-test").segment(np.zeros((40, 50, 3), np.uint8), ["sky", "grass"])
assert result.labels.shape == (40, 50), result.labels.shape
print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""


def _names(requirement_file: Path) -> dict[str, str]:
    """{normalised name: version} of a pinned requirements file."""
    pins = {}
    for line in requirement_file.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _normalise(names: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", n).lower() for n in names}


def test_the_runtime_imports_and_segments_without_the_training_packages():
    proc = subprocess.run([sys.executable, "-c", RUNTIME_SCRIPT], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_requirement_files_pin_what_pyproject_declares():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime, train = _names(REPO / "requirements" / "runtime.txt"), _names(REPO / "requirements" / "train.txt")
    lock = _names(REPO / "requirements" / "lock.txt")
    assert _normalise(project["dependencies"]) == set(runtime)
    extras = project["optional-dependencies"]
    assert _normalise(extras["train"]) == set(train)
    assert set(TRAINING_ONLY) <= set(train) and not set(TRAINING_ONLY) & set(runtime)
    assert {"eval", "dev", "test"} <= set(extras)
    for name, version in {**runtime, **train}.items():
        assert lock.get(name) == version, f"{name}=={version} is not what requirements/lock.txt pins"


@pytest.mark.slow
def test_the_wheel_holds_the_core_and_the_node_only(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    for package in ("synseg_core", "synseg_ros"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("synseg-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
        assert packages == {"synseg_core", "synseg_ros"}
        assert not [n for n in names if "proof" in n or "synthetic" in n or n.endswith("clip.safetensors")]
        assert "synseg_core/resources/demo/model/model.safetensors" in names  # the demo checkpoint stays
        stale = [n for n in names if not n.endswith(".dist-info/RECORD") and STALE_TEXT.search(archive.read(n))]
    assert not stale, f"files naming issues, paper_spec or dates: {stale}"
