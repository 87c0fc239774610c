"""A small fake of NVIDIA's `tensorrt` Python module that records calls, for machines without TensorRT.

It mirrors the part of the API synseg uses, as documented by NVIDIA (TensorRT Python API reference,
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/index.html):
- `Builder(logger)`: create_network(flags), create_builder_config(), create_optimization_profile(),
  build_serialized_network(network, config) -> IHostMemory or None on failure (the reason only goes to the
  logger). Without a CUDA device the real constructor fails with
  "TypeError: pybind11::init(): factory function returned nullptr".
- `NetworkDefinitionCreationFlag`: 10.x has EXPLICIT_BATCH (0, ignored) and STRONGLY_TYPED (1); 11.x has no
  EXPLICIT_BATCH and STRONGLY_TYPED is deprecated and ignored (value 0): "Strongly typed mode is always enabled"
  (https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/_static/python-api/infer/Core/Builder.html).
- `BuilderFlag`: FP16 exists on 10.x and was removed in 11.0 (so `BuilderFlag.FP16` raises AttributeError
  there); TF32 is on by default. Setting FP16 on a strongly typed network is a build error.
- `OnnxParser(network, logger)`: parse_from_file(path) -> bool, num_errors, get_error(i) -> ParserError with
  code(), desc(), node(), node_name(), node_operator()
  (https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/parsers/Onnx/pyOnnx.html).
- `IBuilderConfig`: set_flag/clear_flag/get_flag, set_memory_pool_limit(MemoryPoolType.WORKSPACE, n),
  builder_optimization_level, add_optimization_profile(p) -> index or -1, create_timing_cache(bytes),
  set_timing_cache(cache, ignore_mismatch) -> bool, get_timing_cache(), progress_monitor
  (.../infer/Core/BuilderConfig.html, .../infer/Core/TimingCache.html).
- `IProgressMonitor`: phase_start(name, parent, num_steps), step_complete(name, step) -> bool (False cancels),
  phase_finish(name) (.../infer/Core/ProgressMonitor.html).
- `Runtime(logger).deserialize_cuda_engine(buffer)` -> ICudaEngine "or None if it could not be deserialized",
  logging e.g. "expecting library version X got Y, please rebuild" (.../infer/Core/Runtime.html).
- `ICudaEngine`: num_io_tensors, get_tensor_name(i), get_tensor_mode/dtype/shape(name),
  get_tensor_profile_shape(name, profile) -> [min, opt, max], create_execution_context().
- `IExecutionContext`: set_input_shape(name, shape) -> bool, infer_shapes() -> unresolved names,
  get_tensor_shape(name), set_tensor_address(name, ptr), execute_async_v3(stream_handle) -> bool
  (.../infer/Core/ExecutionContext.html).

The fake's "engine" is the ONNX file run by ONNX Runtime on the CPU: execute_async_v3 reads the inputs from
the bound addresses and writes the outputs there, so tests can run the fake on CPU torch tensors. An engine
built weakly typed with FP16 rounds its outputs through float16.
"""
from __future__ import annotations

import ctypes
import enum
import json
import types
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx

from synseg_core.deploy.backends.tensorrt.onnx_info import supported_tensorrt_ops

PLAN_MAGIC = b"FAKETRT\x00"
TIMING_MAGIC = b"FAKETC\x00"

_ONNX_TO_TRT = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF", onnx.TensorProto.INT32: "INT32",
                onnx.TensorProto.INT64: "INT64", onnx.TensorProto.INT8: "INT8", onnx.TensorProto.UINT8: "UINT8",
                onnx.TensorProto.BOOL: "BOOL"}
_NUMPY = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "INT8": np.int8,
          "UINT8": np.uint8, "BOOL": np.bool_}


@dataclass
class Behaviour:
    """Knobs tests turn to make the fake fail the way real TensorRT does."""

    cuda_ok: bool = True
    build_returns_none: bool = False
    deserialize_returns_none: bool = False
    half_output_offset: float = 0.0  # added to the outputs of fp16 engines (a miscompiled engine)
    timing_cache_mismatch: bool = False
    on_build: Callable[[], None] | None = None  # called when a build starts


