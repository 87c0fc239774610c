"""Image-path backends side by side: ONNX Runtime CPU (fp32, int8) vs PyTorch eager (fp32, bf16) at 448, K=10
(target: ORT >= 1.5x faster); on a CUDA machine also PyTorch CUDA fp32/fp16/bf16, eager and with CUDA graphs
(targets: fp16 <= 7 ms, graphs <= 4 ms on an H100/H200), ONNX Runtime CUDA where onnxruntime-gpu is installed (I/O
bound to device tensors) and TensorRT where it is installed.

    python -m benchmarks.backends_speed [--repeats 5] [--size 448] [--categories 10] [--skip-cpu]

ViT-B/16 with random weights (timing only). The backends' `run` is timed on one normalised window, on the backend's
device.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile

import torch

from benchmarks.common import interleaved_medians, machine_description
from synseg_core import get_model_config
from synseg_core.deploy.backends.factory import create_backend
from synseg_core.deploy.backends.onnx_backend import available_providers
from synseg_core.deploy.backends.torch_backend import cpu_has_native_bf16
from synseg_core.model.synseg import SynSeg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=448)
    p.add_argument("--categories", type=int, default=10)
    p.add_argument("--cache-dir", default=None, help="where exports/engines go (default: a temporary folder)")
    p.add_argument("--model", default="vitb16-rd64-refined", help="bundled model config (random weights)")
    p.add_argument("--skip-cpu", action="store_true", help="only the CUDA rows (a GPU session's short time)")
    args = p.parse_args(argv)
    print(f"machine: {machine_description()}")
    cfg = get_model_config(args.model)
    cfg.backbone.pretrained = None
    torch.manual_seed(0)
    model = SynSeg(cfg).eval()
    text = model.text_embeddings([f"object {i}" for i in range(args.categories)])
    images = torch.randn(1, 3, args.size, args.size)
    cache = args.cache_dir or tempfile.mkdtemp(prefix="synseg-bench-")
    if not args.skip_cpu:
        cpu_rows(model, images, text, cache, args)
    if not torch.cuda.is_available():
        print("\nno CUDA device: PyTorch CUDA, ONNX Runtime CUDA and TensorRT not measured")
        return 0
    cuda_rows(model, images, text, cache, args)
    return 0


def cpu_rows(model: SynSeg, images: torch.Tensor, text: torch.Tensor, cache: str, args: argparse.Namespace) -> None:
    print(f"exporting / loading backends at {args.size}, K={args.categories} ...", flush=True)
    cpu = {"torch cpu": create_backend("torch", model, device="cpu"),
           "torch cpu bf16": create_backend("torch", model, device="cpu", precision="bf16")}
    for precision in ("fp32", "int8"):
        cpu[f"onnxruntime cpu {precision}"] = create_backend("onnxruntime", model, device="cpu", cache_dir=cache,
                                                             input_size=args.size, precision=precision)
    med = interleaved_medians({k: (lambda b=b: b.run(images, text)) for k, b in cpu.items()}, args.repeats)
    print("\nbackend                   ms/frame  speed-up over torch eager")
    for k, v in med.items():
        print(f"{k:25s} {v * 1e3:8.1f}  {med['torch cpu'] / v:5.2f}x")
    print("(int8: the tower's weight matmuls dynamically quantized, export_int8.py; bf16: autocast, fast only on CPUs "
          f"with AVX512-BF16/AMX, here: {cpu_has_native_bf16()}; on the demo model both label 99.9% of pixels as fp32 "
          "does, tests/deploy/test_export_int8.py and test_torch_bf16.py)")


def cuda_rows(model: SynSeg, images: torch.Tensor, text: torch.Tensor, cache: str, args: argparse.Namespace) -> None:
    """CUDA graphs (the default) against the eager forward per precision, then ONNX Runtime CUDA and TensorRT."""
    gpu = {f"torch cuda {p}{' eager' if not graphs else ''}": create_backend("torch", model, device="cuda",
                                                                              precision=p, cuda_graphs=graphs)
           for p in ("fp32", "fp16", "bf16") for graphs in (False, True)}
    # checked first: creating either without its runtime would export ViT-B/16 to ONNX before failing
    others = [("onnxruntime cuda fp32", "onnxruntime", "fp32", "CUDAExecutionProvider" in available_providers(),
               "this onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu is not installed)"),
              ("tensorrt fp16", "tensorrt", "fp16", importlib.util.find_spec("tensorrt") is not None,
               "tensorrt is not installed")]
    for name, backend, precision, present, missing in others:
        if not present:
            print(f"{name} not measured: {missing}")
            continue
        try:
            gpu[name] = create_backend(backend, model, device="cuda", precision=precision, cache_dir=cache,
                                       input_size=args.size)
        except Exception as exc:  # a runtime failing is a result to print, not a crash
            print(f"{name} not measured: {type(exc).__name__}: {exc}")
    gimages, gtext = images.cuda(), text.cuda()  # on the device, as the Segmenter hands them over
    med = interleaved_medians({k: (lambda b=b: b.run(gimages, gtext)) for k, b in gpu.items()}, args.repeats * 4,
                              warmup=3, sync=torch.cuda.synchronize)
    for k, v in med.items():
        print(f"{k:24s} {v * 1e3:8.2f} ms  ({torch.cuda.get_device_name(0)})")


if __name__ == "__main__":
    sys.exit(main())
