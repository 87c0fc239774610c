"""The node's parameters: defaults in `NodeParameters`, each described once in `DESCRIPTIONS`, checked in one place.

The ROS parameter descriptors are built from `DESCRIPTIONS`, and `config/synseg.yaml` is rendered from it
(`python -m synseg_ros.parameter_file`; a test keeps the committed file equal to the rendering). Types are checked by
synseg_core's config engine (`synseg_core.config.from_dict`, the checker of every model and inference config);
values by `_problems` below. Every problem is reported as "parameter 'x' is <value>; <what is allowed>", all at once.

Inference settings left unset (None) take the checkpoint's own stored value (its config.json), so a ViT-B/16
checkpoint runs at its 448-pixel settings and the demo model at its 64-pixel ones without a parameter file.
Per-camera overrides live in synseg_ros/camera_parameters.py.
"""
from __future__ import annotations

import array
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, get_args

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidTopicNameException
from rclpy.expand_topic_name import expand_topic_name
from rclpy.node import Node
from rclpy.validate_full_topic_name import validate_full_topic_name

from synseg_core.config import ConfigError, InferenceConfig, from_dict, list_models, replace_inference
from synseg_core.deploy.backends.factory import DEFAULT_CACHE_DIR
from synseg_core.deploy.capabilities import BACKENDS, PRECISIONS, Backend, Precision, describe_precisions
from synseg_core.evaluation.demo_frames import DEMO_DIR, QUERY_FILE
from synseg_core.inference.preprocess import MAX_IMAGE_PIXELS
from synseg_core.inference.query import QueryLimits
from synseg_core.inference.segmenter import MAX_CATEGORY_LENGTH
from synseg_ros.outputs import MAX_CATEGORIES

Reliability = Literal["best_effort", "reliable"]
RELIABILITIES = get_args(Reliability)
DEFAULT_CHECKPOINT = "demo"
# Things the default (demo) model knows: the query of its sample frames.
DEFAULT_CATEGORIES = (DEMO_DIR / "frames" / QUERY_FILE).read_text().strip()
_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]+)?)$")
_CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # one topic-name token, also usable in parameter names
# The inference settings whose unset value means "the checkpoint's own" (synseg_core.config.InferenceConfig).
INFERENCE_SETTINGS = ("short_side", "window", "stride", "templates", "mask_threshold", "background_threshold",
                      "background")


class ParameterError(ValueError):
    """One or more parameters are invalid; the message names each and what is allowed."""


@dataclass
class NodeParameters:
    """All parameters of the segmentation node (names as in config/synseg.yaml; descriptions in DESCRIPTIONS)."""

    checkpoint: str = DEFAULT_CHECKPOINT
    backend: Backend = "auto"
    device: str = "cuda"
    precision: Precision = "fp32"
    cache_dir: str = DEFAULT_CACHE_DIR
    onnx_path: str = ""
    force_rebuild: bool = False
    cuda_graphs: bool = True
    short_side: int | None = None
    window: int | None = None  # 0 = the whole image (InferenceConfig.window None)
    stride: int | None = None
    templates: str | None = None
    mask_threshold: float | None = None
    background_threshold: float | None = None
    background: bool | None = None
    categories: str = DEFAULT_CATEGORIES
    max_categories: int = InferenceConfig().max_categories
    max_category_length: int = 64
    query_topic: str = "/synseg/query"
    image_reliability: Reliability = "best_effort"
    image_depth: int = 1
    compressed_input: bool = False
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_rate_hz: float = 0.0
    cameras: list[str] = field(default_factory=list)
    batch_window_ms: float = 10.0
    max_batch_frames: int = 0
    inference_lanes: int = 0
    publish_segmentation: bool = True
    publish_labels: bool = True
    publish_masks: bool = True
    publish_confidence: bool = True
    publish_overlay: bool = True
    overlay_alpha: float = 0.5
    output_depth: int = 2
    warmup: bool = True
    warmup_size: list[int] = field(default_factory=lambda: [480, 640])
    diagnostics_period_s: float = 1.0
    stale_image_timeout_s: float = 5.0
    log_throttle_s: float = 5.0
    autostart: bool = True
    exit_on_configure_failure: bool = True

    def query_limits(self) -> QueryLimits:
        return QueryLimits(max_categories=self.max_categories, max_length=self.max_category_length)

    def backend_options(self, inference: InferenceConfig) -> dict[str, Any]:
        """Keyword arguments for the backend factory beyond device/backend/precision (`inference`: the effective
        settings, whose window or short side is the fixed input size of an exported image path)."""
        return {"cache_dir": self.cache_dir, "onnx_path": self.onnx_path or None,
                "input_size": inference.window or inference.short_side,
                "tensorrt": {"force_rebuild": self.force_rebuild},
                "cuda_graphs": self.cuda_graphs}

    def inference_config(self, stored: InferenceConfig) -> InferenceConfig:
        """`stored` (the checkpoint's own inference config) with the inference parameters that are set applied."""
        given = {name: getattr(self, name) for name in INFERENCE_SETTINGS if getattr(self, name) is not None}
        if "window" in given:
            given["window"] = given["window"] or None
        return replace_inference(stored, **given, max_categories=self.max_categories)

    def inference_sources(self) -> dict[str, str]:
        """For each inference setting, where its effective value comes from: "parameter" or "checkpoint"."""
        return {name: "checkpoint" if getattr(self, name) is None else "parameter" for name in INFERENCE_SETTINGS}


