"""Pipeline statistics (rates, per-stage latency, counters) and their `diagnostic_msgs/DiagnosticStatus` form.

`PipelineStats` is plain thread-safe Python, one per camera pipeline; the node turns snapshots into a
DiagnosticArray on `/diagnostics` with `diagnostic_status`.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Mapping

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

# Per-frame stages timed by the camera pipeline: message -> RGB array (incl. JPEG/PNG decoding), Segmenter
# (image encoder + decoder + post-processing), output messages built, messages published.
STAGES = ("convert", "inference", "build", "publish")


@dataclass(frozen=True)
class StatsSnapshot:
    """Pipeline statistics at one instant."""

    input_rate_hz: float
    output_rate_hz: float
    latency_ms: dict[str, float]  # mean per stage over recent frames, plus "total"
    counters: dict[str, int] = field(default_factory=dict)
    seconds_since_image: float | None = None  # None = no image received yet
    lost_recently: int = 0  # frames lost in transport within the rate window
    last_error: str | None = None  # the most recent failure, cleared by the next processed frame


class PipelineStats:
    """Rates over a sliding window, mean stage latencies over the last frames, and named counters.

    Args:
        rate_window_s: rates are events in the last `rate_window_s` seconds divided by it.
        latency_samples: latencies are averaged over this many recent frames.
        clock: monotonic time source in seconds (injectable for tests).
    """

    def __init__(self, rate_window_s: float = 5.0, latency_samples: int = 50,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._window = rate_window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._inputs: deque[float] = deque()
        self._outputs: deque[float] = deque()
        self._lost: deque[tuple[float, int]] = deque()  # (time, frames) of message-lost events
        self._latency = {stage: deque(maxlen=latency_samples) for stage in (*STAGES, "total")}
        self._counters: Counter[str] = Counter()
        self._last_image: float | None = None
        self._last_error: str | None = None

    def image_received(self, missed: int = 0) -> None:
        """Record a frame taken from the subscription, and `missed` frames of its publisher before it that were never
        taken (see `PublisherSequences.advance`): lost in transport (then also in frames_lost) or replaced in the
        subscription's queue by a newer frame while the node was busy, which the middleware reports nowhere."""
        now = self._clock()
        with self._lock:
            self._inputs.append(now)
            self._last_image = now
            self._counters["frames_received"] += 1
            if missed:
                self._counters["frames_missed"] += missed

    def frames_lost(self, n: int) -> None:
        """Record `n` frames that were sent but lost in transport (the subscription's message-lost event)."""
        with self._lock:
            self._lost.append((self._clock(), n))
            self._counters["frames_lost"] += n

    def frame_processed(self, stage_seconds: Mapping[str, float]) -> None:
        """Record one fully processed frame and its stage durations (keys from STAGES)."""
        with self._lock:
            self._outputs.append(self._clock())
            for stage, seconds in stage_seconds.items():
                self._latency[stage].append(seconds)
            self._latency["total"].append(sum(stage_seconds.values()))
            self._counters["frames_processed"] += 1
            self._last_error = None

    def count(self, name: str, n: int = 1, error: str | None = None) -> None:
        """Add `n` to counter `name`; `error` (if given) becomes the last error shown in diagnostics."""
        with self._lock:
            self._counters[name] += n
            if error is not None:
                self._last_error = error

    def snapshot(self) -> StatsSnapshot:
        now = self._clock()
        with self._lock:
            for events in (self._inputs, self._outputs):
                while events and events[0] < now - self._window:
                    events.popleft()
            while self._lost and self._lost[0][0] < now - self._window:
                self._lost.popleft()
            latency = {stage: 1000.0 * sum(v) / len(v) for stage, v in self._latency.items() if v}
            return StatsSnapshot(
                input_rate_hz=len(self._inputs) / self._window, output_rate_hz=len(self._outputs) / self._window,
                latency_ms=latency, counters=dict(self._counters),
                seconds_since_image=None if self._last_image is None else now - self._last_image,
                last_error=self._last_error, lost_recently=sum(n for _, n in self._lost))


def diagnostic_status(name: str, hardware_id: str, snapshot: StatsSnapshot, info: Mapping[str, object], *,
                      active: bool, num_categories: int, stale_after_s: float, image_topic: str) -> DiagnosticStatus:
    """One DiagnosticStatus: level and message from the pipeline's state, values from stats and `info`.

    Levels: ERROR when the last frame failed; WARN when the node is inactive, has no query, lost frames in transport
    within the rate window, or no image arrived for `stale_after_s`; OK otherwise.
    """
    age = snapshot.seconds_since_image
    if snapshot.last_error is not None:
        level, message = DiagnosticStatus.ERROR, snapshot.last_error
    elif not active:
        level, message = DiagnosticStatus.WARN, "inactive (lifecycle state is not active)"
    elif num_categories == 0:
        level, message = DiagnosticStatus.WARN, "waiting for a query (no categories set)"
    elif snapshot.lost_recently:
        level, message = DiagnosticStatus.WARN, (f"{snapshot.lost_recently} frame(s) lost in transport recently on "
                                                 f"{image_topic} (the node's log names the remedies)")
    elif age is None:
        level, message = DiagnosticStatus.WARN, f"no image received yet on {image_topic}"
    elif age > stale_after_s:
        level, message = DiagnosticStatus.WARN, f"no image for {age:.1f} s on {image_topic}"
    else:
        level, message = DiagnosticStatus.OK, f"segmenting {num_categories} categories"
    values = {
        "input_rate_hz": f"{snapshot.input_rate_hz:.2f}",
        "output_rate_hz": f"{snapshot.output_rate_hz:.2f}",
        **{f"latency_{stage}_ms": f"{ms:.2f}" for stage, ms in snapshot.latency_ms.items()},
        **{key: str(value) for key, value in sorted(snapshot.counters.items())},
        "seconds_since_image": "never" if age is None else f"{age:.2f}",
        "categories": str(num_categories),
        **{key: str(value) for key, value in info.items()},
    }
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])


def unconfigured_status(name: str, hardware_id: str, checkpoint: str, configure_error: str | None) -> DiagnosticStatus:
    """The status of a node without a model: ERROR with the reason when its configure failed, else WARN."""
    if configure_error is not None:
        level, message = DiagnosticStatus.ERROR, f"configure failed: {configure_error}"
    else:
        level, message = DiagnosticStatus.WARN, "unconfigured (no model loaded)"
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key="state", value="unconfigured"),
                                    KeyValue(key="checkpoint", value=checkpoint)])
