"""Category extraction from captions: the offline lexicon matcher, the stop-list, <PERSON>, K, modifiers."""
import pickle

import pytest

from synseg_core.config import ConfigError, from_dict
from synseg_core.data.categories import CategoryConfig, CategoryExtractor
from synseg_core.data.spacy_matcher import spacy_available

LEXICON = CategoryConfig(backend="lexicon", max_categories=8, selection="first")

# Real-looking captions (CC3M/CC12M/COCO style) and the nouns a person would list for them, in caption order.
CAPTIONS = [
    ("two dogs playing in the snow next to a red car", ["dog", "snow", "car"]),
    ("A man riding a wave on top of a surfboard.", ["man", "wave", "surfboard"]),
    ("a cat sleeping on a laptop keyboard", ["cat", "keyboard"]),
    ("Children play on the beach at sunset", ["child", "beach"]),
    ("a plate of food with broccoli and carrots", ["plate", "food", "broccoli", "carrot"]),
    ("A giraffe standing next to a tree in a zoo", ["giraffe", "tree"]),
    ("old wooden bench in the park under the trees", ["bench", "park", "tree"]),
    ("a herd of sheep grazing on a green hillside field", ["sheep", "field"]),
    ("Vintage red bicycle leaning against a brick wall", ["bicycle", "wall"]),
    ("a bowl of fresh strawberries on a wooden table", ["bowl", "strawberry", "table"]),
    ("Aerial view of a river flowing through the forest", ["river", "forest"]),
    ("young woman with sunglasses and a hat on the beach", ["woman", "sunglasses", "hat", "beach"]),
    ("The living room has a sofa, a coffee table and a fireplace.", ["living room", "sofa", "coffee table",
                                                                    "fireplace"]),
    ("A double decker bus driving down a city street", ["bus", "street"]),
    ("ripe tomatoes and potatoes in a basket", ["tomato", "potato", "basket"]),
    ("a horse grazing in a meadow with mountains behind it", ["horse", "meadow", "mountain"]),
    ("The kitchen has a stove, a refrigerator and a microwave oven.", ["kitchen", "stove", "refrigerator",
                                                                     "oven"]),
    ("a small boat on the lake surrounded by pine trees", ["boat", "lake", "tree"]),
    ("teddy bears sitting on a shelf", ["teddy bear", "shelf"]),
    ("Traffic lights and street signs at a busy intersection", ["traffic light", "sign"]),
    ("A group of people standing around a kitchen island", ["person", "kitchen island"]),
    ("an orange on a wooden table", ["orange", "table"]),
    ("the car is orange", ["car"]),
    ("they water the plants every morning", ["plant"]),
    ("the dog's ball lies on the grass", ["dog", "ball", "grass"]),
    ("A light blue car is parked near the stone bridge.", ["car", "bridge"]),
    ("leaves falling from a maple tree in autumn", ["leaf", "tree"]),
    ("a chest of drawers next to the bed", ["chest of drawers", "bed"]),
    ("Stock photo of a woman wearing shorts and a t-shirt", ["woman", "shorts", "shirt"]),
    ("a short man in front of a building", ["man", "building"]),
    ("a parking meter two feet from the curb", ["parking meter"]),  # "meter" and "feet" alone are units
    ("Airplanes parked at the airport runway", ["airplane", "runway"]),
    ("a blue square and a red circle on sand", ["square", "circle", "sand"]),
    ("Close-up of a young woman drinking coffee in a Café", ["woman", "coffee", "cafe"]),
    ("Red roses in a glass vase on the table", ["rose", "vase", "table"]),
    ("Orange juice and oranges on a table", ["juice", "orange", "table"]),
    ("Hand-drawn vector illustration of a cartoon dog", ["dog"]),
    ("3 cats & 2 dogs in the living room", ["cat", "dog", "living room"]),
]


@pytest.fixture(scope="module")
def lexicon_extractor():
    return CategoryExtractor(LEXICON)


@pytest.mark.parametrize("caption, expected", CAPTIONS, ids=[c for c, _ in CAPTIONS])
def test_lexicon_extracts_expected_nouns(lexicon_extractor, caption, expected):
    assert lexicon_extractor(caption) == expected


def test_colour_adjectives_are_not_categories(lexicon_extractor):
    assert lexicon_extractor("red and blue") == []
    assert lexicon_extractor("a bright yellow sky") == ["sky"]


@pytest.mark.parametrize("caption", [
    "view from the left side of the corner",
    "stock illustration: vector background design",
    "a pair of shoes",
    "photo taken at night, one day last year",
    "the top of the picture, 5 inches from the bottom",
])
def test_stop_list_words_are_never_categories(caption):
    extractor = CategoryExtractor(LEXICON)
    found = extractor(caption)
    for word in ("left", "side", "corner", "illustration", "vector", "background", "design", "pair", "photo",
                 "night", "day", "year", "top", "picture", "inch", "bottom", "view", "stock"):
        assert word not in found
    assert found == (["shoe"] if "shoes" in caption else [])


def test_stop_list_wins_over_vocabulary_and_extra_stop_words(tmp_path):
    extra = tmp_path / "nouns.txt"
    extra.write_text("# extra nouns\nbackground\nrobot: droid\n")
    cfg = CategoryConfig(backend="lexicon", selection="first", extra_vocabulary=(str(extra),))
    assert CategoryExtractor(cfg)("a robot and a droid on a white background") == ["robot"]
    cfg = CategoryConfig(backend="lexicon", selection="first", extra_vocabulary=(str(extra),),
                         extra_stop_words=("robot",))
    assert CategoryExtractor(cfg)("a robot next to a dog") == ["dog"]


