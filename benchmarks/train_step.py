"""Training step time against the frozen CLIP forward on the same batch (issue 4; target: step <= 1.5x CLIP).

    python -m benchmarks.train_step [--repeats 5] [--precision fp32 --precision bf16] [--device cpu]

ViT-B/16 rd64-refined with random weights (timing only), 224x224, batch 8, 4 categories per image by default.
The batch comes from a real JSONL caption dataset (generated PNGs) through the real loader; the step is
`Trainer.train_step` (text embeddings from the warm cache, CLIP image tower under no_grad, decoder + FSS +
MCCL forward, backward, gradient clipping, AdamW). Measured side by side, interleaved, in one run:
- step: one training step;
- clip_image: the full frozen open_clip image tower on the batch (12 blocks, ln_post, projection);
- clip_image_used: the part of the tower training runs (blocks up to the deepest extracted layer);
- clip_text: the text tower on the batch's categories (paid only for categories missing from the cache; fp32).
The image-tower timings use the step's precision (and the trainer's frozen-CLIP dtype); each precision has its
own trainer, all measured interleaved.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from benchmarks.common import interleaved_medians, machine_description
from synseg_core.training import Trainer, load_train_config
from synseg_core.training.run import build_loader, initial_model, seed_everything
from synseg_core.training.distributed import DistInfo

WORDS = ("dog", "car", "tree", "person", "bicycle", "road", "sky", "grass", "building", "boat", "chair", "table")
IMAGE_SIDE = 256  # larger than 224 so the random-resized crop has room


def write_dataset(folder: Path, n_images: int, per_image: int, seed: int) -> Path:
    """Random-noise PNGs with `per_image` precomputed categories each, and their JSONL manifest."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(n_images):
        pixels = rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"{i}.png")
        categories = [str(w) for w in rng.choice(WORDS, size=per_image, replace=False)]
        lines.append(json.dumps({"image": f"images/{i}.png", "caption": "", "categories": categories}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def build_trainer(manifest: Path, out: Path, precision: str, device: torch.device, batch_size: int) -> Trainer:
    cfg = load_train_config(None, [
        "model.config=vitb16-rd64-refined", "model.overrides.backbone.pretrained=null", f"data.path={manifest}",
        f"loader.batch_size={batch_size}", "loader.num_workers=0", f"runtime.device={device}",
        f"runtime.precision={precision}", f"output_dir={out}", "logging.progress_bar=false"])
    seed_everything(0)
    return Trainer(cfg, initial_model(cfg.model), build_loader(cfg, DistInfo(), device), device=device)


def timed_functions(trainer: Trainer) -> dict[str, Callable[[], object]]:
    """The step and the frozen-CLIP forwards on the trainer's first batch, all in the trainer's precision."""
    batch = next(iter(trainer.batches))
    images = batch.images.to(trainer.device)
    backbone, autocast = trainer.model.backbone, trainer.precision.autocast

    def clip_image() -> None:
        with torch.no_grad(), autocast():
            backbone.clip.visual(images.to(backbone.clip.visual.conv1.weight.dtype))

    def clip_image_used() -> None:
        with autocast():
            backbone.encode_image_layers(images)

    def clip_text() -> None:  # as the trainer encodes categories missing from its cache: fp32, no autocast
        backbone.encode_categories(batch.categories, trainer.text.templates)

    return {"step": lambda: trainer.train_step(batch), "clip_image": clip_image, "clip_image_used": clip_image_used,
            "clip_text": clip_text}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--categories-per-image", type=int, default=4)
    p.add_argument("--precision", action="append", choices=("auto", "fp32", "bf16", "fp16"),
                   help="repeat to compare precisions side by side (default: fp32 and auto)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    print(f"machine: {machine_description()}")
    fns: dict[str, Callable[[], object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_dataset(Path(tmp) / "data", args.batch_size, args.categories_per_image, seed=0)
        precisions = {}
        for requested in args.precision or ["fp32", "auto"]:
            trainer = build_trainer(manifest, Path(tmp) / requested, requested, device, args.batch_size)
            precision = trainer.precision.precision
            if precision in precisions.values():
                continue  # "auto" resolved to a precision already measured
            precisions[requested] = precision
            fns.update({f"{name}@{precision}": fn for name, fn in timed_functions(trainer).items()})
        n_categories = args.batch_size * args.categories_per_image
        print(f"batch: {args.batch_size} images at 224px, M = {n_categories} categories, "
              f"{sum(p.numel() for p in trainer.params):,} trainable parameters, precisions {precisions}")
        times = interleaved_medians(fns, repeats=args.repeats, warmup=1, sync=sync)
    for name, seconds in times.items():
        print(f"{name:>22}: {seconds * 1000:8.1f} ms")
    for precision in precisions.values():
        t = {name.split("@")[0]: v for name, v in times.items() if name.endswith(f"@{precision}")}
        print(f"[{precision}] step / clip_image = {t['step'] / t['clip_image']:.2f}x (target <= 1.5x); "
              f"step / clip_image_used = {t['step'] / t['clip_image_used']:.2f}x; "
              f"(step + clip_text) / (clip_image + clip_text) = "
              f"{(t['step'] + t['clip_text']) / (t['clip_image'] + t['clip_text']):.2f}x (all categories new)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
