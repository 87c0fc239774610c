"""Each dataset reader on a tiny dataset written to disk in its mmseg layout, plus custom folders and bad input."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synseg_core.evaluation.benchmarks import list_benchmarks, load_benchmark
from synseg_core.evaluation.datasets import build_dataset, list_datasets, reduce_zero_label

IGNORE = 255
SHAPE = (6, 9)


def _write_label(path: Path, label: np.ndarray, palette: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(label.astype(np.uint8), mode="L")
    if palette:
        # VOC stores palette PNGs; the reader must return the indices, not the colours.
        img = img.convert("P")
        img.putpalette(np.random.default_rng(0).integers(0, 256, 768).astype(np.uint8).tobytes())
    img.save(path)


def _write_image(path: Path, seed: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (*SHAPE, 3), dtype=np.uint8)
    Image.fromarray(image).save(path, quality=100)
    return image


def _stored_label(seed: int, num_classes: int, reduce: bool) -> np.ndarray:
    """Stored values as a converted dataset holds them: 0..K (or 0..K-1) and some 255."""
    high = num_classes + 1 if reduce else num_classes
    label = np.random.default_rng(seed).integers(0, high, SHAPE)
    label[0, :3] = IGNORE
    label[1, 0] = 0
    return label


def _expected(stored: np.ndarray, reduce: bool) -> np.ndarray:
    if not reduce:
        return stored
    # Independent statement of mmseg's rule, element by element.
    return np.vectorize(lambda v: IGNORE if v in (0, IGNORE) else v - 1)(stored)


def _make_benchmark(root: Path, name: str, names: list[str], listed: list[str]) -> dict[str, np.ndarray]:
    spec = load_benchmark(name)
    lay = spec.layout
    stored = {}
    for i, n in enumerate(names):
        _write_image(root / lay.img_dir / f"{n}{lay.img_suffix}", i)
        stored[n] = _stored_label(i, spec.num_classes, lay.reduce_zero_label)
        _write_label(root / lay.ann_dir / f"{n}{lay.seg_map_suffix}", stored[n], palette=name.startswith("voc"))
    if lay.split is not None:
        (root / lay.split).parent.mkdir(parents=True, exist_ok=True)
        (root / lay.split).write_text("".join(f"{n}\n" for n in listed))
    return stored


@pytest.mark.parametrize("name", list_benchmarks())
def test_benchmark_reader_reads_its_layout(tmp_path, name):
    spec = load_benchmark(name)
    nested = name == "cityscapes19"  # Cityscapes keeps one folder per city
    names = ["frankfurt/a_000001", "lindau/b_000002", "lindau/b_000003"] if nested else ["2008_000001", "x2", "x3"]
    listed = names[:2] if spec.layout.split else names
    stored = _make_benchmark(tmp_path, name, names, listed)
    ds = build_dataset(name, tmp_path)
    assert ds.classes == spec.classes and ds.background_first == spec.background_first
    assert [s.name for s in ds.samples] == (listed if spec.layout.split else sorted(names))
    for sample in ds:
        np.testing.assert_array_equal(sample.label, _expected(stored[sample.name], spec.layout.reduce_zero_label))
        assert sample.image.shape == (*SHAPE, 3) and sample.image.dtype == np.uint8
        assert sample.label.max() == IGNORE
        assert sample.label[sample.label != IGNORE].max() < spec.num_classes


def test_png_images_are_read_exactly(tmp_path):
    names = ["frankfurt/a_000001"]
    _make_benchmark(tmp_path, "cityscapes19", names, names)
    expected = np.random.default_rng(0).integers(0, 256, (*SHAPE, 3), dtype=np.uint8)
    np.testing.assert_array_equal(build_dataset("cityscapes19", tmp_path)[0].image, expected)


def test_reduce_zero_label_rule():
    label = np.array([[0, 1, 2, 255, 59]])
    np.testing.assert_array_equal(reduce_zero_label(label), [[255, 0, 1, 255, 58]])


def _make_custom(root: Path, stems_images, stems_labels, classes=("floor", "chair", "person")) -> Path:
    for i, stem in enumerate(stems_images):
        _write_image(root / "images" / f"{stem}{'.png' if i % 2 else '.jpg'}", i)
    for i, stem in enumerate(stems_labels):
        _write_label(root / "annotations" / f"{stem}.png", _stored_label(i, len(classes), False), palette=False)
    classes_file = root / "classes.txt"
    classes_file.write_text("\n".join(classes) + "\n\n")
    return classes_file


def test_custom_reader_matches_by_stem(tmp_path):
    classes_file = _make_custom(tmp_path, ["b", "a", "c"], ["c", "a", "b"])
    ds = build_dataset("custom", tmp_path, classes_file=classes_file, background_first=True)
    assert ds.classes == ("floor", "chair", "person") and ds.background_first
    assert [s.name for s in ds.samples] == ["a", "b", "c"]
    assert [s.image.suffix for s in ds.samples] == [".png", ".jpg", ".jpg"]  # odd positions were written as PNG
    for sample in ds:
        assert sample.label.shape == SHAPE and sample.image.shape == (*SHAPE, 3)
        assert set(np.unique(sample.label)) <= {0, 1, 2, IGNORE}


def test_custom_mismatched_counts_name_the_unmatched_files(tmp_path):
    classes_file = _make_custom(tmp_path, ["a", "b", "c"], ["a", "b", "zz"])
    expected = r"3 images but 3 label maps.*without a label map: \[c\].*without an image: \[zz\]"
    with pytest.raises(ValueError, match=expected):
        build_dataset("custom", tmp_path, classes_file=classes_file)
    classes_file = _make_custom(tmp_path / "two", ["a", "b"], ["a"])
    with pytest.raises(ValueError, match=r"2 images but 1 label maps"):
        build_dataset("custom", tmp_path / "two", classes_file=classes_file)


def test_scan_layout_mismatched_counts(tmp_path):
    names = ["a", "b"]
    _make_benchmark(tmp_path, "ade150", names, names)
    (tmp_path / "images/validation/b.jpg").unlink()
    with pytest.raises(ValueError, match=r"1 images .* but 2 label maps"):
        build_dataset("ade150", tmp_path)


@pytest.mark.parametrize("missing", ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation/val.txt"])
def test_missing_folders_and_split_files(tmp_path, missing):
    _make_benchmark(tmp_path, "voc21", ["a"], ["a"])
    target = tmp_path / missing
    if target.is_dir():
        for f in target.iterdir():
            f.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(ValueError, match=f"{missing}.* does not exist.*voc21"):
        build_dataset("voc21", tmp_path)


def test_split_naming_a_missing_file(tmp_path):
    _make_benchmark(tmp_path, "voc21", ["a"], ["a", "ghost"])
    with pytest.raises(ValueError, match=r"2 listed files do not exist: .*ghost\.jpg.*ghost\.png"):
        build_dataset("voc21", tmp_path)


def test_bad_names_and_class_files(tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset 'voc2012'; valid names are \[.*'voc21'.*'custom'\]"):
        build_dataset("voc2012", tmp_path)
    assert set(list_datasets()) == {*list_benchmarks(), "custom"}
    with pytest.raises(ValueError, match="data root .*nowhere does not exist"):
        build_dataset("custom", tmp_path / "nowhere", classes_file=tmp_path / "c.txt")
    with pytest.raises(ValueError, match="needs a class-list file"):
        build_dataset("custom", tmp_path)
    with pytest.raises(ValueError, match="only used with dataset 'custom'"):
        build_dataset("voc21", tmp_path, classes_file=tmp_path / "c.txt")
    (tmp_path / "c.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(ValueError, match=r"more than once: \['cat'\]"):
        build_dataset("custom", tmp_path, classes_file=tmp_path / "c.txt")


def test_colour_label_maps_are_rejected(tmp_path):
    classes_file = _make_custom(tmp_path, ["a"], [])
    (tmp_path / "annotations").mkdir()
    Image.fromarray(np.zeros((*SHAPE, 3), np.uint8)).save(tmp_path / "annotations" / "a.png")
    ds = build_dataset("custom", tmp_path, classes_file=classes_file)
    with pytest.raises(ValueError, match="image mode 'RGB'.*single-channel"):
        ds[0]
