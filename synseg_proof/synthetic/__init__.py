"""Synthetic data for the end-to-end proof: procedural scenes with captions and pixel ground truth,
split writers, and the stage-1 tiny CLIP pretraining.

The CLIP parts (``clip_model``, ``clip_train``, ``clip_eval``) import torch/open_clip and are not imported here.
"""
from .domains import DOMAINS, DomainConfig, get_domain, list_domains
from .scene import PlacedObject, Scene, SceneGenerator, generate_scene
from .vocabulary import COLOURS, SHAPES, STUFF, all_stuff_categories, all_thing_categories, thing_category
from .writers import LABEL_MODES, SPLIT_KINDS, class_ids, read_manifest, split_classes, write_split

__all__ = [
    "COLOURS", "DOMAINS", "DomainConfig", "LABEL_MODES", "PlacedObject", "SHAPES", "SPLIT_KINDS", "STUFF", "Scene",
    "SceneGenerator", "all_stuff_categories", "all_thing_categories", "class_ids", "generate_scene", "get_domain",
    "list_domains", "read_manifest", "split_classes", "thing_category", "write_split",
]