@dataclass
class _State:
    version: str
    behaviour: Behaviour
    calls: list[tuple] = field(default_factory=list)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def record(self, name: str, *args) -> None:
        self.calls.append((name, *args))


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity, msg) -> None:
        raise NotImplementedError


class IProgressMonitor:
    def __init__(self) -> None:
        pass


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    BF16 = 7
    INT64 = 8


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class ErrorCode(enum.IntEnum):
    SUCCESS = 0
    INTERNAL_ERROR = 1
    MEM_ALLOC_FAILED = 2
    MODEL_DESERIALIZE_FAILED = 3
    INVALID_VALUE = 4
    INVALID_GRAPH = 5
    INVALID_NODE = 6
    UNSUPPORTED_GRAPH = 7
    UNSUPPORTED_NODE = 8


def _flag_enums(major: int) -> tuple[type, type]:
    if major < 11:
        network = enum.IntEnum("NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1,
                                                                 "PREFER_JIT_PYTHON_PLUGINS": 2,
                                                                 "PREFER_AOT_PYTHON_PLUGINS": 3})
        builder = enum.IntEnum("BuilderFlag", {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4,
                                               "DISABLE_TIMING_CACHE": 5, "TF32": 6, "SPARSE_WEIGHTS": 7,
                                               "OBEY_PRECISION_CONSTRAINTS": 10, "BF16": 17})
    else:
        network = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 0, "PREFER_AOT_PYTHON_PLUGINS": 1,
                                                                 "PREFER_JIT_PYTHON_PLUGINS": 2})
        builder = enum.IntEnum("BuilderFlag", {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5,
                                               "TF32": 6, "SPARSE_WEIGHTS": 7})
    return network, builder


class IHostMemory:
    def __init__(self, data: bytes):
        self._data = bytes(data)
        self.nbytes = len(self._data)

    def __bytes__(self) -> bytes:
        return self._data


class ITensor:
    def __init__(self, name: str, dtype: DataType, shape: tuple[int, ...], dim_params: tuple[str | None, ...]):
        self.name, self.dtype, self.shape, self.dim_params = name, dtype, shape, dim_params


def _tensors(values, initializers: set[str]) -> list[ITensor]:
    tensors = []
    for value in values:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
        params = tuple(d.dim_param or None for d in dims)
        tensors.append(ITensor(value.name, DataType[_ONNX_TO_TRT[value.type.tensor_type.elem_type]], shape, params))
    return tensors


class INetworkDefinition:
    def __init__(self, flags: int, strongly_typed: bool):
        self.flags, self.strongly_typed = flags, strongly_typed
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []
        self.onnx_path: str | None = None
        self.half_weights = False

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]


class ParserError:
    def __init__(self, code: ErrorCode, desc: str, node: int = -1, node_name: str = "", node_operator: str = ""):
        self._values = (code, desc, node, node_name, node_operator)

    def code(self):
        return self._values[0]

    def desc(self):
        return self._values[1]

    def node(self):
        return self._values[2]

    def node_name(self):
        return self._values[3]

    def node_operator(self):
        return self._values[4]


