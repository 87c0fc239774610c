"""Multi-camera serving (issue 9): one node serving three cameras against three single-camera nodes.

    python -m benchmarks.multicamera [--model vitb16-rd64-refined] [--seconds 60] [--categories 10] [--lanes 0]

Both setups run in this one run, one after the other, each node in its own process exactly as deployed
(`synseg_node`, backend torch on the CPU, the model's bundled config with random weights: timing and memory only).
Setup "multi": one node with `cameras: [cam0, cam1, cam2]` and `inference_lanes: --lanes` (0 = auto: on the
CPU each batch's frames run as concurrent calls; 1 = one batched call). Setup "three": three nodes in namespaces
/single0../single2, one camera each. Each camera publishes 640x480 rgb8 frames at `--rate-hz` (unsynchronised:
the cameras are a third of a period apart), faster than the node(s) can serve, so the latest-frame policy keeps
them busy and drops the rest, as with real drivers. Printed per setup: total frames/s (and per camera), total
resident memory of the node processes (RSS; PSS, which counts pages shared between processes once; peak RSS),
frames per CPU-second the node processes used, and the ratios multi / three (targets on a CPU: memory <= 0.45x,
throughput >= 1.0x). On a shared machine three processes get a larger share of the CPUs than one, which frames per
CPU-second does not depend on; run it more than once before trusting a ratio.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from tqdm import tqdm

from benchmarks.common import machine_description, ros_environment
from benchmarks.node_latency import model_config_file
from synseg_core import get_model_config
from synseg_ros.image_conversion import array_to_image

REPO = Path(__file__).resolve().parents[1]
RELIABLE = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
CAMERAS = ("cam0", "cam1", "cam2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vitb16-rd64-refined", help="bundled model config (random weights)")
    p.add_argument("--seconds", type=float, default=60.0, help="measured seconds per setup")
    p.add_argument("--rate-hz", type=float, default=5.0, help="frames per second of each camera (above what the "
                   "nodes serve; raise it for fast models)")
    p.add_argument("--warmup-frames", type=int, default=2, help="answered frames per camera before measuring")
    p.add_argument("--categories", type=int, default=10, help="K")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--lanes", type=int, default=0, help="the multi node's inference_lanes (0 = auto: one per camera "
                   "on the CPU; 1 = each batch as one call)")
    p.add_argument("--order", nargs=2, default=["three", "multi"], choices=["multi", "three"],
                   help="which setup runs first")
    p.add_argument("--startup-timeout", type=float, default=900.0, help="seconds to wait for the node(s)")
    return p.parse_args(argv)


class NodeProcesses:
    """`synseg_node` processes, one per (namespace, parameters)."""

    def __init__(self, nodes: list[tuple[str, dict]], env: dict):
        self.processes, self.lines = [], []
        for namespace, params in nodes:
            args = [item for name, value in params.items() for item in ("-p", f"{name}:={value}")]
            process = subprocess.Popen(
                [sys.executable, "-c", "from synseg_ros.node import main; main()", "--ros-args",
                 "-r", f"__ns:={namespace}", *args],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.processes.append(process)
            threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.processes)

    def cpu_seconds(self) -> float:
        """User + system CPU time the processes have used so far."""
        return sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in self.processes)

    def memory_mib(self) -> dict[str, float]:
        """Totals over the processes in MiB: RSS now, PSS now, peak RSS."""
        total = {"rss": 0.0, "pss": 0.0, "peak": 0.0}
        for p in self.processes:
            info = psutil.Process(p.pid).memory_full_info()
            with open(f"/proc/{p.pid}/status") as f:
                peak_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
            total["rss"] += info.rss / 2**20
            total["pss"] += info.pss / 2**20
            total["peak"] += peak_kib / 2**10
        return total

    def stop(self) -> None:
        for p in self.processes:
            p.send_signal(2)  # SIGINT, as Ctrl-C
        for p in self.processes:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


class Cameras:
    """Cameras publishing frames at a fixed rate, a fraction of a period apart; counts the labels that come back."""

    def __init__(self, context, topics: list[tuple[str, str]], frame: np.ndarray, rate_hz: float):
        self.node = rclpy.create_node("multicamera_bench", context=context)
        self._msgs = [array_to_image(frame, "rgb8", Header(frame_id=f"cam{i}")) for i in range(len(topics))]
        self.answers: list[list[float]] = [[] for _ in topics]  # arrival times of labels
        self._pubs = [self.node.create_publisher(Image, image, RELIABLE) for image, _ in topics]
        for i, (_, labels) in enumerate(topics):
            self.node.create_subscription(Image, labels, lambda msg, i=i: self.answers[i].append(time.perf_counter()),
                                          RELIABLE)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        self._stop = threading.Event()
        self._period_s = 1.0 / rate_hz
        self._thread = threading.Thread(target=self._publish, daemon=True)
        self._thread.start()

    def _publish(self) -> None:
        start, tick = time.perf_counter(), 0
        step = self._period_s / len(self._pubs)
        while not self._stop.is_set():
            i = tick % len(self._pubs)
            self._msgs[i].header.stamp.sec = tick
            self._pubs[i].publish(self._msgs[i])
            tick += 1
            self._stop.wait(max(0.0, start + tick * step - time.perf_counter()))

    def rates_between(self, start: float, end: float) -> list[float]:
        """Each camera's answers per second in [start, end): (answers - 1) / time from its first to its last answer
        there. Counting answers in the window instead is off by up to one frame per camera, which at ViT-B/16 CPU
        speeds (about 10 frames per camera in 45 s) moved the ratio by up to 10%."""
        rates = []
        for answers in self.answers:
            inside = [t for t in list(answers) if start <= t < end]
            if len(inside) < 2:
                raise RuntimeError(f"fewer than two answers in {end - start:.0f} s; measure for longer (--seconds)")
            rates.append((len(inside) - 1) / (inside[-1] - inside[0]))
        return rates

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.executor.shutdown(timeout_sec=5)
        self._spinner.join(timeout=5)  # a thread left in rclpy's wait aborts the exit
        self.node.destroy_node()


@dataclass
class Setup:
    name: str
    nodes: list[tuple[str, dict]]  # (namespace, parameters) per process
    topics: list[tuple[str, str]]  # (image topic, labels topic) per camera


def setups(params: dict, lanes: int) -> dict[str, Setup]:
    multi = Setup("multi", [("/multi", {**params, "cameras": f"[{','.join(CAMERAS)}]", "inference_lanes": lanes})],
                  [(f"/multi/{c}/image", f"/multi/{c}/labels") for c in CAMERAS])
    three = Setup("three", [(f"/single{i}", params) for i in range(len(CAMERAS))],
                  [(f"/single{i}/image", f"/single{i}/synseg/labels") for i in range(len(CAMERAS))])
    return {"multi": multi, "three": three}


def measure(setup: Setup, args: argparse.Namespace, context, env: dict, frame: np.ndarray) -> dict:
    nodes = NodeProcesses(setup.nodes, env)
    cameras = Cameras(context, setup.topics, frame, args.rate_hz)
    try:
        started = time.perf_counter()
        with tqdm(desc=f"{setup.name}: start-up and warm-up", unit="s") as bar:
            while min(len(a) for a in cameras.answers) < args.warmup_frames:
                time.sleep(5.0)
                bar.update(5)
                if not nodes.alive() or time.perf_counter() - started > args.startup_timeout:
                    raise RuntimeError(f"{setup.name}: the node(s) did not answer:\n" + "".join(nodes.lines[-40:]))
        start, cpu_start = time.perf_counter(), nodes.cpu_seconds()
        for _ in tqdm(range(int(args.seconds)), desc=f"{setup.name}: measuring", unit="s"):
            time.sleep(1.0)
        end, cpu = time.perf_counter(), nodes.cpu_seconds() - cpu_start
        rates = cameras.rates_between(start, end)
        return {"fps": sum(rates), "per_camera": rates, "frames_per_cpu_s": sum(rates) * (end - start) / cpu,
                "cpu_share": cpu / (end - start),
                "memory": nodes.memory_mib(), "processes": len(setup.nodes)}
    finally:
        cameras.close()
        nodes.stop()


def node_parameters(model: str, args: argparse.Namespace, folder: Path) -> dict:
    config_path = model_config_file(model, folder)
    inference = get_model_config(model).inference
    categories = [f"object number {i}" for i in range(args.categories)]
    return {"checkpoint": str(config_path), "backend": "torch", "device": "cpu",
            "categories": json.dumps(", ".join(categories)), "short_side": inference.short_side,
            "window": inference.window or 0, "stride": inference.stride, "templates": inference.templates,
            "image_reliability": "reliable", "warmup_size": f"[{args.height},{args.width}]"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = ros_environment(REPO)
    print(f"machine: {machine_description()}, {psutil.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB")
    print(f"model {args.model} (random weights), {len(CAMERAS)} cameras at {args.width}x{args.height} rgb8, "
          f"K={args.categories}, {args.rate_hz:g} Hz each, backend torch on CPU, {args.seconds:.0f} s measured per "
          f"setup, multi node inference_lanes {args.lanes}")
    frame = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    results = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            all_setups = setups(node_parameters(args.model, args, Path(folder)), args.lanes)
            for name in args.order:
                results[name] = measure(all_setups[name], args, context, env, frame)
    finally:
        rclpy.try_shutdown(context=context)
    for name, r in results.items():
        m = r["memory"]
        print(f"\n{name}: {r['processes']} node process(es)")
        print(f"  total {r['fps']:.3f} frames/s (per camera: {', '.join(f'{f:.3f}' for f in r['per_camera'])})")
        print(f"  {r['frames_per_cpu_s']:.4f} frames per CPU-second; the node(s) used {r['cpu_share']:.2f} CPUs "
              f"of {psutil.cpu_count()}")
        print(f"  memory: RSS {m['rss']:.0f} MiB, PSS {m['pss']:.0f} MiB, peak RSS {m['peak']:.0f} MiB")
    multi, three = results["multi"], results["three"]
    print(f"\nmulti / three: throughput {multi['fps'] / three['fps']:.2f}x (target >= 1.0x on CPU), "
          f"RSS {multi['memory']['rss'] / three['memory']['rss']:.2f}x (target <= 0.45x), "
          f"PSS {multi['memory']['pss'] / three['memory']['pss']:.2f}x, "
          f"peak RSS {multi['memory']['peak'] / three['memory']['peak']:.2f}x")
    # On a shared machine three processes get a larger share of the CPUs than one; per CPU-second is load-free.
    print(f"multi / three per CPU-second: {multi['frames_per_cpu_s'] / three['frames_per_cpu_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
