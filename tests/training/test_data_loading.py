"""Batching, per-rank splitting and exact resumption of caption datasets; augmentation; data config errors."""
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from synseg_core.config import ConfigError, from_dict
from synseg_core.data import (AugmentConfig, CaptionCollator, CaptionDataConfig, CaptionLoader, CaptionSample,
                              JsonlCaptionDataset, ResumableDistributedSampler, SkipCounter, SkippedSample,
                              TrainTransform, WebCaptionDataset, build_caption_dataset)
from test_data_fixtures import MEAN, SIZE, STD, caption_shards, jpeg_bytes, make_builder, write_manifest


def _sample(key, categories, value=0.0):
    return CaptionSample(torch.full((3, SIZE, SIZE), value), f"caption {key}", categories, key)


def test_collate_shapes_owner_and_skip_counts():
    items = [_sample("a", ["dog", "snow", "car"], 1.0), SkippedSample("corrupt_image", "x"),
             _sample("b", ["cat"], 2.0), SkippedSample("corrupt_image", "y"), SkippedSample("no_categories", "z"),
             _sample("c", ["tree", "sky"], 3.0)]
    batch = CaptionCollator(SIZE)(items)
    assert batch.images.shape == (3, 3, SIZE, SIZE) and batch.images.dtype == torch.float32
    assert batch.images[:, 0, 0, 0].tolist() == [1.0, 2.0, 3.0]
    assert batch.categories == ["dog", "snow", "car", "cat", "tree", "sky"]
    assert batch.owner.dtype == torch.int64 and batch.owner.tolist() == [0, 0, 0, 1, 2, 2]
    assert batch.captions == ["caption a", "caption b", "caption c"] and batch.keys == ["a", "b", "c"]
    assert batch.skipped == {"corrupt_image": 2, "no_categories": 1}
    assert batch.categories_of(2) == ["tree", "sky"] and len(batch) == 3


def test_collate_of_an_all_skipped_batch_is_empty_with_the_right_shapes():
    batch = CaptionCollator(SIZE)([SkippedSample("missing_file", "a")])
    assert batch.images.shape == (0, 3, SIZE, SIZE) and batch.owner.shape == (0,) and batch.categories == []
    assert batch.skipped == {"missing_file": 1}


def test_collate_rejects_foreign_items():
    with pytest.raises(TypeError, match="CaptionSample/SkippedSample items, got tuple"):
        CaptionCollator(SIZE)([_sample("a", ["dog"]), ("image", "caption")])


def test_skip_counter_sums_and_round_trips_through_a_tensor():
    counter = SkipCounter({"corrupt_image": 2})
    counter.update({"missing_file": 1, "corrupt_image": 1})
    assert counter.total == 4 and counter.summary() == "skipped 4 samples: corrupt_image=3, missing_file=1"
    assert SkipCounter.from_tensor(counter.to_tensor() * 2).as_dict()["corrupt_image"] == 6
    with pytest.raises(ValueError, match=r"unknown skip reason 'gremlins'; valid reasons: \['corrupt_image'"):
        counter.add("gremlins")


@pytest.fixture
def manifest(tmp_path):
    (tmp_path / "img").mkdir()
    lines = []
    for i in range(10):
        (tmp_path / "img" / f"{i}.jpg").write_bytes(jpeg_bytes(i))
        lines.append({"image": f"img/{i}.jpg", "caption": "a dog, a cat, a horse, a cow and a sheep"})
    return write_manifest(tmp_path / "m.jsonl", lines)


def test_distributed_sampler_splits_ranks_disjointly_like_torch(manifest):
    dataset = JsonlCaptionDataset(manifest, make_builder())
    per_rank = []
    for rank in range(2):
        sampler = ResumableDistributedSampler(dataset, num_replicas=2, rank=rank, seed=3)
        sampler.set_epoch(1)
        torch_sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, seed=3)
        torch_sampler.set_epoch(1)
        assert [i for _, i in sampler] == list(torch_sampler)
        assert {e for e, _ in sampler} == {1}
        per_rank.append([i for _, i in sampler])
    assert not set(per_rank[0]) & set(per_rank[1]) and sorted(per_rank[0] + per_rank[1]) == list(range(10))
    # A plain torch DistributedSampler works as well (int indices use the dataset's epoch).
    assert isinstance(dataset[next(iter(torch_sampler))], CaptionSample)


def test_sampler_defaults_to_one_replica_without_a_process_group(manifest):
    sampler = ResumableDistributedSampler(JsonlCaptionDataset(manifest, make_builder()), shuffle=False)
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (1, 0, 10)
    with pytest.raises(ValueError, match=r"sampler start 11 is outside \[0, 10\]"):
        sampler.set_position(0, 11)


