"""Parameter validation (pure: no node), throttled logging and pipeline statistics."""
import re

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from synseg_core.config import InferenceConfig
from synseg_core.evaluation.demo_frames import DEMO_DIR
from synseg_core.inference.segmenter import Segmenter, bundled_checkpoint_config
from synseg_ros.camera_parameters import CameraSettings, camera_settings, split_camera_override
from synseg_ros.diagnostics import PipelineStats, diagnostic_status
from synseg_ros.parameters import (DESCRIPTIONS, INFERENCE_SETTINGS, PARAMETER_NAMES, SECTIONS, NodeParameters,
                                   ParameterError, parameters_from_values)
from synseg_ros.throttled_log import ThrottledLog


def test_defaults_are_valid_and_leave_the_inference_settings_to_the_checkpoint():
    params = parameters_from_values({})
    assert params == NodeParameters() and params.checkpoint == "demo"
    assert all(getattr(params, name) is None for name in INFERENCE_SETTINGS)
    demo = bundled_checkpoint_config("demo").inference
    vitb16 = InferenceConfig()  # the generic ViT-B/16 settings (448 px windows, thresholds 0.5)
    assert demo != vitb16
    assert params.inference_config(demo) == demo and params.inference_config(vitb16) == vitb16
    assert set(params.inference_sources().values()) == {"checkpoint"}


def test_default_categories_are_things_the_default_model_knows():
    known = [line for line in (DEMO_DIR / "frames" / "classes.txt").read_text().splitlines() if line]
    categories = [c.strip() for c in NodeParameters().categories.split(",")]
    assert categories and set(categories) <= set(known[1:])  # classes.txt: background, then the demo's classes


def test_every_parameter_is_described_once_and_in_one_yaml_section():
    assert sorted(DESCRIPTIONS) == sorted(PARAMETER_NAMES)
    in_sections = [name for _, names in SECTIONS for name in names]
    assert sorted(in_sections) == sorted(PARAMETER_NAMES)  # each exactly once
    # Descriptions say what a value means, not what it measured: no figures of speed.
    assert not [name for name, text in DESCRIPTIONS.items() if re.search(r"\d+(\.\d+)?x\b|\bms\b|faster", text)]


def test_inference_config_maps_window_zero_to_whole_image():
    params = parameters_from_values({"window": 0, "short_side": 320, "mask_threshold": 0.3, "max_categories": 7})
    cfg = params.inference_config(InferenceConfig(templates="tcl_custom"))
    assert cfg.window is None and cfg.short_side == 320 and cfg.mask_threshold == 0.3 and cfg.max_categories == 7
    assert cfg.templates == "tcl_custom" and cfg.stride == 224  # unset: the model's own
    sources = params.inference_sources()
    assert sources["short_side"] == "parameter" and sources["stride"] == "checkpoint"
    cfg = parameters_from_values({"templates": "single"}).inference_config(InferenceConfig(templates="tcl_custom"))
    assert cfg.templates == "single"  # a set parameter wins over the model's value


def test_backend_options_reach_the_segmenter_factory():
    params = NodeParameters(cuda_graphs=False, force_rebuild=True, window=0, short_side=96)
    options = params.backend_options(params.inference_config(InferenceConfig()))
    assert options == {"cache_dir": NodeParameters().cache_dir, "onnx_path": None, "input_size": 96,
                       "tensorrt": {"force_rebuild": True}, "cuda_graphs": False}
    # Unset: the fixed input size of an exported image path is the checkpoint's own window.
    assert NodeParameters().backend_options(InferenceConfig(window=448, short_side=336))["input_size"] == 448
    segmenter = Segmenter.from_checkpoint("tiny-test", backend="torch", **options)  # every option is accepted
    assert segmenter.backend.name == "torch" and not segmenter.backend.cuda_graphs


def test_ints_are_accepted_for_floats():
    assert parameters_from_values({"max_rate_hz": 5}).max_rate_hz == 5.0


@pytest.mark.parametrize("topic", ["/synseg/query", "~/query", "query", "robot1/query"])
def test_valid_query_topics_are_accepted(topic):
    assert parameters_from_values({"query_topic": topic}).query_topic == topic


