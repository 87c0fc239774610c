"""Batched multi-camera inference without ROS (issue 9): one process batching three cameras against three processes.

    python -m benchmarks.multicamera_batching [--device cuda] [--precision fp16] [--seconds 20]

The ROS-free half of benchmarks/multicamera.py, for machines without ROS (the GPU machines here): it measures
what batching buys on the device itself. "three": three processes, each with its own Segmenter, each segmenting
its camera's frame in a loop (their best case: no transport, no scheduler), all at once on the same device.
"multi": one process, one Segmenter, three camera threads submitting frames to `synseg_core.serving.scheduling.
BatchScheduler` (latest-frame, batch window), which runs each batch through one `Segmenter.segment` call (on a GPU
the batch's frames go up in one copy, are pre- and post-processed together and come back in one copy). Both ask for
what the node publishes (compact labels, mask images, confidence).
Printed: total frames/s, per camera, resident memory (RSS and PSS) and, on CUDA, the GPU memory the processes
hold (nvidia-smi), and the ratios multi / three. Model: the bundled config with random weights.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import subprocess
import sys
import threading
import time

import numpy as np
import psutil

from benchmarks.common import machine_description
from synseg_core import Outputs, Segmenter, get_model_config
from synseg_core.serving.scheduling import BatchScheduler

CAMERAS = ("cam0", "cam1", "cam2")
NODE_OUTPUTS = Outputs.for_images()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vitb16-rd64-refined", help="bundled model config (random weights)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"], help="fp16 needs CUDA")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per setup")
    p.add_argument("--categories", type=int, default=10, help="K")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--batch-window-ms", type=float, default=10.0)
    return p.parse_args(argv)


def make_segmenter(args: argparse.Namespace) -> tuple[Segmenter, list[str]]:
    cfg = get_model_config(args.model)
    cfg.backbone.pretrained = None  # random weights: timing and memory only
    segmenter = Segmenter.from_checkpoint(cfg, device=args.device, precision=args.precision)
    categories = [f"object number {i}" for i in range(args.categories)]
    segmenter.encode_text(categories)
    return segmenter, categories


def frame(args: argparse.Namespace, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)


def _sync(args: argparse.Namespace) -> None:
    import torch

    if torch.device(args.device).type == "cuda":
        torch.cuda.synchronize()


def single_camera(args: argparse.Namespace, index: int, ready, start, results) -> None:
    """One of the three processes: its own model, its camera's frame in a loop on a worker thread (as the node's
    inference runs: torch's CPU threading behaves differently on the main thread)."""
    segmenter, categories = make_segmenter(args)
    image = frame(args, index)

    def loop() -> None:
        for _ in range(2):  # warm-up
            segmenter.segment(image, categories, outputs=NODE_OUTPUTS)
        _sync(args)
        ready.wait()
        start.wait()
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            segmenter.segment(image, categories, outputs=NODE_OUTPUTS)
            count += 1
        _sync(args)
        results.put((index, count / (time.perf_counter() - t0)))

    worker = threading.Thread(target=loop)
    worker.start()
    worker.join()
    ready.wait()  # stay alive until the parent has read the memory


