"""Bundled checkpoints by name: "demo" loads the packaged demo model (weights as stored), unknown names list it."""
import pytest
import torch
from safetensors.torch import load_file

from synseg_core import ConfigError, Segmenter
from synseg_core.segmenter import BUNDLED_CHECKPOINTS, resolve_model_source


def test_demo_is_the_packaged_checkpoint_with_its_stored_weights():
    model = resolve_model_source("demo")
    stored = load_file(str(BUNDLED_CHECKPOINTS["demo"] / "model.safetensors"))
    state = model.state_dict()
    decoder_keys = [k for k in stored if k.startswith("decoder.")]
    assert decoder_keys, "the demo checkpoint holds no decoder weights"
    for key in decoder_keys:
        torch.testing.assert_close(state[key], stored[key].to(state[key].dtype), msg=key)


def test_demo_segments_through_the_public_api():
    segmenter = Segmenter.from_checkpoint("demo")
    image = torch.randint(0, 256, (40, 56, 3), dtype=torch.uint8).numpy()
    result = segmenter.segment(image, ["red circle", "grass"])
    assert result.labels.shape == (40, 56) and result.probabilities.shape[0] == 2


def test_unknown_names_list_the_bundled_checkpoints_and_configs():
    with pytest.raises(ConfigError, match=r"bundled checkpoint \(\['demo'\]\).*tiny-test"):
        resolve_model_source("no-such-model")
