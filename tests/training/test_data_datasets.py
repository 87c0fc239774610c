"""Caption datasets read real files: skip counts for bad data, COCO reading, clear errors for missing data."""
import json

import pytest
import torch

from synseg_core.data import (CaptionLoader, CocoCaptionDataset, JsonlCaptionDataset, SkipCounter, SkippedSample,
                              WebCaptionDataset)
from test_data_fixtures import (SIZE, jpeg_bytes, make_builder, truncate_inside, truncated_jpeg, write_manifest,
                                write_shard)


def _read_all(loader):
    counter, keys, batches = SkipCounter(), [], []
    for batch in loader:
        counter.update(batch.skipped)
        keys += batch.keys
        batches.append(batch)
    return counter, keys, batches


@pytest.fixture
def messy_manifest(tmp_path):
    """8 samples: 3 good (relative, nested, absolute path), 1 precomputed, and one of each kind of bad data."""
    (tmp_path / "img" / "sub").mkdir(parents=True)
    for name, seed in (("a.jpg", 1), ("sub/b.jpg", 2), ("c.jpg", 3), ("d.jpg", 4), ("nocat.jpg", 5)):
        (tmp_path / "img" / name).write_bytes(jpeg_bytes(seed))
    (tmp_path / "img" / "garbage.jpg").write_bytes(b"this is not an image")
    (tmp_path / "img" / "half.jpg").write_bytes(truncated_jpeg(6))
    return write_manifest(tmp_path / "train.jsonl", [
        {"image": "img/a.jpg", "caption": "two dogs playing in the snow"},
        {"image": "img/sub/b.jpg", "caption": "a red car on the road"},
        "",  # blank lines are not samples
        {"image": str(tmp_path / "img" / "c.jpg"), "caption": "a cat on a sofa"},
        {"image": "img/d.jpg", "categories": ["zebra", "grass"]},
        {"image": "img/missing.jpg", "caption": "a horse in a field"},
        {"image": "img/garbage.jpg", "caption": "a boat on the lake"},
        {"image": "img/half.jpg", "caption": "a bird in a tree"},
        '{"image": "img/a.jpg", "caption": ',  # a broken line
        {"image": "img/nocat.jpg", "caption": "a beautiful sunny day"},
    ])


def test_manifest_with_missing_and_corrupt_files_reads_through_with_right_skip_counts(messy_manifest):
    dataset = JsonlCaptionDataset(messy_manifest, make_builder())
    assert len(dataset) == 9
    counter, keys, batches = _read_all(CaptionLoader(dataset, batch_size=4, image_size=SIZE, shuffle=False))
    assert counter.as_dict() == {"corrupt_image": 2, "missing_file": 1, "no_caption": 0, "no_categories": 1,
                                 "bad_record": 1, "corrupt_shard": 0}
    assert sorted(keys) == ["0", "1", "2", "3"]
    by_key = {k: (c, cats) for b in batches for k, c, cats in zip(b.keys, b.captions,
                                                                    [b.categories_of(i) for i in range(len(b))])}
    assert by_key["0"] == ("two dogs playing in the snow", ["dog", "snow"])
    assert by_key["1"] == ("a red car on the road", ["car", "road"])
    assert by_key["2"] == ("a cat on a sofa", ["cat", "sofa"])
    assert by_key["3"] == ("", ["zebra", "grass"])  # precomputed categories, no caption needed
    assert all(b.images.shape[1:] == (3, SIZE, SIZE) for b in batches)


def test_manifest_items_say_why_they_were_skipped(messy_manifest):
    dataset = JsonlCaptionDataset(messy_manifest, make_builder())
    missing = dataset[4]
    assert isinstance(missing, SkippedSample) and missing.reason == "missing_file"
    assert missing.detail.endswith("img/missing.jpg")
    broken = dataset[7]
    assert (broken.reason, broken.key) == ("bad_record", "7")  # the key is the sample index, blank lines aside
    assert "Expecting value" in broken.detail
    assert dataset[5].reason == "corrupt_image" and "garbage.jpg" in dataset[5].detail


def test_shard_with_corrupt_images_and_a_truncated_shard_reads_through_with_right_skip_counts(tmp_path):
    good = write_shard(tmp_path / "00000.tar", [
        {"__key__": "k0", "jpg": jpeg_bytes(0), "txt": "a dog on the grass"},
        {"__key__": "k1", "jpg": b"\xff\xd8 not really a jpeg", "txt": "a cat on a chair"},
        {"__key__": "k2", "jpg": truncated_jpeg(2), "txt": "a car on the road"},
        {"__key__": "k3", "txt": "a horse with no image"},
        {"__key__": "k4", "jpg": jpeg_bytes(4), "json": {"caption": "a boat on the sea", "status": "success"}},
        {"__key__": "k5", "jpg": jpeg_bytes(5), "txt": "view from the top"},
        {"__key__": "k6", "jpg": jpeg_bytes(6), "json": {"status": "success"}},
        {"__key__": "k7", "jpg": jpeg_bytes(7), "json": {"categories": ["zebra"]}},
    ])
    broken = write_shard(tmp_path / "00001.tar", [
        {"__key__": f"t{i}", "jpg": jpeg_bytes(10 + i), "txt": "a bird in a tree"} for i in range(3)])
    truncate_inside(broken, "t1.jpg")  # t0 is intact, the rest of the shard is lost
    dataset = WebCaptionDataset(str(tmp_path / "{00000..00001}.tar"), make_builder(), shuffle_shards=False,
                                repeat=False)
    counter, keys, _ = _read_all(CaptionLoader(dataset, batch_size=3, image_size=SIZE))
    assert sorted(keys) == ["k0", "k4", "k7", "t0"]
    assert counter.as_dict() == {"corrupt_image": 2, "missing_file": 1, "no_caption": 1, "no_categories": 1,
                                 "bad_record": 0, "corrupt_shard": 1}


