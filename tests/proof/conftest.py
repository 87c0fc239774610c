"""Fixtures of the proof tests: small generated splits (real files written by the synthetic writer), a random
Hugging Face CLIPSeg state dict matching the tiny-test model, and a folder of photos."""
import shutil

import pytest
import torch
from safetensors.torch import save_file

from synseg_proof.demo_assets import write_demo_frames
from synseg_proof.synthetic import SceneGenerator, write_split

IMAGE_SIZE = 64


@pytest.fixture(scope="session")
def source_split(tmp_path_factory):
    """Source-domain split with masks of every category (things + stuff)."""
    return write_split(tmp_path_factory.mktemp("proof") / "source", SceneGenerator(["source"], IMAGE_SIZE, 5), 12,
                       "segmentation", "all", progress=False)


@pytest.fixture(scope="session")
def target_things_split(tmp_path_factory):
    """Target-domain split in the VOC-like layout (background + things), as the proof evaluates."""
    return write_split(tmp_path_factory.mktemp("proof") / "target", SceneGenerator(["target"], IMAGE_SIZE, 6), 6,
                       "segmentation", "things", progress=False)


@pytest.fixture(scope="session")
def clipseg_file(tmp_path_factory):
    """A random CLIPSegForImageSegmentation whose decoder matches the tiny-test model config, saved as safetensors."""
    transformers = pytest.importorskip("transformers")
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2, image_size=64,
                  patch_size=16)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16)
    config = transformers.CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=32, reduce_dim=16,
                           decoder_num_attention_heads=2, decoder_intermediate_size=32, extract_layers=[0, 1, 2],
                           use_complex_transposed_convolution=True)
    torch.manual_seed(0)
    model = transformers.CLIPSegForImageSegmentation(config)
    path = tmp_path_factory.mktemp("clipseg") / "model.safetensors"
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """A folder of two plain photos (generated frames without their labels)."""
    frames = write_demo_frames(tmp_path_factory.mktemp("photos") / "f", ["red circle", "blue square"], 2, 64, seed=3)
    folder = frames.parent / "photos"
    shutil.copytree(frames / "images", folder)
    return folder
