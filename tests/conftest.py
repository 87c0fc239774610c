"""Shared fixtures: tiny random-weight models (built offline in well under a second)."""
import numpy as np
import pytest
import torch

from synseg_core import Segmenter, create_model


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return create_model("tiny-test")


@pytest.fixture
def tiny_segmenter(tiny_model):
    from synseg_core.deploy.backends.torch_backend import TorchBackend

    return Segmenter(tiny_model, TorchBackend(tiny_model))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
