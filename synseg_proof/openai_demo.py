"""Assets of the demo's ``--openai`` mode: a synseg checkpoint of open_clip's ViT-B/16 (``openai`` weights) with the
CLIPSeg decoder imported (``CIDAS/clipseg-rd64-refined``), and a few real photos. Both need internet; the same code
runs offline on a tiny random-weight config, a local CLIPSeg state dict and local photos (tests)."""
from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path
from typing import Sequence

from synseg_core.model.checkpoint import save_checkpoint
from synseg_core.model.clipseg_import import import_clipseg_decoder, read_state_dict
from synseg_core.model.synseg import create_model
from .demo_assets import IMAGE_SUFFIXES, IMAGES, QUERY_FILE

DEFAULT_CLIPSEG = "CIDAS/clipseg-rd64-refined"
# COCO val2017 photos (two cats with remotes on a couch; people in kitchens and living rooms).
DEFAULT_PHOTOS = (
    "http://images.cocodataset.org/val2017/000000039769.jpg",
    "http://images.cocodataset.org/val2017/000000397133.jpg",
    "http://images.cocodataset.org/val2017/000000037777.jpg",
)
DEFAULT_QUERY = ("cat", "remote control", "couch", "person", "oven", "refrigerator")
DOWNLOAD_TIMEOUT_S = 60
STATE_DICT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def clipseg_state_dict(source: str) -> dict:
    """A CLIPSeg state dict from a local .safetensors/.bin file, or from a Hugging Face hub id (downloads)."""
    if Path(source).is_file() or Path(source).suffix in STATE_DICT_SUFFIXES:
        return read_state_dict(source)  # a missing file is a CheckpointError naming it, not a hub lookup
    from transformers import CLIPSegForImageSegmentation  # lazy: only this path needs transformers and the hub

    return CLIPSegForImageSegmentation.from_pretrained(source).state_dict()


def build_clipseg_checkpoint(model_config: str, clipseg: str, out_dir: str | Path) -> Path:
    """Write a synseg checkpoint: CLIP weights as `model_config` says (``openai`` downloads through open_clip),
    decoder and FiLM imported from CLIPSeg, as the paper's training starts."""
    model = create_model(model_config)
    import_clipseg_decoder(model, clipseg_state_dict(clipseg))
    return save_checkpoint(model, out_dir, extra={"decoder": f"CLIPSeg import from {clipseg}"})


def collect_photos(out_dir: str | Path, urls: Sequence[str] = (), folder: str | Path | None = None,
                   query: Sequence[str] = DEFAULT_QUERY) -> Path:
    """A frame folder (images/ + query.txt) from photo URLs (downloaded) or a local folder of .jpg/.png files.

    Raises:
        ValueError: neither source, or no photo found; OSError: a download failed (the message names the URL).
    """
    images = Path(out_dir) / IMAGES
    images.mkdir(parents=True, exist_ok=True)
    if folder is not None:
        found = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ValueError(f"{folder} holds no {'/'.join(IMAGE_SUFFIXES)} photos")
        for index, path in enumerate(found):
            shutil.copy2(path, images / f"photo_{index:02d}{path.suffix.lower()}")
    elif urls:
        for index, url in enumerate(urls):
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    data = response.read()
            except OSError as exc:
                raise OSError(f"cannot download {url}: {exc} (the --openai demo needs internet)") from exc
            (images / f"photo_{index:02d}{Path(url).suffix.lower() or '.jpg'}").write_bytes(data)
    else:
        raise ValueError("give photo URLs or a local photo folder")
    (Path(out_dir) / QUERY_FILE).write_text(", ".join(query) + "\n")
    return Path(out_dir)
