"""Helpers for the ROS tests: waiting, collecting messages, a spinning harness, a fast tiny-model node, test
images and diagnostics parsing."""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from synseg_msgs.msg import Segmentation
from synseg_ros.node import SynSegNode

_helper_ids = itertools.count()
WAIT_S = 60.0  # generous: the machine is shared and a slow wait only costs time when something is broken
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def wait_until(predicate: Callable[[], object], timeout: float = WAIT_S,
               what: str | Callable[[], str] = "condition") -> object:
    """Poll `predicate` until it returns something truthy; fail the test with `what` on timeout (a callable: called
    then, so it can show the state at the end of the wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")


class Collector:
    """Subscription callback that keeps every message (thread-safe)."""

    def __init__(self):
        self.messages = []
        self._lock = threading.Lock()

    def __call__(self, msg):
        with self._lock:
            self.messages.append(msg)

    def snapshot(self) -> list:
        with self._lock:
            return list(self.messages)

    def wait_for(self, predicate=lambda msg: True, what="a message", timeout: float = WAIT_S):
        """The first collected message satisfying `predicate`."""
        return wait_until(lambda: next((m for m in self.snapshot() if predicate(m)), None), timeout, what)


class RosHarness:
    """A helper node on a spinning executor, plus factories for test-local topics and nodes."""

    def __init__(self, context: Context):
        self.context = context
        self.executor = MultiThreadedExecutor(num_threads=4, context=context)
        self.helper = Node(f"test_helper_{next(_helper_ids)}", context=context)
        self.executor.add_node(self.helper)
        self._nodes = [self.helper]
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def add_node(self, node: Node) -> Node:
        self.executor.add_node(node)
        self._nodes.append(node)
        return node

    def subscribe(self, msg_type, topic: str, qos: QoSProfile = RELIABLE) -> Collector:
        collector = Collector()
        self.helper.create_subscription(msg_type, topic, collector, qos)
        return collector

    def publisher(self, msg_type, topic: str, qos: QoSProfile = RELIABLE):
        return self.helper.create_publisher(msg_type, topic, qos)

    def close(self) -> None:
        for node in reversed(self._nodes):
            release = getattr(node, "release", None)
            if release is not None:
                release()
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown(timeout_sec=5)
        self._thread.join(timeout=5)


# The tiny random-weight model at its native 64-pixel input: a frame takes milliseconds.
FAST = dict(checkpoint="tiny-test", backend="torch", device="cpu", short_side=64, window=64, stride=32,
            image_reliability="reliable", image_depth=5, warmup_size=[48, 64], diagnostics_period_s=0.2,
            log_throttle_s=60.0)


def make_node(ros: RosHarness, namespace: str, cli_args: list[str] | None = None, **overrides) -> SynSegNode:
    """A SynSegNode in `namespace` whose query topic is `<namespace>/query` (added to the spinning executor);
    `cli_args` (e.g. a --params-file) give way to FAST and `overrides`."""
    params = {**FAST, "query_topic": f"{namespace}/query", **overrides}
    node = SynSegNode(namespace=namespace, context=ros.context, cli_args=cli_args,
                      parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    return ros.add_node(node)


def calibrate_thresholds(node: SynSegNode, categories: list[str]) -> None:
    """Put both thresholds at the median of this random-weight model's outputs, so labels and masks are mixed
    (a random tiny model's probabilities all sit near 0.5). Also exercises live parameter changes."""
    probe = node.segmenter.segment(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8),
                                   categories)
    result = node.set_parameters([Parameter("mask_threshold", value=float(np.median(probe.probabilities))),
                                  Parameter("background_threshold", value=float(np.median(probe.confidence)))])
    assert all(r.successful for r in result)


def start(node: SynSegNode) -> None:
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS


def header(index: int, frame_id: str = "camera") -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = 1000 + index, 1000 * index + 7
    return h


def stamp_of(msg_or_header) -> tuple[int, int]:
    """(sec, nanosec) of a message's header, or of a header."""
    hdr = getattr(msg_or_header, "header", msg_or_header)
    return hdr.stamp.sec, hdr.stamp.nanosec


def image_message(array: np.ndarray, encoding: str, hdr: Header, pad: int = 0, big_endian: bool = False) -> Image:
    """An Image of `array` with `pad` junk bytes per row and the requested byte order."""
    dtype = array.dtype.newbyteorder(">" if big_endian else "<")
    rows = np.ascontiguousarray(array.astype(dtype)).reshape(array.shape[0], -1).view(np.uint8)
    data = np.concatenate([rows, np.full((rows.shape[0], pad), 0xCD, np.uint8)], axis=1)
    return Image(header=hdr, height=array.shape[0], width=array.shape[1], encoding=encoding,
                 is_bigendian=big_endian, step=data.shape[1], data=data.tobytes())


def wait_subscribed(publisher, what: str) -> None:
    wait_until(lambda: publisher.get_subscription_count() > 0, what=f"a subscriber on {what}")


def status_values(array: DiagnosticArray, node: SynSegNode, camera: str = "") -> dict | None:
    """The diagnostic values (plus 'level' and 'message') of `node`'s status for `camera` ("" = the single
    camera of a node without `cameras`) from one DiagnosticArray, if present."""
    for status in array.status:
        if status.name.startswith(node.get_fully_qualified_name() + ":"):
            values = {kv.key: kv.value for kv in status.values}
            if values.get("camera", "") == camera:
                values.update(level=status.level, message=status.message)
                return values
    return None


