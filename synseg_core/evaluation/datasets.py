"""Readers for segmentation evaluation datasets: the mmseg on-disk layouts of the benchmarks and custom folders.

A benchmark (``voc21``, ``context59``, ...) is read exactly as mmseg's ``CustomDataset`` reads it: sample names
from the split file (or a recursive scan of the image folder), label maps next to them by suffix, and the
reduce-zero-label rule. A custom dataset is ``DIR/images/*.{jpg,jpeg,png}`` plus ``DIR/annotations/*.png``
matched by file stem, with class ids stored directly in the PNG (255 = ignore) and a class-list file.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from synseg_core.evaluation.benchmarks import DatasetLayout, list_benchmarks, load_benchmark
from synseg_core.evaluation.metrics import DEFAULT_IGNORE_INDEX

CUSTOM_DATASET = "custom"
CUSTOM_IMAGE_DIR = "images"
CUSTOM_ANNOTATION_DIR = "annotations"
CUSTOM_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CUSTOM_ANNOTATION_EXTENSION = ".png"
# PIL modes that hold one class id per pixel (palette indices, 8-bit grey, 16/32-bit integers).
_LABEL_MODES = frozenset({"P", "L", "I", "I;16"})
_MAX_LISTED = 5


@dataclass(frozen=True)
class SampleFiles:
    """Paths of one evaluation sample."""

    name: str
    image: Path
    label: Path


@dataclass(frozen=True)
class Sample:
    """One loaded sample.

    Attributes:
        name: sample id (file name without suffix, relative to the image folder).
        image: uint8 RGB image, shape [H, W, 3].
        label: int64 class ids, shape [H, W], values in [0, K) or the ignore index.
    """

    name: str
    image: np.ndarray
    label: np.ndarray


class SegmentationDataset(Sequence):
    """Images and label maps of one evaluation dataset, loaded lazily.

    Args:
        key: dataset name (``voc21``, ``custom``, ...).
        classes: class names in label order.
        background_first: class 0 is an explicit background class.
        samples: files of each sample.
        reduce_zero_label: apply mmseg's reduce-zero-label rule when reading labels.
        ignore_index: label value that no metric counts.
    """

    def __init__(
        self,
        key: str,
        classes: Sequence[str],
        background_first: bool,
        samples: Sequence[SampleFiles],
        reduce_zero_label: bool = False,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
    ) -> None:
        self.key = key
        self.classes = tuple(classes)
        self.background_first = background_first
        self.samples = list(samples)
        self.reduce_zero_label = reduce_zero_label
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        files = self.samples[index]
        image = read_image(files.image)
        label = read_label(files.label)
        if label.shape != image.shape[:2]:
            raise ValueError(f"label map {files.label} has shape {label.shape}, image {files.image} {image.shape[:2]}")
        if self.reduce_zero_label:
            label = reduce_zero_label(label, self.ignore_index)
        return Sample(name=files.name, image=image, label=label)


def read_image(path: Path) -> np.ndarray:
    """Read an image file as uint8 RGB ``[H, W, 3]``."""
    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


def read_label(path: Path) -> np.ndarray:
    """Read a single-channel label PNG (palette indices or grey values) as int64 ``[H, W]``.

    Raises:
        ValueError: the file is a colour image, not a class-id map.
    """
    with Image.open(path) as img:
        if img.mode not in _LABEL_MODES:
            raise ValueError(
                f"label map {path} has image mode {img.mode!r}; expected a single-channel class-id PNG "
                f"(one of modes {sorted(_LABEL_MODES)}), not a colour rendering"
            )
        # Palette PNGs (VOC) must be read as indices, which np.asarray of a 'P' image gives.
        return np.asarray(img).astype(np.int64)


def reduce_zero_label(label: np.ndarray, ignore_index: int = DEFAULT_IGNORE_INDEX) -> np.ndarray:
    """mmseg's reduce-zero-label: 0 -> ignore, k -> k-1, ignore stays ignore.

    Args:
        label: class ids, shape [H, W].
    """
    reduced = label - 1
    reduced[(label == 0) | (label == ignore_index)] = ignore_index
    return reduced


def list_datasets() -> list[str]:
    """Valid dataset names: the shipped benchmarks plus ``custom``."""
    return [*list_benchmarks(), CUSTOM_DATASET]


def build_dataset(
    name: str,
    data_root: str | Path,
    *,
    classes_file: str | Path | None = None,
    background_first: bool = False,
) -> SegmentationDataset:
    """Build the reader of a dataset.

    Args:
        name: one of :func:`list_datasets`.
        data_root: dataset root folder (the mmseg ``data_root`` of a benchmark, or the custom folder).
        classes_file: class-list file, one name per line; required for ``custom``, not allowed otherwise.
        background_first: for ``custom``: the first class is background.

    Raises:
        ValueError: unknown name, missing or superfluous class file, missing folders or files, or images
            and label maps that do not pair up.
    """
    root = Path(data_root)
    valid = list_datasets()
    if name not in valid:
        raise ValueError(f"unknown dataset {name!r}; valid names are {valid}")
    _require_dir(root, "data root", name)
    if name == CUSTOM_DATASET:
        if classes_file is None:
            raise ValueError("dataset 'custom' needs a class-list file (one class name per line)")
        classes = read_class_file(classes_file)
        samples = _custom_samples(root)
        return SegmentationDataset(name, classes, background_first, samples)
    if classes_file is not None:
        raise ValueError(f"a class-list file is only used with dataset 'custom'; {name!r} ships its class list")
    spec = load_benchmark(name)
    samples = _mmseg_samples(root, spec.layout, name)
    return SegmentationDataset(
        name, spec.classes, spec.background_first, samples, spec.layout.reduce_zero_label, spec.layout.ignore_index
    )


def read_class_file(path: str | Path) -> list[str]:
    """Class names from a text file, one per line (blank lines skipped, surrounding spaces stripped).

    Raises:
        ValueError: the file is missing, empty or lists a name twice.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"class-list file {path} does not exist")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"class-list file {path} lists no class names")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"class-list file {path} lists these names more than once: {repeated}")
    return names


