"""Shared fixtures: tiny random-weight models (built offline in well under a second), tmpfs mounts and folders
that cannot be written."""
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from synseg_core import Segmenter, create_model


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return create_model("tiny-test")


@pytest.fixture
def tiny_segmenter(tiny_model):
    from synseg_core.deploy.backends.torch_backend import TorchBackend

    return Segmenter(tiny_model, TorchBackend(tiny_model))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


class Tmpfs:
    """Mounts tmpfs folders under a test's tmp_path (real file-system limits: size, read-only); needs root, so a
    test that asks for one where `mount` fails is skipped with the reason."""

    def __init__(self, root):
        self.root = root
        self.mounted = []

    def mount(self, name: str, size: str = "1m", read_only: bool = False):
        path = self.root / name
        path.mkdir(parents=True)
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                              text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        self.mounted.append(path)
        return path

    def resize(self, path, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)

    def unmount_all(self) -> None:
        for path in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def tmpfs(tmp_path):
    mounts = Tmpfs(tmp_path)
    yield mounts
    mounts.unmount_all()


# An output folder no process can write, whoever it runs as (root ignores permission bits), and a phrase of the
# error that must say why.
UNWRITABLE = {"under_a_file": "is a file, not a folder", "under_proc": "cannot be written",
              "read_only_mount": "Read-only file system"}


@pytest.fixture(params=sorted(UNWRITABLE))
def unwritable_dir(request, tmp_path, tmpfs):
    """(folder path, expected phrase) for each way a folder cannot be written."""
    if request.param == "under_a_file":
        (tmp_path / "a_file").write_text("not a folder\n")
        return tmp_path / "a_file" / "out", UNWRITABLE[request.param]
    if request.param == "under_proc":
        return Path("/proc") / f"synseg-test-{tmp_path.name}" / "out", UNWRITABLE[request.param]
    return tmpfs.mount("readonly", read_only=True) / "out", UNWRITABLE[request.param]
