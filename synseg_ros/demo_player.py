r"""Demo player and recorder for scripts/demo.sh: publishes a query and a folder of frames to a running synseg node,
one frame at a time, saves the overlays and label images it gets back, prints per-frame latency and a summary
(with foreground IoU against the frames' ground truth when the folder has labels), and exits.

    python -m synseg_ros.demo_player --frames synseg_core/resources/demo/frames --out runs/demo

It plays the part of a robot's camera driver: a separate process publishing camera-size frames (every frame is
resized to --size, 640x480 by default; ground truth with nearest-neighbour) with sensor-data QoS (best effort), so
the demo runs the path a robot uses (scripts/demo.sh gives both processes the shipped Fast DDS profile). A frame
without an answer is sent again after --resend-after seconds (best effort may lose one). Latency is measured from
publishing a frame to receiving its label image (matched by the header stamp), so it includes DDS transport,
conversion, inference and output building.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import rclpy
from lifecycle_msgs.srv import GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from synseg_core.evaluation.demo_frames import PLAYBACK_SIZE, read_demo_frames, score_frames
from synseg_core.inference.query import QueryError, parse_query
from synseg_ros.image_conversion import array_to_image, image_to_array

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
POLL_S = 0.01
FRAME_ID = "demo_camera"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", required=True, help="frame folder (images/, optional labels/ + classes.txt, query.txt)")
    p.add_argument("--out", required=True, help="folder for overlay/, labels/ and summary.json")
    p.add_argument("--query", help="categories, comma-separated (default: the folder's query.txt)")
    p.add_argument("--image-topic", default="/synseg_demo/image", help="topic the node reads images from")
    p.add_argument("--node", default="/synseg", help="the node's fully qualified name (its outputs are NODE/...)")
    p.add_argument("--query-topic", default="/synseg/query")
    p.add_argument("--limit", type=int, help="play only the first N frames")
    p.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for the node to be ready")
    p.add_argument("--frame-timeout", type=float, default=60.0, help="seconds to wait for each frame's outputs")
    p.add_argument("--resend-after", type=float, default=5.0, help="send a frame again after this many seconds "
                   "without an answer")
    p.add_argument("--size", type=frame_size, default=PLAYBACK_SIZE, metavar="WxH",
                   help="publish every frame at this size (default %dx%d, a camera's)" % PLAYBACK_SIZE)
    p.add_argument("--node-pid", type=int, help="stop waiting when this process (the node) has exited")
    return p.parse_args(argv)


def frame_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 640x480") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be >= 1")
    return width, height


def resized(frames, size: tuple[int, int]):
    """The frames (and their ground truth, nearest-neighbour) resized to `size` (width, height)."""
    frames.images = [cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) for image in frames.images]
    if frames.labels is not None:
        frames.labels = [cv2.resize(labels.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
                         for labels in frames.labels]
    return frames


class DemoPlayer(Node):
    """Publishes frames and the query; keeps the label and overlay images that come back, keyed by stamp."""

    def __init__(self, image_topic: str, node: str, query_topic: str):
        super().__init__("synseg_demo_player")
        self._lock = threading.Lock()
        self._received: dict[str, dict[tuple[int, int], tuple[float, Image]]] = {"labels": {}, "overlay": {}}
        self._label_info: list[str] | None = None
        self.image_pub = self.create_publisher(Image, image_topic, qos_profile_sensor_data)
        self.query_pub = self.create_publisher(String, query_topic, LATCHED)
        for kind in self._received:
            self.create_subscription(Image, f"{node}/{kind}", lambda msg, k=kind: self._keep(k, msg), RELIABLE)
        self.create_subscription(String, f"{node}/label_info", self._on_label_info, LATCHED)
        self._get_state = self.create_client(GetState, f"{node}/get_state")

    def _keep(self, kind: str, msg: Image) -> None:
        with self._lock:
            self._received[kind][(msg.header.stamp.sec, msg.header.stamp.nanosec)] = (time.perf_counter(), msg)

    def _on_label_info(self, msg: String) -> None:
        with self._lock:
            self._label_info = [c["name"] for c in json.loads(msg.data)["categories"]]

    def lifecycle_state(self, timeout: float, pid: int | None) -> str | None:
        """The node's lifecycle state label, once its services answer (after its start-up configure: "active" when
        the model loaded), or None when it did not answer in time."""
        if not wait_for(lambda: self._get_state.service_is_ready(), timeout, pid):
            return None
        future = self._get_state.call_async(GetState.Request())
        if not wait_for(future.done, timeout, pid) or future.result() is None:
            return None
        return future.result().current_state.label

    def ready(self, categories: list[str]) -> bool:
        """The node announced our query in label_info and subscribes to our image topic."""
        with self._lock:
            announced = self._label_info == categories
        return announced and self.image_pub.get_subscription_count() > 0

    def play(self, rgb: np.ndarray, timeout: float, resend_after: float) -> tuple[float, Image, Image] | None:
        """Publish one frame and wait for its label and overlay images: (latency s, labels msg, overlay msg).
        Unanswered, the frame is sent again every `resend_after` seconds; latency counts from the first send."""
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=FRAME_ID)
        key = (header.stamp.sec, header.stamp.nanosec)
        msg = array_to_image(rgb, "rgb8", header)
        first = start = time.perf_counter()
        self.image_pub.publish(msg)
        while time.perf_counter() - first < timeout:
            if time.perf_counter() - start > resend_after:
                start = time.perf_counter()
                self.image_pub.publish(msg)
            with self._lock:
                labels, overlay = self._received["labels"].get(key), self._received["overlay"].get(key)
            if labels and overlay:
                return labels[0] - first, labels[1], overlay[1]
            time.sleep(POLL_S)
        return None


def process_alive(pid: int | None) -> bool:
    """True when `pid` is None (nothing to watch) or names a running process."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for(predicate, timeout: float, pid: int | None = None) -> bool:
    """Poll `predicate` until it holds (True), the timeout passes or the watched process exits (False)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and process_alive(pid):
        if predicate():
            return True
        time.sleep(POLL_S * 10)
    return False


def run(args: argparse.Namespace, player: DemoPlayer) -> int:
    frames = resized(read_demo_frames(args.frames), args.size)
    try:  # the node's own parser, so the player waits for exactly the list the node will announce
        query = parse_query(args.query) if args.query else frames.query
    except QueryError as exc:
        print(f"demo_player: error: --query: {exc}", file=sys.stderr)
        return 2
    if not query:
        print("demo_player: error: no query (give --query or a query.txt in the frame folder)", file=sys.stderr)
        return 2
    state = player.lifecycle_state(args.ready_timeout, args.node_pid)
    if state != "active":
        why = f"is {state!r} after start-up (the model did not load?)" if state else "did not answer"
        print(f"demo_player: error: the node {args.node} {why}; see its log", file=sys.stderr)
        return 1
    player.query_pub.publish(String(data=", ".join(query)))
    if not wait_for(lambda: player.ready(query), args.ready_timeout, args.node_pid):
        why = "exited" if not process_alive(args.node_pid) else f"was not ready within {args.ready_timeout:.0f} s"
        print(f"demo_player: error: the node {why} (it must announce the query {query} on {args.node}/label_info "
              f"and subscribe to {args.image_topic})", file=sys.stderr)
        return 1
    out = Path(args.out)
    for sub in ("overlay", "labels"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    count = len(frames.names) if args.limit is None else min(args.limit, len(frames.names))
    latencies, predictions, missed = [], [], []
    for name, image in zip(frames.names[:count], frames.images[:count]):
        got = player.play(image, args.frame_timeout, args.resend_after)
        if got is None:
            missed.append(name)
            print(f"frame {name}: no output within {args.frame_timeout:.0f} s")
            continue
        latency, labels_msg, overlay_msg = got
        labels = image_to_array(labels_msg)
        cv2.imwrite(str(out / "overlay" / f"{name}.png"), image_to_array(overlay_msg))  # bgr8, as OpenCV writes
        cv2.imwrite(str(out / "labels" / f"{name}.png"), labels)
        latencies.append(latency)
        predictions.append((name, labels))
        print(f"frame {name}: {1000 * latency:.1f} ms, {len(np.unique(labels[labels > 0]))} categories found")
    summary = summarise(frames, query, latencies, predictions, missed)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"summary: {summary['received']}/{count} frames, latency mean {summary['latency_ms']['mean']} ms, "
          f"median {summary['latency_ms']['median']} ms, max {summary['latency_ms']['max']} ms"
          + (f"; foreground IoU {100 * summary['scores']['foreground_iou']:.1f}%, mIoU "
             f"{100 * summary['scores']['miou']:.1f}% vs ground truth" if summary.get("scores") else "")
          + f"; outputs in {out}")
    return 0 if not missed else 1


def summarise(frames, query: list[str], latencies: list[float], predictions: list, missed: list[str]) -> dict:
    ms = [1000 * t for t in latencies]
    summary = {"query": query, "received": len(latencies), "missed": missed,
               "latency_ms": {"mean": round(statistics.fmean(ms), 1) if ms else None,
                              "median": round(statistics.median(ms), 1) if ms else None,
                              "max": round(max(ms), 1) if ms else None, "per_frame": [round(v, 1) for v in ms]}}
    if frames.labels is not None and predictions and query == frames.classes[1:]:
        truth = dict(zip(frames.names, frames.labels))
        summary["scores"] = score_frames([p for _, p in predictions], [truth[n] for n, _ in predictions],
                                         len(frames.classes))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rclpy.init()
    player = DemoPlayer(args.image_topic, args.node, args.query_topic)
    executor = SingleThreadedExecutor()
    executor.add_node(player)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        return run(args, player)
    finally:
        # Stop and join the spinning thread before tearing down: a thread still inside rclpy's wait when the
        # interpreter exits aborts the process ("terminate called without an active exception", exit 134).
        executor.shutdown(timeout_sec=5)
        spinner.join(timeout=5)
        executor.remove_node(player)
        player.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