class _OnnxParser:
    state: _State

    def __init__(self, network: INetworkDefinition, logger: ILogger):
        self.network, self.logger, self.errors = network, logger, []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> ParserError:
        return self.errors[index]

    def clear_errors(self) -> None:
        self.errors = []

    def parse_from_file(self, path: str) -> bool:
        self.state.record("OnnxParser.parse_from_file", path)
        try:
            model = onnx.load(path)  # with external data, like the real parser
        except Exception as exc:  # noqa: BLE001 - the real parser reports every load problem as an error
            self.errors.append(ParserError(ErrorCode.MODEL_DESERIALIZE_FAILED, f"Failed to parse ONNX model: {exc}"))
            return False
        supported = supported_tensorrt_ops()
        for index, node in enumerate(model.graph.node):
            if node.op_type not in supported:
                self.errors.append(ParserError(ErrorCode.UNSUPPORTED_NODE,
                                               f"No importer registered for op: {node.op_type}", index, node.name,
                                               node.op_type))
        if self.errors:
            return False
        initializers = {init.name for init in model.graph.initializer}
        self.network.inputs = _tensors(model.graph.input, initializers)
        self.network.outputs = _tensors(model.graph.output, initializers)
        self.network.onnx_path = path
        self.network.half_weights = any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
        return True


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, min, opt, max) -> None:  # noqa: A002 - TensorRT's parameter names
        if not (len(min) == len(opt) == len(max)) or any(not a <= b <= c for a, b, c in zip(min, opt, max)):
            raise ValueError(f"invalid profile for {name}: {min} {opt} {max}")
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class ITimingCache:
    def __init__(self, version: str, builds: int = 0, loaded: bool = False):
        self.version, self.builds, self.loaded = version, builds, loaded

    def serialize(self) -> IHostMemory:
        return IHostMemory(TIMING_MAGIC + json.dumps({"version": self.version, "builds": self.builds}).encode())


class _BuilderConfig:
    state: _State

    def __init__(self) -> None:
        self.flags = {"TF32"}
        self.pool_limits: dict[str, int] = {}
        self.builder_optimization_level = 3
        self.profiles: list[IOptimizationProfile] = []
        self.timing_cache: ITimingCache | None = None
        self.progress_monitor = None

    def set_flag(self, flag) -> None:
        self.state.record("BuilderConfig.set_flag", flag.name)
        self.flags.add(flag.name)

    def clear_flag(self, flag) -> None:
        self.state.record("BuilderConfig.clear_flag", flag.name)
        self.flags.discard(flag.name)

    def get_flag(self, flag) -> bool:
        return flag.name in self.flags

    def set_memory_pool_limit(self, pool, size: int) -> None:
        self.state.record("BuilderConfig.set_memory_pool_limit", pool.name, size)
        self.pool_limits[pool.name] = size

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.state.record("BuilderConfig.add_optimization_profile", dict(profile.shapes))
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes) -> ITimingCache | None:
        self.state.record("BuilderConfig.create_timing_cache", bytes(data))
        if not data:
            return ITimingCache(self.state.version)
        if not bytes(data).startswith(TIMING_MAGIC):
            return None
        header = json.loads(bytes(data)[len(TIMING_MAGIC):])
        return ITimingCache(header["version"], header["builds"], loaded=True)

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        mismatch = cache.version != self.state.version or (cache.loaded and self.state.behaviour.timing_cache_mismatch)
        if mismatch and not ignore_mismatch:
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self.timing_cache


def _log(logger: ILogger, severity: ILogger.Severity, message: str) -> None:
    logger.log(severity, message)