def wait_diagnostics(collector, node: SynSegNode, predicate, what: str, camera: str = "") -> dict:
    """The first diagnostics of `node` (newest first among those received so far) satisfying `predicate`."""
    def check():
        for array in reversed(collector.snapshot()):
            values = status_values(array, node, camera)
            if values is not None and predicate(values):
                return values
        return None
    return wait_until(check, what=what)


def counter(values: dict, name: str) -> int:
    return int(values.get(name, 0))


@dataclass
class Rig:
    """A started node with an image publisher, a /diagnostics collector and collectors on chosen outputs, for one
    camera (`camera` "" = the single camera of a node without `cameras`)."""

    node: SynSegNode
    harness: RosHarness
    image_pub: object
    diagnostics: Collector
    outputs: dict
    camera: str = ""

    @property
    def pipeline(self):
        return next(p for p in self.node.cameras if p.settings.name == self.camera)

    def send(self, array: np.ndarray, encoding: str, index: int, **kwargs) -> Header:
        """Publish frame `index` (frame id: the camera's name unless given); returns its header."""
        hdr = header(index, kwargs.pop("frame_id", self.camera or "camera"))
        self.image_pub.publish(image_message(array, encoding, hdr, **kwargs))
        return hdr

    def output_of(self, name: str, hdr: Header):
        """The `name` output message carrying `hdr`'s stamp."""
        return self.outputs[name].wait_for(lambda m: stamp_of(m) == stamp_of(hdr), f"{name} for {stamp_of(hdr)}")

    def listen(self, name: str) -> Collector:
        """Subscribe to output `name` and wait until the node sees the subscriber (outputs are lazy)."""
        ns = self.node.get_namespace().rstrip("/")
        topic = f"{ns}/{self.camera}/{name}" if self.camera else f"{ns}/{self.node.get_name()}/{name}"
        self.outputs[name] = self.harness.subscribe(Segmentation if name == "segmentation" else Image, topic)
        wait_until(lambda: self.pipeline.subscription_count(name) > 0, what=f"the node to see {topic}")
        return self.outputs[name]

    def diagnostics_where(self, predicate, what: str) -> dict:
        return wait_diagnostics(self.diagnostics, self.node, predicate, f"{what} ({self.camera or 'camera'})",
                                self.camera)


def start_rig(ros: RosHarness, namespace: str, outputs=("labels",), image_qos: QoSProfile = RELIABLE,
              **overrides) -> Rig:
    """make_node + configure + activate, then subscribe `outputs` and wait until everything is matched."""
    node = make_node(ros, namespace, **overrides)
    start(node)
    rig = Rig(node=node, harness=ros, image_pub=ros.publisher(Image, f"{namespace}/image", image_qos),
              diagnostics=ros.subscribe(DiagnosticArray, "/diagnostics"), outputs={})
    for name in outputs:
        rig.listen(name)
    wait_subscribed(rig.image_pub, "image")
    return rig


def start_camera_rigs(ros: RosHarness, namespace: str, cameras: list[str], outputs=("labels",),
                      **overrides) -> dict[str, Rig]:
    """A started multi-camera node (parameter `cameras`) and one Rig per camera: its publisher on
    `<namespace>/<camera>/image` and collectors on its outputs `<namespace>/<camera>/<output>`."""
    node = make_node(ros, namespace, cameras=cameras, **overrides)
    start(node)
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics")
    rigs = {camera: Rig(node=node, harness=ros, image_pub=ros.publisher(Image, f"{namespace}/{camera}/image"),
                        diagnostics=diagnostics, outputs={}, camera=camera) for camera in cameras}
    for rig in rigs.values():
        for name in outputs:
            rig.listen(name)
        wait_subscribed(rig.image_pub, f"{rig.camera}/image")
    return rigs


def environment(changes: dict | None) -> dict:
    """This process's environment with `changes` applied (a value of None removes the variable), unbuffered."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(changes or {})}
    return {name: value for name, value in env.items() if value is not None}


class NodeProcess:
    """`synseg_node` in its own process, as deployed (`main()` and its exit status), its output lines collected.

    Args:
        params: ROS parameters given as `-p name:=value` (values in ROS's YAML syntax).
        env: extra environment variables (e.g. a Fast DDS profile; None removes one).
        ros_args: further `--ros-args` arguments (e.g. `-r __ns:=/robot`).
    """

    def __init__(self, params: dict, env: dict | None = None, ros_args: list[str] | None = None):
        args = [item for name, value in params.items() for item in ("-p", f"{name}:={value}")]
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from synseg_ros.node import main; sys.exit(main())",
             "--ros-args", *args, *(ros_args or [])],
            env=environment(env), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, needle: str, timeout: float = 4 * WAIT_S) -> None:
        """Wait until a line contains `needle`; fail with the output when the process ends or time runs out."""
        wait_until(lambda: needle in self.output or self.process.poll() is not None, timeout, repr(needle))
        if needle not in self.output:
            time.sleep(0.5)  # the reader may still hold the last lines
            assert needle in self.output, self.output

    def stop(self, timeout: float = WAIT_S) -> int:
        """SIGINT (as Ctrl-C), then the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self._reader.join(timeout=5)