@pytest.mark.parametrize("values, message", [
    ({"backend": "trt"}, "parameter.backend: 'trt' is not one of ['auto', 'torch', 'onnxruntime', 'tensorrt']"),
    ({"precision": "int4"}, "parameter.precision: 'int4' is not one of ['fp32', "),
    ({"device": "gpu"}, "parameter 'device' is 'gpu'; allowed: cpu, cuda or cuda:N"),
    ({"checkpoint": " "}, "parameter 'checkpoint' is ' '"),
    ({"image_reliability": "RELIABLE"}, "'RELIABLE' is not one of ['best_effort', 'reliable']"),
    ({"image_depth": 0}, "parameter 'image_depth' is 0; it must be >= 1"),
    ({"window": -2}, "parameter 'window' is -2; it must be >= 0"),
    ({"window": 64, "stride": 128}, "parameter 'stride' is 128; it must be at most window (64)"),
    ({"mask_threshold": -0.1}, "parameter 'mask_threshold' is -0.1; it must be within [0, 1]"),
    ({"max_categories": 513}, "parameter 'max_categories' is 513; it must be within [1, 512]"),
    ({"max_category_length": 0}, "parameter 'max_category_length' is 0; it must be within [1, 200]"),
    ({"query_topic": "/synseg//query"}, "parameter 'query_topic' is '/synseg//query'"),
    ({"query_topic": "my query"}, "give a valid ROS topic name"),
    ({"query_topic": "~query"}, "topic name must not have a tilde '~' that is not followed by a forward slash"),
    ({"max_rate_hz": -1}, "parameter 'max_rate_hz' is -1.0; it must be >= 0"),
    ({"diagnostics_period_s": 0}, "parameter 'diagnostics_period_s' is 0.0; it must be > 0"),
    ({"warmup_size": [480]}, "parameter 'warmup_size' is [480]; give [height, width]"),
    ({"image_depth": "5"}, "parameter.image_depth: expected an integer, got '5'"),
    ({"background": 1}, "parameter.background: expected bool, got 1"),
    ({"mask_threshold": "high"}, "parameter.mask_threshold: expected a number, got 'high'"),
    ({"image_depht": 3}, "unknown parameter(s) ['image_depht']"),
    ({"cameras": ["front", " "]}, "parameter 'cameras' is ['front', ' ']; camera name 2 is empty"),
    ({"cameras": ["a", "b", "a"]}, "parameter 'cameras' is ['a', 'b', 'a']; camera name 'a' appears more than once"),
    ({"cameras": ["front/left"]}, "camera name 'front/left' is not allowed: a name starts with a letter"),
    ({"cameras": "front"}, "parameter.cameras: expected a list, got 'front'"),
    ({"cameras": ["front", 3]}, "parameter.cameras[1]: expected str, got 3"),
    ({"batch_window_ms": -5}, "parameter 'batch_window_ms' is -5.0; it must be >= 0"),
    ({"max_batch_frames": -1}, "parameter 'max_batch_frames' is -1; it must be >= 0"),
    ({"inference_lanes": -2}, "parameter 'inference_lanes' is -2; it must be >= 0"),
])
def test_invalid_values_name_the_parameter_and_what_is_allowed(values, message):
    with pytest.raises(ParameterError) as info:
        parameters_from_values(values)
    assert message in str(info.value)


def test_an_empty_ros_list_means_no_cameras():
    # ROS has no type for an empty list: `cameras: []` in a parameter file arrives unset (None).
    assert parameters_from_values({"cameras": None}).cameras == []


def test_camera_settings_single_camera_and_overrides():
    assert camera_settings(NodeParameters(image_depth=4), {}) == [
        CameraSettings("", "image", "~/", "best_effort", 4, 0.0)]
    params = parameters_from_values({"cameras": ["front", "rear"], "max_rate_hz": 10})
    front, rear = camera_settings(params, {"rear.max_rate_hz": 2, "rear.image_reliability": "reliable",
                                           "front.image_depth": None})  # None = unset: the node-wide value
    assert front == CameraSettings("front", "front/image", "front/", "best_effort", 1, 10.0)
    assert rear == CameraSettings("rear", "rear/image", "rear/", "reliable", 1, 2.0)
    with pytest.raises(ParameterError) as info:
        camera_settings(params, {"front.image_reliability": "sometimes", "rear.image_depth": 2.5})
    assert "parameter.front.image_reliability: 'sometimes' is not one of ['best_effort', 'reliable']" in str(info.value)
    assert "parameter.rear.image_depth: expected an integer, got 2.5" in str(info.value)
    with pytest.raises(ParameterError, match="parameter 'front.max_rate_hz' is -1.0; it must be >= 0"):
        camera_settings(params, {"front.max_rate_hz": -1})
    assert split_camera_override("front.max_rate_hz") == ("front", "max_rate_hz")
    assert split_camera_override("front.window") is None and split_camera_override("max_rate_hz") is None


def test_every_problem_is_reported_at_once():
    with pytest.raises(ParameterError) as info:
        parameters_from_values({"backend": "x", "device": "y", "overlay_alpha": 2.0})
    text = str(info.value)
    assert "parameter.backend:" in text and "'device'" in text and "'overlay_alpha'" in text  # types and values


