"""Python objects TensorRT calls back into: a logger that keeps its messages, and a build progress monitor.

Both subclass TensorRT's interfaces at run time (tensorrt is imported lazily) and must call the base
`__init__`, as NVIDIA's Python API pages for ILogger and IProgressMonitor require
(https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ProgressMonitor.html).
TensorRT calls them from its own threads, so they lock their state.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from types import ModuleType

from tqdm import tqdm

log = logging.getLogger(__name__)

# TensorRT severities (ILogger.Severity member names) -> Python logging levels. TensorRT's INFO is chatty,
# so it goes to DEBUG; VERBOSE is dropped.
_LEVELS = {"INTERNAL_ERROR": logging.ERROR, "ERROR": logging.ERROR, "WARNING": logging.WARNING,
           "INFO": logging.DEBUG}
_ERROR_SEVERITIES = ("INTERNAL_ERROR", "ERROR")
KEPT_MESSAGES = 200


class CapturedLog:
    """The most recent TensorRT log messages, kept so that a failure can report TensorRT's own reasons."""

    def __init__(self, maxlen: int = KEPT_MESSAGES):
        self._lock = threading.Lock()
        self._messages: collections.deque[tuple[str, str]] = collections.deque(maxlen=maxlen)

    def add(self, severity: str, message: str) -> None:
        with self._lock:
            self._messages.append((severity, message))

    def lines(self) -> list[str]:
        with self._lock:
            return [f"[{severity}] {message}" for severity, message in self._messages]

    def summary(self, most: int = 5) -> str:
        """The error messages (or else the last messages), for an exception text."""
        with self._lock:
            errors = [f"[{s}] {m}" for s, m in self._messages if s in _ERROR_SEVERITIES]
            chosen = errors or [f"[{s}] {m}" for s, m in self._messages]
        return "; ".join(chosen[-most:]) if chosen else "TensorRT logged nothing"


def make_trt_logger(trt: ModuleType, captured: CapturedLog) -> object:
    """A `trt.ILogger` that forwards to Python logging and keeps messages in `captured`."""

    class _CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg):  # noqa: D401 - TensorRT's callback signature
            name = getattr(severity, "name", str(severity)).split(".")[-1]
            level = _LEVELS.get(name)
            if level is None:
                return
            captured.add(name, msg)
            log.log(level, "TensorRT: %s", msg)

    return _CapturingLogger()


class BuildProgress:
    """Handles TensorRT's progress-monitor callbacks: logs phases, draws a tqdm bar per top-level phase.

    Args:
        show_bar: draw tqdm bars (log lines are written either way).
        cancel: set this event to make TensorRT cancel the build at its next step.
    """

    def __init__(self, show_bar: bool = True, cancel: threading.Event | None = None):
        self.show_bar = show_bar
        self.cancel = cancel or threading.Event()
        self.phases_seen: list[str] = []
        self._lock = threading.Lock()
        self._bars: dict[str, tqdm] = {}
        self._started: dict[str, float] = {}

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        with self._lock:
            self.phases_seen.append(phase_name)
            self._started[phase_name] = time.monotonic()
            level = logging.INFO if parent_phase is None else logging.DEBUG
            log.log(level, "TensorRT build: %s (%d steps)%s", phase_name, num_steps,
                    f" within {parent_phase}" if parent_phase else "")
            if parent_phase is None and self.show_bar:
                self._bars[phase_name] = tqdm(total=num_steps, desc=f"TensorRT {phase_name}", leave=False)

    def step_complete(self, phase_name: str, step: int) -> bool:
        with self._lock:
            bar = self._bars.get(phase_name)
            if bar is not None:
                bar.update(step + 1 - bar.n)
        return not self.cancel.is_set()

    def phase_finish(self, phase_name: str) -> None:
        with self._lock:
            bar = self._bars.pop(phase_name, None)
            if bar is not None:
                bar.close()
            started = self._started.pop(phase_name, None)
            if started is not None:
                log.debug("TensorRT build: %s done in %.1f s", phase_name, time.monotonic() - started)

    def close(self) -> None:
        """Close bars of phases TensorRT never finished (a failed or cancelled build)."""
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()


def make_progress_monitor(trt: ModuleType, progress: BuildProgress) -> object:
    """A `trt.IProgressMonitor` that forwards to `progress`."""

    class _ProgressMonitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            progress.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            return progress.step_complete(phase_name, step)

        def phase_finish(self, phase_name):
            progress.phase_finish(phase_name)

    return _ProgressMonitor()
