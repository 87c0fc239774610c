"""The `synseg` lifecycle node: open-vocabulary segmentation of a camera stream.

configure = validate parameters, load the model, warm up, create outputs and the query subscriptions;
activate = subscribe to images and start the worker; deactivate = stop; cleanup = free the model.
With `autostart` (default) `synseg_node` configures and activates itself, so a plain launch just works; with
`exit_on_configure_failure` (default) a failed start exits with status 1, so launch's respawn or systemd can act.
Topics: input `image` (+ `image/compressed`), query `/synseg/query`, outputs `~/segmentation`
(synseg_msgs/Segmentation: query id, names, labels, masks, confidence), `~/labels`, `~/confidence`, `~/overlay`,
`~/label_info` (+ `~/vision_label_info`), and `/diagnostics` (from start-up on, also while unconfigured).
With the `cameras` parameter (e.g. [front, rear]) each camera reads `<name>/image` and publishes under `<name>/`;
one model serves them all, their frames batched together (synseg_ros/camera_group.py); the query, label_info and
/diagnostics (one status per camera) stay shared.
The active query is the latest accepted one from the query topic or the `categories` parameter; each accepted
query (and each change of `background`) gets a new query id, announced on label_info, and no output of an older id
is published after that announcement. Inference settings left unset are the checkpoint's own (logged at configure).
"""
from __future__ import annotations

import dataclasses
import gc
import time
from typing import Any

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header, String

import synseg_core
import synseg_ros
from synseg_core.deploy.backends.factory import create_backend
from synseg_core.inference.postprocess import Outputs
from synseg_core.inference.query import QueryError, parse_query
from synseg_core.inference.segmenter import Segmenter, resolve_model_source
from synseg_ros.camera import CameraPipeline, incompatible_qos_warning
from synseg_ros.camera_group import CameraGroup, LabelGate
from synseg_ros.camera_parameters import (LIVE_CAMERA_OVERRIDES, camera_settings, declare_camera_overrides,
                                          read_camera_overrides, split_camera_override)
from synseg_ros.diagnostics import diagnostic_status, unconfigured_status
from synseg_ros.message_sequence import PublisherSequences
from synseg_ros.outputs import LabelSet, label_info_json, vision_label_info, vision_label_info_type
from synseg_ros.parameters import (LIVE_PARAMETERS, PARAMETER_NAMES, NodeParameters, ParameterError,
                                   declare_parameters, describe_inference, effective_settings, is_model_config,
                                   parameters_from_values, read_parameters)
from synseg_ros.throttled_log import ThrottledLog

NODE_NAME = "synseg"
# Category used for the warm-up inference when no query is set yet (any word works: it only exercises the model).
WARMUP_CATEGORIES = ("object",)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# A plain `ros2 topic pub` offers volatile durability, which a transient-local subscription refuses.
VOLATILE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


class WarmupError(RuntimeError):
    """The warm-up inference produced unusable values."""


