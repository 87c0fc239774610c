"""Fixtures of the pretrained-model tests: a random-weight Hugging Face CLIPSeg saved in the hub repository's file
layout (save_pretrained: config.json + model.safetensors), served by a local hub on 127.0.0.1."""
from __future__ import annotations

import pytest

from clipseg_files import REPO_ID, SMALL_CLIPSEG, SMALL_OUTPUT_SCALE, build_clipseg
from hub_server import FakeHub, HubServer


@pytest.fixture(scope="session")
def clipseg(tmp_path_factory):
    """(the Hugging Face model, the folder holding its hub files)."""
    folder = tmp_path_factory.mktemp("clipseg_repo")
    return build_clipseg(folder, output_scale=SMALL_OUTPUT_SCALE, **SMALL_CLIPSEG), folder


@pytest.fixture
def hub(clipseg):
    """A running local hub serving the CLIPSeg files as CIDAS/clipseg-rd64-refined."""
    fake = FakeHub()
    fake.add_folder(REPO_ID, clipseg[1])
    with HubServer(fake) as server:
        yield server


@pytest.fixture
def no_retry_pause(monkeypatch):
    """huggingface_hub pauses a second before each resumed attempt; the local server needs no pause."""
    import time
    import types

    from huggingface_hub import file_download

    monkeypatch.setattr(file_download, "time", types.SimpleNamespace(**{**vars(time), "sleep": lambda s: None}))
