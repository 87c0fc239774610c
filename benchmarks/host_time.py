"""The node's host time per frame outside the model, before and after the image path moved to the device, in one run.

    python -m benchmarks.host_time [--model vitb16-rd64-refined] [--frames 10] [--device cpu] [--all-outputs]

Per frame, as the node's worker does it: convert the `sensor_msgs/Image` to RGB, segment, and build the output
messages (synseg_ros.outputs: labels; with --all-outputs also the masks as mono8 images, confidence and the overlay).
"old" is the conversion and image path they replaced (benchmarks/legacy_image_path.py: a planar copy of the frame,
int32 labels, [K, H, W] bool masks turned into mono8 planes on the host); "new" is the node's conversion
(synseg_ros.image_conversion: a view of the message for rgb8) and `Segmenter.segment` asking for what the node
publishes (compact labels, uint8 mask images, confidence; no probabilities). The backend's `run` is timed apart
(on CUDA with a synchronisation on each side) and subtracted: the rest is the host time outside the model, the
figure this script compares (target: new <= 0.5x old). Old and new alternate frame by frame on one worker thread, so
both see the same machine load. Model: the bundled config with random weights (timing only).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from benchmarks.common import machine_description
from benchmarks.legacy_image_path import legacy_image_to_rgb8, legacy_segment
from synseg_core import Outputs, Segmenter, get_model_config
from synseg_core.inference.postprocess import fused_kernel_serves
from synseg_core.inference.preprocess import model_input_size
from synseg_core.inference.segmenter import SegmentationResult

STAGES = ("convert", "segment outside the model", "messages")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vitb16-rd64-refined", help="bundled model config (random weights)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--frames", type=int, default=20, help="timed frames per path")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames per path first")
    p.add_argument("--categories", type=int, default=10, help="K")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--all-outputs", action="store_true", help="also build masks, confidence and overlay messages")
    p.add_argument("--stand-in-model", action="store_true",
                   help="replace the model by fixed probabilities after a short matrix product (a quick rehearsal "
                        "of the host-side stages; not the figure to report)")
    return p.parse_args(argv)


class TimedBackend:
    """The segmenter's backend with the time spent in `run` added up (the model, which this script leaves out).

    stand_in: instead of the model, a matrix product on the device (so caches and threads see some work) and fixed
    probabilities of the right shape.
    """

    def __init__(self, backend, stand_in: bool = False) -> None:
        self.inner, self.seconds, self.stand_in = backend, 0.0, stand_in
        self._sync = torch.cuda.synchronize if backend.device.type == "cuda" else (lambda: None)
        self._fixed: dict[tuple, torch.Tensor] = {}

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def run(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        self._sync()
        start = time.perf_counter()
        out = self._stand_in(images, text) if self.stand_in else self.inner.run(images, text)
        self._sync()
        self.seconds += time.perf_counter() - start
        return out

    def _stand_in(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        work = torch.ones(512, 512, device=images.device)
        for _ in range(4):
            work = work @ work / 512
        shape = (images.shape[0], text.shape[0], *images.shape[2:])
        if shape not in self._fixed:
            self._fixed[shape] = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(images.device)
        return self._fixed[shape].clone()


def message_builders(all_outputs: bool) -> dict[str, Callable]:
    """name -> build(result, rgb, header) for the outputs the node would publish, from a result of either path."""
    from synseg_ros.image_conversion import array_to_image
    from synseg_ros.outputs import confidence_message, labels_message, masks_messages, overlay_message

    def masks(r: SegmentationResult, rgb, header):
        if r.mask_images is not None:  # already mono8 planes: one message each, nothing computed on the host
            return [array_to_image(plane, "mono8", header) for plane in r.mask_images]
        return masks_messages(r.masks, header)

    builders = {"labels": lambda r, rgb, header: labels_message(r.labels, len(r.categories), header)}
    if all_outputs:
        builders.update(masks=masks, confidence=lambda r, rgb, header: confidence_message(r.confidence, header),
                        overlay=lambda r, rgb, header: overlay_message(rgb, r.labels, len(r.categories), 0.5, header))
    return builders


def one_frame(convert: Callable, segment: Callable[[np.ndarray], SegmentationResult], msg, backend: TimedBackend,
              builders: dict[str, Callable]) -> dict[str, float]:
    """Seconds per stage of one frame (the model's time taken out of the segment stage)."""
    t0 = time.perf_counter()
    rgb = convert(msg)
    t1 = time.perf_counter()
    model_before = backend.seconds
    result = segment(rgb)
    t2 = time.perf_counter()
    for build in builders.values():
        build(result, rgb, msg.header)
    t3 = time.perf_counter()
    return {"convert": t1 - t0, "segment outside the model": t2 - t1 - (backend.seconds - model_before),
            "messages": t3 - t2, "model": backend.seconds - model_before}


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Median seconds per stage for the old and the new path, and the host time of each path's fastest frame."""
    from std_msgs.msg import Header

    from synseg_ros.image_conversion import array_to_image, image_to_rgb8

    cfg = get_model_config(args.model)
    cfg.backbone.pretrained = None
    segmenter = Segmenter.from_checkpoint(cfg, device=args.device)
    segmenter.backend = backend = TimedBackend(segmenter.backend, args.stand_in_model)
    categories = [f"object number {i}" for i in range(args.categories)]
    segmenter.encode_text(categories)
    wanted = Outputs.for_images(masks=args.all_outputs, confidence=args.all_outputs)
    paths = {"old": (legacy_image_to_rgb8,
                     lambda rgb: legacy_segment(segmenter, [rgb], categories, probabilities=False)[0]),
             "new": (image_to_rgb8, lambda rgb: segmenter.segment(rgb, categories, outputs=wanted))}
    builders = message_builders(args.all_outputs)
    rng = np.random.default_rng(0)
    messages = [array_to_image(rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8), "rgb8", Header())
                for _ in range(3)]
    times: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    with ThreadPoolExecutor(max_workers=1) as worker:  # the node's inference runs on a worker thread too
        for i in range(args.warmup + args.frames):
            for name, (convert, segment) in paths.items():
                stages = worker.submit(one_frame, convert, segment, messages[i % len(messages)], backend,
                                       builders).result()
                if i >= args.warmup:
                    times[name].append(stages)
    medians = {name: {**{stage: statistics.median(frame[stage] for frame in frames) for stage in (*STAGES, "model")},
                      "fastest": min(sum(frame[stage] for stage in STAGES) for frame in frames)}
               for name, frames in times.items()}
    size = model_input_size(args.height, args.width, segmenter.inference, segmenter.model.backbone.patch_size)
    medians["new"]["fused"] = float(fused_kernel_serves(torch.empty(1, args.categories, *size, device=args.device),
                                                        (args.height, args.width)))
    return medians


