"""Parameter validation (pure: no node), throttled logging and pipeline statistics."""
import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from synseg_core.config import InferenceConfig
from synseg_core.inference.segmenter import Segmenter, bundled_checkpoint_config
from synseg_ros.diagnostics import PipelineStats, diagnostic_status
from synseg_ros.parameters import (CameraSettings, NodeParameters, ParameterError, camera_settings,
                                   parameters_from_values, split_camera_override)
from synseg_ros.throttled_log import ThrottledLog


def test_defaults_are_valid_and_are_the_demo_models_own_inference_settings():
    params = parameters_from_values({})
    assert params == NodeParameters() and params.checkpoint == "demo"
    demo = bundled_checkpoint_config("demo").inference
    assert params.inference_config(InferenceConfig()) == demo  # the node changes nothing the demo model stores


def test_inference_config_maps_window_zero_to_whole_image():
    params = parameters_from_values({"window": 0, "short_side": 320, "mask_threshold": 0.3, "max_categories": 7})
    cfg = params.inference_config(InferenceConfig(templates="tcl_custom"))
    assert cfg.window is None and cfg.short_side == 320 and cfg.mask_threshold == 0.3 and cfg.max_categories == 7
    assert cfg.templates == params.templates  # the node's value wins over the model's


def test_backend_options_reach_the_segmenter_factory():
    options = NodeParameters(cuda_graphs=False, force_rebuild=True, window=0, short_side=96).backend_options()
    assert options == {"cache_dir": NodeParameters().cache_dir, "onnx_path": None, "input_size": 96,
                       "tensorrt": {"force_rebuild": True}, "cuda_graphs": False}
    segmenter = Segmenter.from_checkpoint("tiny-test", backend="torch", **options)  # every option is accepted
    assert segmenter.backend.name == "torch" and not segmenter.backend.cuda_graphs


def test_ints_are_accepted_for_floats():
    assert parameters_from_values({"max_rate_hz": 5}).max_rate_hz == 5.0


@pytest.mark.parametrize("values, message", [
    ({"backend": "trt"}, "parameter 'backend' is 'trt'; allowed: auto, torch, onnxruntime, tensorrt"),
    ({"precision": "int4"}, "parameter 'precision' is 'int4'; allowed: fp32, fp16, int8, bf16"),
    ({"device": "gpu"}, "parameter 'device' is 'gpu'; allowed: cpu, cuda or cuda:N"),
    ({"checkpoint": " "}, "parameter 'checkpoint' is ' '"),
    ({"image_reliability": "RELIABLE"}, "allowed: best_effort, reliable"),
    ({"image_depth": 0}, "parameter 'image_depth' is 0; it must be >= 1"),
    ({"window": -2}, "parameter 'window' is -2; it must be >= 0"),
    ({"window": 64, "stride": 128}, "parameter 'stride' is 128; it must be at most window (64)"),
    ({"mask_threshold": -0.1}, "parameter 'mask_threshold' is -0.1; it must be within [0, 1]"),
    ({"max_categories": 513}, "parameter 'max_categories' is 513; it must be within [1, 512]"),
    ({"max_category_length": 0}, "parameter 'max_category_length' is 0; it must be within [1, 200]"),
    ({"query_topic": "/synseg//query"}, "parameter 'query_topic' is '/synseg//query'"),
    ({"query_topic": "my query"}, "give a valid ROS topic name"),
    ({"max_rate_hz": -1}, "parameter 'max_rate_hz' is -1.0; it must be >= 0"),
    ({"diagnostics_period_s": 0}, "parameter 'diagnostics_period_s' is 0.0; it must be > 0"),
    ({"warmup_size": [480]}, "parameter 'warmup_size' is [480]; give [height, width]"),
    ({"image_depth": "5"}, "parameter 'image_depth' is '5' (str); it must be of type int"),
    ({"background": 1}, "parameter 'background' is 1 (int); it must be of type bool"),
    ({"image_depht": 3}, "unknown parameter(s) ['image_depht']"),
    ({"cameras": ["front", " "]}, "parameter 'cameras' is ['front', ' ']; camera name 2 is empty"),
    ({"cameras": ["a", "b", "a"]}, "parameter 'cameras' is ['a', 'b', 'a']; camera name 'a' appears more than once"),
    ({"cameras": ["front/left"]}, "camera name 'front/left' is not allowed: a name starts with a letter"),
    ({"cameras": "front"}, "parameter 'cameras' is 'front' (str); it must be of type list of str"),
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
    assert "parameter 'front.image_reliability' is 'sometimes'; allowed: best_effort, reliable" in str(info.value)
    assert "parameter 'rear.image_depth' is 2.5 (float); it must be of type int" in str(info.value)
    assert split_camera_override("front.max_rate_hz") == ("front", "max_rate_hz")
    assert split_camera_override("front.window") is None and split_camera_override("max_rate_hz") is None


def test_every_problem_is_reported_at_once():
    with pytest.raises(ParameterError) as info:
        parameters_from_values({"backend": "x", "device": "y", "overlay_alpha": 2.0})
    text = str(info.value)
    assert "'backend'" in text and "'device'" in text and "'overlay_alpha'" in text


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
])
def test_diagnostic_status_levels(active, categories, age, error, level, message):
    now = [50.0]
    stats = PipelineStats(clock=lambda: now[0])
    if age is not None:
        stats.image_received()
        now[0] += age
    if error:
        stats.count("inference_errors", error=error)
    status = diagnostic_status("synseg: /cam", "cpu", stats.snapshot(), {"backend": "torch"}, active=active,
                               num_categories=categories, stale_after_s=5.0, image_topic="/cam")
    assert status.level == level and status.message.startswith(message)
    values = {kv.key: kv.value for kv in status.values}
    assert values["backend"] == "torch" and values["categories"] == str(categories)
