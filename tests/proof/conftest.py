"""Fixtures of the proof tests: small generated splits (real files written by the synthetic writer) and a folder
of photos."""
import shutil

import pytest

from synseg_proof.demo_assets import write_demo_frames
from synseg_proof.synthetic import SceneGenerator, write_split

IMAGE_SIZE = 64


@pytest.fixture(scope="session")
def source_split(tmp_path_factory):
    """Source-domain split with masks of every category (things + stuff)."""
    return write_split(tmp_path_factory.mktemp("proof") / "source", SceneGenerator(["source"], IMAGE_SIZE, 5), 12,
                       "segmentation", "all", progress=False)


@pytest.fixture(scope="session")
def target_things_split(tmp_path_factory):
    """Target-domain split in the VOC-like layout (background + things), as the proof evaluates."""
    return write_split(tmp_path_factory.mktemp("proof") / "target", SceneGenerator(["target"], IMAGE_SIZE, 6), 6,
                       "segmentation", "things", progress=False)


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """A folder of two plain photos (generated frames without their labels)."""
    frames = write_demo_frames(tmp_path_factory.mktemp("photos") / "f", ["red circle", "blue square"], 2, 64, seed=3)
    folder = frames.parent / "photos"
    shutil.copytree(frames / "images", folder)
    return folder
