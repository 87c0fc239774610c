"""The `synseg` lifecycle node: open-vocabulary segmentation of a camera stream.

configure = validate parameters, load the model, warm up, create outputs and the query subscription;
activate = subscribe to images and start the worker; deactivate = stop; cleanup = free the model.
With `autostart` (default) `synseg_node` configures and activates itself, so a plain launch just works.
Topics: input `image` (+ `image/compressed`), query `/synseg/query`, outputs `~/labels`, `~/masks`,
`~/confidence`, `~/overlay`, `~/label_info` (+ `~/vision_label_info`), and `/diagnostics`.
With the `cameras` parameter (e.g. [front, rear]) each camera reads `<name>/image` (+ `<name>/image/compressed`)
and publishes `<name>/labels`, `<name>/masks`, `<name>/confidence`, `<name>/overlay`; one model serves them all,
their frames batched together (synseg_ros/camera_group.py); the query, label_info and /diagnostics (one status
per camera) stay shared.
Output encodings are documented in synseg_ros/outputs.py, parameters in config/synseg.yaml. The active query
is the latest accepted one from the query topic or the `categories` parameter (label_info always shows it);
`ros2 param get categories` shows the parameter, which a later query on the topic may have replaced.
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
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header, String

import synseg_core
import synseg_ros
from synseg_core.inference.query import QueryError, parse_query
from synseg_core.inference.segmenter import Segmenter
from synseg_ros.camera import CameraPipeline, incompatible_qos_warning
from synseg_ros.camera_group import CameraGroup
from synseg_ros.diagnostics import diagnostic_status
from synseg_ros.outputs import label_info_json, vision_label_info, vision_label_info_type
from synseg_ros.parameters import (LIVE_CAMERA_OVERRIDES, LIVE_PARAMETERS, PARAMETER_NAMES, CameraSettings,
                                   NodeParameters, ParameterError, camera_settings, declare_camera_overrides,
                                   declare_parameters, parameters_from_values, read_camera_overrides,
                                   read_parameters, split_camera_override)
from synseg_ros.throttled_log import ThrottledLog

NODE_NAME = "synseg"
# Category used for the warm-up inference when no query is set yet (any word works: it only exercises the model).
WARMUP_CATEGORIES = ("object",)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class SynSegNode(LifecycleNode):
    """Lifecycle node around `synseg_core.Segmenter` (see the module docstring)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare_parameters(self)
        self.params: NodeParameters | None = None  # the configured values (None while unconfigured)
        self.segmenter: Segmenter | None = None
        self.group: CameraGroup | None = None  # the cameras and their batching scheduler (while configured)
        self._categories: tuple[str, ...] = ()
        self._rejected_queries = 0
        self._active = False
        self._label_info_pub = self._vision_pub = self._diagnostics_pub = None
        self._diagnostics_timer = self._query_sub = None
        self._vision_type = vision_label_info_type()
        self._log_error = ThrottledLog(self.get_logger().error, NodeParameters().log_throttle_s)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def cameras(self) -> list[CameraPipeline]:
        """The camera pipelines (one without the `cameras` parameter; none while unconfigured)."""
        return self.group.pipelines if self.group is not None else []

    @property
    def categories(self) -> tuple[str, ...]:
        """The active query (shared by all cameras)."""
        return self._categories

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            params = read_parameters(self)
            initial = parse_query(params.categories, params.query_limits()) if params.categories.strip() else None
            declare_camera_overrides(self, params.cameras)  # rejects a bad override given in YAML or -p
            cameras = camera_settings(params, read_camera_overrides(self, params.cameras))
        except (ParameterError, QueryError, InvalidParameterValueException) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        try:
            self._load_model(params, initial)
        except Exception as exc:  # any load failure leaves the node unconfigured, ready for a retry
            self.get_logger().error(f"configure failed: cannot load model {params.checkpoint!r} "
                                    f"(backend {params.backend}, device {params.device}): {exc}")
            self.release()
            return TransitionCallbackReturn.FAILURE
        self.params = params
        self._log_error.period_s = params.log_throttle_s
        self._create_interfaces(params, cameras)
        if initial is not None:
            self._set_categories(initial, "parameter 'categories'")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        self.group.activate()
        self._active = True
        self._publish_label_info()
        self.get_logger().info(f"active: reading {', '.join(self._image_topics())}; "
                               f"{len(self._categories)} categories")
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
        """Configure and activate; on failure the node stays up (unconfigured) for a retry. Returns success."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error(f"autostart: configure failed (see above); fix the parameters and run "
                                    f"`ros2 lifecycle set {self.get_fully_qualified_name()} configure`")
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def _load_model(self, params: NodeParameters, initial: list[str] | None) -> None:
        """Load the Segmenter, apply the inference settings, cache text embeddings and warm up."""
        start = time.perf_counter()
        segmenter = Segmenter.from_checkpoint(params.checkpoint, device=params.device, backend=params.backend,
                                              precision=params.precision, **params.backend_options())
        segmenter.inference = params.inference_config(segmenter.inference)
        categories = initial or list(self._categories) or list(WARMUP_CATEGORIES)
        segmenter.encode_text(categories)  # checks the template set and caches the embeddings
        loaded = time.perf_counter()
        if params.warmup:
            height, width = params.warmup_size
            segmenter.segment(np.zeros((height, width, 3), np.uint8), categories, probabilities=False)
        backend = segmenter.backend
        self.segmenter = segmenter
        self.get_logger().info(
            f"model {segmenter.model.cfg.name!r} from {params.checkpoint!r} loaded in {loaded - start:.2f} s on "
            f"backend {backend.name} ({backend.precision}, {backend.device})"
            + (f"; warm-up {1000 * (time.perf_counter() - loaded):.0f} ms" if params.warmup else ""))

    def _create_interfaces(self, params: NodeParameters, cameras: list[CameraSettings]) -> None:
        self._label_info_pub = self.create_lifecycle_publisher(String, "~/label_info", LATCHED)
        if self._vision_type is not None:
            self._vision_pub = self.create_lifecycle_publisher(self._vision_type, "~/vision_label_info", LATCHED)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(params.diagnostics_period_s, self._publish_diagnostics)
        # The query stays subscribed from configure to cleanup, so a query sent while inactive is not lost.
        self._query_sub = self.create_subscription(
            String, params.query_topic, lambda msg: self.apply_query(msg.data, params.query_topic), LATCHED,
            event_callbacks=incompatible_qos_warning(
                self, params.query_topic, "Publish queries with reliable + transient_local QoS, e.g. "
                f"ros2 topic pub --once --qos-durability transient_local --qos-reliability reliable "
                f"{params.query_topic} std_msgs/String \"data: 'person, chair'\""))
        self.group = CameraGroup(self, self.segmenter, params, cameras, lambda: self._categories)

    def release(self) -> None:
        """Stop everything and release the model (cleanup, shutdown and error all end here)."""
        self._active = False
        if self.group is not None:
            self.group.destroy()
        self.group = None
        for timer in [self._diagnostics_timer] if self._diagnostics_timer else []:
            self.destroy_timer(timer)
        if self._query_sub is not None:
            self.destroy_subscription(self._query_sub)
        for pub in (self._label_info_pub, self._vision_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        if self._diagnostics_pub is not None:
            self.destroy_publisher(self._diagnostics_pub)
        self._label_info_pub = self._vision_pub = self._diagnostics_pub = None
        self._diagnostics_timer = self._query_sub = None
        released = self.segmenter is not None
        self.segmenter = None
        self.params = None
        if released:
            gc.collect()
            _empty_cuda_cache()

    # ---- query -----------------------------------------------------------------------------------------------

    def apply_query(self, text: str, source: str) -> bool:
        """Parse and apply a query; a bad one is rejected whole (logged, counted) and the old one stays."""
        params = self.params or NodeParameters()
        try:
            categories = parse_query(text, params.query_limits())
        except QueryError as exc:
            self._rejected_queries += 1
            self._log_error("query", f"rejected query from {source}: {exc}; keeping the previous query "
                                     f"({len(self._categories)} categories)")
            return False
        if tuple(categories) != self._categories:
            self._set_categories(categories, source)
        return True

    def _set_categories(self, categories: list[str], source: str) -> None:
        if self.segmenter is not None:
            self.segmenter.encode_text(categories)  # computed once per query change, then cached
        self._categories = tuple(categories)
        self.get_logger().info(f"query from {source}: {len(categories)} categories: {', '.join(categories)}")
        self._publish_label_info()

    def _publish_label_info(self) -> None:
        if not self._active or self._label_info_pub is None or self.params is None:
            return
        categories = list(self._categories)
        self._label_info_pub.publish(String(data=label_info_json(categories, self.params.background)))
        if self._vision_pub is not None:
            header = Header(stamp=self.get_clock().now().to_msg())
            self._vision_pub.publish(vision_label_info(self._vision_type, categories, self.params.background,
                                                       self.params.mask_threshold, header))

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
        if categories is not None and tuple(categories) != self._categories:
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
            self.segmenter.inference = self.params.inference_config(self.segmenter.inference)
        if self.group is not None:
            # Only the live overrides change now; the others stay as configured until the next configure.
            current = read_camera_overrides(self, self.params.cameras)
            current.update({name: value for name, value in overrides.items() if name in live_overrides})
            self.group.update(self.params, camera_settings(self.params, current))

    # ---- diagnostics -----------------------------------------------------------------------------------------

    def _image_topics(self) -> list[str]:
        return [camera.topic for camera in self.cameras]

    def _publish_diagnostics(self) -> None:
        if self._diagnostics_pub is None or self.segmenter is None or self.params is None or self.group is None:
            return
        backend, batches = self.segmenter.backend, self.group.batch_stats
        info = {"backend": backend.name, "precision": backend.precision, "device": str(backend.device),
                "model": self.segmenter.model.cfg.name, "checkpoint": self.params.checkpoint,
                "rejected_queries": self._rejected_queries, "active": self._active,
                "cameras": len(self.cameras), "batches": batches.batches, "batched_frames": batches.items,
                "largest_batch": batches.largest, "inference_lanes": self.group.lanes,
                "intra_op_threads": torch.get_num_threads()}
        array = DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()))
        for camera, snapshot in self.group.snapshots():
            array.status.append(diagnostic_status(
                f"{self.get_fully_qualified_name()}: {camera.topic}", self.params.device, snapshot,
                {"camera": camera.settings.name, **info} if camera.settings.name else info, active=self._active,
                num_categories=len(self._categories), stale_after_s=self.params.stale_image_timeout_s,
                image_topic=camera.topic))
        self._diagnostics_pub.publish(array)


def _empty_cuda_cache() -> None:
    """Return cached GPU memory to the driver after the model is released (no-op without CUDA)."""
    import torch  # already imported by synseg_core; local to keep the node module's imports ROS-side

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(args: list[str] | None = None) -> None:
    """Console script `synseg_node`: run the node until SIGINT, then clean up."""
    rclpy.init(args=args)
    node = None
    try:
        node = SynSegNode()
        node.get_logger().info(f"synseg_node {synseg_core.__version__} (synseg_ros at {synseg_ros.__path__[0]})")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if node.get_parameter("autostart").value:
            node.autostart()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
