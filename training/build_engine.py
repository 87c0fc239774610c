"""Build (or reuse) the TensorRT engine for an exported image path, on the machine that will run it.

Engines are specific to the TensorRT version and the GPU, so they are built on the target from the ONNX export
(training/export.py), cached under --cache-dir and checked against ONNX Runtime before they are trusted.

    python training/build_engine.py --onnx model.onnx --onnx-fp16 model-fp16.onnx --precision fp16 \\
        --max-categories 64 --max-batch 4
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

from synseg_core.deploy.backends.base import BackendError
from synseg_core.deploy.capabilities import DEVICE_TYPES, backend_precisions
from synseg_core.deploy.backends.onnx_backend import OnnxRuntimeBackend, available_providers
from synseg_core.deploy.backends.tensorrt import TensorRTConfig, create_tensorrt_backend
from synseg_core.config import ConfigError

DEFAULTS = TensorRTConfig()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True, help="the fp32 export (training/export.py)")
    p.add_argument("--onnx-fp16", help="the fp16 export (training/export.py --precision fp16); fp16 engines on "
                                       "TensorRT 11 need it")
    p.add_argument("--precision", default=DEFAULTS.precision, choices=backend_precisions("tensorrt"),
                   help="requested precision; fp16 falls back to fp32 if it cannot be built or fails the check")
    p.add_argument("--cache-dir", default=DEFAULTS.cache_dir, help="engine cache directory")
    p.add_argument("--opt-categories", type=int, default=DEFAULTS.opt_categories)
    p.add_argument("--max-categories", type=int, default=DEFAULTS.max_categories)
    p.add_argument("--opt-batch", type=int, default=DEFAULTS.opt_batch)
    p.add_argument("--max-batch", type=int, default=DEFAULTS.max_batch)
    p.add_argument("--workspace-mb", type=int, default=DEFAULTS.workspace_mb,
                   help="builder workspace limit in MiB (default: TensorRT's)")
    p.add_argument("--optimization-level", type=int, default=DEFAULTS.optimization_level, help="0..5")
    p.add_argument("--no-tf32", action="store_true", help="forbid TF32 in fp32 layers")
    p.add_argument("--no-timing-cache", action="store_true", help="do not read or write the timing cache")
    p.add_argument("--force-rebuild", action="store_true", help="ignore cached engines and remembered failures")
    p.add_argument("--device", default="cuda", help="CUDA device to build for (cuda, cuda:1)")
    p.add_argument("--reference-device", default="cpu", choices=DEVICE_TYPES,
                   help="where ONNX Runtime computes the reference outputs of the engine check")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TensorRTConfig:
    return dataclasses.replace(
        DEFAULTS, cache_dir=args.cache_dir, precision=args.precision, opt_categories=args.opt_categories,
        max_categories=args.max_categories, opt_batch=args.opt_batch, max_batch=args.max_batch,
        workspace_mb=args.workspace_mb, optimization_level=args.optimization_level, tf32=not args.no_tf32,
        timing_cache=not args.no_timing_cache, force_rebuild=args.force_rebuild, show_progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = config_from_args(args)
        if args.reference_device == "cuda" and "CUDAExecutionProvider" not in available_providers():
            raise BackendError("--reference-device cuda needs onnxruntime-gpu (CUDAExecutionProvider); use cpu")
        start = time.perf_counter()
        backend = create_tensorrt_backend(args.onnx, lambda: OnnxRuntimeBackend(args.onnx, args.reference_device),
                                          config, fp16_onnx_path=args.onnx_fp16, device=args.device)
    except (BackendError, ConfigError, FileNotFoundError) as exc:
        print(f"[build_engine] error: {exc}", file=sys.stderr)
        return 2
    sidecar = backend.sidecar
    plan = Path(config.cache_dir).expanduser() / "engines" / sidecar["plan_file"]
    points = sidecar["verification"]["points"]
    print(f"[build_engine] {plan} ready in {time.perf_counter() - start:.1f} s: precision {backend.precision} "
          f"(requested {config.precision}), input {backend.input_size}, up to {backend.max_batch} images x "
          f"{backend.max_categories} categories per call")
    print(f"[build_engine] checked against {sidecar['verification']['reference']}: max |diff| "
          f"{max(p['max_abs'] for p in points):.3g} over (B, K) = "
          f"{', '.join(str((p['batch'], p['categories'])) for p in points)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