_UNSET = " (unset = the checkpoint's own value)"
DESCRIPTIONS = {
    "checkpoint": "model: a checkpoint folder or .safetensors file, a bundled checkpoint (demo: a tiny CLIP and "
                  "decoder trained on synthetic shapes; it knows coloured shapes such as 'red circle' on stuff such "
                  "as 'grass', not real-world things), or a model config (.json file or bundled name such as "
                  "tiny-test), whose decoder is untrained: for tests and timing only",
    "backend": f"image-path backend: one of {', '.join(BACKENDS)} (auto: TensorRT, then ONNX Runtime CUDA, "
               "PyTorch CUDA, ONNX Runtime CPU, PyTorch CPU; each skipped step is logged with its reason)",
    "device": "preferred device: cpu, cuda or cuda:N (backend auto falls back to the CPU without a GPU)",
    "precision": f"image-path precision: one of {', '.join(PRECISIONS)} (where each runs: {describe_precisions()}; "
                 "a combination the backend cannot run fails configure with the reason)",
    "cache_dir": "folder for automatic ONNX exports and TensorRT engines (built on first run, keyed, reused)",
    "onnx_path": "an exported fp32 ONNX image path to run ('' = export automatically into cache_dir)",
    "force_rebuild": "rebuild the TensorRT engine even when a cached one matches",
    "cuda_graphs": "torch backend on CUDA: replay one CUDA graph per input shape (each checked against the eager "
                   "forward; a failing capture is logged and the backend stays eager)",
    "short_side": "resize images so the short side has this many pixels" + _UNSET,
    "window": "sliding-window size in pixels; 0 = resize the whole image to short_side x short_side" + _UNSET,
    "stride": "sliding-window stride in pixels" + _UNSET,
    "templates": "prompt-template set name (synseg_core/resources/templates.json)" + _UNSET,
    "mask_threshold": "probability above which a pixel is in a category's mask (0..1)" + _UNSET,
    "background_threshold": "pixels whose best probability is at most this are background (0..1)" + _UNSET,
    "background": "true: label 0 = background; false: every pixel gets its best category" + _UNSET,
    "categories": "default query: categories separated by commas, semicolons or newlines ('' = wait for a query); "
                  "change it at run time with `ros2 param set` or on query_topic",
    "max_categories": f"most categories one query may hold (1..{MAX_CATEGORIES}); a longer query is rejected whole",
    "max_category_length": f"most characters per category (1..{MAX_CATEGORY_LENGTH})",
    "query_topic": "std_msgs/String topic carrying queries; latched (reliable + transient-local) and plain "
                   "volatile publishers both reach it",
    "image_reliability": f"image subscription reliability: one of {', '.join(RELIABILITIES)}; match the camera "
                         "driver's publisher",
    "image_depth": "image subscription queue depth (>= 1)",
    "compressed_input": "also subscribe to image/compressed (JPEG/PNG sensor_msgs/CompressedImage)",
    "max_image_pixels": "images with more pixels are rejected",
    "max_rate_hz": "most frames processed per second, per camera (0 = as fast as inference allows)",
    "cameras": "camera names; [] = one camera on 'image' with outputs under ~/; each name reads <name>/image and "
               "publishes <name>/segmentation, <name>/labels, <name>/confidence, <name>/overlay; one model serves "
               "all, their frames batched; names start with a letter, then letters, digits or underscores",
    "batch_window_ms": "how long a camera's frame waits at most for frames of the other cameras (one batch)",
    "max_batch_frames": "most camera frames in one batch (0 = one from every camera)",
    "inference_lanes": "parts a batch is split into and run at once (0 = auto: 1 on a GPU, one per frame on the CPU)",
    "publish_segmentation": "publish ~/segmentation (synseg_msgs/Segmentation: query id, names, labels, masks, "
                            "confidence in one message)",
    "publish_labels": "publish ~/labels (mono8, mono16 above 254 categories; 0 = background)",
    "publish_masks": "include the per-category masks (mono8, 255 = inside) in ~/segmentation",
    "publish_confidence": "publish ~/confidence (32FC1, the winning category's probability) and include it in "
                          "~/segmentation",
    "publish_overlay": "publish ~/overlay (bgr8 colour overlay for RViz / Foxglove)",
    "overlay_alpha": "weight of the category colour in the overlay (0..1)",
    "output_depth": "queue depth of the output publishers (>= 1)",
    "warmup": "run one inference at configure before reporting ready (a non-finite result fails configure)",
    "warmup_size": "[height, width] of the warm-up image: the cameras' frame size, so that the first frame finds the "
                   "image path prepared for it",
    "diagnostics_period_s": "seconds between /diagnostics messages",
    "stale_image_timeout_s": "warn in /diagnostics when no image arrived for this long",
    "log_throttle_s": "repeated problems of one kind are logged at most once per this many seconds",
    "autostart": "configure and activate on start-up (synseg_node)",
    "exit_on_configure_failure": "with autostart: exit with status 1 when the start-up configure or activate fails, "
                                 "so launch's respawn or systemd can act (false: stay up unconfigured for a retry)",
}
# config/synseg.yaml's sections, in order; every parameter appears in exactly one.
SECTIONS = (
    ("model and runtime", ("checkpoint", "backend", "device", "precision", "cache_dir", "onnx_path", "force_rebuild",
                           "cuda_graphs")),
    ("inference (synseg_core InferenceConfig; unset = the checkpoint's stored settings)", INFERENCE_SETTINGS),
    ("query", ("categories", "max_categories", "max_category_length", "query_topic")),
    ("input", ("image_reliability", "image_depth", "compressed_input", "max_image_pixels", "max_rate_hz")),
    ("cameras: one node, several cameras, one model", ("cameras", "batch_window_ms", "max_batch_frames",
                                                       "inference_lanes")),
    ("outputs (each is computed only while someone subscribes)", ("publish_segmentation", "publish_labels",
                                                                   "publish_masks", "publish_confidence",
                                                                   "publish_overlay", "overlay_alpha",
                                                                   "output_depth")),
    ("start-up, diagnostics, logging", ("warmup", "warmup_size", "diagnostics_period_s", "stale_image_timeout_s",
                                        "log_throttle_s", "autostart", "exit_on_configure_failure")),
)
# Parameters that take effect immediately on `ros2 param set`; the others apply at the next configure.
LIVE_PARAMETERS = frozenset({"categories", "mask_threshold", "background_threshold", "background", "max_rate_hz",
                             "overlay_alpha", "publish_segmentation", "publish_labels", "publish_masks",
                             "publish_confidence", "publish_overlay", "log_throttle_s"})