def report(medians: dict[str, dict[str, float]]) -> list[str]:
    """Lines of the side-by-side table (ms per frame, medians) and the ratio of host time outside the model."""
    old, new = medians["old"], medians["new"]
    lines = [f"{'stage (ms per frame, median)':34s} {'old':>9s} {'new':>9s} {'new/old':>8s}"]
    for stage in STAGES:
        lines.append(f"{stage:34s} {1e3 * old[stage]:9.2f} {1e3 * new[stage]:9.2f} {new[stage] / old[stage]:8.2f}x")
    host_old, host_new = (sum(m[s] for s in STAGES) for m in (old, new))
    lines.append(f"{'host time outside the model':34s} {1e3 * host_old:9.2f} {1e3 * host_new:9.2f} "
                 f"{host_new / host_old:8.2f}x   (target <= 0.5x)")
    lines.append(f"{'  the same, fastest frame':34s} {1e3 * old['fastest']:9.2f} {1e3 * new['fastest']:9.2f} "
                 f"{new['fastest'] / old['fastest']:8.2f}x   (without the machine's interruptions)")
    lines.append(f"{'model (backend.run, not counted)':34s} {1e3 * old['model']:9.2f} {1e3 * new['model']:9.2f}")
    lines.append(f"{'new post-processing':34s} " + ("one fused CPU pass (numba)" if new.get("fused") else
                                                      "separate torch ops"))
    whole_old, whole_new = host_old + old["model"], host_new + new["model"]
    lines.append(f"{'whole frame in process (sum)':34s} {1e3 * whole_old:9.2f} {1e3 * whole_new:9.2f} "
                 f"{whole_new / whole_old:8.2f}x   (the node end to end less transport)")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"machine: {machine_description()}")
    model = "a stand-in for the model" if args.stand_in_model else f"model {args.model} (random weights)"
    print(f"{model} on {args.device}, {args.width}x{args.height} rgb8, "
          f"K={args.categories}, {args.frames} frames per path, outputs: labels"
          f"{', masks, confidence, overlay' if args.all_outputs else ''}")
    for line in report(measure(args)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
