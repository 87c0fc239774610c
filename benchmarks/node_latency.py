"""The robot path: end-to-end latency of the synseg node against the in-process `Segmenter.segment` call and the
transport floor, side by side in one run, and the node's memory.

    python -m benchmarks.node_latency [--models tiny-test vitb16-rd64-refined] [--frames 20] [--no-profile]

Three processes, as on a robot: this one plays the camera driver, publishing 640x480 rgb8 frames best effort
(sensor-data QoS); `synseg_node` (backend torch on the CPU, K = 10, the model's own inference settings) answers on
~/labels; an echo process answers each frame with a 640x480 mono8 image, which is what the node's answer costs in
transport alone. Every process uses the shipped Fast DDS profile (config/fastdds_large_frames.xml) unless
--no-profile. Frame by frame, interleaved so all three see the same machine load, this process times: the
in-process `Segmenter.segment` call (same model, settings and frame, on a worker thread as the node runs it), the
node end to end (frame published -> labels received) and the echo round trip. Printed per model: medians, the
node's overhead (end to end minus in-process) against the target (transport floor + 3 ms), the node's own stage
latencies from /diagnostics (where the rest goes), and its resident memory. ViT-B/16 uses random weights.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from tqdm import tqdm

from benchmarks.common import machine_description, ros_environment
from synseg_core import Outputs, Segmenter, get_model_config
from synseg_ros.dds import PROFILE_VARIABLE, shipped_profile_path
from synseg_ros.image_conversion import array_to_image

REPO = Path(__file__).resolve().parents[1]
RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
TARGET_MARGIN_MS = 3.0  # the node may add at most this much beyond the transport floor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tiny-test", "vitb16-rd64-refined"],
                   help="bundled model configs (random weights)")
    p.add_argument("--frames", type=int, default=20, help="timed frames per model")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames first")
    p.add_argument("--categories", type=int, default=10, help="K")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--no-profile", action="store_true", help="Fast DDS defaults in every process")
    p.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for the node")
    p.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)  # the echo process's role
    p.add_argument("--host-time-frames", type=int, default=8,
                   help="frames per path for the node's host time outside the model, old vs new image path, for the "
                        "last model (benchmarks/host_time.py; 0 = skip)")
    return p.parse_args(argv)


def model_config_file(name: str, folder: Path) -> Path:
    """The bundled config with pretrained weights disabled, as a JSON file the node can load."""
    cfg = get_model_config(name)
    cfg.backbone.pretrained = None
    path = folder / f"{name}-random.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return path


def echo() -> int:
    """The echo process: answers every image on /bench/echo_in with a mono8 image of its size on /bench/echo."""
    rclpy.init()
    node = rclpy.create_node("node_latency_echo")
    pub = node.create_publisher(Image, "/bench/echo", RELIABLE)

    def answer(msg: Image) -> None:
        pub.publish(Image(header=msg.header, height=msg.height, width=msg.width, encoding="mono8", step=msg.width,
                          data=bytes(msg.height * msg.width)))
    node.create_subscription(Image, "/bench/echo_in", answer, qos_profile_sensor_data)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


class Process:
    """A child process whose output is collected."""

    def __init__(self, command: list[str], env: dict):
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    def memory_mib(self) -> tuple[float, float]:
        """(RSS now, peak RSS) in MiB."""
        rss = psutil.Process(self.process.pid).memory_info().rss
        with open(f"/proc/{self.process.pid}/status") as f:
            peak_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
        return rss / 2**20, peak_kib / 2**10

    def stop(self) -> None:
        self.process.send_signal(2)  # SIGINT, as Ctrl-C
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def node_process(params: dict, env: dict) -> Process:
    args = [item for name, value in params.items() for item in ("-p", f"{name}:={value}")]
    return Process([sys.executable, "-c", "import sys; from synseg_ros.node import main; sys.exit(main())",
                    "--ros-args", "-r", "image:=/bench/image", *args], env)


class Camera:
    """Publishes frames best effort and times the answers on the node's ~/labels and the echo topic."""

    def __init__(self, context):
        self.node = rclpy.create_node("node_latency_camera", context=context)
        # One input topic each, so the node never sees the echo's frames and the other way round.
        self.pubs = {"node": self.node.create_publisher(Image, "/bench/image", qos_profile_sensor_data),
                     "echo": self.node.create_publisher(Image, "/bench/echo_in", qos_profile_sensor_data)}
        self.arrivals: dict[str, dict[int, float]] = {"node": {}, "echo": {}}
        self._arrived_event = threading.Condition()
        self.diagnostics: list[DiagnosticArray] = []
        for name, topic in (("node", "/synseg/labels"), ("echo", "/bench/echo")):
            self.node.create_subscription(Image, topic, lambda m, n=name: self._arrived(n, m), RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    def reset(self) -> None:
        """Forget the answers and diagnostics of the previous model's node."""
        with self._arrived_event:
            for arrivals in self.arrivals.values():
                arrivals.clear()
        self.diagnostics.clear()

    def _arrived(self, name: str, msg: Image) -> None:
        arrived = time.perf_counter()  # taken first: the waiting thread's wake-up is not part of the latency
        with self._arrived_event:
            self.arrivals[name][msg.header.stamp.sec] = arrived
            self._arrived_event.notify_all()

    def roundtrip(self, msg: Image, index: int, answerer: str, timeout: float) -> float | None:
        """Seconds from publishing frame `index` until `answerer` ("node" or "echo") answered it (None: timeout)."""
        msg.header.stamp.sec = index
        start = time.perf_counter()
        self.pubs[answerer].publish(msg)
        # Blocking, not polling: a polling loop would take CPU from the node on a small machine.
        with self._arrived_event:
            if not self._arrived_event.wait_for(lambda: index in self.arrivals[answerer], timeout):
                return None
            return self.arrivals[answerer][index] - start

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5)
        self._spinner.join(timeout=5)  # a thread left in rclpy's wait aborts the exit
        self.node.destroy_node()