class _Builder:
    state: _State

    def __init__(self, logger: ILogger):
        self.state.record("Builder", type(logger).__name__)
        if not self.state.behaviour.cuda_ok:
            _log(logger, ILogger.Severity.ERROR, "CUDA initialization failure with error: 35")
            raise TypeError("pybind11::init(): factory function returned nullptr")
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        self.state.record("Builder.create_network", flags)
        strong_bit = 1 << int(self._network_flags.STRONGLY_TYPED)
        return INetworkDefinition(flags, strongly_typed=self.state.major >= 11 or bool(flags & strong_bit))

    def create_builder_config(self) -> _BuilderConfig:
        return self._config_class()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: _BuilderConfig) -> IHostMemory | None:
        self.state.record("Builder.build_serialized_network", sorted(config.flags))
        if self.state.behaviour.on_build is not None:
            self.state.behaviour.on_build()
        problem = self._build_problem(network, config)
        if problem is not None:
            _log(self.logger, ILogger.Severity.ERROR, problem)
            return None
        if not self._report_progress(config.progress_monitor):
            _log(self.logger, ILogger.Severity.ERROR, "Build cancelled by the progress monitor.")
            return None
        if config.timing_cache is not None:
            config.timing_cache.builds += 1
        half = ("FP16" in config.flags) if not network.strongly_typed else network.half_weights
        profile = config.profiles[0].shapes if config.profiles else {}
        header = {"version": self.state.version, "onnx_path": network.onnx_path, "half": half,
                  "tensors": [{"name": t.name, "input": is_input, "dtype": t.dtype.name, "shape": t.shape,
                               "dim_params": t.dim_params, "profile": profile.get(t.name)}
                              for is_input, tensors in ((True, network.inputs), (False, network.outputs))
                              for t in tensors]}
        return IHostMemory(PLAN_MAGIC + json.dumps(header).encode())

    def _build_problem(self, network: INetworkDefinition, config: _BuilderConfig) -> str | None:
        if network.strongly_typed and "FP16" in config.flags:
            return "Error Code 4: API Usage Error (BuilderFlag::kFP16 is not compatible with strongly typed networks.)"
        shapes = config.profiles[0].shapes if config.profiles else {}
        if any(-1 in t.shape and t.name not in shapes for t in network.inputs):
            return ("Error Code 4: API Usage Error (Network has dynamic or shape inputs, but no optimization "
                    "profile has been defined.)")
        if self.state.behaviour.build_returns_none:
            return "Error Code 10: Internal Error (Could not find any implementation for node /decoder/MatMul.)"
        return None

    @staticmethod
    def _report_progress(monitor) -> bool:
        if monitor is None:
            return True
        monitor.phase_start("Building engine", None, 2)
        monitor.phase_start("Tactic selection", "Building engine", 3)
        ok = all(monitor.step_complete("Tactic selection", step) for step in range(3))
        monitor.phase_finish("Tactic selection")
        ok = ok and monitor.step_complete("Building engine", 0) and monitor.step_complete("Building engine", 1)
        monitor.phase_finish("Building engine")
        return ok


class _Runtime:
    state: _State

    def __init__(self, logger: ILogger):
        self.logger = logger

    def deserialize_cuda_engine(self, data) -> "ICudaEngine | None":
        data = bytes(data)
        self.state.record("Runtime.deserialize_cuda_engine", len(data))
        if self.state.behaviour.deserialize_returns_none:
            _log(self.logger, ILogger.Severity.ERROR, "Error Code 1: Cuda Runtime (out of memory)")
            return None
        if not data.startswith(PLAN_MAGIC):
            _log(self.logger, ILogger.Severity.ERROR, "Error Code 1: Serialization (Serialization assertion "
                 "plan->header.magicTag == rt::kPLAN_MAGIC_TAG failed.)")
            return None
        try:
            header = json.loads(data[len(PLAN_MAGIC):])
        except ValueError:
            _log(self.logger, ILogger.Severity.ERROR, "Error Code 1: Serialization (truncated plan)")
            return None
        if header["version"] != self.state.version:
            _log(self.logger, ILogger.Severity.ERROR, "The engine plan file is not compatible with this version of "
                 f"TensorRT, expecting library version {self.state.version} got {header['version']}, please rebuild.")
            return None
        return ICudaEngine(header, self.state)


