"""The model's own settings and the node's start-up checks: unset inference parameters mean the checkpoint's stored
values (logged and in /diagnostics), a model config gets an 'untrained' warning, a warm-up that yields non-finite
values fails configure with the reason, and a failed start exits with status 1 unless told to stay up."""
import dataclasses

import numpy as np
import pytest
import torch
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from synseg_core.config import get_model_config
from synseg_core.inference import fused_postprocess as fused
from synseg_core.inference.postprocess import Outputs
from synseg_core.model.checkpoint import save_checkpoint
from synseg_core.model.synseg import SynSeg
from synseg_ros.image_conversion import image_to_array
from synseg_test_utils import NodeProcess, make_node, start, start_rig

pytestmark = pytest.mark.ros
INFERENCE_PARAMETERS = {name: None for name in ("short_side", "window", "stride", "templates", "mask_threshold",
                                                "background_threshold", "background")}  # unset
IMAGE = np.random.default_rng(8).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)


def tiny_checkpoint(folder, seed: int = 0, decoder_value: float | None = None, **inference) -> str:
    """A trained-format tiny checkpoint folder whose stored inference settings are `inference`."""
    cfg = get_model_config("tiny-test")
    cfg.backbone.pretrained = None
    cfg.inference = dataclasses.replace(cfg.inference, **inference)
    torch.manual_seed(seed)
    model = SynSeg(cfg)
    if decoder_value is not None:  # finite weights whose activations overflow: outputs become NaN
        with torch.no_grad():
            model.decoder.film_mul.weight.fill_(decoder_value)
    return str(save_checkpoint(model, folder))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two checkpoints whose stored settings differ everywhere the node could set them."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "whole": (tiny_checkpoint(root / "whole", short_side=96, window=None, stride=48, mask_threshold=0.3,
                                  background_threshold=0.35, background=True), (96, 0, 48, 0.3, 0.35, True)),
        "windows": (tiny_checkpoint(root / "windows", short_side=64, window=64, stride=32, mask_threshold=0.6,
                                    background_threshold=0.55, background=False), (64, 64, 32, 0.6, 0.55, False)),
    }


def settings_of(node) -> tuple:
    cfg = node.segmenter.inference
    return (cfg.short_side, cfg.window or 0, cfg.stride, cfg.mask_threshold, cfg.background_threshold,
            cfg.background)


@pytest.mark.parametrize("name", ["whole", "windows"])
def test_unset_inference_parameters_are_the_checkpoints_own_and_are_logged_and_reported(ros, unique_ns, checkpoints,
                                                                                         name, capfd):
    path, stored = checkpoints[name]
    rig = start_rig(ros, unique_ns, checkpoint=path, categories="cat, dog", **INFERENCE_PARAMETERS)
    assert settings_of(rig.node) == stored
    short_side, window = stored[:2]
    err = capfd.readouterr().err
    assert f"inference settings: short_side {short_side} (checkpoint), window {window} (checkpoint)" in err
    assert "not a trained checkpoint" not in err  # a real checkpoint gets no 'untrained' warning
    values = rig.diagnostics_where(lambda v: "inference_short_side" in v, "diagnostics with the settings")
    assert values["inference_short_side"] == f"{short_side} (checkpoint)"
    assert values["inference_background"] == f"{stored[5]} (checkpoint)" and values["weights"] == "checkpoint"
    # The frame is segmented with those settings: without background every pixel gets a category.
    labels = image_to_array(rig.output_of("labels", rig.send(IMAGE, "rgb8", 0)))
    np.testing.assert_array_equal(labels, rig.node.segmenter.segment(IMAGE, ["cat", "dog"]).labels)
    if not stored[5]:
        assert (labels > 0).all()
    # A parameter that is set wins, and the report says where each value comes from.
    assert rig.node.set_parameters([Parameter("mask_threshold", value=0.45)])[0].successful
    assert rig.node.segmenter.inference.mask_threshold == 0.45
    rig.diagnostics_where(lambda v: v.get("inference_mask_threshold") == "0.45 (parameter)", "the set value")


def test_a_set_window_gives_the_exported_backend_its_input_size(ros, unique_ns, checkpoints, tmp_path):
    path, _ = checkpoints["whole"]  # stored: the whole image at 96 px
    node = make_node(ros, unique_ns, checkpoint=path, backend="onnxruntime", cache_dir=str(tmp_path),
                     **{**INFERENCE_PARAMETERS, "window": 64, "short_side": 64})
    start(node)
    assert node.segmenter.backend.input_size == 64 and node.segmenter.inference.window == 64


def test_a_model_config_runs_with_a_warning_that_its_decoder_is_untrained(ros, unique_ns, capfd):
    rig = start_rig(ros, unique_ns, categories="cat")
    assert "checkpoint 'tiny-test' is a model config, not a trained checkpoint" in capfd.readouterr().err
    values = rig.diagnostics_where(lambda v: "weights" in v, "diagnostics")
    assert values["weights"] == "untrained decoder (model config)"


def test_a_warm_up_with_non_finite_results_fails_configure_with_the_reason(ros, unique_ns, tmp_path, capfd):
    path = tiny_checkpoint(tmp_path / "overflow", decoder_value=3e38)  # finite, yet every output is NaN
    node = make_node(ros, unique_ns, checkpoint=path, categories="cat", **INFERENCE_PARAMETERS)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    err = capfd.readouterr().err
    assert "the warm-up inference produced" in err and "non-finite values" in err and "likely corrupt" in err
    assert node.segmenter is None and "non-finite" in node.configure_error


def test_the_warm_up_prepares_the_cpu_kernel_for_frames_of_its_size(ros, unique_ns):
    """The warm-up at warmup_size checks the fused post-processing against aten for frames of that size, so the first
    camera frame does not pay for the check."""
    fused._matches_aten.cache_clear()
    node = make_node(ros, unique_ns, categories="cat, dog", warmup_size=[240, 320])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    checked = fused._matches_aten.cache_info()
    assert checked.misses == 1  # the warm-up's check
    frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    result = node.segmenter.segment(frame, ["cat", "dog"], outputs=Outputs.for_images())
    assert result.labels.dtype == np.uint8 and fused._matches_aten.cache_info().misses == checked.misses


@pytest.mark.slow
def test_a_failed_start_exits_with_status_1_or_stays_up_when_told(unique_ns):
    failing = {"checkpoint": "/no/such/checkpoint", "categories": "cat", "device": "cpu"}
    node = NodeProcess(failing, ros_args=["-r", f"__ns:={unique_ns}"])
    assert node.process.wait(timeout=300) == 1, node.output
    node.stop()
    assert "configure failed: cannot load model '/no/such/checkpoint'" in node.output
    assert "exiting with status 1" in node.output and "Traceback" not in node.output

    node = NodeProcess({**failing, "exit_on_configure_failure": "false"}, ros_args=["-r", f"__ns:={unique_ns}"])
    node.wait_for_line("staying up unconfigured")
    assert node.process.poll() is None  # still serving its lifecycle services for a retry
    assert node.stop() == 0, node.output
