"""Writers of tiny caption datasets (images, JSONL manifests, COCO JSON, webdataset shards) for the data tests.

Imported by the test_data_* modules; it holds no tests itself.
"""
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from synseg_core.data import AugmentConfig, CategoryConfig, CategoryExtractor, SampleBuilder, TrainTransform

# Deliberately not CLIP's or ImageNet's statistics: the datasets must take whatever the model config says.
MEAN = (0.5, 0.4, 0.3)
STD = (0.2, 0.25, 0.3)
SIZE = 32  # small output side keeps the tests fast


def jpeg_bytes(seed: int, size=(24, 40)) -> bytes:
    """A random-noise JPEG (height x width)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


def truncated_jpeg(seed: int) -> bytes:
    data = jpeg_bytes(seed)
    return data[: len(data) // 2]


def make_builder(max_categories: int = 4, seed: int = 0, selection: str = "first") -> SampleBuilder:
    extractor = CategoryExtractor(CategoryConfig(backend="lexicon", max_categories=max_categories,
                                                 selection=selection))
    return SampleBuilder(extractor, TrainTransform(AugmentConfig(image_size=SIZE), MEAN, STD), seed=seed)


def write_manifest(path: Path, lines: list) -> Path:
    """Write a JSONL manifest; dict lines are dumped, str lines written as they are."""
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    return path


def write_shard(path: Path, samples: list[dict]) -> Path:
    """Write a webdataset tar; a sample is {"__key__", "jpg": bytes, "txt": str, "json": dict} (any subset)."""
    with wds.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write({k: (json.dumps(v).encode() if k == "json" else v) for k, v in sample.items()})
    return path


def truncate_inside(path: Path, member: str, extra: int = 10) -> None:
    """Cut a tar file a few bytes into `member`'s data, as an interrupted download leaves it."""
    with tarfile.open(path) as tar:
        offset = next(m.offset_data for m in tar.getmembers() if m.name == member)
    data = path.read_bytes()
    path.write_bytes(data[: offset + extra])


def caption_shards(folder: Path, num_shards: int, per_shard: int) -> list[Path]:
    """Shards of good samples with keys s<shard>_<i> and captions naming a dog and a car."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_shard(folder / f"{s:05d}.tar", [
        {"__key__": f"s{s}_{i:03d}", "jpg": jpeg_bytes(100 * s + i), "txt": f"a dog {i} next to a car"}
        for i in range(per_shard)]) for s in range(num_shards)]
