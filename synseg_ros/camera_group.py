"""The node's cameras around one batching scheduler: frames of all cameras go through the model together.

Each camera keeps its newest frame (latest-frame policy, drops counted per camera); `synseg_core.serving.scheduling`
decides when the frames form a batch (batch window, round-robin fairness, per-camera rate limits). On the
scheduler's thread, per batch: each camera converts its own frame (a bad frame is counted on its camera and left
out of the batch) -> one `Segmenter.segment` call for all good frames (each result at its own frame's resolution); with
`inference_lanes` > 1 the batch is split into that many parts whose calls run at once (on the CPU, where batching
gains nothing, this keeps every core busy the way separate processes would; the cores are split between the lanes,
see `synseg_core.serving.threads`).
Then a publishing thread has each camera build and publish its outputs with its own header while the scheduler's
thread already runs the next batch (with one camera the scheduler's thread publishes itself: there is nothing to
overlap, and a hand-off would only add latency); at most one batch is publishing at a time, so outputs keep their order and
memory stays bounded. A batch's outputs go out only while its label set (query) is still the active one, checked
under the `LabelGate` lock that the node holds while it switches queries and publishes label_info: no output of
an older query follows the label_info of a newer one. With one camera this is the single-camera node's
latest-frame worker (batches of one, no waiting).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Sequence

import numpy as np
from rclpy.lifecycle import LifecycleNode

from synseg_core.serving.scheduling import BatchScheduler, BatchStats
from synseg_core.inference.postprocess import Outputs
from synseg_core.inference.segmenter import SegmentationResult, Segmenter
from synseg_core.serving.threads import IntraOpThreads
from synseg_ros.camera import CameraPipeline, Frame
from synseg_ros.camera_parameters import CameraSettings
from synseg_ros.diagnostics import StatsSnapshot
from synseg_ros.outputs import LabelSet
from synseg_ros.parameters import NodeParameters
from synseg_ros.throttled_log import ThrottledLog


class LabelGate:
    """The active label set, and the lock under which it changes (with label_info published) and under which a
    batch's outputs are published only if their label set is still the active one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current = LabelSet(0, (), background=True)  # configure sets the model's own background mode


def _min_period(settings: CameraSettings) -> float:
    return 1.0 / settings.max_rate_hz if settings.max_rate_hz > 0 else 0.0


