"""One camera's pipeline: its image subscriptions, its outputs and its statistics.

Without the `cameras` parameter the node has one pipeline reading the relative topic `image` and publishing under
`~/`; with it, one per camera reading `<name>/image` and publishing under `<name>/`. The model, the query and
label_info are shared by the node, and frames of all cameras go through one `CameraGroup` (synseg_ros/camera_group.py)
that batches them. A pipeline converts its own frames, builds its own outputs and counts its own losses: a bad frame
or a frame lost in transport is counted on its camera only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from rclpy.event_handler import QoSMessageLostInfo, QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from synseg_core.inference.segmenter import SegmentationResult
from synseg_ros.camera_parameters import CameraSettings
from synseg_ros.dds import lost_frames_advice
from synseg_ros.diagnostics import PipelineStats, StatsSnapshot
from synseg_ros.image_conversion import ImageConversionError, compressed_to_rgb8, image_to_rgb8
from synseg_ros.message_sequence import PublisherSequences
from synseg_ros.outputs import (LabelSet, confidence_message, labels_message, masks_messages, overlay_message,
                                segmentation_message)
from synseg_ros.parameters import NodeParameters
from synseg_ros.throttled_log import ThrottledLog

try:
    from synseg_msgs.msg import Segmentation
except ImportError as _exc:  # the message package is built, not pip-installed
    raise ImportError("the message package synseg_msgs is not built: run scripts/setup.sh (it builds ros/synseg_msgs "
                      "into the venv) or `colcon build` a workspace holding this repository and source its "
                      "install/setup.bash") from _exc

OUTPUTS = ("segmentation", "labels", "confidence", "overlay")


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
    """Subscriptions, outputs and stats of one camera.

    Args:
        node: the lifecycle node that owns the topics.
        params: the node's parameters (replace with `update` to apply live changes).
        settings: this camera's topics and input settings.
        submit: called with each received frame (hands it to the batching scheduler).
    """

    def __init__(self, node: LifecycleNode, params: NodeParameters, settings: CameraSettings,
                 submit: Callable[[Frame], object]) -> None:
        self._node = node
        self._submit = submit
        self.settings = settings
        self.topic = node.resolve_topic_name(settings.input_topic)
        self.stats = PipelineStats()
        self.params = params
        self._log_error = ThrottledLog(node.get_logger().error, params.log_throttle_s)
        self._log_warning = ThrottledLog(node.get_logger().warning, params.log_throttle_s)
        output_qos = QoSProfile(depth=params.output_depth, reliability=ReliabilityPolicy.RELIABLE)
        self._publishers = {name: node.create_lifecycle_publisher(Segmentation if name == "segmentation" else Image,
                                                                  settings.output_prefix + name, output_qos)
                            for name in OUTPUTS}
        self._subscriptions: list = []
        self._sequences = PublisherSequences()

    @property
    def input_topic(self) -> str:
        """The raw image topic, relative so it remaps ("image" or "<camera>/image")."""
        return self.settings.input_topic

    def update(self, params: NodeParameters, settings: CameraSettings) -> None:
        """Apply live parameter changes (QoS changes take effect at the next activation)."""
        self.params = params
        self.settings = settings
        self._log_error.period_s = self._log_warning.period_s = params.log_throttle_s

    def activate(self) -> None:
        """Subscribe to the image topic(s)."""
        self._sequences = PublisherSequences()  # frames sent while unsubscribed were not missed
        s = self.settings
        reliability = ReliabilityPolicy.RELIABLE if s.image_reliability == "reliable" else \
            ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(depth=s.image_depth, history=HistoryPolicy.KEEP_LAST, reliability=reliability,
                         durability=DurabilityPolicy.VOLATILE)
        setting = f"{s.name}.image_reliability (or image_reliability)" if s.name else "image_reliability"
        hint = f"This node subscribes with {setting}={s.image_reliability}; set that parameter to match."
        topics = [(Image, s.input_topic, False)]
        if self.params.compressed_input:
            topics.append((CompressedImage, s.input_topic + "/compressed", True))
        for msg_type, topic, compressed in topics:
            events = incompatible_qos_warning(self._node, topic, hint)
            events.message_lost = self._on_lost
            self._subscriptions.append(self._node.create_subscription(
                msg_type, topic, lambda msg, info, c=compressed: self._on_image(msg, info, c), qos,
                event_callbacks=events))

    def deactivate(self) -> None:
        """Unsubscribe."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions.clear()

    def destroy(self) -> None:
        """Deactivate and remove the output publishers."""
        self.deactivate()
        for publisher in self._publishers.values():
            self._node.destroy_lifecycle_publisher(publisher)
        self._publishers.clear()

    def snapshot(self, dropped: int) -> StatsSnapshot:
        """Stats including the scheduler's drop count for this camera."""
        snap = self.stats.snapshot()
        snap.counters["frames_dropped"] = dropped
        return snap

    def _on_image(self, msg: Image | CompressedImage, info: dict, compressed: bool) -> None:
        self.stats.image_received(self._sequences.advance(info) or 0)
        self._submit(Frame(msg, compressed))

    def _on_lost(self, info: QoSMessageLostInfo) -> None:
        """The middleware reports frames that were sent but never reached this subscription."""
        self.stats.frames_lost(info.total_count_change)
        self._log_warning("message_lost", lost_frames_advice(self.topic, info.total_count_change, info.total_count))

    def convert(self, frame: Frame) -> np.ndarray | None:
        """The frame as HxWx3 uint8 RGB, or None for a bad frame (counted and logged on this camera)."""
        try:
            convert = compressed_to_rgb8 if frame.compressed else image_to_rgb8
            return convert(frame.msg, self.params.max_image_pixels)
        except ImageConversionError as exc:
            kind = frame.msg.format if frame.compressed else frame.msg.encoding
            self.stats.count("bad_frames", error=f"bad image: {exc}")
            self._log_error(f"bad_image:{exc.reason}:{kind}", f"dropping an image from {self.topic}: {exc}")
            return None

    def build(self, result: SegmentationResult, rgb: np.ndarray, header: Header,
              labels: LabelSet) -> list[tuple[str, object]]:
        """The output messages wanted now (enabled and subscribed), all with the frame's header and resolution."""
        num = len(result.categories)
        cached: dict[str, Image] = {}  # labels and confidence images serve their topics and ~/segmentation alike

        def image(name: str) -> Image:
            if name not in cached:
                cached[name] = labels_message(result.labels, num, header) if name == "labels" else \
                    confidence_message(result.confidence, header)
            return cached[name]

        # A result computed before a publish_* parameter or a subscription changed may lack an output: it is left out
        # this once.
        masks = result.mask_images
        has_confidence = self.params.publish_confidence and result.confidence is not None
        messages = []
        if self._wanted("segmentation"):
            messages.append(("segmentation", segmentation_message(
                Segmentation, labels, header, image("labels"),
                masks_messages(masks, header) if self.params.publish_masks and masks is not None else [],
                image("confidence") if has_confidence else None)))
        for name in ("labels", "confidence"):
            if self._wanted(name) and (name == "labels" or has_confidence):
                messages.append((name, image(name)))
        if self._wanted("overlay"):
            messages.append(("overlay", overlay_message(rgb, result.labels, num, self.params.overlay_alpha, header)))
        for name, _ in messages:
            self.stats.count(f"computed_{name}")
        return messages

    def send(self, messages: list[tuple[str, object]], stage_seconds: dict[str, float]) -> None:
        """Publish built messages and record the frame's stage times (`stage_seconds` includes "build")."""
        start = time.perf_counter()
        for name, msg in messages:
            self._publishers[name].publish(msg)
        self.stats.frame_processed({**stage_seconds, "publish": time.perf_counter() - start})

    def subscription_count(self, output: str) -> int:
        """How many subscribers output `output` (one of OUTPUTS) has right now."""
        return self._publishers[output].get_subscription_count()

    def needed_outputs(self) -> tuple[bool, bool]:
        """(mask images, confidence): whether the outputs wanted now carry them, so the segmenter computes them."""
        segmentation = self._wanted("segmentation")
        return (self.params.publish_masks and segmentation,
                self.params.publish_confidence and (segmentation or self._wanted("confidence")))

    def _wanted(self, name: str) -> bool:
        """An output is built only when enabled and someone subscribes (costly outputs stay lazy)."""
        return getattr(self.params, f"publish_{name}") and self.subscription_count(name) > 0
