"""Generated caption data and config helpers for the trainer tests: tiny PNGs of coloured shapes on plain
backgrounds, a JSONL manifest with captions and categories, and the tiny training config pointed at them."""
from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "training" / "configs" / "tiny.yaml"
TRAIN_SCRIPT = REPO / "training" / "train.py"

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220), "yellow": (230, 220, 30)}
SHAPES = ("circle", "square")
BACKGROUNDS = {"grass": (60, 140, 50), "sand": (210, 190, 140), "water": (40, 90, 160)}
IMAGE_SIZE = 80  # larger than the tiny model's 64 so random crops differ


def load_script(name: str) -> ModuleType:
    """A CLI of training/ (a folder of scripts, not a package) loaded from its file, e.g. load_script("train")."""
    spec = importlib.util.spec_from_file_location(f"synseg_{name}_cli", REPO / "training" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


KINDS = [f"{c} {s}" for c in COLOURS for s in SHAPES]  # the categories; a label map's class k + 1 is KINDS[k]


def draw_labelled_scene(rng: np.random.Generator, size: int = IMAGE_SIZE
                        ) -> tuple[Image.Image, str, list[str], np.ndarray]:
    """One image with 1-3 distinct coloured shapes; returns (image, caption, categories, label map [H, W] with 0 =
    background and k + 1 = KINDS[k])."""
    background = str(rng.choice(list(BACKGROUNDS)))
    image = Image.new("RGB", (size, size), BACKGROUNDS[background])
    label = Image.new("L", (size, size), 0)
    draw, draw_label = ImageDraw.Draw(image), ImageDraw.Draw(label)
    picks = rng.choice(len(KINDS), size=int(rng.integers(1, 4)), replace=False)
    categories = []
    for i in picks:
        colour, shape = KINDS[i].split()
        r = int(rng.integers(size // 8, size // 4))
        cx, cy = (int(v) for v in rng.integers(r, size - r, size=2))
        box = (cx - r, cy - r, cx + r, cy + r)
        for canvas, fill in ((draw, COLOURS[colour]), (draw_label, int(i) + 1)):
            (canvas.ellipse if shape == "circle" else canvas.rectangle)(box, fill=fill)
        categories.append(KINDS[i])
    caption = f"a {' and a '.join(categories)} on {background}"
    return image, caption, categories, np.asarray(label)


def draw_scene(rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[Image.Image, str, list[str]]:
    """One image with 1-3 distinct coloured shapes; returns (image, caption, categories)."""
    return draw_labelled_scene(rng, size)[:3]


def write_segmentation_split(folder: Path, count: int, seed: int = 0) -> Path:
    """A `custom` evaluation split of labelled scenes (images/, annotations/, classes.txt with background first);
    returns the class-list file."""
    rng = np.random.default_rng(seed)
    for sub in ("images", "annotations"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, _, _, label = draw_labelled_scene(rng, 64)
        image.save(folder / "images" / f"{i:03d}.png")
        Image.fromarray(label).save(folder / "annotations" / f"{i:03d}.png")
    classes = folder / "classes.txt"
    classes.write_text("\n".join(["background", *KINDS]) + "\n")
    return classes


def write_caption_dataset(folder: Path, count: int, seed: int = 0, with_categories: bool = True,
                          extra_lines: Sequence[dict] = ()) -> Path:
    """Write `count` PNGs and `manifest.jsonl` (plus `extra_lines` as given); returns the manifest path."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        image, caption, categories = draw_scene(rng)
        name = f"images/{i:04d}.png"
        image.save(folder / name)
        line = {"image": name, "caption": caption}
        if with_categories:
            line["categories"] = categories
        lines.append(line)
    lines.extend(extra_lines)
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


def write_caption_shard(path: Path, count: int, seed: int = 0, corrupt: Sequence[int] = ()) -> Path:
    """An img2dataset-style tar (`<key>.png`, `<key>.txt`, `<key>.json` with categories); the samples whose index
    is in `corrupt` get undecodable image bytes."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for i in range(count):
            image, caption, categories = draw_scene(rng)
            png = io.BytesIO()
            image.save(png, format="PNG")
            data = b"\x89PNG\r\n\x1a\n truncated" if i in corrupt else png.getvalue()
            members = {"png": data, "txt": caption.encode(), "json": json.dumps({"categories": categories}).encode()}
            for ext, payload in members.items():
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


def tiny_overrides(manifest: Path, output_dir: Path, max_steps: int, **extra: object) -> list[str]:
    """Dotlist overrides that point the tiny config at generated data and keep runs quiet and quick."""
    values = {"data.path": str(manifest), "output_dir": str(output_dir), "schedule.max_steps": max_steps,
              "schedule.warmup_steps": min(4, max_steps), "logging.progress_bar": False, "logging.plot": False,
              "runtime.num_threads": 1, **extra}
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items()]


def nonfinite_loss(bad_calls: set[int]) -> Callable:
    """A replacement of the trainer's `synseg_loss` (fault injection) whose real loss is made NaN on the given calls
    (1-based), i.e. on those training steps."""
    from synseg_core.training.losses import synseg_loss

    calls = []

    def patched(*args, **kwargs):
        terms = synseg_loss(*args, **kwargs)
        calls.append(1)
        if len(calls) in bad_calls:
            terms.total = terms.total * float("nan")
        return terms

    return patched


def read_records(output_dir: Path, record_type: str) -> list[dict]:
    path = output_dir / "metrics.jsonl"
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == record_type]
