r"""synseg-model: get pretrained models as self-contained synseg checkpoints, and describe checkpoints.

Examples:
    synseg-model list
    synseg-model download clipseg-rd64-refined                 # into $SYNSEG_MODEL_DIR or ~/.cache/synseg/models
    synseg-model download clipseg-rd64-refined --out /media/usb  # to carry to an offline robot
    synseg-model import-clipseg --weights model.safetensors --config config.json   # files copied by hand
    synseg-model info clipseg-rd64-refined                    # a name, a checkpoint folder or its .safetensors

Downloads go through huggingface_hub (its cache, resume and progress bars; HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE
apply). Exit status 2 with a message for bad input or a model that cannot be fetched.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..config import ConfigError
from .checkpoint import WEIGHTS_NAME, CheckpointError, read_checkpoint_config, verify_checkpoint
from .hub import cached_model, convert_files, download_pretrained, model_dir
from .registry import REGISTRY, list_pretrained


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="synseg-model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registered pretrained models and whether they are converted here")
    d = sub.add_parser("download", help="fetch and convert a registered model")
    d.add_argument("name", help=f"one of {list_pretrained()}")
    d.add_argument("--out", help="folder to write NAME/ into (default: the model folder)")
    d.add_argument("--force", action="store_true", help="fetch and convert again even when NAME/ is there")
    i = sub.add_parser("import-clipseg", help="convert Hugging Face CLIPSeg files copied by hand")
    i.add_argument("--weights", required=True, help="the CLIPSeg model.safetensors (or a weights_only .bin)")
    i.add_argument("--config", help="its config.json (default: Hugging Face's CLIPSeg defaults, which match "
                                    "clipseg-rd64-refined's; the architecture is read from the tensor shapes)")
    i.add_argument("--name", default="clipseg-rd64-refined", help="the converted model's name and folder name")
    i.add_argument("--out", help="folder to write NAME/ into (default: the model folder)")
    f = sub.add_parser("info", help="architecture, inference settings, provenance and size of a checkpoint")
    f.add_argument("checkpoint", help="a checkpoint folder, its model.safetensors, or a converted model's name")
    f.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check of the weight file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "list":
            _list()
        elif args.command == "download":
            print(f"model {args.name!r} is ready in {download_pretrained(args.name, args.out, force=args.force)}")
        elif args.command == "import-clipseg":
            print(f"model {args.name!r} is ready in {_import(args)}")
        else:
            _info(args.checkpoint, verify=not args.no_verify)
    except (CheckpointError, ConfigError, OSError) as exc:
        print(f"synseg-model: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _list() -> None:
    print(f"model folder: {model_dir()}")
    for name in list_pretrained():
        entry = REGISTRY[name]
        where = cached_model(name)
        print(f"{name}\n  {entry.description}\n  source: {entry.repo_id} ({entry.revision}), licence: {entry.licence}"
              f"\n  {'converted: ' + str(where) if where else 'not converted here: synseg-model download ' + name}")


def _import(args: argparse.Namespace) -> Path:
    """Convert hand-copied CLIPSeg files under the registry entry of `--name` (or the first entry's converter)."""
    weights, config = Path(args.weights), Path(args.config) if args.config else None
    for path in (weights, config):
        if path is not None and not path.is_file():
            raise CheckpointError(f"file not found: {path}")
    entry = REGISTRY.get(args.name)
    if entry is None:  # another CLIPSeg: the converter of the registered one, no licence known
        entry = replace(REGISTRY[list_pretrained()[0]], name=args.name, licence="unknown (imported by hand)",
                        description=f"CLIPSeg imported from {weights.resolve()}")
    source = {"imported_from": str(weights.resolve())}
    return convert_files(entry, weights, config, source, model_dir(args.out) / args.name)


def _info(source: str, verify: bool) -> None:
    folder = cached_model(source) or Path(source)
    if source in REGISTRY and not folder.exists():
        raise CheckpointError(f"{source!r} is not converted in {model_dir()}: run `synseg-model download {source}`")
    cfg, meta = read_checkpoint_config(folder)
    folder = folder.parent if folder.suffix == ".safetensors" else folder
    verified = ("skipped (--no-verify)" if not verify else
                "verified" if verify_checkpoint(folder) else "no hash recorded (an older checkpoint)")
    b = cfg.backbone
    clip = b.model_name or f"inline open_clip config {json.dumps(b.clip_config)}"
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    print(f"checkpoint: {folder}\nname: {cfg.name}\nCLIP: {clip} (weights "
          f"{'inside the checkpoint' if meta['backbone_in_checkpoint'] else 'from open_clip tag ' + str(b.pretrained)})"
          f", extract layers {list(b.extract_layers)}\ndecoder: reduce_dim {cfg.decoder.reduce_dim}, "
          f"{cfg.decoder.num_heads} heads, ffn {cfg.decoder.ffn_dim}, upsampler {cfg.decoder.upsampler}\n"
          f"preprocess: mean {list(cfg.preprocess.mean)}, std {list(cfg.preprocess.std)}\n"
          f"inference: {json.dumps(cfg.inference.__dict__)}\nsize: {size / 1e6:.1f} MB ({WEIGHTS_NAME} SHA-256 "
          f"{verified})\nprovenance: {json.dumps(meta.get('extra', {}), indent=1)}")


if __name__ == "__main__":
    sys.exit(main())