class CameraGroup:
    """Camera pipelines sharing one model through one `BatchScheduler`.

    Args:
        node: the lifecycle node that owns the topics.
        segmenter: the shared model.
        params: the node's parameters.
        cameras: the cameras' settings (from `synseg_ros.parameters.camera_settings`).
        gate: the active label set (query), shared by all cameras.
    """

    def __init__(self, node: LifecycleNode, segmenter: Segmenter, params: NodeParameters,
                 cameras: Sequence[CameraSettings], gate: LabelGate) -> None:
        self._segmenter = segmenter
        self._params = params
        self._gate = gate
        self._log_error = ThrottledLog(node.get_logger().error, params.log_throttle_s)
        self._log_warning = ThrottledLog(node.get_logger().warning, params.log_throttle_s)
        # Scheduler streams are keyed by the (unique) relative input topic.
        self.pipelines = [CameraPipeline(node, params, settings,
                                         lambda frame, key=settings.input_topic: self._scheduler.submit(key, frame))
                          for settings in cameras]
        self._by_key = {p.input_topic: p for p in self.pipelines}
        self._scheduler: BatchScheduler[Frame] = BatchScheduler(
            self._process, list(self._by_key), batch_window_s=params.batch_window_ms / 1000.0,
            max_batch=params.max_batch_frames or None,
            min_period_s={key: _min_period(p.settings) for key, p in self._by_key.items()},
            stale_after_s=params.stale_image_timeout_s, name="synseg-worker", on_error=self._on_unexpected_error)
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synseg-publish")
        self._publishing: Future | None = None
        on_gpu = segmenter.device.type == "cuda"
        self.lanes = params.inference_lanes or (1 if on_gpu else len(self.pipelines))
        self._lane_pool = ThreadPoolExecutor(max_workers=self.lanes, thread_name_prefix="synseg-lane")
        self.intra_op_threads = IntraOpThreads.split_between(self.lanes) if self.lanes > 1 and not on_gpu else None
        if self.lanes > 1:
            threads = f", {self.intra_op_threads.per_lane} intra-op threads each" if self.intra_op_threads else ""
            node.get_logger().info(f"{self.lanes} inference lanes ({'auto, ' if not params.inference_lanes else ''}"
                                   f"{segmenter.device.type}): each batch runs as up to {self.lanes} concurrent "
                                   f"calls{threads}")

    def activate(self) -> None:
        """Subscribe every camera and start the scheduler."""
        for pipeline in self.pipelines:
            pipeline.activate()
        self._scheduler.start()

    def deactivate(self) -> None:
        """Unsubscribe and stop the scheduler (waits for the batch in progress)."""
        for pipeline in self.pipelines:
            pipeline.deactivate()
        self._scheduler.stop()
        self._wait_for_publishing()

    def destroy(self) -> None:
        """Deactivate and remove every camera's publishers."""
        self.deactivate()
        self._publisher.shutdown(wait=True)
        self._lane_pool.shutdown(wait=True)
        if self.intra_op_threads:
            self.intra_op_threads.restore()
        for pipeline in self.pipelines:
            pipeline.destroy()

    def update(self, params: NodeParameters, cameras: Sequence[CameraSettings]) -> None:
        """Apply live parameter changes (rate limits now; QoS at the next activation)."""
        self._log_error.period_s = self._log_warning.period_s = params.log_throttle_s
        for pipeline, settings in zip(self.pipelines, cameras):
            pipeline.update(params, settings)
            self._scheduler.set_min_period(pipeline.input_topic, _min_period(settings))

    def snapshots(self) -> list[tuple[CameraPipeline, StatsSnapshot]]:
        """Each camera with its stats (drops from the scheduler)."""
        return [(p, p.snapshot(self._scheduler.stats(p.input_topic).dropped)) for p in self.pipelines]

    @property
    def batch_stats(self) -> BatchStats:
        return self._scheduler.batch_stats

    def _on_unexpected_error(self, exc: BaseException, keys: list[str]) -> None:
        """Anything `_process` did not handle itself (a bug, not bad input): count, log, keep serving."""
        for key in keys:
            self._by_key[key].stats.count("internal_errors", error=f"internal error: {exc!r}")
        self._log_error(f"internal:{type(exc).__name__}", f"unexpected error while processing a batch: {exc!r}")

    def _process(self, batch: list[tuple[str, Frame]]) -> None:
        """Scheduler thread: convert each frame -> one Segmenter call for the batch -> each camera publishes."""
        good = []  # (pipeline, frame, rgb, convert seconds)
        for key, frame in batch:
            pipeline, start = self._by_key[key], time.perf_counter()
            rgb = pipeline.convert(frame)
            if rgb is not None:
                good.append((pipeline, frame, rgb, time.perf_counter() - start))
        if not good:
            return
        labels = self._gate.current
        categories = list(labels.categories)
        if not categories:
            for pipeline, *_ in good:
                pipeline.stats.count("frames_without_query")
            self._log_warning("no_query", "images arrive but no categories are set; publish a query or set the "
                              "'categories' parameter")
            return
        start = time.perf_counter()
        try:
            results = self._segment([rgb for _, _, rgb, _ in good], categories,
                                    self._outputs([pipeline for pipeline, *_ in good]))
        except Exception as exc:  # a failed inference is counted on each camera of the batch; the node keeps serving
            for pipeline, *_ in good:
                pipeline.stats.count("inference_errors", error=f"inference failed: {exc}")
            self._log_error(f"inference:{type(exc).__name__}", f"inference failed: {exc!r}")
            return
        inference = time.perf_counter() - start
        if len(self.pipelines) == 1:  # nothing to overlap with: publish here, one thread hand-off less per frame
            self._publish(good, results, inference, labels)
            return
        self._wait_for_publishing()  # the previous batch's outputs go out first (usually long done by now)
        self._publishing = self._publisher.submit(self._publish, good, results, inference, labels)

    @staticmethod
    def _outputs(pipelines: list[CameraPipeline]) -> Outputs:
        """What the batch's subscribed outputs carry, in their pixel formats: nobody listening, nothing computed."""
        needed = [pipeline.needed_outputs() for pipeline in pipelines]
        return Outputs.for_images(masks=any(masks for masks, _ in needed),
                                  confidence=any(confidence for _, confidence in needed))

    def _segment(self, images: list[np.ndarray], categories: list[str], outputs: Outputs) -> list[SegmentationResult]:
        """The batch as `lanes` contiguous parts, one `Segmenter.segment` call each, run at once; results in order."""
        parts = min(self.lanes, len(images))
        if parts == 1:
            return self._segmenter.segment(images, categories, outputs=outputs)
        size = -(-len(images) // parts)
        chunks = [images[i:i + size] for i in range(0, len(images), size)]
        done = self._lane_pool.map(lambda chunk: self._segmenter.segment(chunk, categories, outputs=outputs), chunks)
        return [result for chunk in done for result in chunk]

    def _wait_for_publishing(self) -> None:
        if self._publishing is not None:
            self._publishing.result()
            self._publishing = None

    def _publish(self, good: list[tuple[CameraPipeline, Frame, np.ndarray, float]], results: list[SegmentationResult],
                 inference: float, labels: LabelSet) -> None:
        """Publishing thread: each camera builds and publishes its outputs; a failure stays on its camera."""
        for (pipeline, frame, rgb, convert), result in zip(good, results):
            try:
                start = time.perf_counter()
                messages = pipeline.build(result, rgb, frame.msg.header, labels)
                stages = {"convert": convert, "inference": inference, "build": time.perf_counter() - start}
                with self._gate.lock:
                    if self._gate.current.query_id == labels.query_id:
                        pipeline.send(messages, stages)
                    else:  # the query changed while this frame was segmented: its names are no longer announced
                        pipeline.stats.count("frames_of_old_query")
            except Exception as exc:  # a bug while building one camera's outputs must not cost the others theirs
                self._on_unexpected_error(exc, [pipeline.input_topic])