def test_conflicting_vocabulary_entry_is_a_clear_error(tmp_path):
    extra = tmp_path / "nouns.txt"
    extra.write_text("canine: dog\n")
    with pytest.raises(ValueError, match=r"'dog' would mean 'canine'.*already maps it to 'dog'"):
        CategoryExtractor(CategoryConfig(backend="lexicon", extra_vocabulary=(str(extra),)))


def test_missing_vocabulary_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        CategoryExtractor(CategoryConfig(backend="lexicon", extra_vocabulary=(str(tmp_path / "nope.txt"),)))


@pytest.mark.parametrize("caption, expected", [
    ("<PERSON> walks her dog in the park", ["person", "dog", "park"]),
    ("portrait of <PERSON> and <PERSON>", ["person"]),
    ("actor <person> arrives at the premiere", ["person"]),
])
def test_person_placeholder_maps_to_person(lexicon_extractor, caption, expected):
    assert lexicon_extractor(caption) == expected


def test_person_placeholder_and_category_are_configurable():
    cfg = CategoryConfig(backend="lexicon", person_token="[NAME]", person_category="human")
    assert CategoryExtractor(cfg)("[NAME] on a horse") == ["human", "horse"]


CROWDED = "a dog, a cat, a horse, a cow, a sheep and a goat on the grass"
CROWDED_ALL = ["dog", "cat", "horse", "cow", "sheep", "goat", "grass"]


def test_k_limit_first_keeps_caption_order():
    extractor = CategoryExtractor(CategoryConfig(backend="lexicon", max_categories=3, selection="first"))
    assert extractor.candidates(CROWDED) == CROWDED_ALL
    assert extractor(CROWDED) == ["dog", "cat", "horse"]


def test_k_limit_random_is_seeded_ordered_and_varies_with_key():
    extractor = CategoryExtractor(CategoryConfig(backend="lexicon", max_categories=3, selection="random", seed=7))
    picks = {tuple(extractor(CROWDED, key=f"epoch{e}")) for e in range(20)}
    for pick in picks:
        assert len(pick) == 3 and len(set(pick)) == 3
        assert [CROWDED_ALL.index(c) for c in pick] == sorted(CROWDED_ALL.index(c) for c in pick)
    assert len(picks) > 1
    assert extractor(CROWDED, key="x") == extractor(CROWDED, key="x")
    other_seed = CategoryExtractor(CategoryConfig(backend="lexicon", max_categories=3, seed=8))
    assert any(other_seed(CROWDED, key=f"k{i}") != extractor(CROWDED, key=f"k{i}") for i in range(10))


def test_select_dedupes_precomputed_lists():
    extractor = CategoryExtractor(CategoryConfig(backend="lexicon", max_categories=2, selection="first"))
    assert extractor.select(["car", "car", "road", "tree"]) == ["car", "road"]


@pytest.mark.parametrize("caption", ["", "   ", "12345 !!!", "a beautiful sunny day", "view from the top"])
def test_captions_without_categories_give_an_empty_list(lexicon_extractor, caption):
    assert lexicon_extractor(caption) == []


@pytest.mark.parametrize("caption, expected", [
    ("two blue squares and an orange circle on grass", ["blue square", "orange circle", "grass"]),
    ("a red circle, a green triangle and a yellow star in the water", ["red circle", "green triangle",
                                                                      "yellow star", "water"]),
    ("A purple cross above the sand", ["purple cross", "sand"]),
    ("three purple crosses on the snow, a red hexagon next to the road", ["purple cross", "snow",
                                                                         "red hexagon", "road"]),
    ("a blue circle and a red circle under the sky", ["blue circle", "red circle", "sky"]),
    ("a light blue car near the stone bridge", ["light blue car", "stone bridge"]),
])
def test_keep_modifiers_keeps_colour_qualified_phrases(caption, expected):
    cfg = CategoryConfig(backend="lexicon", keep_modifiers=True, max_categories=8, selection="first")
    assert CategoryExtractor(cfg)(caption) == expected


def test_keep_modifiers_off_merges_colours_to_the_head(lexicon_extractor):
    assert lexicon_extractor("a blue circle and a red circle under the sky") == ["circle", "sky"]


def test_extractor_pickles_for_dataloader_workers(lexicon_extractor):
    clone = pickle.loads(pickle.dumps(lexicon_extractor))
    assert clone(CAPTIONS[0][0]) == lexicon_extractor(CAPTIONS[0][0])


def test_auto_backend_uses_lexicon_without_spacy():
    if spacy_available():
        pytest.skip("spaCy is installed here; the auto backend picks it")
    assert CategoryExtractor(CategoryConfig(backend="auto")).backend == "lexicon"


def test_spacy_backend_without_spacy_is_a_clear_error():
    if spacy_available():
        pytest.skip("spaCy is installed here")
    with pytest.raises(ImportError, match=r"pip install spacy && python -m spacy download en_core_web_sm"):
        CategoryExtractor(CategoryConfig(backend="spacy"))


def test_non_string_caption_is_a_clear_error(lexicon_extractor):
    with pytest.raises(TypeError, match="caption must be a string, got NoneType"):
        lexicon_extractor(None)


@pytest.mark.parametrize("data, message", [
    ({"max_categories": 0}, "max_categories must be at least 1, got 0"),
    ({"backend": "nltk"}, r"'nltk' is not one of \['auto', 'spacy', 'lexicon'\]"),
    ({"selection": "all"}, r"'all' is not one of \['first', 'random'\]"),
    ({"max_categoris": 4}, r"unknown key\(s\) \['max_categoris'\]; valid keys: \['max_categories'"),
])
def test_config_errors_name_the_bad_value(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(CategoryConfig, data)
