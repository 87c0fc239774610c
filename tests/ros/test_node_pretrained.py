"""The node with a named pretrained model (`checkpoint: clipseg-rd64-refined`), over DDS: from the model folder
($SYNSEG_MODEL_DIR) it answers like transformers' CLIPSeg on the same weights and prompts, with the inference
thresholds stored in the converted checkpoint; offline without the model, configure fails naming the command to run
on a connected machine and the folder to copy it to."""
import numpy as np
import pytest
from huggingface_hub import constants as hub_constants
from rclpy.lifecycle import TransitionCallbackReturn

from synseg_core.model.cli import main as synseg_model
from synseg_core.model.hub import MODEL_DIR_ENV
from synseg_ros.image_conversion import image_to_array
from synseg_test_utils import make_node, start_rig
from tests.model.clipseg_files import (NATIVE_SIZE, SMALL_CLIPSEG, SMALL_OUTPUT_SCALE, build_clipseg,
                                      hf_probabilities)

pytestmark = pytest.mark.ros
NAME = "clipseg-rd64-refined"
CATEGORIES = ["cat", "remote control", "couch"]
NEAR = 2e-4  # pixels this close to a threshold or to a tie may fall either way within float tolerance


def test_the_node_runs_the_named_model_like_transformers(ros, unique_ns, tmp_path, monkeypatch):
    hf_model = build_clipseg(tmp_path / "repo", output_scale=SMALL_OUTPUT_SCALE, **SMALL_CLIPSEG)
    assert synseg_model(["import-clipseg", "--weights", str(tmp_path / "repo" / "model.safetensors"),
                         "--config", str(tmp_path / "repo" / "config.json"), "--out", str(tmp_path / "models")]) == 0
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    # Whole image at the tiny CLIP's native size; the thresholds are left unset: the checkpoint's 0.5 apply.
    rig = start_rig(ros, unique_ns, outputs=("labels", "confidence"), checkpoint=NAME, short_side=NATIVE_SIZE,
                    window=0, templates="single", categories=", ".join(CATEGORIES),
                    warmup_size=[NATIVE_SIZE, NATIVE_SIZE])
    inference = rig.node.segmenter.inference
    assert rig.node.segmenter.model.cfg.name == NAME
    assert inference.mask_threshold == inference.background_threshold == 0.5
    image = np.random.default_rng(5).integers(0, 256, (NATIVE_SIZE, NATIVE_SIZE, 3), dtype=np.uint8)
    hdr = rig.send(image, "rgb8", 0)
    confidence = image_to_array(rig.output_of("confidence", hdr))
    labels = image_to_array(rig.output_of("labels", hdr)).astype(np.int64)

    expected = hf_probabilities(hf_model, image, [f"a photo of a {c}." for c in CATEGORIES],
                                rig.node.segmenter.model.backbone.tokenizer)
    np.testing.assert_allclose(confidence, expected.max(axis=0), rtol=0, atol=1e-4)
    top2 = np.sort(expected, axis=0)[-2:]
    expected_labels = np.where(top2[1] > 0.5, expected.argmax(axis=0) + 1, 0)
    clear = (np.abs(top2[1] - 0.5) > NEAR) & (top2[1] - top2[0] > NEAR)
    assert clear.mean() > 0.8 and len(np.unique(expected_labels[clear])) > 1
    np.testing.assert_array_equal(labels[clear], expected_labels[clear])


def test_offline_without_the_model_configure_says_what_to_run(ros, unique_ns, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    node = make_node(ros, unique_ns, checkpoint=NAME, categories="cat")
    assert node.trigger_configure() != TransitionCallbackReturn.SUCCESS
    assert node.segmenter is None
    err = capfd.readouterr().err
    assert f"configure failed: cannot load model '{NAME}'" in err
    assert f"synseg-model download {NAME} --out DIR" in err and str(tmp_path / "models" / NAME) in err