def _batches(loader, count):
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == count:
            break
    return out


def _same(a, b):
    assert [x.keys for x in a] == [x.keys for x in b]
    assert [x.categories for x in a] == [x.categories for x in b]
    for x, y in zip(a, b):
        assert torch.equal(x.images, y.images)


@pytest.mark.parametrize("workers", [0, 2])
def test_map_style_resume_at_a_sample_position_reproduces_the_run(manifest, workers):
    builder = make_builder(max_categories=2, selection="random")
    straight = CaptionLoader(JsonlCaptionDataset(manifest, builder), batch_size=3, image_size=SIZE,
                             num_workers=workers, seed=5)
    straight.set_position(epoch=2)
    full = _batches(straight, 4)
    resumed = CaptionLoader(JsonlCaptionDataset(manifest, builder), batch_size=3, image_size=SIZE,
                            num_workers=workers, seed=5)
    resumed.set_position(epoch=2, batches_consumed=2)
    assert len(resumed) == 2
    _same(full[2:], _batches(resumed, 2))
    other_epoch = CaptionLoader(JsonlCaptionDataset(manifest, builder), batch_size=3, image_size=SIZE, seed=5)
    other_epoch.set_position(epoch=3)
    assert [b.keys for b in _batches(other_epoch, 4)] != [b.keys for b in full]


def test_map_style_resume_after_a_partial_last_batch_gives_an_empty_rest_of_epoch(manifest):
    loader = CaptionLoader(JsonlCaptionDataset(manifest, make_builder()), batch_size=3, image_size=SIZE)
    loader.set_position(epoch=0, batches_consumed=4)  # 10 samples: batches of 3, 3, 3 and 1 were consumed
    assert list(loader) == []
    loader.set_position(epoch=1)
    assert sum(len(b) for b in loader) == 10


def test_webdataset_ranks_get_disjoint_shards(tmp_path, monkeypatch):
    caption_shards(tmp_path, num_shards=4, per_shard=3)
    keys = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))  # what torchrun sets; webdataset's split_by_node reads it
        monkeypatch.setenv("WORLD_SIZE", "2")
        dataset = WebCaptionDataset(str(tmp_path), make_builder(), seed=1, repeat=False)
        keys.append([b for batch in CaptionLoader(dataset, batch_size=4, image_size=SIZE) for b in batch.keys])
    assert len(keys[0]) == len(keys[1]) == 6
    assert not set(keys[0]) & set(keys[1]) and len(set(keys[0]) | set(keys[1])) == 12
    assert {k.split("_")[0] for k in keys[0]}.isdisjoint({k.split("_")[0] for k in keys[1]})


@pytest.mark.parametrize("workers", [0, 2])
def test_webdataset_resume_after_n_batches_reproduces_the_run(tmp_path, workers):
    caption_shards(tmp_path, num_shards=4, per_shard=5)

    def loader():
        dataset = WebCaptionDataset(str(tmp_path), make_builder(max_categories=1, selection="random"),
                                    shuffle_buffer=4, seed=2, repeat=True)
        return CaptionLoader(dataset, batch_size=3, image_size=SIZE, num_workers=workers)

    full = _batches(loader(), 12)  # 36 items: past the 20-sample epoch, into the reshuffled second one
    # The 4-item shuffle buffer lets epoch 1 start at item 16; the 15 items before are all distinct.
    assert len({k for b in full[:5] for k in b.keys}) == 15
    resumed = loader()
    resumed.set_position(epoch=0, batches_consumed=5)
    _same(full[5:], _batches(resumed, 7))


