"""Which ONNX file and which flags give an engine of the requested precision, per TensorRT major version.

| TensorRT | requested | ONNX parsed | network flags  | builder flags | resolved | typing |
|----------|-----------|-------------|----------------|---------------|----------|--------|
| 10.x     | fp32      | fp32        | STRONGLY_TYPED | -             | fp32     | strong |
| 10.x     | fp16      | fp32        | -              | FP16          | fp16     | weak   |
| 11.x+    | fp32      | fp32        | -              | -             | fp32     | strong |
| 11.x+    | fp16      | fp16 ONNX   | -              | -             | fp16     | strong |
| 11.x+    | fp16      | no fp16 ONNX (or one without float16 weights) -> fp32 ONNX | fp32 | strong |

TensorRT 10.12 deprecated and 11.0 removed the weak-typing precision flags (BuilderFlag.FP16 is gone from the
11.x bindings); 11.x networks are always strongly typed, so tensor types come from the ONNX file and an fp16
engine needs an fp16 ONNX (the exporter writes it with LayerNorm/Softmax/reductions kept in fp32). The
STRONGLY_TYPED flag is deprecated and ignored on 11.x, so it is not set there. Sources: NVIDIA's TensorRT
10.x -> 11.x migration guide and the 11.0 Python API page of NetworkDefinitionCreationFlag
(https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/_static/python-api/infer/Core/Builder.html).
The resolved precision is what an engine is labelled with, so it is never called fp16 when built fp32.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .config import PRECISIONS
from .errors import TensorRTError
from .onnx_info import has_float16_weights, load_onnx_structure

log = logging.getLogger(__name__)

FIRST_STRONGLY_TYPED_ONLY_MAJOR = 11


@dataclass(frozen=True)
class PrecisionPlan:
    """The resolved way to build an engine of some precision."""

    requested: str
    resolved: Literal["fp32", "fp16"]
    typing: Literal["strong", "weak"]
    onnx_path: Path
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag member names
    builder_flags: tuple[str, ...]  # BuilderFlag member names
    note: str  # why this row of the table was chosen

    def as_key(self) -> dict:
        """The parts of the plan that change the engine (the ONNX file is keyed by its content hash; the requested
        precision is not part of it, so fp16 resolved to fp32 shares the fp32 engine)."""
        return {"resolved": self.resolved, "typing": self.typing,
                "network_flags": list(self.network_flags), "builder_flags": list(self.builder_flags)}


def resolve_precision(requested: str, trt_major: int, onnx_fp32: str | Path,
                      onnx_fp16: str | Path | None = None) -> PrecisionPlan:
    """Resolve a requested precision for a TensorRT major version (see the module table).

    Args:
        requested: "fp32" or "fp16".
        trt_major: TensorRT major version (10, 11, ...).
        onnx_fp32: the fp32 export.
        onnx_fp16: the fp16 export, used on TensorRT 11+ only; None when there is none.
    """
    if requested not in PRECISIONS:
        raise TensorRTError(f"precision {requested!r} is not supported; use one of {list(PRECISIONS)}")
    onnx_fp32 = Path(onnx_fp32)
    if trt_major < FIRST_STRONGLY_TYPED_ONLY_MAJOR:
        if requested == "fp32":
            return PrecisionPlan(requested, "fp32", "strong", onnx_fp32, ("STRONGLY_TYPED",), (),
                                 f"TensorRT {trt_major}.x: fp32 ONNX, strongly typed")
        return PrecisionPlan(requested, "fp16", "weak", onnx_fp32, (), ("FP16",),
                             f"TensorRT {trt_major}.x: fp32 ONNX, weakly typed with BuilderFlag.FP16")
    if requested == "fp32":
        return PrecisionPlan(requested, "fp32", "strong", onnx_fp32, (), (),
                             f"TensorRT {trt_major}.x: fp32 ONNX (networks are always strongly typed)")
    problem = _fp16_onnx_problem(onnx_fp16)
    if problem is None:
        return PrecisionPlan(requested, "fp16", "strong", Path(onnx_fp16), (), (),
                             f"TensorRT {trt_major}.x: fp16 ONNX, strongly typed")
    note = (f"TensorRT {trt_major}.x builds only what the ONNX types say and {problem}, so the engine is built "
            "fp32; export an fp16 ONNX to get an fp16 engine")
    log.warning("fp16 requested: %s", note)
    return PrecisionPlan(requested, "fp32", "strong", onnx_fp32, (), (), note)


def _fp16_onnx_problem(onnx_fp16: str | Path | None) -> str | None:
    """Why an fp16 ONNX cannot give an fp16 engine on a strongly typed TensorRT, or None when it can."""
    if onnx_fp16 is None:
        return "no fp16 ONNX was given"
    if not has_float16_weights(load_onnx_structure(onnx_fp16)):
        return f"the fp16 ONNX {str(onnx_fp16)!r} holds no float16 weights"
    return None