def test_throttled_log_emits_once_per_key_and_period_and_counts_repeats():
    now = [0.0]
    lines = []
    log = ThrottledLog(lines.append, period_s=10.0, clock=lambda: now[0])
    assert log("a", "first a")
    assert not log("a", "second a")
    assert log("b", "first b")  # another kind is not hidden by "a"
    now[0] = 5.0
    assert not log("a", "third a")
    now[0] = 10.5
    assert log("a", "fourth a")
    assert lines == ["first a", "first b", "fourth a (2 similar message(s) suppressed in the last 10.5 s)"]
    log.period_s = 0.0
    assert log("a", "x") and log("a", "y")


def test_pipeline_stats_rates_latencies_and_counters():
    now = [100.0]
    stats = PipelineStats(rate_window_s=2.0, latency_samples=2, clock=lambda: now[0])
    snap = stats.snapshot()
    assert snap.seconds_since_image is None and snap.input_rate_hz == 0.0 and snap.latency_ms == {}
    for _ in range(4):
        stats.image_received()
    stats.frame_processed({"convert": 0.001, "inference": 0.010, "build": 0.002, "publish": 0.001})
    stats.frame_processed({"convert": 0.003, "inference": 0.030, "build": 0.002, "publish": 0.001})
    stats.frame_processed({"convert": 0.005, "inference": 0.050, "build": 0.002, "publish": 0.001})
    stats.count("bad_frames", error="bad image: x")
    now[0] = 101.0
    snap = stats.snapshot()
    assert snap.input_rate_hz == 2.0 and snap.output_rate_hz == 1.5
    assert snap.latency_ms["inference"] == pytest.approx(40.0)  # the last two frames only
    assert snap.latency_ms["total"] == pytest.approx(47.0)
    assert snap.counters == {"frames_received": 4, "frames_processed": 3, "bad_frames": 1}
    assert snap.seconds_since_image == pytest.approx(1.0) and snap.last_error == "bad image: x"
    now[0] = 103.5  # everything has left the 2 s window
    assert stats.snapshot().input_rate_hz == 0.0
    stats.frame_processed({"convert": 0.0})
    assert stats.snapshot().last_error is None  # a good frame clears the error


@pytest.mark.parametrize("active, categories, age, error, level, message", [
    (True, 3, 0.1, None, DiagnosticStatus.OK, "segmenting 3 categories"),
    (True, 3, 9.0, None, DiagnosticStatus.WARN, "no image for 9.0 s on /cam"),
    (True, 3, None, None, DiagnosticStatus.WARN, "no image received yet on /cam"),
    (True, 0, 0.1, None, DiagnosticStatus.WARN, "waiting for a query"),
    (False, 3, 0.1, None, DiagnosticStatus.WARN, "inactive"),
    (True, 3, 0.1, "inference failed: boom", DiagnosticStatus.ERROR, "inference failed: boom"),
    (True, 3, "lost", None, DiagnosticStatus.WARN, "7 frame(s) lost in transport recently on /cam"),
])
def test_diagnostic_status_levels(active, categories, age, error, level, message):
    now = [50.0]
    stats = PipelineStats(clock=lambda: now[0])
    if age == "lost":  # every frame lost: none received, yet the loss is what the status names
        stats.frames_lost(7)
    elif age is not None:
        stats.image_received()
        now[0] += age
    if error:
        stats.count("inference_errors", error=error)
    status = diagnostic_status("synseg: /cam", "cpu", stats.snapshot(), {"backend": "torch"}, active=active,
                               num_categories=categories, stale_after_s=5.0, image_topic="/cam")
    assert status.level == level and status.message.startswith(message)
    values = {kv.key: kv.value for kv in status.values}
    assert values["backend"] == "torch" and values["categories"] == str(categories)


def test_lost_frames_are_counted_and_the_warning_ages_out():
    now = [10.0]
    stats = PipelineStats(rate_window_s=2.0, clock=lambda: now[0])
    stats.frames_lost(3)
    stats.frames_lost(2)
    snap = stats.snapshot()
    assert snap.lost_recently == 5 and snap.counters["frames_lost"] == 5
    now[0] = 12.5
    snap = stats.snapshot()
    assert snap.lost_recently == 0 and snap.counters["frames_lost"] == 5  # the total stays



def test_missed_frames_are_counted_beside_the_received_ones():
    stats = PipelineStats()
    stats.image_received()
    stats.image_received(missed=3)
    stats.image_received(missed=0)
    counters = stats.snapshot().counters
    assert counters["frames_received"] == 3 and counters["frames_missed"] == 3