def test_webdataset_too_few_shards_for_the_workers_is_a_clear_error(tmp_path, monkeypatch):
    caption_shards(tmp_path, num_shards=3, per_shard=2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")  # rank 1 of 2 gets one of the 3 shards
    with pytest.raises(ValueError, match="3 shards are too few for this rank's 2 DataLoader workers"):
        CaptionLoader(WebCaptionDataset(str(tmp_path), make_builder()), batch_size=2, image_size=SIZE,
                      num_workers=2)
    monkeypatch.setenv("WORKER", "1")  # inside worker 1 of 2 (as webdataset reads it), iterating fails the same
    monkeypatch.setenv("NUM_WORKERS", "2")
    with pytest.raises(ValueError, match="too few for this rank's 2 DataLoader workers"):
        list(WebCaptionDataset(str(tmp_path), make_builder()))


def test_webdataset_epochs_reshuffle_shards(tmp_path):
    caption_shards(tmp_path, num_shards=6, per_shard=1)
    dataset = WebCaptionDataset(str(tmp_path), make_builder(), seed=0, repeat=False)
    orders = []
    for epoch in range(3):
        dataset.set_epoch(epoch)
        orders.append([s.key for s in dataset])
    assert sorted(orders[0]) == sorted(orders[1]) and len({tuple(o) for o in orders}) > 1


# --- augmentation


def _gradient_image(width=64, height=48):
    row = np.linspace(0, 255, width, dtype=np.float32)
    return Image.fromarray(np.repeat(np.stack([row] * 3, -1)[None], height, 0).astype(np.uint8))


def test_transform_normalises_with_the_given_mean_and_std():
    colour = (200, 100, 50)
    image = Image.new("RGB", (40, 30), colour)
    out = TrainTransform(AugmentConfig(image_size=SIZE), MEAN, STD)(image, random.Random(0))
    assert out.shape == (3, SIZE, SIZE) and out.dtype == torch.float32
    expected = [(c / 255 - m) / s for c, m, s in zip(colour, MEAN, STD)]
    assert torch.allclose(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-5)


def test_crop_boxes_stay_inside_the_image_with_the_configured_scale():
    cfg = AugmentConfig(image_size=SIZE, scale=(0.5, 1.0))
    transform, rng = TrainTransform(cfg, MEAN, STD), random.Random(0)
    areas = []
    for _ in range(300):
        left, top, w, h = transform.crop_box(100, 100, rng)
        assert 0 <= left and left + w <= 100 and 0 <= top and top + h <= 100
        areas.append(w * h / (100 * 100))
    assert 0.48 <= min(areas) < 0.55 and max(areas) > 0.9


def test_flip_mirrors_the_same_crop_and_same_seed_gives_the_same_output():
    image = _gradient_image()
    never = TrainTransform(AugmentConfig(image_size=SIZE, hflip_prob=0.0), MEAN, STD)
    always = TrainTransform(AugmentConfig(image_size=SIZE, hflip_prob=1.0), MEAN, STD)
    plain, flipped = never(image, random.Random(4)), always(image, random.Random(4))
    assert torch.allclose(plain.flip(-1), flipped) and not torch.allclose(plain, flipped)
    assert torch.equal(never(image, random.Random(4)), plain)
    assert not torch.equal(never(image, random.Random(5)), plain)


def test_transform_rejects_bad_normalisation():
    with pytest.raises(ValueError, match=r"mean and std need 3 values each and std > 0, got .*std=\(0.2, 0.0, 0.3\)"):
        TrainTransform(AugmentConfig(), MEAN, (0.2, 0.0, 0.3))


# --- configuration


def test_build_caption_dataset_from_a_config_dict(manifest):
    cfg = from_dict(CaptionDataConfig, {"format": "jsonl", "path": str(manifest),
                                        "categories": {"max_categories": 2, "backend": "lexicon"},
                                        "augment": {"image_size": SIZE, "scale": [0.6, 1.0]}})
    dataset = build_caption_dataset(cfg, MEAN, STD)
    sample = dataset[0]
    assert sample.image.shape == (3, SIZE, SIZE) and len(sample.categories) == 2


@pytest.mark.parametrize("data, message", [
    ({"format": "jsonl", "path": "m.jsonl", "batch": 3}, r"unknown key\(s\) \['batch'\]; valid keys: \['format'"),
    ({"format": "parquet", "path": "x"}, r"'parquet' is not one of \['webdataset', 'jsonl', 'coco'\]"),
    ({"format": "jsonl"}, "data.path is required"),
    ({"format": "coco", "path": "c.json"}, "image_root is needed for format 'coco'"),
    ({"format": "jsonl", "path": "m.jsonl", "categories_dir": "cats"}, "categories_dir is for webdataset"),
    ({"format": "jsonl", "path": "m.jsonl", "augment": {"scale": [0.0, 1.0]}}, r"augment.scale must be .* got \(0.0, 1.0\)"),
    ({"format": "jsonl", "path": "m.jsonl", "augment": {"hflip_prob": 2}}, r"hflip_prob must be in \[0, 1\], got 2"),
    ({"format": "jsonl", "path": "m.jsonl", "shuffle_buffer": -1}, "must be >= 0, got -1"),
])
def test_data_config_errors_name_the_bad_value(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(CaptionDataConfig, data)


def test_missing_dataset_from_config_fails_before_training(tmp_path):
    cfg = CaptionDataConfig(format="webdataset", path=str(tmp_path / "shards" / "{0..3}.tar"))
    with pytest.raises(FileNotFoundError, match="4 of 4 shards not found"):
        build_caption_dataset(cfg, MEAN, STD)