class ICudaEngine:
    def __init__(self, header: dict, state: _State):
        self.header, self.state = header, state
        self.tensors = {t["name"]: t for t in header["tensors"]}
        self._session = None

    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    def get_tensor_name(self, index: int) -> str:
        return list(self.tensors)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if self.tensors[name]["input"] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType[self.tensors[name]["dtype"]]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.tensors[name]["shape"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        return [tuple(shape) for shape in self.tensors[name]["profile"]]

    def create_execution_context(self) -> "IExecutionContext":
        return IExecutionContext(self)

    def session(self):
        if self._session is None:
            import onnxruntime

            self._session = onnxruntime.InferenceSession(self.header["onnx_path"], providers=["CPUExecutionProvider"])
        return self._session


class IExecutionContext:
    def __init__(self, engine: ICudaEngine):
        self.engine = engine
        self.input_shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape) -> bool:
        shape = tuple(shape)
        tensor = self.engine.tensors[name]
        low, _, high = tensor["profile"] or (tensor["shape"], None, tensor["shape"])
        if len(shape) != len(low) or any(not a <= s <= b for a, s, b in zip(low, shape, high)):
            return False
        self.input_shapes[name] = shape
        return True

    def infer_shapes(self) -> list[str]:
        return [n for n, t in self.engine.tensors.items() if t["input"] and n not in self.input_shapes]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.input_shapes:
            return self.input_shapes[name]
        sizes = {param: shape[axis] for n, shape in self.input_shapes.items()
                 for axis, param in enumerate(self.engine.tensors[n]["dim_params"]) if param}
        tensor = self.engine.tensors[name]
        return tuple(dim if dim >= 0 else sizes[param] for dim, param in zip(tensor["shape"], tensor["dim_params"]))

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.engine.state.record("IExecutionContext.execute_async_v3", stream_handle)
        feeds = {name: _read(self.addresses[name], shape, self.engine.tensors[name]["dtype"])
                 for name, shape in self.input_shapes.items()}
        outputs = self.engine.session().run(None, feeds)
        names = [n for n, t in self.engine.tensors.items() if not t["input"]]
        for name, value in zip(names, outputs):
            if self.engine.header["half"]:
                value = value.astype(np.float16).astype(np.float32) + self.engine.state.behaviour.half_output_offset
            _write(self.addresses[name], value.astype(_NUMPY[self.engine.tensors[name]["dtype"]]))
        return True


def _read(address: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    count = int(np.prod(shape))
    itemsize = np.dtype(_NUMPY[dtype]).itemsize
    raw = (ctypes.c_byte * (count * itemsize)).from_address(address)
    return np.frombuffer(raw, dtype=_NUMPY[dtype]).reshape(shape).copy()


def _write(address: int, value: np.ndarray) -> None:
    value = np.ascontiguousarray(value)
    ctypes.memmove(address, value.ctypes.data, value.nbytes)


class Logger(ILogger):
    """trt.Logger: a logger with a minimum severity (the fake prints nothing)."""

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = ILogger.Severity

    def __init__(self, min_severity=ILogger.Severity.WARNING):
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity, msg) -> None:
        pass


def make_fake_tensorrt(version: str = "10.3.0", behaviour: Behaviour | None = None) -> types.ModuleType:
    """A fresh fake `tensorrt` module of `version`; `module.calls` records the calls, `module.behaviour` the knobs."""
    state = _State(version, behaviour or Behaviour())
    network_flags, builder_flags = _flag_enums(state.major)
    module = types.ModuleType("tensorrt")
    config_class = type("IBuilderConfig", (_BuilderConfig,), {"state": state})
    module.__dict__.update({
        "__version__": version, "calls": state.calls, "behaviour": state.behaviour,
        "ILogger": ILogger, "Logger": Logger, "IProgressMonitor": IProgressMonitor, "TensorIOMode": TensorIOMode,
        "DataType": DataType, "MemoryPoolType": MemoryPoolType, "ErrorCode": ErrorCode,
        "NetworkDefinitionCreationFlag": network_flags, "BuilderFlag": builder_flags,
        "Builder": type("Builder", (_Builder,), {"state": state, "_network_flags": network_flags,
                                                 "_config_class": config_class}),
        "OnnxParser": type("OnnxParser", (_OnnxParser,), {"state": state}),
        "Runtime": type("Runtime", (_Runtime,), {"state": state}),
    })
    if state.major < 11:  # removed in 11.0 with the other weak-typing APIs
        module.Builder.platform_has_fast_fp16 = True
    return module


def calls_named(module: types.ModuleType, name: str) -> list[tuple]:
    """The recorded calls of one API (without the name)."""
    return [call[1:] for call in module.calls if call[0] == name]
