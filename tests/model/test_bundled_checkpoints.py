"""Bundled checkpoints by name: "demo" loads the packaged demo model (weights as stored), unknown names list it."""
import cv2
import pytest
import torch
from safetensors.torch import load_file

from synseg_core import ConfigError, Segmenter
from synseg_core.inference.segmenter import BUNDLED_CHECKPOINTS, resolve_model_source


def test_demo_is_the_packaged_checkpoint_with_its_stored_weights():
    model = resolve_model_source("demo")
    stored = load_file(str(BUNDLED_CHECKPOINTS["demo"] / "model.safetensors"))
    state = model.state_dict()
    decoder_keys = [k for k in stored if k.startswith("decoder.")]
    assert decoder_keys, "the demo checkpoint holds no decoder weights"
    for key in decoder_keys:
        torch.testing.assert_close(state[key], stored[key].to(state[key].dtype), msg=key)


def test_demo_segments_its_bundled_frames_through_the_public_api():
    """The default model of the node is a real model: on its sample frames, with the inference settings stored in
    it, its foreground covers the ground truth's (the ROS demo test checks the same through the node)."""
    frames = BUNDLED_CHECKPOINTS["demo"].parent / "frames"
    query = [c.strip() for c in (frames / "query.txt").read_text().split(",")]
    segmenter = Segmenter.from_checkpoint("demo")
    intersection = union = 0
    for path in sorted((frames / "images").glob("*.png"))[:4]:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        truth = cv2.imread(str(frames / "labels" / path.name), cv2.IMREAD_UNCHANGED) > 0
        predicted = segmenter.segment(rgb, query).labels > 0
        intersection += int((truth & predicted).sum())
        union += int((truth | predicted).sum())
    assert intersection / union >= 0.5


def test_unknown_names_list_the_bundled_checkpoints_and_configs():
    with pytest.raises(ConfigError, match=r"bundled checkpoint \(\['demo'\]\).*tiny-test"):
        resolve_model_source("no-such-model")