class SynSegNode(LifecycleNode):
    """Lifecycle node around `synseg_core.Segmenter` (see the module docstring)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare_parameters(self)
        self.params: NodeParameters | None = None  # the configured values (None while unconfigured)
        self.segmenter: Segmenter | None = None
        self.group: CameraGroup | None = None  # the cameras and their batching scheduler (while configured)
        self.gate = LabelGate()  # the active query; survives cleanup
        self.configure_error: str | None = None  # why the last configure failed (None after a success)
        self._rejected_queries = 0
        self._query_sequences = PublisherSequences()  # both query subscriptions: a sample is handled once
        self._active = False
        self._label_info_pub = self._vision_pub = None
        self._query_subs: list = []
        self._vision_type = vision_label_info_type()
        self._log_error = ThrottledLog(self.get_logger().error, NodeParameters().log_throttle_s)
        # /diagnostics exists from start-up, so a node whose configure failed still says why.
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(NodeParameters().diagnostics_period_s, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def cameras(self) -> list[CameraPipeline]:
        """The camera pipelines (one without the `cameras` parameter; none while unconfigured)."""
        return self.group.pipelines if self.group is not None else []

    @property
    def categories(self) -> tuple[str, ...]:
        """The active query (shared by all cameras)."""
        return self.gate.current.categories

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            params = read_parameters(self)
            initial = parse_query(params.categories, params.query_limits()) if params.categories.strip() else None
            declare_camera_overrides(self, params.cameras)  # rejects a bad override given in YAML or -p
            cameras = camera_settings(params, read_camera_overrides(self, params.cameras))
        except (ParameterError, QueryError, InvalidParameterValueException) as exc:
            return self._configure_failed(str(exc))
        try:
            self._load_model(params, initial)
        except Exception as exc:  # any load failure leaves the node unconfigured, ready for a retry
            self.release()
            return self._configure_failed(f"cannot load model {params.checkpoint!r} (backend {params.backend}, "
                                          f"device {params.device}): {exc}")
        self.params = params
        self.configure_error = None
        self._log_error.period_s = params.log_throttle_s
        self._diagnostics_timer.timer_period_ns = int(params.diagnostics_period_s * 1e9)
        self._diagnostics_timer.reset()
        self._create_interfaces(params, cameras)
        background = self.segmenter.inference.background
        if initial is not None or background != self.gate.current.background:
            self._switch_labels(tuple(initial) if initial is not None else self.categories, background,
                                "parameter 'categories'")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        self.group.activate()
        with self.gate.lock:
            self._active = True
            self._publish_label_info()
        self.get_logger().info(f"active: reading {', '.join(camera.topic for camera in self.cameras)}; "
                               f"{len(self.categories)} categories")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self.group.deactivate()
        self.get_logger().info("inactive: image subscriptions closed")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def autostart(self) -> bool:
        """Configure and activate; returns success (the caller decides whether a failure ends the process)."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self.configure_error = reason
        self.get_logger().error(f"configure failed: {reason}")
        return TransitionCallbackReturn.FAILURE

    def _load_model(self, params: NodeParameters, initial: list[str] | None) -> None:
        """Load the model with its own inference settings (parameters that are set applied), cache text
        embeddings and warm up; a warm-up result that is not finite fails (corrupt weights)."""
        start = time.perf_counter()
        model = resolve_model_source(params.checkpoint)
        inference = params.inference_config(model.cfg.inference)
        backend = create_backend(params.backend, model, device=params.device, precision=params.precision,
                                 **params.backend_options(inference))
        segmenter = Segmenter(model, backend, inference)
        categories = initial or list(self.categories) or list(WARMUP_CATEGORIES)
        segmenter.encode_text(categories)  # checks the template set and caches the embeddings
        loaded = time.perf_counter()
        if params.warmup:
            height, width = params.warmup_size
            # what the cameras ask for, so the first frame finds every kernel compiled and checked
            result = segmenter.segment(np.zeros((height, width, 3), np.uint8), categories,
                                       outputs=Outputs.for_images())
            bad = int((~np.isfinite(result.confidence)).sum())
            if bad:
                raise WarmupError(f"the warm-up inference produced {bad} non-finite values of {result.confidence.size} "
                                  "(NaN or inf): the checkpoint's weights are likely corrupt")
        self.segmenter = segmenter
        self.get_logger().info(
            f"model {model.cfg.name!r} from {params.checkpoint!r} loaded in {loaded - start:.2f} s on backend "
            f"{backend.name} ({backend.precision}, {backend.device})"
            + (f"; warm-up {1000 * (time.perf_counter() - loaded):.0f} ms" if params.warmup else ""))
        self.get_logger().info(f"inference settings: {describe_inference(inference, params)}")
        if is_model_config(params.checkpoint):
            self.get_logger().warning(
                f"checkpoint {params.checkpoint!r} is a model config, not a trained checkpoint: its decoder has "
                "random weights, so its outputs mean nothing (fine for tests and timing). For real use point "
                "checkpoint at a trained checkpoint folder or .safetensors file (or 'demo' for the demo model)")

    def _create_interfaces(self, params: NodeParameters, cameras: list) -> None:
        self._label_info_pub = self.create_lifecycle_publisher(String, "~/label_info", LATCHED)
        if self._vision_type is not None:
            self._vision_pub = self.create_lifecycle_publisher(self._vision_type, "~/vision_label_info", LATCHED)
        # The query stays subscribed from configure to cleanup, so a query sent while inactive is not lost. Two
        # subscriptions: the latched one receives a query published before this node started; the volatile one
        # matches plain publishers (`ros2 topic pub` without QoS flags). A sample both receive is handled once.
        # A volatile publisher is incompatible with the latched subscription by design (the volatile one serves
        # it), so only the volatile subscription explains a mismatch (a best-effort publisher).
        hint = ("Publish queries with reliable QoS, e.g. ros2 topic pub --once --qos-durability transient_local "
                f"--qos-reliability reliable {params.query_topic} std_msgs/String \"data: 'person, chair'\"")
        subscriptions = ((LATCHED, SubscriptionEventCallbacks(incompatible_qos=lambda event: None)),
                         (VOLATILE, incompatible_qos_warning(self, params.query_topic, hint)))
        self._query_subs = [self.create_subscription(
            String, params.query_topic, lambda msg, info: self._on_query(msg, info, params.query_topic), qos,
            event_callbacks=events) for qos, events in subscriptions]
        self.group = CameraGroup(self, self.segmenter, params, cameras, self.gate)

    def release(self) -> None:
        """Stop everything and release the model (cleanup, shutdown and error all end here)."""
        self._active = False
        if self.group is not None:
            self.group.destroy()
        self.group = None
        for subscription in self._query_subs:
            self.destroy_subscription(subscription)
        self._query_subs = []
        for pub in (self._label_info_pub, self._vision_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._label_info_pub = self._vision_pub = None
        released = self.segmenter is not None
        self.segmenter = None
        self.params = None
        if released:
            gc.collect()
            _empty_cuda_cache()

    # ---- query -----------------------------------------------------------------------------------------------

    def _on_query(self, msg: String, info: dict, topic: str) -> None:
        # Both query subscriptions may deliver a sample, in either order: a publisher's sample that is not newer than
        # the newest one handled is a duplicate or late, and applying it would bring an older query back.
        if self._query_sequences.advance(info) is None:
            return
        self.apply_query(msg.data, topic)

    def apply_query(self, text: str, source: str) -> bool:
        """Parse and apply a query; a bad one is rejected whole (logged, counted) and the old one stays."""
        params = self.params or NodeParameters()
        try:
            categories = parse_query(text, params.query_limits())
        except QueryError as exc:
            self._rejected_queries += 1
            self._log_error("query", f"rejected query from {source}: {exc}; keeping the previous query "
                                     f"({len(self.categories)} categories)")
            return False
        self._set_categories(categories, source)
        return True

    def _set_categories(self, categories: list[str], source: str) -> None:
        """Make a parsed query the active one, unless it already is."""
        if tuple(categories) != self.categories:
            self._switch_labels(tuple(categories), self.gate.current.background, source)

    def _switch_labels(self, categories: tuple[str, ...], background: bool, source: str) -> None:
        """Make (categories, background) the active label set under a new query id and announce it."""
        if self.segmenter is not None:
            self.segmenter.encode_text(list(categories))  # computed once per query change, then cached
        with self.gate.lock:  # outputs of the old id are published before this, or not at all
            self.gate.current = LabelSet(self.gate.current.query_id + 1, categories, background)
            self._publish_label_info()
        if categories:
            self.get_logger().info(f"query {self.gate.current.query_id} from {source}: {len(categories)} "
                                   f"categories: {', '.join(categories)}")

    def _publish_label_info(self) -> None:
        """Publish the active label set (the caller holds the gate's lock)."""
        segmenter, label_info_pub, vision_pub = self.segmenter, self._label_info_pub, self._vision_pub
        if not self._active or label_info_pub is None or self.params is None or segmenter is None:
            return
        labels = self.gate.current
        label_info_pub.publish(String(data=label_info_json(labels)))
        if vision_pub is not None:
            header = Header(stamp=self.get_clock().now().to_msg())
            vision_pub.publish(vision_label_info(self._vision_type, labels, segmenter.inference.mask_threshold,
                                                 header))

    # ---- parameters ------------------------------------------------------------------------------------------

    def _on_set_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        """Validate every change; live ones (LIVE_PARAMETERS) apply now, the rest at the next configure."""
        values = {name: self.get_parameter(name).value for name in PARAMETER_NAMES}
        values.update({p.name: p.value for p in changes if p.name in PARAMETER_NAMES})
        overrides = {p.name: p.value for p in changes if split_camera_override(p.name)}
        try:
            new = parameters_from_values(values)
            query = next((p.value for p in changes if p.name == "categories"), None)
            categories = parse_query(query, new.query_limits()) if query is not None else None
            camera_settings(new, {**read_camera_overrides(self, new.cameras), **overrides})  # validates overrides
        except (ParameterError, QueryError) as exc:
            if any(p.name == "categories" for p in changes):
                self._rejected_queries += 1
            return SetParametersResult(successful=False, reason=str(exc))
        if self.params is not None:
            self._apply_live(new, [p.name for p in changes], overrides)
        if categories is not None:
            self._set_categories(categories, "parameter 'categories'")
        return SetParametersResult(successful=True)

    def _apply_live(self, new: NodeParameters, names: list[str], overrides: dict[str, object]) -> None:
        live = {name: getattr(new, name) for name in names if name in LIVE_PARAMETERS}
        live_overrides = {name for name in overrides if split_camera_override(name)[1] in LIVE_CAMERA_OVERRIDES}
        later = sorted(set(names) - LIVE_PARAMETERS - live_overrides)
        if later:
            self.get_logger().info(f"parameter(s) {later} take effect at the next configure")
        self.params = dataclasses.replace(self.params, **live)
        self._log_error.period_s = self.params.log_throttle_s
        if self.segmenter is not None:
            self.segmenter.inference = self.params.inference_config(self.segmenter.model.cfg.inference)
            if self.segmenter.inference.background != self.gate.current.background:  # label 0 changes meaning
                self._switch_labels(self.categories, self.segmenter.inference.background, "parameter 'background'")
        if self.group is not None:
            # Only the live overrides change now; the others stay as configured until the next configure.
            current = read_camera_overrides(self, self.params.cameras)
            current.update({name: value for name, value in overrides.items() if name in live_overrides})
            self.group.update(self.params, camera_settings(self.params, current))

    # ---- diagnostics -----------------------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()))
        # One read of each: a cleanup on another thread may release them while this timer runs.
        segmenter, params, group = self.segmenter, self.params, self.group
        if segmenter is None or params is None or group is None:
            array.status.append(unconfigured_status(
                f"{self.get_fully_qualified_name()}: node", str(self.get_parameter("device").value),
                str(self.get_parameter("checkpoint").value), self.configure_error))
        else:
            info = self._diagnostic_info(segmenter, params, group)
            for camera, snapshot in group.snapshots():
                array.status.append(diagnostic_status(
                    f"{self.get_fully_qualified_name()}: {camera.topic}", params.device, snapshot,
                    {"camera": camera.settings.name, **info} if camera.settings.name else info, active=self._active,
                    num_categories=len(self.categories), stale_after_s=params.stale_image_timeout_s,
                    image_topic=camera.topic))
        self._diagnostics_pub.publish(array)

    def _diagnostic_info(self, segmenter: Segmenter, params: NodeParameters, group: CameraGroup) -> dict[str, object]:
        backend, batches = segmenter.backend, group.batch_stats
        sources = params.inference_sources()
        return {"backend": backend.name, "precision": backend.precision, "device": str(backend.device),
                "model": segmenter.model.cfg.name, "checkpoint": params.checkpoint,
                "weights": "untrained decoder (model config)" if is_model_config(params.checkpoint)
                else "checkpoint",
                **{f"inference_{name}": f"{value} ({sources[name]})"
                   for name, value in effective_settings(segmenter.inference).items()},
                "query_id": self.gate.current.query_id, "rejected_queries": self._rejected_queries,
                "active": self._active, "cameras": len(self.cameras), "batches": batches.batches,
                "batched_frames": batches.items, "largest_batch": batches.largest,
                "inference_lanes": group.lanes, "intra_op_threads": torch.get_num_threads()}


def _empty_cuda_cache() -> None:
    """Return cached GPU memory to the driver after the model is released (no-op without CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(args: list[str] | None = None) -> int:
    """Console script `synseg_node`: run the node until SIGINT, then clean up. Returns the exit status: 1 when the
    start-up configure/activate failed and `exit_on_configure_failure` is set, else 0."""
    rclpy.init(args=args)
    node = None
    try:
        node = SynSegNode()
        node.get_logger().info(f"synseg_node {synseg_core.__version__} (synseg_ros at {synseg_ros.__path__[0]})")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if node.get_parameter("autostart").value and not node.autostart():
            if node.get_parameter("exit_on_configure_failure").value:
                node.get_logger().fatal("start-up failed (see above): exiting with status 1 "
                                        "(exit_on_configure_failure: true)")
                return 1
            node.get_logger().error(f"start-up failed (see above); staying up unconfigured: fix the parameters and "
                                    f"run `ros2 lifecycle set {node.get_fully_qualified_name()} configure`")
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