def timed_segment(segmenter: Segmenter, rgb: np.ndarray, categories: list[str]) -> float:
    """Seconds of one in-process `Segmenter.segment` call, asking for what the node asks for (its defaults
    publish masks and confidence)."""
    start = time.perf_counter()
    segmenter.segment(rgb, categories, outputs=Outputs.for_images())
    return time.perf_counter() - start


def stage_latencies(diagnostics: list[DiagnosticArray]) -> dict[str, float]:
    for array in reversed(diagnostics):
        for status in array.status:
            values = {kv.key: kv.value for kv in status.values}
            if "latency_total_ms" in values:
                return {k[len("latency_"):-len("_ms")]: float(v) for k, v in values.items()
                        if k.startswith("latency_")}
    return {}


def wait_for_answers(camera: Camera, node: Process, frame: Image, timeout: float) -> int:
    """Until the node and the echo are up and matched a frame may go unanswered: resend until both answer."""
    index, started = 0, time.perf_counter()
    while not (camera.arrivals["node"] and camera.arrivals["echo"]):
        camera.roundtrip(frame, index, "node" if not camera.arrivals["node"] else "echo", timeout=3.0)
        index += 1
        if node.process.poll() is not None or time.perf_counter() - started > timeout:
            raise RuntimeError("the node did not answer:\n" + "".join(node.lines))
    return index


