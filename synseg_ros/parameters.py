"""The node's parameters: one dataclass with the defaults, declaration on a node, and validation.

`config/synseg.yaml` restates these defaults for users; the dataclass is the source of truth in code. The default
checkpoint is the bundled demo model, and the inference defaults are the settings stored with it (its config.json).
Every value is checked at configure time and on `ros2 param set`; a problem is reported as "parameter 'x' is
<value>; <what is allowed>".

Cameras: `cameras` empty = one camera on `image` with outputs under `~/`; a list of names = one pipeline per name
on `<name>/image` with outputs under `<name>/`, all batched through one model. Each camera may override
`image_reliability`, `image_depth` and `max_rate_hz` with the parameters `<name>.<parameter>` (in YAML a nested
block under the camera's name); an unset override follows the node-wide value.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from synseg_core.deploy.backends.factory import DEFAULT_CACHE_DIR, PRECISIONS
from synseg_core.config import InferenceConfig, replace_inference
from synseg_core.inference.preprocess import MAX_IMAGE_PIXELS
from synseg_core.inference.query import QueryLimits
from synseg_core.inference.segmenter import MAX_CATEGORY_LENGTH, bundled_checkpoint_config
from synseg_ros.outputs import MAX_CATEGORIES

# The default model is the bundled demo; its inference settings (stored with it, chosen on its validation split)
# are the defaults here. For a ViT-B/16 checkpoint use InferenceConfig()'s: 448 / 448 / 224, thresholds 0.5.
DEFAULT_CHECKPOINT = "demo"
_INFERENCE = bundled_checkpoint_config(DEFAULT_CHECKPOINT).inference
BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
RELIABILITIES = ("best_effort", "reliable")
_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]+)?)$")
_TOPIC = re.compile(r"^[~/]?[A-Za-z_][A-Za-z0-9_/]*$")
_CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # one topic-name token, also usable in parameter names
CAMERA_OVERRIDES = ("image_reliability", "image_depth", "max_rate_hz")  # per-camera `<name>.<parameter>`
_LIST_ITEM_TYPES = {"warmup_size": int, "cameras": str}


class ParameterError(ValueError):
    """One or more parameters are invalid; the message names each and what is allowed."""


@dataclass
class NodeParameters:
    """All parameters of the segmentation node (names as in config/synseg.yaml)."""

    # Model and runtime. `checkpoint`: a checkpoint folder or .safetensors file, a model-config .json, a bundled
    # checkpoint ("demo") or a bundled model-config name such as "tiny-test" (random weights, for tests).
    checkpoint: str = DEFAULT_CHECKPOINT
    backend: str = "auto"
    device: str = "cuda"  # the preferred device: with backend auto, CUDA steps are skipped when there is no GPU
    precision: str = "fp32"
    cache_dir: str = DEFAULT_CACHE_DIR  # ONNX exports and TensorRT engines (built on first run, keyed, reused)
    onnx_path: str = ""  # an exported fp32 image path to use; "" = export automatically into cache_dir
    force_rebuild: bool = False  # rebuild the TensorRT engine even when a cached one matches
    cuda_graphs: bool = True  # the torch backend on CUDA replays a CUDA graph per input shape
    # Inference (synseg_core.config.InferenceConfig); window 0 = resize the whole image to short_side squared.
    short_side: int = _INFERENCE.short_side
    window: int = _INFERENCE.window or 0
    stride: int = _INFERENCE.stride
    templates: str = _INFERENCE.templates
    mask_threshold: float = _INFERENCE.mask_threshold
    background_threshold: float = _INFERENCE.background_threshold
    background: bool = _INFERENCE.background
    # The query: default categories (comma/semicolon/newline separated, "" = wait for a query) and its limits.
    categories: str = "person, chair, table, floor, wall"
    max_categories: int = _INFERENCE.max_categories
    max_category_length: int = 64
    query_topic: str = "/synseg/query"
    # Input.
    image_reliability: str = "best_effort"
    image_depth: int = 1
    compressed_input: bool = False
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_rate_hz: float = 0.0  # 0 = as fast as inference allows
    # Cameras: [] = one camera on `image` (outputs under ~/); names = `<name>/image` -> `<name>/labels`, ...
    cameras: list[str] = field(default_factory=list)
    batch_window_ms: float = 10.0  # how long a frame waits at most for frames of the other cameras
    max_batch_frames: int = 0  # most camera frames in one batch (0 = one from every camera)
    # Parts a batch is split into, run at once (0 = auto: 1 on a GPU, where one batch fills it; one per frame on
    # the CPU, where batching gains nothing and concurrent calls keep every core busy).
    inference_lanes: int = 0
    # Outputs (each is also only computed while someone subscribes).
    publish_labels: bool = True
    publish_masks: bool = True
    publish_confidence: bool = True
    publish_overlay: bool = True
    overlay_alpha: float = 0.5
    output_depth: int = 2
    # Start-up, diagnostics and logging.
    warmup: bool = True
    warmup_size: list[int] = field(default_factory=lambda: [480, 640])  # [height, width] of the warm-up image
    diagnostics_period_s: float = 1.0
    stale_image_timeout_s: float = 5.0
    log_throttle_s: float = 5.0
    autostart: bool = True

    def query_limits(self) -> QueryLimits:
        return QueryLimits(max_categories=self.max_categories, max_length=self.max_category_length)

    def backend_options(self) -> dict[str, Any]:
        """Keyword arguments for `Segmenter.from_checkpoint` beyond device/backend/precision."""
        return {"cache_dir": self.cache_dir, "onnx_path": self.onnx_path or None,
                "input_size": self.window or self.short_side, "tensorrt": {"force_rebuild": self.force_rebuild},
                "cuda_graphs": self.cuda_graphs}

    def inference_config(self, base: InferenceConfig) -> InferenceConfig:
        """`base` (the model's inference config) with this node's inference settings applied."""
        return replace_inference(base, short_side=self.short_side, window=self.window or None, stride=self.stride,
                                 templates=self.templates, mask_threshold=self.mask_threshold,
                                 background_threshold=self.background_threshold, background=self.background,
                                 max_categories=self.max_categories)


DESCRIPTIONS = {
    "checkpoint": "checkpoint folder, .safetensors file, model-config .json, bundled checkpoint (demo) or bundled "
                  "model-config name (tiny-test)",
    "backend": f"image-path backend: one of {', '.join(BACKENDS)} (auto: TensorRT, then ONNX Runtime, then torch)",
    "device": "preferred device: cpu, cuda or cuda:N (backend auto falls back to the CPU without a GPU)",
    "precision": f"one of {', '.join(PRECISIONS)} (fp16: GPU backends; int8: ONNX Runtime on the CPU, quantized "
                 "CLIP matmuls; bf16: PyTorch autocast, fast on CPUs with AVX512-BF16/AMX; both about 2x faster "
                 "than fp32 on such a CPU)",
    "cache_dir": "folder for automatic ONNX exports and TensorRT engines",
    "onnx_path": "an exported fp32 ONNX image path to run ('' = export automatically into cache_dir)",
    "force_rebuild": "rebuild the TensorRT engine even when a cached one matches",
    "cuda_graphs": "torch backend on CUDA: replay one CUDA graph per input shape (each checked against the eager "
                   "forward; a failing capture is logged and the backend stays eager)",
    "short_side": "resize images so the short side has this many pixels",
    "window": "sliding-window size in pixels; 0 = resize the whole image to short_side x short_side",
    "stride": "sliding-window stride in pixels",
    "templates": "prompt-template set name (synseg_core/resources/templates.json)",
    "mask_threshold": "probability above which a pixel is in a category's mask (0..1)",
    "background_threshold": "pixels whose best probability is at most this are background (0..1)",
    "background": "true: label 0 = background; false: every pixel gets its best category",
    "categories": "default query: categories separated by commas, semicolons or newlines ('' = wait for a query)",
    "max_categories": f"most categories one query may hold (1..{MAX_CATEGORIES})",
    "max_category_length": f"most characters per category (1..{MAX_CATEGORY_LENGTH})",
    "query_topic": "std_msgs/String topic carrying queries (reliable, transient local)",
    "image_reliability": f"image subscription reliability: one of {', '.join(RELIABILITIES)}",
    "image_depth": "image subscription queue depth (>= 1)",
    "compressed_input": "also subscribe to image/compressed (sensor_msgs/CompressedImage)",
    "max_image_pixels": "images with more pixels are rejected",
    "max_rate_hz": "most frames processed per second, per camera (0 = no limit)",
    "cameras": "camera names; [] = one camera on 'image' (outputs under ~/); each name reads <name>/image and "
               "publishes <name>/labels, <name>/masks, <name>/confidence, <name>/overlay",
    "batch_window_ms": "how long a camera's frame waits at most for frames of the other cameras (one batch)",
    "max_batch_frames": "most camera frames in one batch (0 = one from every camera)",
    "inference_lanes": "parts a batch is split into and run at once (0 = auto: 1 on a GPU, one per frame on the CPU)",
    "publish_labels": "publish ~/labels (mono8/mono16)",
    "publish_masks": "publish ~/masks (8UC<K>, channel c = category c + 1)",
    "publish_confidence": "publish ~/confidence (32FC1)",
    "publish_overlay": "publish ~/overlay (bgr8)",
    "overlay_alpha": "weight of the category colour in the overlay (0..1)",
    "output_depth": "queue depth of the output publishers (>= 1)",
    "warmup": "run one inference at configure before reporting ready",
    "warmup_size": "[height, width] of the warm-up image",
    "diagnostics_period_s": "seconds between /diagnostics messages",
    "stale_image_timeout_s": "warn in diagnostics when no image arrived for this long",
    "log_throttle_s": "repeated errors of one kind are logged at most once per this many seconds",
    "autostart": "configure and activate on start-up (synseg_node only)",
}
# Parameters that take effect immediately on `ros2 param set`; the others apply at the next configure.
LIVE_PARAMETERS = frozenset({"categories", "mask_threshold", "background_threshold", "background", "max_rate_hz",
                             "overlay_alpha", "publish_labels", "publish_masks", "publish_confidence",
                             "publish_overlay", "log_throttle_s"})


CAMERA_DESCRIPTIONS = {
    "image_reliability": "this camera's image subscription reliability (unset = the node's image_reliability)",
    "image_depth": "this camera's image subscription queue depth (unset = the node's image_depth)",
    "max_rate_hz": "most frames of this camera processed per second (unset = the node's max_rate_hz)",
}
LIVE_CAMERA_OVERRIDES = frozenset({"max_rate_hz"})

PARAMETER_NAMES = tuple(f.name for f in dataclasses.fields(NodeParameters))


@dataclass(frozen=True)
class CameraSettings:
    """One camera's topics and its input settings (node-wide values with its overrides applied)."""

    name: str  # "" for the single camera of a node without `cameras`
    input_topic: str  # relative: "image" or "<name>/image"
    output_prefix: str  # "~/" or "<name>/"
    image_reliability: str
    image_depth: int
    max_rate_hz: float


def camera_override_name(camera: str, parameter: str) -> str:
    return f"{camera}.{parameter}"


def split_camera_override(name: str) -> tuple[str, str] | None:
    """(camera, parameter) when `name` is a per-camera override such as "front.max_rate_hz", else None."""
    camera, dot, parameter = name.rpartition(".")
    return (camera, parameter) if dot and camera and parameter in CAMERA_OVERRIDES else None


def camera_settings(params: NodeParameters, overrides: Mapping[str, Any]) -> list[CameraSettings]:
    """The cameras of `params` with their overrides ({"front.max_rate_hz": 5.0, ...}; None = unset) applied.

    Raises ParameterError naming every bad override.
    """
    node_wide = {name: getattr(params, name) for name in CAMERA_OVERRIDES}
    if not params.cameras:
        return [CameraSettings("", "image", "~/", **node_wide)]
    problems, cameras = [], []
    for camera in params.cameras:
        values = dict(node_wide)
        for name in CAMERA_OVERRIDES:
            value = overrides.get(camera_override_name(camera, name))
            if value is not None:
                values[name], problem = _coerce(camera_override_name(camera, name), value, node_wide[name])
                problems += [problem] if problem else []
        if not problems:
            problems += _check_values(dataclasses.replace(params, **values), prefix=f"{camera}.",
                                      names=CAMERA_OVERRIDES)
        cameras.append(CameraSettings(camera, f"{camera}/image", f"{camera}/", **values))
    if problems:
        raise ParameterError("invalid parameter(s): " + "; ".join(problems))
    return cameras


def declare_parameters(node: Node) -> None:
    """Declare every parameter with its default and description.

    Dynamic typing lets `max_rate_hz: 5` (an int) stand for a float; `parameters_from_values` checks types.
    """
    defaults = NodeParameters()
    for name in list(PARAMETER_NAMES):
        node.declare_parameter(name, getattr(defaults, name),
                               ParameterDescriptor(description=DESCRIPTIONS[name], dynamic_typing=True))


def read_parameters(node: Node) -> NodeParameters:
    """The node's current parameter values, validated (raises ParameterError)."""
    return parameters_from_values({name: node.get_parameter(name).value for name in list(PARAMETER_NAMES)})


def declare_camera_overrides(node: Node, cameras: Iterable[str]) -> None:
    """Declare `<camera>.<parameter>` for each camera, unset unless given (YAML or -p); the node-wide value applies."""
    for camera in cameras:
        for name in CAMERA_OVERRIDES:
            full = camera_override_name(camera, name)
            if not node.has_parameter(full):
                node.declare_parameter(full, None, ParameterDescriptor(description=CAMERA_DESCRIPTIONS[name],
                                                                       dynamic_typing=True))


def read_camera_overrides(node: Node, cameras: Iterable[str]) -> dict[str, Any]:
    """The declared per-camera overrides of `cameras` that are set ({"front.max_rate_hz": 5.0, ...})."""
    names = [camera_override_name(camera, name) for camera in cameras for name in CAMERA_OVERRIDES]
    return {name: node.get_parameter(name).value for name in names
            if node.has_parameter(name) and node.get_parameter(name).value is not None}


def parameters_from_values(values: dict[str, Any]) -> NodeParameters:
    """Build and validate NodeParameters from plain values; every problem is listed in one ParameterError."""
    problems, kwargs = [], {}
    unknown = sorted(set(values) - set(list(PARAMETER_NAMES)))
    if unknown:
        problems.append(f"unknown parameter(s) {unknown}; valid: {list(PARAMETER_NAMES)}")
    defaults = NodeParameters()
    for name in list(PARAMETER_NAMES):
        value = values.get(name, getattr(defaults, name))
        kwargs[name], problem = _coerce(name, value, getattr(defaults, name))
        if problem:
            problems.append(problem)
    if not problems:
        problems = list(_check_values(NodeParameters(**kwargs)))
    if problems:
        raise ParameterError("invalid parameter(s): " + "; ".join(problems))
    return NodeParameters(**kwargs)


def _coerce(name: str, value: Any, default: Any) -> tuple[Any, str | None]:
    """Check a value against its default's type (ints pass as floats); returns (value, problem or None)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, list):
        # ROS has no type for an empty list: `cameras: []` in YAML arrives as an unset (None) parameter.
        value = list(value) if isinstance(value, (list, tuple)) else [] if value is None else value
        item = _LIST_ITEM_TYPES[name]
        ok = isinstance(value, list) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)
    else:
        ok = isinstance(value, str)
    if ok:
        return value, None
    expected = f"list of {_LIST_ITEM_TYPES[name].__name__}" if isinstance(default, list) else type(default).__name__
    return value, f"parameter '{name}' is {value!r} ({type(value).__name__}); it must be of type {expected}"


def _check_values(p: NodeParameters, prefix: str = "",
                  names: Iterable[str] = PARAMETER_NAMES) -> Iterable[str]:
    """Yield one message per invalid value among `names`, each named `<prefix><name>` (prefix for overrides)."""
    checked = set(names)

    def bad(name: str, allowed: str) -> str | None:
        return f"parameter '{prefix}{name}' is {getattr(p, name)!r}; {allowed}" if name in checked else None

    return [problem for problem in _problems(p, bad) if problem is not None]


def _problems(p: NodeParameters, bad: Callable[[str, str], str | None]) -> Iterable[str | None]:
    """Yield bad(name, allowed) for every invalid value (bad returns None for names not being checked)."""
    if not p.cache_dir.strip():
        yield bad("cache_dir", "give a folder for ONNX exports and TensorRT engines")
    if not p.checkpoint.strip():
        yield bad("checkpoint", "give a checkpoint folder/file, a model-config .json or a bundled config name")
    for name, choices in (("backend", BACKENDS), ("precision", PRECISIONS), ("image_reliability", RELIABILITIES)):
        if getattr(p, name) not in choices:
            yield bad(name, f"allowed: {', '.join(choices)}")
    if not _DEVICE.match(p.device):
        yield bad("device", "allowed: cpu, cuda or cuda:N")
    for name in ("short_side", "stride", "image_depth", "max_image_pixels", "output_depth"):
        if getattr(p, name) < 1:
            yield bad(name, "it must be >= 1")
    if p.window < 0:
        yield bad("window", "it must be >= 0 (0 = whole image)")
    elif p.window and p.stride > p.window:
        yield bad("stride", f"it must be at most window ({p.window}) so the windows cover the image")
    if not p.templates.strip():
        yield bad("templates", "give a prompt-template set name such as 'single'")
    for name in ("mask_threshold", "background_threshold", "overlay_alpha"):
        if not 0.0 <= getattr(p, name) <= 1.0:
            yield bad(name, "it must be within [0, 1]")
    if not 1 <= p.max_categories <= MAX_CATEGORIES:
        yield bad("max_categories", f"it must be within [1, {MAX_CATEGORIES}] (one mask channel per category)")
    if not 1 <= p.max_category_length <= MAX_CATEGORY_LENGTH:
        yield bad("max_category_length", f"it must be within [1, {MAX_CATEGORY_LENGTH}]")
    if not _TOPIC.match(p.query_topic) or "//" in p.query_topic or p.query_topic.endswith("/"):
        yield bad("query_topic", "give a valid ROS topic name such as '/synseg/query'")
    for name in ("max_rate_hz", "log_throttle_s", "batch_window_ms", "max_batch_frames", "inference_lanes"):
        if getattr(p, name) < 0:
            yield bad(name, "it must be >= 0")
    yield from _camera_name_problems(p, bad)
    for name in ("diagnostics_period_s", "stale_image_timeout_s"):
        if getattr(p, name) <= 0:
            yield bad(name, "it must be > 0")
    if len(p.warmup_size) != 2 or min(p.warmup_size) < 1:
        yield bad("warmup_size", "give [height, width], both >= 1")


def _camera_name_problems(p: NodeParameters, bad: Callable[[str, str], str | None]) -> Iterable[str | None]:
    for position, camera in enumerate(p.cameras, start=1):
        if not camera.strip():
            yield bad("cameras", f"camera name {position} is empty; give each camera a name")
        elif not _CAMERA_NAME.match(camera):
            yield bad("cameras", f"camera name {camera!r} is not allowed: a name starts with a letter followed by "
                                 "letters, digits or underscores (it becomes a topic namespace)")
        elif p.cameras.index(camera) < position - 1:
            yield bad("cameras", f"camera name {camera!r} appears more than once; names must be unique")
