"""Run a serialized engine on torch tensors, by tensor name, on a private CUDA stream.

Pattern of NVIDIA's torch-based runtimes (demo/Diffusion engine.py, Polygraphy's TrtRunner): deserialize with a
capturing logger (deserialize_cuda_engine returns None on a stale or corrupt plan and only logs the reason),
set input shapes, allocate outputs with torch, bind data_ptr()s with set_tensor_address and enqueue with
execute_async_v3 on our own stream, ordered after and before the caller's stream.
API pages: https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ExecutionContext.html
and .../infer/Core/Runtime.html.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Mapping

import torch

from .callbacks import CapturedLog, make_trt_logger
from .errors import EngineLoadError, ShapeOutOfProfileError, TensorRTError

_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
                 "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}
PROFILE_INDEX = 0  # engines here have one optimisation profile


@dataclass(frozen=True)
class TensorSpec:
    """One engine I/O tensor. `shape` has -1 on dynamic axes; `profile` is (min, opt, max) for inputs."""

    name: str
    is_input: bool
    dtype: torch.dtype
    shape: tuple[int, ...]
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None


class TrtRunner:
    """A deserialized engine plus one execution context (one runner per thread; calls are serialised).

    Args:
        trt: the tensorrt module.
        plan: serialized engine bytes.
        device: where inputs and outputs live. Real engines need a CUDA device; "cpu" only serves a fake
            tensorrt module in tests, and then no stream is used.
    """

    def __init__(self, trt: ModuleType, plan: bytes, device: torch.device, captured: CapturedLog | None = None):
        self.device = torch.device(device)
        self.captured = captured or CapturedLog()
        self._logger = make_trt_logger(trt, self.captured)  # must outlive runtime, engine and context
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise EngineLoadError(f"TensorRT could not deserialize the engine (stale or corrupt plan): "
                                  f"{self.captured.summary()}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineLoadError(f"TensorRT could not create an execution context: {self.captured.summary()}")
        self.specs = self._read_specs(trt)
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._lock = threading.Lock()

    def _read_specs(self, trt: ModuleType) -> dict[str, TensorSpec]:
        specs = {}
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            dtype_name = getattr(self._engine.get_tensor_dtype(name), "name", "?")
            if dtype_name not in _TORCH_DTYPES:
                raise EngineLoadError(f"engine tensor {name!r} has data type {dtype_name}, which synseg does not "
                                      f"bind; supported: {sorted(_TORCH_DTYPES)}")
            shape = tuple(self._engine.get_tensor_shape(name))
            profile = None
            if is_input and any(dim < 0 for dim in shape):
                low, opt, high = self._engine.get_tensor_profile_shape(name, PROFILE_INDEX)
                profile = (tuple(low), tuple(opt), tuple(high))
            elif is_input:
                profile = (shape, shape, shape)
            specs[name] = TensorSpec(name, is_input, _TORCH_DTYPES[dtype_name], shape, profile)
        return specs

    @property
    def input_names(self) -> list[str]:
        return [name for name, spec in self.specs.items() if spec.is_input]

    @property
    def output_names(self) -> list[str]:
        return [name for name, spec in self.specs.items() if not spec.is_input]

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the engine. Inputs are moved to the device and cast to the engine's dtypes; returns outputs by name."""
        if set(inputs) != set(self.input_names):
            raise TensorRTError(f"engine inputs are {sorted(self.input_names)}, got {sorted(inputs)}")
        with self._lock:
            bound = {name: self._bind_input(name, tensor) for name, tensor in inputs.items()}
            unresolved = self._context.infer_shapes()
            if unresolved:
                raise TensorRTError(f"TensorRT could not infer the shapes of {list(unresolved)}")
            for name in self.output_names:
                shape = tuple(self._context.get_tensor_shape(name))
                bound[name] = torch.empty(shape, dtype=self.specs[name].dtype, device=self.device)
            for name, tensor in bound.items():
                self._context.set_tensor_address(name, tensor.data_ptr())
            self._execute(bound)
        return {name: bound[name] for name in self.output_names}

    def _bind_input(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        spec = self.specs[name]
        shape = tuple(tensor.shape)
        low, _, high = spec.profile
        if len(shape) != len(low) or any(not lo <= dim <= hi for dim, lo, hi in zip(shape, low, high)):
            raise ShapeOutOfProfileError(f"input {name!r} has shape {shape}; the engine accepts shapes from "
                                         f"{low} to {high}")
        tensor = tensor.to(self.device, spec.dtype).contiguous()
        if not self._context.set_input_shape(name, shape):
            raise ShapeOutOfProfileError(f"TensorRT refused shape {shape} for input {name!r}: "
                                         f"{self.captured.summary()}")
        return tensor

    def _execute(self, bound: dict[str, torch.Tensor]) -> None:
        if self._stream is None:
            ok = self._context.execute_async_v3(0)
        else:
            caller = torch.cuda.current_stream(self.device)
            self._stream.wait_stream(caller)  # inputs were produced on the caller's stream
            ok = self._context.execute_async_v3(self._stream.cuda_stream)
            for tensor in bound.values():
                tensor.record_stream(self._stream)  # keep the allocator from reusing them before we finish
            caller.wait_stream(self._stream)  # consumers on the caller's stream see finished outputs
        if not ok:
            raise TensorRTError(f"TensorRT failed to enqueue the engine: {self.captured.summary()}")
