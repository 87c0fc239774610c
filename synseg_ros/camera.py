"""One camera's pipeline: its image subscriptions, its outputs, its latest-frame worker and its statistics.

The node owns one `CameraPipeline` per camera (today exactly one, reading the relative topic `image` and
publishing under `~/`); the model, the query and label_info are shared by the node. Per frame, on the worker
thread: convert -> Segmenter.segment -> build the output messages someone subscribes to -> publish.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from synseg_core.segmenter import SegmentationResult, Segmenter
from synseg_core.worker import LatestFrameWorker
from synseg_ros.diagnostics import PipelineStats, StatsSnapshot
from synseg_ros.image_conversion import ImageConversionError, compressed_to_rgb8, image_to_rgb8
from synseg_ros.outputs import confidence_message, labels_message, masks_message, overlay_message
from synseg_ros.parameters import NodeParameters
from synseg_ros.throttled_log import ThrottledLog

OUTPUTS = ("labels", "masks", "confidence", "overlay")


@dataclass(frozen=True)
class Frame:
    """A received image message, raw or compressed."""

    msg: Image | CompressedImage
    compressed: bool


def incompatible_qos_warning(node: LifecycleNode, topic: str, hint: str) -> SubscriptionEventCallbacks:
    """Event callbacks that explain a QoS mismatch (the most common reason a node gets no messages)."""
    def warn(event: QoSRequestedIncompatibleQoSInfo) -> None:
        policy = QoSPolicyKind(event.last_policy_kind).name
        node.get_logger().warning(f"a publisher on {topic} offers QoS incompatible with this subscription "
                                  f"(policy {policy}); its messages will not arrive. {hint}")
    return SubscriptionEventCallbacks(incompatible_qos=warn)


class CameraPipeline:
    """Subscriptions, outputs, worker and stats of one camera.

    Args:
        node: the lifecycle node that owns the topics.
        segmenter: the shared model.
        params: the node's parameters (replace `pipeline.params` to apply live changes).
        categories: returns the active category list (shared by all cameras).
        input_topic: the raw image topic, relative so it remaps ("image"); compressed is `<input_topic>/compressed`.
        output_prefix: prefix of the output topics ("~/" gives ~/labels, ~/masks, ...).
    """

    def __init__(self, node: LifecycleNode, segmenter: Segmenter, params: NodeParameters,
                 categories: Callable[[], Sequence[str]], *, input_topic: str = "image",
                 output_prefix: str = "~/") -> None:
        self._node = node
        self._segmenter = segmenter
        self._categories = categories
        self.input_topic = input_topic
        self._topic = node.resolve_topic_name(input_topic)
        self.stats = PipelineStats()
        self._params = params
        self._log_error = ThrottledLog(node.get_logger().error, params.log_throttle_s)
        self._log_warning = ThrottledLog(node.get_logger().warning, params.log_throttle_s)
        output_qos = QoSProfile(depth=params.output_depth, reliability=ReliabilityPolicy.RELIABLE)
        self._publishers = {name: node.create_lifecycle_publisher(Image, output_prefix + name, output_qos)
                            for name in OUTPUTS}
        self._subscriptions: list = []
        self._worker: LatestFrameWorker[Frame] = LatestFrameWorker(
            self._process, name=f"synseg-worker-{input_topic}", min_period_s=self._min_period(params),
            on_error=self._on_unexpected_error)

    @property
    def params(self) -> NodeParameters:
        return self._params

    @params.setter
    def params(self, params: NodeParameters) -> None:
        self._params = params
        self._worker.min_period_s = self._min_period(params)
        self._log_error.period_s = self._log_warning.period_s = params.log_throttle_s

    @staticmethod
    def _min_period(params: NodeParameters) -> float:
        return 1.0 / params.max_rate_hz if params.max_rate_hz > 0 else 0.0

    def activate(self) -> None:
        """Subscribe to the image topic(s) and start the worker."""
        p = self._params
        reliability = ReliabilityPolicy.RELIABLE if p.image_reliability == "reliable" else \
            ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(depth=p.image_depth, history=HistoryPolicy.KEEP_LAST, reliability=reliability,
                         durability=DurabilityPolicy.VOLATILE)
        hint = f"This node subscribes with image_reliability={p.image_reliability}; set that parameter to match."
        topics = [(Image, self.input_topic, False)]
        if p.compressed_input:
            topics.append((CompressedImage, self.input_topic + "/compressed", True))
        for msg_type, topic, compressed in topics:
            self._subscriptions.append(self._node.create_subscription(
                msg_type, topic, lambda msg, c=compressed: self._on_image(msg, c), qos,
                event_callbacks=incompatible_qos_warning(self._node, topic, hint)))
        self._worker.start()

    def deactivate(self) -> None:
        """Unsubscribe and stop the worker (waits for the frame in progress)."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions.clear()
        self._worker.stop()

    def destroy(self) -> None:
        """Deactivate and remove the output publishers."""
        self.deactivate()
        for publisher in self._publishers.values():
            self._node.destroy_lifecycle_publisher(publisher)
        self._publishers.clear()

    def snapshot(self) -> StatsSnapshot:
        """Stats including the worker's drop count."""
        snap = self.stats.snapshot()
        snap.counters["frames_dropped"] = self._worker.stats.dropped
        return snap

    def _on_image(self, msg: Image | CompressedImage, compressed: bool) -> None:
        self.stats.image_received()
        self._worker.submit(Frame(msg, compressed))

    def _on_unexpected_error(self, exc: BaseException) -> None:
        """Anything `_process` did not handle itself (a bug, not bad input): count, log, keep serving."""
        self.stats.count("internal_errors", error=f"internal error: {exc!r}")
        self._log_error(f"internal:{type(exc).__name__}", f"unexpected error while processing a frame: {exc!r}")

    def _process(self, frame: Frame) -> None:
        """Worker thread: one frame through convert -> segment -> build -> publish."""
        p = self._params
        t0 = time.perf_counter()
        try:
            convert = compressed_to_rgb8 if frame.compressed else image_to_rgb8
            rgb = convert(frame.msg, p.max_image_pixels)
        except ImageConversionError as exc:
            kind = frame.msg.format if frame.compressed else frame.msg.encoding
            self.stats.count("bad_frames", error=f"bad image: {exc}")
            self._log_error(f"bad_image:{exc.reason}:{kind}", f"dropping an image from {self._topic}: {exc}")
            return
        categories = list(self._categories())
        if not categories:
            self.stats.count("frames_without_query")
            self._log_warning("no_query", "images arrive but no categories are set; publish a query or set the "
                              "'categories' parameter")
            return
        t1 = time.perf_counter()
        try:
            result = self._segmenter.segment(rgb, categories)
        except Exception as exc:  # a failed inference is counted and logged; the node keeps serving
            self.stats.count("inference_errors", error=f"inference failed: {exc}")
            self._log_error(f"inference:{type(exc).__name__}", f"inference failed: {exc!r}")
            return
        t2 = time.perf_counter()
        messages = self._build(result, rgb, frame.msg.header)
        t3 = time.perf_counter()
        for name, msg in messages:
            self._publishers[name].publish(msg)
        t4 = time.perf_counter()
        self.stats.frame_processed({"convert": t1 - t0, "inference": t2 - t1, "build": t3 - t2, "publish": t4 - t3})

    def subscription_count(self, output: str) -> int:
        """How many subscribers output `output` (one of OUTPUTS) has right now."""
        return self._publishers[output].get_subscription_count()

    def _wanted(self, name: str) -> bool:
        """An output is built only when enabled and someone subscribes (costly outputs stay lazy)."""
        return getattr(self._params, f"publish_{name}") and self.subscription_count(name) > 0

    def _build(self, result: SegmentationResult, rgb: np.ndarray, header: Header) -> list[tuple[str, Image]]:
        """The output messages wanted now, all with the input header and resolution."""
        num = len(result.categories)
        builders = {
            "labels": lambda: labels_message(result.labels, num, header),
            "masks": lambda: masks_message(result.masks, header),
            "confidence": lambda: confidence_message(result.confidence, header),
            "overlay": lambda: overlay_message(rgb, result.labels, num, self._params.overlay_alpha, header),
        }
        messages = []
        for name in OUTPUTS:
            if self._wanted(name):
                messages.append((name, builders[name]()))
                self.stats.count(f"computed_{name}")
        return messages