PARAMETER_NAMES = tuple(f.name for f in dataclasses.fields(NodeParameters))


def effective_settings(inference: InferenceConfig) -> dict[str, object]:
    """The node's inference settings as the Segmenter runs them (window 0 = the whole image)."""
    return {"short_side": inference.short_side, "window": inference.window or 0, "stride": inference.stride,
            "templates": inference.templates, "mask_threshold": inference.mask_threshold,
            "background_threshold": inference.background_threshold, "background": inference.background}


def describe_inference(inference: InferenceConfig, params: NodeParameters) -> str:
    """'short_side 64 (checkpoint), window 0 (parameter), ...' for the configure log."""
    sources = params.inference_sources()
    return ", ".join(f"{name} {value} ({sources[name]})" for name, value in effective_settings(inference).items())


def is_model_config(checkpoint: str) -> bool:
    """True when `checkpoint` names a model config (bundled name or .json file): a model with an untrained decoder."""
    return checkpoint in list_models() or checkpoint.endswith(".json")


def declare_parameters(node: Node) -> None:
    """Declare every parameter with its default and description (unset inference settings are declared unset).

    Dynamic typing lets `max_rate_hz: 5` (an int) stand for a float; `parameters_from_values` checks types.
    """
    defaults = NodeParameters()
    for name in PARAMETER_NAMES:
        node.declare_parameter(name, getattr(defaults, name),
                               ParameterDescriptor(description=DESCRIPTIONS[name], dynamic_typing=True))


def read_parameters(node: Node) -> NodeParameters:
    """The node's current parameter values, validated (raises ParameterError)."""
    return parameters_from_values({name: node.get_parameter(name).value for name in PARAMETER_NAMES})