def _require_dir(path: Path, what: str, dataset: str) -> None:
    if not path.is_dir():
        raise ValueError(f"{what} {path} does not exist (dataset {dataset!r})")


def _listed(items: Sequence[str]) -> str:
    head = ", ".join(items[:_MAX_LISTED])
    return head + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _mmseg_samples(root: Path, layout: DatasetLayout, dataset: str) -> list[SampleFiles]:
    img_dir, ann_dir = root / layout.img_dir, root / layout.ann_dir
    _require_dir(img_dir, "image folder", dataset)
    _require_dir(ann_dir, "annotation folder", dataset)
    if layout.split is not None:
        split = root / layout.split
        if not split.is_file():
            raise ValueError(f"split file {split} does not exist (dataset {dataset!r})")
        names = [line.strip() for line in split.read_text().splitlines() if line.strip()]
    else:
        # mmseg scans recursively (Cityscapes keeps per-city subfolders) and sorts by file name.
        names = sorted(
            str(p.relative_to(img_dir))[: -len(layout.img_suffix)]
            for p in img_dir.rglob(f"*{layout.img_suffix}")
            if p.is_file()
        )
        n_labels = sum(1 for p in ann_dir.rglob(f"*{layout.seg_map_suffix}") if p.is_file())
        if n_labels != len(names):
            raise ValueError(
                f"dataset {dataset!r}: {len(names)} images ({img_dir}/**/*{layout.img_suffix}) but {n_labels} "
                f"label maps ({ann_dir}/**/*{layout.seg_map_suffix}); every image needs exactly one label map"
            )
    if not names:
        raise ValueError(f"dataset {dataset!r}: no samples found under {img_dir}")
    samples = [
        SampleFiles(n, img_dir / f"{n}{layout.img_suffix}", ann_dir / f"{n}{layout.seg_map_suffix}") for n in names
    ]
    _require_files(samples, dataset)
    return samples


def _require_files(samples: Sequence[SampleFiles], dataset: str) -> None:
    missing = [str(p) for s in samples for p in (s.image, s.label) if not p.is_file()]
    if missing:
        raise ValueError(f"dataset {dataset!r}: {len(missing)} listed files do not exist: {_listed(missing)}")


def _custom_samples(root: Path) -> list[SampleFiles]:
    img_dir, ann_dir = root / CUSTOM_IMAGE_DIR, root / CUSTOM_ANNOTATION_DIR
    _require_dir(img_dir, "image folder", CUSTOM_DATASET)
    _require_dir(ann_dir, "annotation folder", CUSTOM_DATASET)
    images = _by_stem(p for p in img_dir.iterdir() if p.suffix.lower() in CUSTOM_IMAGE_EXTENSIONS)
    labels = _by_stem(p for p in ann_dir.iterdir() if p.suffix.lower() == CUSTOM_ANNOTATION_EXTENSION)
    no_label, no_image = sorted(set(images) - set(labels)), sorted(set(labels) - set(images))
    if no_label or no_image:
        raise ValueError(
            f"custom dataset {root}: {len(images)} images but {len(labels)} label maps, matched by file stem; "
            f"images without a label map: [{_listed(no_label)}]; label maps without an image: [{_listed(no_image)}]"
        )
    if not images:
        raise ValueError(f"custom dataset {root}: no images ({', '.join(CUSTOM_IMAGE_EXTENSIONS)}) in {img_dir}")
    return [SampleFiles(stem, images[stem], labels[stem]) for stem in sorted(images)]


def _by_stem(paths: Iterable[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(paths):
        if path.stem in found:
            raise ValueError(f"two files share the stem {path.stem!r}: {found[path.stem]} and {path}")
        found[path.stem] = path
    return found
