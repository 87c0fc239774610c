"""Scene generator: determinism, caption / pixel consistency, domain differences and bad settings."""
import dataclasses
import re

import cv2
import numpy as np
import pytest

from synseg_proof.synthetic import (DOMAINS, SceneGenerator, all_stuff_categories, all_thing_categories, get_domain,
                                   generate_scene)
from synseg_proof.synthetic.captions import NUMBER_WORDS, make_caption, thing_phrase
from synseg_proof.synthetic.domains import SOURCE_HELD_OUT_THINGS
from synseg_proof.synthetic.vocabulary import COLOURS, SHAPE_PLURALS

SIZE = 64
COUNT = 40


def _scenes(domain: str, seed: int = 3, count: int = COUNT):
    generator = SceneGenerator([domain], SIZE, seed)
    return [generator.generate(i) for i in range(count)]


def test_same_seed_and_index_give_identical_scenes_in_any_order():
    a = SceneGenerator(["source", "target"], SIZE, seed=11)
    b = SceneGenerator(["source", "target"], SIZE, seed=11)
    for i in (7, 0, 3):  # b generates out of order and skips indices
        sa, sb = a.generate(i), b.generate(i)
        assert np.array_equal(sa.image, sb.image) and np.array_equal(sa.segmentation, sb.segmentation)
        assert (sa.caption, sa.categories, sa.domain) == (sb.caption, sb.categories, sb.domain)


def test_other_seed_or_index_gives_other_scenes():
    base = SceneGenerator(["target"], SIZE, seed=1)
    other_seed = SceneGenerator(["target"], SIZE, seed=2)
    assert not np.array_equal(base.generate(0).image, base.generate(1).image)
    assert not np.array_equal(base.generate(0).image, other_seed.generate(0).image)


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_every_category_has_pixels_and_every_object_is_in_the_caption(domain):
    for scene in _scenes(domain):
        assert scene.image.shape == (SIZE, SIZE, 3) and scene.image.dtype == np.uint8
        assert set(np.unique(scene.segmentation)) == set(range(len(scene.categories)))  # no id without a category
        counts = {c: sum(o.category == c for o in scene.objects) for c in {o.category for o in scene.objects}}
        assert set(scene.categories[:len(counts)]) == set(counts) and scene.categories[len(counts):] == scene.stuff
        for category, n in counts.items():
            assert thing_phrase(category, n) in scene.caption, (category, n, scene.caption)
            assert scene.mask(category).sum() > 0
        for stuff in scene.stuff:
            assert re.search(rf"\b{stuff}\b", scene.caption) and scene.mask(stuff).sum() > 0
        # Nothing absent is mentioned: no other thing name (singular or plural) and no other stuff word.
        for thing in set(all_thing_categories()) - set(counts):
            colour, shape = thing.split()
            assert not re.search(rf"\b{colour} ({shape}|{SHAPE_PLURALS[shape]})\b", scene.caption), scene.caption
        for stuff in set(all_stuff_categories()) - set(scene.stuff):
            assert not re.search(rf"\b{stuff}\b", scene.caption), scene.caption


def test_objects_are_filled_with_their_colour_inside_a_dark_outline():
    domain = DOMAINS["source"]
    scene = _scenes("source", count=1)[0]
    outline = np.all(scene.image == domain.outline_rgb, axis=-1)
    width = round(domain.outline_width * SIZE)
    for category in {o.category for o in scene.objects}:
        mask = scene.mask(category)
        interior = cv2.erode(mask.astype(np.uint8), np.ones((2 * width + 1,) * 2, np.uint8)).astype(bool)
        colour = scene.image[interior].astype(float).mean(0)
        expected = np.array(COLOURS[category.split()[0]], dtype=float)
        assert np.abs(colour - expected).max() <= domain.colour_jitter + 1
        ring = mask & ~interior
        assert outline[ring].mean() > 0.9 and not outline[interior].any()  # contour pixels are labelled object
    without = SceneGenerator([dataclasses.replace(domain, outline_width=0.0)], SIZE, 3).generate(0)
    assert np.array_equal(without.segmentation, scene.segmentation)
    assert not np.all(without.image == domain.outline_rgb, axis=-1).any()


def test_domains_differ_in_vocabulary_backgrounds_and_sizes():
    source, target = _scenes("source"), _scenes("target")
    source_things = {o.category for s in source for o in s.objects}
    target_stuff = {x for s in target for x in s.stuff}
    assert not source_things & set(SOURCE_HELD_OUT_THINGS)
    assert {x for s in source for x in s.stuff} <= set(DOMAINS["source"].stuff)
    assert target_stuff - set(DOMAINS["source"].stuff), "target must show stuff the source never has"
    assert all(len(s.stuff) == 1 for s in source) and any(len(s.stuff) == 2 for s in target)
    # Same style (textured stuff) in both: the gap is content, not rendering.
    spread = lambda scenes: np.mean([s.image[s.mask(s.stuff[0])].std(0).mean() for s in scenes])
    assert spread(source) > 1.0 and spread(target) > 1.0
    mean_radius = lambda scenes: np.mean([o.radius for s in scenes for o in s.objects])
    assert mean_radius(source) > mean_radius(target)
    assert max(len(s.objects) for s in target) > max(len(s.objects) for s in source)


def test_held_out_things_appear_in_the_target_domain():
    seen = {o.category for s in _scenes("target", count=200) for o in s.objects}
    assert set(SOURCE_HELD_OUT_THINGS) <= seen


def test_label_map_maps_categories_to_class_ids():
    scene = _scenes("target", count=1)[0]
    ids = {c: 10 + i for i, c in enumerate(reversed(scene.categories))}
    labels = scene.label_map(ids)
    for c in scene.categories:
        assert np.array_equal(labels == ids[c], scene.mask(c))
    with pytest.raises(ValueError, match=scene.categories[0]):
        scene.label_map({c: 1 for c in scene.categories[1:]})


def test_captions_phrase_counts_and_articles():
    assert thing_phrase("orange star", 1) == "an orange star"
    assert thing_phrase("blue cross", 2) == "two blue crosses"
    with pytest.raises(ValueError, match="counts 1"):
        thing_phrase("red circle", max(NUMBER_WORDS) + 1)
    with pytest.raises(ValueError, match="shape in"):
        thing_phrase("red hexagon", 1)
    with pytest.raises(ValueError, match="at least one thing"):
        make_caption([], ["grass"], np.random.default_rng(0))


def test_unknown_domain_and_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"'forest'.*\['source', 'target'\]"):
        get_domain("forest")
    with pytest.raises(ValueError, match="lava"):
        dataclasses.replace(DOMAINS["target"], stuff=("grass", "lava"))
    with pytest.raises(ValueError, match="num_objects"):
        dataclasses.replace(DOMAINS["target"], num_objects=(3, 1))
    with pytest.raises(ValueError, match="excluded_things"):
        dataclasses.replace(DOMAINS["target"], excluded_things=("red hexagon",))
    with pytest.raises(ValueError, match="image_size"):
        SceneGenerator(["target"], 8, 0)


def test_impossible_placement_raises_a_clear_error():
    crowded = dataclasses.replace(DOMAINS["target"], num_objects=(6, 6), object_size=(1.0, 1.0), max_tries=3)
    with pytest.raises(RuntimeError, match="could not place 6 objects"):
        generate_scene(crowded, (SIZE, SIZE), np.random.default_rng(0))
