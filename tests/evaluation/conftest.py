"""Helpers that write tiny custom datasets (images/ + annotations/ + a class list) for evaluation tests."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_custom_dataset(root: Path, images: list[np.ndarray], labels: list[np.ndarray], classes: list[str]) -> Path:
    """Write PNG images and label maps matched by stem; return the class-list file."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(root / "images" / f"img{i:02d}.png")
        Image.fromarray(label.astype(np.uint8)).save(root / "annotations" / f"img{i:02d}.png")
    classes_file = root / "classes.txt"
    classes_file.write_text("\n".join(classes) + "\n")
    return classes_file


@pytest.fixture
def random_custom_dataset(tmp_path):
    """Three random 40x56 images with random labels over background/cat/dog (first row ignored)."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    labels = []
    for _ in images:
        label = rng.integers(0, 3, (40, 56))
        label[0] = 255
        labels.append(label)
    root = tmp_path / "data"
    return root, write_custom_dataset(root, images, labels, ["background", "cat", "dog"])


@pytest.fixture
def custom_writer():
    """The dataset writer, for tests that choose their own images and labels."""
    return write_custom_dataset
