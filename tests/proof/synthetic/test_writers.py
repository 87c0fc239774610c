"""Split writers: caption manifests, the custom evaluation layout (read back by the real evaluation reader)."""
import json

import cv2
import numpy as np
import pytest

from synseg_core.evaluation.datasets import build_dataset, read_class_file
from synseg_proof.synthetic import SceneGenerator, read_manifest, split_classes, write_split
from synseg_proof.synthetic.domains import DOMAINS, SOURCE_HELD_OUT_THINGS
from synseg_proof.synthetic.writers import BACKGROUND, CLASSES_FILE, INFO_FILE, MANIFEST_FILE

SIZE, COUNT = 48, 6


def _read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_caption_split_holds_images_and_captions_only(tmp_path):
    generator = SceneGenerator(["source", "target"], SIZE, seed=5)
    out = write_split(tmp_path / "caps", generator, COUNT, "captions", progress=False)
    records = read_manifest(out)
    assert len(records) == COUNT
    assert not (out / "annotations").exists() and not (out / CLASSES_FILE).exists()
    raw = [json.loads(line) for line in (out / MANIFEST_FILE).read_text().splitlines()]
    assert all(set(r) == {"image", "caption", "categories"} for r in raw)
    for i, record in enumerate(records):
        scene = generator.generate(i)
        assert np.array_equal(_read_rgb(record["image"]), scene.image)  # PNG is lossless
        assert (record["caption"], record["categories"]) == (scene.caption, scene.categories)
    info = json.loads((out / INFO_FILE).read_text())
    assert (info["seed"], info["count"], info["image_size"]) == (5, COUNT, SIZE)
    assert [d["name"] for d in info["domains"]] == ["source", "target"]


@pytest.mark.parametrize("label_mode", ["all", "things"])
def test_segmentation_split_reads_back_through_the_custom_evaluation_reader(tmp_path, label_mode):
    generator = SceneGenerator(["target"], SIZE, seed=8)
    out = write_split(tmp_path / "seg", generator, COUNT, "segmentation", label_mode, progress=False)
    classes = read_class_file(out / CLASSES_FILE)
    assert classes == split_classes([DOMAINS["target"]], label_mode)
    dataset = build_dataset("custom", out, classes_file=out / CLASSES_FILE, background_first=label_mode == "things")
    assert len(dataset) == COUNT
    for i in range(COUNT):
        sample, scene = dataset[i], generator.generate(i)
        assert np.array_equal(sample.image, scene.image)
        for category in scene.categories:
            expected = scene.mask(category)
            if label_mode == "things" and category in scene.stuff:
                assert np.all(sample.label[expected] == 0)
            else:
                assert np.array_equal(sample.label == classes.index(category), expected)
    if label_mode == "things":
        assert classes[0] == BACKGROUND and "grass" not in classes
    else:
        assert BACKGROUND not in classes and "grass" in classes and "red circle" in classes


def test_source_mask_split_never_lists_held_out_categories(tmp_path):
    out = write_split(tmp_path / "src", SceneGenerator(["source"], SIZE, 2), COUNT, "segmentation", progress=False)
    classes = read_class_file(out / CLASSES_FILE)
    assert not set(classes) & set(SOURCE_HELD_OUT_THINGS) and "snow" not in classes
    records = read_manifest(out)
    for record in records:
        labels = cv2.imread(record["annotation"], cv2.IMREAD_UNCHANGED)
        present = {classes[v] for v in np.unique(labels)}
        assert present == set(record["categories"])


def test_existing_split_and_bad_arguments_are_refused(tmp_path):
    generator = SceneGenerator(["target"], SIZE, seed=1)
    write_split(tmp_path / "a", generator, 2, "captions", progress=False)
    with pytest.raises(ValueError, match="already holds a split"):
        write_split(tmp_path / "a", generator, 2, "captions", progress=False)
    with pytest.raises(ValueError, match=r"'masks'.*\['captions', 'segmentation'\]"):
        write_split(tmp_path / "b", generator, 2, "masks", progress=False)
    with pytest.raises(ValueError, match=r"'voc'.*\['all', 'things'\]"):
        write_split(tmp_path / "c", generator, 2, "segmentation", "voc", progress=False)
    with pytest.raises(ValueError, match="count=0"):
        write_split(tmp_path / "d", generator, 0, "captions", progress=False)


def test_broken_manifests_are_reported_with_their_line(tmp_path):
    with pytest.raises(ValueError, match="no manifest.jsonl"):
        read_manifest(tmp_path)
    out = write_split(tmp_path / "s", SceneGenerator(["target"], SIZE, 1), 2, "captions", progress=False)
    lines = (out / MANIFEST_FILE).read_text().splitlines()
    (out / MANIFEST_FILE).write_text(lines[0] + "\n{not json\n")
    with pytest.raises(ValueError, match=r"manifest.jsonl:2 is not JSON"):
        read_manifest(out)
    (out / MANIFEST_FILE).write_text(lines[0] + "\n" + json.dumps({"image": "images/000001.png"}) + "\n")
    with pytest.raises(ValueError, match=r":2 lacks keys \['caption', 'categories'\]"):
        read_manifest(out)
    (out / "images" / "000000.png").unlink()
    (out / MANIFEST_FILE).write_text(lines[0] + "\n")
    with pytest.raises(ValueError, match="000000.png does not exist"):
        read_manifest(out)