def from_ros(name: str, value: Any) -> Any:
    """A ROS parameter value as a plain Python value: arrays as lists, and ROS's unset for an empty list as []
    (ROS has no type for an empty list: `cameras: []` in YAML arrives unset)."""
    if isinstance(value, (array.array, tuple)):
        return list(value)
    if value is None and isinstance(getattr(NodeParameters(), name, None), list):
        return []
    return value


def typed_value(name: str, value: Any, where: str = "parameter") -> Any:
    """`value` checked (and converted: ints pass as floats) against the type of NodeParameters.`name` by
    synseg_core's config engine; raises ConfigError naming `<where>.<name>`."""
    return getattr(from_dict(NodeParameters, {name: from_ros(name, value)}, where), name)


def parameters_from_values(values: dict[str, Any]) -> NodeParameters:
    """Build and validate NodeParameters from plain values; every problem is listed in one ParameterError."""
    problems, typed, mistyped = [], {}, set()
    unknown = sorted(set(values) - set(PARAMETER_NAMES))
    if unknown:
        problems.append(f"unknown parameter(s) {unknown}; valid: {list(PARAMETER_NAMES)}")
    for name, value in values.items():
        if name in PARAMETER_NAMES:
            try:
                typed[name] = typed_value(name, value)
            except ConfigError as exc:
                problems.append(str(exc))
                mistyped.add(name)
    # Values are checked too where the types were right (the mistyped ones stand at their defaults meanwhile).
    problems += check_values(NodeParameters(**typed), names=[n for n in PARAMETER_NAMES if n not in mistyped])
    if problems:
        raise ParameterError("invalid parameter(s): " + "; ".join(problems))
    return NodeParameters(**typed)


def check_values(p: NodeParameters, prefix: str = "", names: Iterable[str] = PARAMETER_NAMES) -> list[str]:
    """One message per invalid value among `names`, each named `<prefix><name>` (prefix for camera overrides)."""
    checked = set(names)

    def bad(name: str, allowed: str) -> str | None:
        return f"parameter '{prefix}{name}' is {getattr(p, name)!r}; {allowed}" if name in checked else None

    return [problem for problem in _problems(p, bad) if problem is not None]


def query_topic_problem(topic: str) -> str | None:
    """Why `topic` is not a valid ROS topic name (relative and private `~/` names allowed), or None."""
    try:
        validate_full_topic_name(expand_topic_name(topic, "synseg", "/"))
    except (InvalidTopicNameException, ValueError) as exc:
        return str(exc).splitlines()[0].split(", at /")[0]  # rcl appends its source location
    return None


def _problems(p: NodeParameters, bad: Callable[[str, str], str | None]) -> Iterable[str | None]:
    """Yield bad(name, allowed) for every invalid value (bad returns None for names not being checked)."""
    if not p.cache_dir.strip():
        yield bad("cache_dir", "give a folder for ONNX exports and TensorRT engines")
    if not p.checkpoint.strip():
        yield bad("checkpoint", "give a checkpoint folder/file, a model-config .json or a bundled name")
    if not _DEVICE.match(p.device):
        yield bad("device", "allowed: cpu, cuda or cuda:N")
    for name in ("short_side", "stride", "image_depth", "max_image_pixels", "output_depth"):
        if getattr(p, name) is not None and getattr(p, name) < 1:
            yield bad(name, "it must be >= 1")
    if p.window is not None and p.window < 0:
        yield bad("window", "it must be >= 0 (0 = whole image)")
    elif p.window and p.stride is not None and p.stride > p.window:
        yield bad("stride", f"it must be at most window ({p.window}) so the windows cover the image")
    if p.templates is not None and not p.templates.strip():
        yield bad("templates", "give a prompt-template set name such as 'single'")
    for name in ("mask_threshold", "background_threshold", "overlay_alpha"):
        if getattr(p, name) is not None and not 0.0 <= getattr(p, name) <= 1.0:
            yield bad(name, "it must be within [0, 1]")
    if not 1 <= p.max_categories <= MAX_CATEGORIES:
        yield bad("max_categories", f"it must be within [1, {MAX_CATEGORIES}] (one mask per category)")
    if not 1 <= p.max_category_length <= MAX_CATEGORY_LENGTH:
        yield bad("max_category_length", f"it must be within [1, {MAX_CATEGORY_LENGTH}]")
    if (why := query_topic_problem(p.query_topic)) is not None:
        yield bad("query_topic", f"give a valid ROS topic name such as '/synseg/query' or '~/query' ({why})")
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
