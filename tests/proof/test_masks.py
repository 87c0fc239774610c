"""Mask pairs for stage 2: every mask is the annotation's pixels of its category, absent categories are really
absent (all-zero masks), batches are a pure function of (seed, step), and caption splits are refused."""
import numpy as np
import pytest

from synseg_core.config import IMAGENET_MEAN, IMAGENET_STD
from synseg_core.evaluation.datasets import read_label
from synseg_proof.masks import MaskPairs, split_vocabulary
from synseg_proof.synthetic import SceneGenerator, read_manifest, write_split
from synseg_proof.synthetic.domains import SOURCE_HELD_OUT_THINGS


def _pairs(split, **kw):
    settings = dict(image_size=64, mean=IMAGENET_MEAN, std=IMAGENET_STD, absent_per_image=3, hflip_prob=0.0, seed=1)
    settings.update(kw)
    return MaskPairs(split, **settings)


def test_masks_are_the_annotation_pixels_and_absent_categories_are_empty(source_split):
    pairs = _pairs(source_split)
    records = read_manifest(source_split)
    batch = pairs.batch(step=3, batch_size=4)
    assert batch.images.shape == (4, 3, 64, 64) and batch.masks.shape == (len(batch.categories), 64, 64)
    # Which image each batch row is: match the normalised pixels back to the split's images.
    chosen = np.random.default_rng([1, 3]).choice(len(records), size=4, replace=False)
    for m, (name, b, present) in enumerate(zip(batch.categories, batch.owner.tolist(), batch.present.tolist())):
        record = records[chosen[b]]
        label = read_label(record["annotation"])
        assert present == (name in record["categories"])
        expected = label == pairs.classes.index(name)
        np.testing.assert_array_equal(batch.masks[m].numpy().astype(bool), expected)
        assert expected.any() == present
    counts = np.bincount(batch.owner.numpy(), minlength=4)
    absent = (~batch.present).numpy()
    assert all(np.sum(absent[batch.owner.numpy() == b]) == 3 for b in range(4)) and counts.min() >= 4


def test_the_source_vocabulary_leaves_the_held_out_categories_out(source_split):
    classes, vocabulary = split_vocabulary(source_split)
    assert not set(SOURCE_HELD_OUT_THINGS) & set(vocabulary)
    batch = _pairs(source_split).batch(0, 12)
    assert not set(SOURCE_HELD_OUT_THINGS) & set(batch.categories)


def test_batches_depend_only_on_seed_and_step(source_split):
    a, b = _pairs(source_split, hflip_prob=0.5), _pairs(source_split, hflip_prob=0.5)
    first, again = a.batch(7, 5), b.batch(7, 5)
    assert first.categories == again.categories
    assert np.array_equal(first.images.numpy(), again.images.numpy())
    assert first.categories != a.batch(8, 5).categories or not np.array_equal(first.images, a.batch(8, 5).images)


def test_things_splits_give_masks_of_things_only(target_things_split):
    classes, vocabulary = split_vocabulary(target_things_split)
    assert classes[0] == "background" and "background" not in vocabulary and "grass" not in vocabulary
    batch = _pairs(target_things_split, absent_per_image=0).batch(0, 6)
    assert batch.present.all() and not {"grass", "water", "sky"} & set(batch.categories)


def test_caption_splits_and_bad_settings_are_refused(tmp_path, source_split):
    captions = write_split(tmp_path / "caps", SceneGenerator(["source"], 32, 1), 2, "captions", progress=False)
    with pytest.raises(ValueError, match="needs a 'segmentation' split"):
        _pairs(captions)
    with pytest.raises(ValueError, match="no split.json"):
        _pairs(tmp_path)
    with pytest.raises(ValueError, match="absent_per_image"):
        _pairs(source_split, absent_per_image=-1)
    with pytest.raises(ValueError, match="hflip_prob"):
        _pairs(source_split, hflip_prob=2.0)