def measure(model: str, args: argparse.Namespace, camera: Camera, env: dict, folder: Path) -> dict:
    config_path = model_config_file(model, folder)
    segmenter = Segmenter.from_checkpoint(config_path)
    categories = [f"object number {i}" for i in range(args.categories)]
    params = {"checkpoint": str(config_path), "backend": "torch", "device": "cpu",
              "categories": json.dumps(", ".join(categories)), "image_reliability": "best_effort",
              "warmup_size": f"[{args.height},{args.width}]", "diagnostics_period_s": 0.5}
    camera.reset()
    node = node_process(params, env)
    rng = np.random.default_rng(0)
    frames = [array_to_image(rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8), "rgb8", Header())
              for _ in range(4)]
    # The in-process call runs on a worker thread as the node's inference does (torch's OpenMP timing differs
    # between the main thread and other threads here, which is not the node's overhead).
    worker = ThreadPoolExecutor(max_workers=1)
    times: dict[str, list[float]] = {"in-process": [], "node": [], "echo": []}
    try:
        index = wait_for_answers(camera, node, frames[0], args.startup_timeout)
        segmenter.encode_text(categories)
        for i in tqdm(range(args.warmup + args.frames), desc=model, unit="frame"):
            msg = frames[i % len(frames)]
            rgb = np.frombuffer(bytes(msg.data), np.uint8).reshape(args.height, args.width, 3)
            seconds = {"in-process": worker.submit(timed_segment, segmenter, rgb, categories).result()}
            for answerer in ("node", "echo"):
                index += 1
                seconds[answerer] = camera.roundtrip(msg, index, answerer, timeout=120.0)
                if seconds[answerer] is None:
                    raise RuntimeError(f"frame {index} got no answer from the {answerer}:\n"
                                       + "".join(node.lines[-20:]))
            if i >= args.warmup:
                for name, value in seconds.items():
                    times[name].append(value)
        time.sleep(1.0)  # one more diagnostics period
        rss, peak = node.memory_mib()
        return {"model": model, **{f"{name}_ms": 1e3 * statistics.median(v) for name, v in times.items()},
                "rss_mib": rss, "peak_mib": peak, "stages": stage_latencies(camera.diagnostics)}
    finally:
        worker.shutdown()
        node.stop()


def report(r: dict) -> None:
    overhead = r["node_ms"] - r["in-process_ms"]
    target = r["echo_ms"] + TARGET_MARGIN_MS
    print(f"\n{r['model']}:")
    print(f"  in-process Segmenter.segment  {r['in-process_ms']:8.1f} ms (median)")
    print(f"  node end to end               {r['node_ms']:8.1f} ms (median)")
    print(f"  transport floor (echo)        {r['echo_ms']:8.1f} ms (median)")
    print(f"  node minus in-process         {overhead:8.1f} ms; target <= floor + {TARGET_MARGIN_MS:.0f} ms = "
          f"{target:.1f} ms: {'met' if overhead <= target else 'missed'} (ratio node / in-process "
          f"{r['node_ms'] / r['in-process_ms']:.2f}x)")
    stages = r["stages"]
    if stages:
        print("  node stages (mean ms over its last frames): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
        if "inference" in stages:
            print(f"  node inference minus in-process call: {stages['inference'] - r['in-process_ms']:+.1f} ms; "
                  f"end to end minus the node's stages: {r['node_ms'] - stages.get('total', 0.0):.1f} ms "
                  "(transport both ways, DDS callbacks, scheduling)")
    print(f"  node RSS {r['rss_mib']:.0f} MiB (peak {r['peak_mib']:.0f} MiB)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.echo:
        return echo()
    if args.no_profile:
        os.environ.pop(PROFILE_VARIABLE, None)
    else:  # before this process's first DDS participant, and inherited by the node and the echo
        os.environ[PROFILE_VARIABLE] = str(shipped_profile_path())
    env = ros_environment(REPO)
    print(f"machine: {machine_description()}")
    print(f"frames {args.width}x{args.height} rgb8 best effort, K={args.categories}, {args.frames} timed frames per "
          f"model, backend torch on CPU, Fast DDS profile: {os.environ.get(PROFILE_VARIABLE, 'none (defaults)')}")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    echo_process = Process([sys.executable, "-m", "benchmarks.node_latency", "--echo"], env)
    camera = Camera(context)
    results = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for model in args.models:
                results.append(measure(model, args, camera, env, Path(folder)))
    finally:
        camera.close()
        echo_process.stop()
        rclpy.try_shutdown(context=context)
    for r in results:
        report(r)
    if args.host_time_frames > 0:
        print_host_time(args)
    return 0


def print_host_time(args: argparse.Namespace) -> None:
    """The node's per-frame host work (conversion, image path, messages) outside the model, old vs new image path,
    measured in this process with the node's own functions (benchmarks/host_time.py)."""
    from benchmarks import host_time

    model = args.models[-1]
    options = host_time.parse_args(["--model", model, "--frames", str(args.host_time_frames), "--height",
                                    str(args.height), "--width", str(args.width), "--categories", str(args.categories)])
    print(f"\n{model}: the node's host time per frame outside the model, old vs new image path (benchmarks/host_time)")
    for line in host_time.report(host_time.measure(options)):
        print(f"  {line}")


if __name__ == "__main__":
    sys.exit(main())