def run_three(args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    ready, start, results = ctx.Barrier(len(CAMERAS) + 1), ctx.Barrier(len(CAMERAS) + 1), ctx.Queue()
    procs = [ctx.Process(target=single_camera, args=(args, i, ready, start, results)) for i in range(len(CAMERAS))]
    for p in procs:
        p.start()
    ready.wait()  # all loaded and warmed up
    start.wait()
    fps = dict(results.get(timeout=args.seconds + 600) for _ in procs)
    memory = process_memory([p.pid for p in procs])
    ready.wait()
    for p in procs:
        p.join()
    return {"fps": sum(fps.values()), "per_camera": [fps[i] for i in range(len(CAMERAS))], **memory}


def run_multi(args: argparse.Namespace, results, done) -> None:
    """One process: one model, three camera threads feeding the batching scheduler."""
    segmenter, categories = make_segmenter(args)
    images = {camera: frame(args, i) for i, camera in enumerate(CAMERAS)}
    # warm-up with the batch size that will run
    segmenter.segment(list(images.values()), categories, outputs=NODE_OUTPUTS)
    segmenter.segment(list(images.values()), categories, outputs=NODE_OUTPUTS)
    _sync(args)
    scheduler = BatchScheduler(lambda batch: segmenter.segment([item for _, item in batch], categories,
                                                             outputs=NODE_OUTPUTS),
                               list(CAMERAS), batch_window_s=args.batch_window_ms / 1000.0, name="bench-batcher")
    stop = threading.Event()

    def camera(name: str) -> None:  # a camera faster than the model: the latest-frame policy drops the rest
        while not stop.is_set():
            scheduler.submit(name, images[name])
            time.sleep(0.001)

    scheduler.start()
    threads = [threading.Thread(target=camera, args=(name,), daemon=True) for name in CAMERAS]
    for t in threads:
        t.start()
    time.sleep(1.0)  # settle
    before, t0 = [scheduler.stats(c).processed for c in CAMERAS], time.perf_counter()
    time.sleep(args.seconds)
    after, elapsed = [scheduler.stats(c).processed for c in CAMERAS], time.perf_counter() - t0
    per_camera = [(a - b) / elapsed for a, b in zip(after, before)]
    batches = scheduler.batch_stats
    results.put({"fps": sum(per_camera), "per_camera": per_camera,
                 "mean_batch": batches.items / max(batches.batches, 1)})
    done.wait()  # stay alive until the parent has read the memory
    stop.set()
    scheduler.stop()


def process_memory(pids: list[int]) -> dict:
    """Total RSS and PSS (MiB) of the processes, and the GPU memory nvidia-smi shows for them (MiB, or None)."""
    rss = pss = 0.0
    for pid in pids:
        info = psutil.Process(pid).memory_full_info()
        rss, pss = rss + info.rss / 2**20, pss + info.pss / 2**20
    gpu = None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout
        used = {int(p): float(m) for p, m in (line.split(",") for line in out.strip().splitlines() if line)}
        gpu = sum(used.get(pid, 0.0) for pid in pids)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    return {"rss": rss, "pss": pss, "gpu": gpu}


def measure_multi(args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    results, done = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=run_multi, args=(args, results, done))
    proc.start()
    result = results.get(timeout=args.seconds + 600)
    result.update(process_memory([proc.pid]))
    done.set()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"machine: {machine_description()}, {psutil.cpu_count()} CPUs")
    print(f"model {args.model} (random weights), {len(CAMERAS)} cameras at {args.width}x{args.height}, "
          f"K={args.categories}, device {args.device}, {args.precision}, {args.seconds:.0f} s per setup")
    results = {"three": run_three(args), "multi": measure_multi(args)}
    for name, r in results.items():
        gpu = f", GPU {r['gpu']:.0f} MiB" if r["gpu"] is not None else ""
        batch = f", mean batch {r['mean_batch']:.2f} frames" if "mean_batch" in r else ""
        print(f"{name}: total {r['fps']:.2f} frames/s (per camera {', '.join(f'{f:.2f}' for f in r['per_camera'])})"
              f"{batch}; RSS {r['rss']:.0f} MiB, PSS {r['pss']:.0f} MiB{gpu}")
    multi, three = results["multi"], results["three"]
    gpu = (f", GPU memory {multi['gpu'] / three['gpu']:.2f}x" if multi["gpu"] and three["gpu"] else "")
    print(f"multi / three: throughput {multi['fps'] / three['fps']:.2f}x, RSS {multi['rss'] / three['rss']:.2f}x, "
          f"PSS {multi['pss'] / three['pss']:.2f}x{gpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