def test_coco_captions_reading(tmp_path):
    (tmp_path / "images").mkdir()
    for name, seed in (("000001.jpg", 1), ("000002.jpg", 2)):
        (tmp_path / "images" / name).write_bytes(jpeg_bytes(seed))
    coco = {
        "info": {}, "licenses": [],
        "images": [{"id": 1, "file_name": "000001.jpg", "height": 24, "width": 40},
                   {"id": 2, "file_name": "000002.jpg", "height": 24, "width": 40},
                   {"id": 3, "file_name": "000003.jpg", "height": 24, "width": 40}],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "A man riding a horse on a beach."},
            {"id": 11, "image_id": 1, "caption": "A person on a horse near the sea"},
            {"id": 12, "image_id": 2, "caption": "whatever", "categories": ["pizza", "plate"]},
            {"id": 13, "image_id": 99, "caption": "an annotation of an unknown image"},
            {"id": 14, "image_id": 3, "caption": "a dog in a park"},
        ],
    }
    path = tmp_path / "captions_train.json"
    path.write_text(json.dumps(coco))
    dataset = CocoCaptionDataset(path, tmp_path / "images", make_builder())
    assert len(dataset) == 5
    items = [dataset[i] for i in range(5)]
    assert [(s.key, s.caption, s.categories) for s in items[:3]] == [
        ("10", "A man riding a horse on a beach.", ["man", "horse", "beach"]),
        ("11", "A person on a horse near the sea", ["person", "horse", "sea"]),
        ("12", "whatever", ["pizza", "plate"]),
    ]
    assert items[0].image.shape == (3, SIZE, SIZE) and items[0].image.dtype == torch.float32
    assert (items[3].reason, items[3].key) == ("bad_record", "13")
    assert (items[4].reason, items[4].key) == ("missing_file", "14")


# --- empty or missing datasets fail before training, naming what is wrong


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"caption manifest not found: .*nope\.jsonl"):
        JsonlCaptionDataset(tmp_path / "nope.jsonl", make_builder())


def test_empty_manifest_is_a_clear_error(tmp_path):
    path = write_manifest(tmp_path / "empty.jsonl", ["", "   "])
    with pytest.raises(ValueError, match=r"empty\.jsonl contains no samples"):
        JsonlCaptionDataset(path, make_builder())


def test_manifest_whose_images_all_miss_is_a_clear_error(tmp_path):
    path = write_manifest(tmp_path / "m.jsonl", [{"image": f"gone{i}.jpg", "caption": "a dog"} for i in range(3)])
    with pytest.raises(FileNotFoundError, match=r"none of the first 3 images exist \(first: .*gone0\.jpg\)"):
        JsonlCaptionDataset(path, make_builder())


def test_missing_shards_are_a_clear_error(tmp_path):
    write_shard(tmp_path / "00000.tar", [{"__key__": "a", "jpg": jpeg_bytes(0), "txt": "a dog"}])
    with pytest.raises(FileNotFoundError, match=r"2 of 3 shards not found, e\.g\. \[.*00001\.tar"):
        WebCaptionDataset(str(tmp_path / "{00000..00002}.tar"), make_builder())


def test_empty_shard_folder_and_empty_shards_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"contains no \*\.tar files"):
        WebCaptionDataset(str(tmp_path), make_builder())
    write_shard(tmp_path / "00000.tar", [])
    with pytest.raises(ValueError, match=r"no readable sample in any of the 1 local shards"):
        WebCaptionDataset(str(tmp_path), make_builder())


@pytest.mark.parametrize("content, message", [
    ({"images": []}, r"needs 'annotations' and 'images' lists; found \['images'\]"),
    ({"images": [], "annotations": []}, "contains no annotations"),
    ("[1, 2", "is not valid JSON"),
])
def test_bad_coco_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "captions.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match=message):
        CocoCaptionDataset(path, tmp_path / "images", make_builder())


def test_missing_coco_file_or_image_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="COCO captions file not found"):
        CocoCaptionDataset(tmp_path / "nope.json", tmp_path, make_builder())
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"images": [], "annotations": [{"id": 1, "image_id": 1, "caption": "a dog"}]}))
    with pytest.raises(FileNotFoundError, match=r"COCO image root not found: .*imgs"):
        CocoCaptionDataset(path, tmp_path / "imgs", make_builder())
