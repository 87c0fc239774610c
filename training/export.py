"""Export the SynSeg image path to ONNX (one fixed input size per file; fp32, fp16 for TensorRT 11, or int8 for
ONNX Runtime on the CPU).

    python training/export.py --checkpoint CKPT --input-size 448 --out model.onnx [--precision fp32|fp16|int8]

Tracing runs on the CPU whatever the machine has (the graph does not depend on the device). Exit status: 0 done,
2 bad input (checkpoint, size, an --out that cannot be written or lacks room for the model's weights); --out is
checked before the model is loaded (its free space once the model's size is known) and written atomically.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from synseg_core.deploy.capabilities import EXPORT_PRECISIONS
from synseg_core.deploy.export import ExportError, export_onnx, read_export_info
from synseg_core.inference.segmenter import resolve_model_source
from synseg_core.outputs import OutputError, check_writable_dir, check_writable_file, describe_os_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint folder, model-config JSON, or bundled config name (e.g. tiny-test)")
    p.add_argument("--input-size", type=int, default=None, help="square input size (default: the model's window)")
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--precision", choices=EXPORT_PRECISIONS, default="fp32",
                   help="fp16: half weights/activations with LayerNorm/Softmax kept fp32 (TensorRT 11); int8: the CLIP "
                        "tower's weight matmuls dynamically quantized (ONNX Runtime on the CPU)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        check_writable_file(args.out, what="--out")
        print(f"[export] loading {args.checkpoint}", flush=True)
        model = resolve_model_source(args.checkpoint)
        weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())  # the fp32 export's size
        check_writable_dir(Path(args.out).parent, weights, what="the folder of --out")
        size = args.input_size or model.cfg.inference.window or model.cfg.inference.short_side
        print(f"[export] tracing the image path at {size}x{size} ({args.precision}) ...", flush=True)
        start = time.perf_counter()
        path = export_onnx(model, args.out, size, precision=args.precision)
    except (ExportError, OutputError, ValueError) as exc:  # ValueError: CheckpointError, ConfigError
        print(f"[export] error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"[export] error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    info = read_export_info(path)
    print(f"[export] wrote {path} in {time.perf_counter() - start:.1f} s: input {info.input_size}, "
          f"precision {info.precision}, opset {info.opset}, weights {info.weights_sha256[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
