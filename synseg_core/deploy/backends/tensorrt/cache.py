"""The engine cache: key, atomic plan + JSON sidecar, file lock, negative cache and quarantine.

Layout under the cache directory (engines are machine-local and never committed):
    engines/<onnx stem>-<key[:16]>.plan          the serialized engine
    engines/<onnx stem>-<key[:16]>.json          sidecar: key, ingredients, plan checksum, verification, build log
    engines/<onnx stem>-<key[:16]>.lock          held while one process builds this engine
    engines/<onnx stem>-<key[:16]>.failed.json   negative cache: this key failed (parse/build/load/verify)
    quarantine/<onnx stem>-<key[:16]>.plan/.json engines that failed verification, kept for inspection
    timing/trt<version>-sm<cc>-<gpu>.cache       TensorRT's layer-timing cache, per TensorRT version and GPU
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import filelock

from ....outputs import atomic_write_bytes
from .errors import TensorRTError
from .probe import DeviceInfo

log = logging.getLogger(__name__)

CACHE_SCHEMA = 1  # bump when the build logic changes in a way that invalidates old engines
KEY_PREFIX_CHARS = 16


def engine_key(ingredients: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of everything that determines an engine."""
    canonical = json.dumps({"schema": CACHE_SCHEMA, **ingredients}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def atomic_write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


@dataclass(frozen=True)
class EnginePaths:
    """Where one engine (one cache key) and its companions live."""

    key: str
    plan: Path
    sidecar: Path
    lock: Path
    failure: Path
    quarantined_plan: Path
    quarantined_report: Path


class EngineCache:
    """Engines and timing caches under one directory (see the module docstring for the layout)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def check_writable(self) -> None:
        """Fail early, naming the directory, when the cache cannot be created or written."""
        try:
            (self.root / "engines").mkdir(parents=True, exist_ok=True)
            tempfile.NamedTemporaryFile(dir=self.root / "engines", prefix=".write-test.").close()
        except OSError as exc:
            raise TensorRTError(f"engine cache directory {str(self.root)!r} is not writable ({exc}); set "
                                "tensorrt.cache_dir to a writable directory") from exc

    def paths(self, onnx_stem: str, key: str) -> EnginePaths:
        name = f"{_slug(onnx_stem)}-{key[:KEY_PREFIX_CHARS]}"
        engines, quarantine = self.root / "engines", self.root / "quarantine"
        return EnginePaths(key=key, plan=engines / f"{name}.plan", sidecar=engines / f"{name}.json",
                           lock=engines / f"{name}.lock", failure=engines / f"{name}.failed.json",
                           quarantined_plan=quarantine / f"{name}.plan",
                           quarantined_report=quarantine / f"{name}.json")

    def timing_cache_path(self, trt_version: str, device: DeviceInfo) -> Path:
        cc = device.compute_capability.replace(".", "")
        return self.root / "timing" / f"trt{trt_version}-sm{cc}-{_slug(device.name)}.cache"

    def lock(self, paths: EnginePaths, timeout_s: float) -> filelock.FileLock:
        """An inter-process lock for building this engine (use as a context manager)."""
        paths.lock.parent.mkdir(parents=True, exist_ok=True)
        return filelock.FileLock(str(paths.lock), timeout=timeout_s)

    def load_plan(self, paths: EnginePaths, ingredients: Mapping[str, Any],
                  discard_stale: bool) -> tuple[bytes, dict] | None:
        """(plan, sidecar) if the plan exists and its sidecar vouches for it, else None.

        Args:
            discard_stale: remove a stale or corrupt plan; only while holding the lock, since without it the
                "stale" plan may be one another process is writing right now (plan first, then sidecar).
        """
        if not paths.plan.is_file():
            return None
        plan = paths.plan.read_bytes()
        sidecar = _read_json(paths.sidecar)
        problem = self._sidecar_problem(paths, plan, sidecar, ingredients)
        if problem is None:
            return plan, sidecar
        if discard_stale:
            log.warning("cached engine %s is not usable (%s); it will be rebuilt", paths.plan, problem)
            self.discard(paths)
        return None

    @staticmethod
    def _sidecar_problem(paths: EnginePaths, plan: bytes, sidecar: dict | None,
                         ingredients: Mapping[str, Any]) -> str | None:
        if sidecar is None:
            return f"sidecar {paths.sidecar.name} is missing or unreadable"
        if sidecar.get("schema") != CACHE_SCHEMA or sidecar.get("key") != paths.key:
            return "sidecar belongs to another cache schema or key"
        recorded = sidecar.get("ingredients")
        expected = json.loads(json.dumps(ingredients))
        if recorded != expected:
            differing = sorted(k for k in set(expected) | set(recorded or {})
                               if (recorded or {}).get(k) != expected.get(k))
            return f"sidecar ingredients differ in {differing}"
        if sidecar.get("plan_sha256") != hashlib.sha256(plan).hexdigest():
            return "plan file does not match the checksum in its sidecar (truncated or corrupt)"
        if not sidecar.get("verification", {}).get("passed"):
            return "engine was never verified against the reference backend"
        return None

    def store(self, paths: EnginePaths, plan: bytes, ingredients: Mapping[str, Any], extra: Mapping[str, Any]) -> dict:
        """Write plan and sidecar atomically (plan first, so a sidecar never vouches for a missing plan)."""
        sidecar = {"schema": CACHE_SCHEMA, "key": paths.key, "plan_file": paths.plan.name,
                   "ingredients": dict(ingredients), "plan_sha256": hashlib.sha256(plan).hexdigest(), "plan_bytes": len(plan),
                   "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
        atomic_write_bytes(paths.plan, plan)
        atomic_write_json(paths.sidecar, sidecar)
        return json.loads(json.dumps(sidecar))

    def discard(self, paths: EnginePaths) -> None:
        """Remove a plan and its sidecar (sidecar first, so no sidecar ever vouches for a removed plan)."""
        paths.sidecar.unlink(missing_ok=True)
        paths.plan.unlink(missing_ok=True)

    def read_failure(self, paths: EnginePaths) -> dict | None:
        """The remembered failure of this key, or None."""
        record = _read_json(paths.failure)
        return record if record is not None and record.get("key") == paths.key else None

    def record_failure(self, paths: EnginePaths, ingredients: Mapping[str, Any], stage: str, error: BaseException,
                       messages: list[str]) -> None:
        """Remember that this key failed, so it is not retried until an ingredient changes."""
        atomic_write_json(paths.failure, {
            "schema": CACHE_SCHEMA, "key": paths.key, "stage": stage, "error": f"{type(error).__name__}: {error}",
            "tensorrt_messages": messages, "ingredients": dict(ingredients),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def clear_failure(self, paths: EnginePaths) -> None:
        paths.failure.unlink(missing_ok=True)

    def quarantine(self, paths: EnginePaths, plan: bytes, report: Mapping[str, Any]) -> None:
        """Keep an engine that failed verification out of the cache, with the measurements, for inspection."""
        atomic_write_bytes(paths.quarantined_plan, plan)
        atomic_write_json(paths.quarantined_report, {"key": paths.key, **report})
        self.discard(paths)


def describe_failure(record: Mapping[str, Any], paths: EnginePaths) -> str:
    """One line for a remembered failure, telling how to retry."""
    return (f"this engine failed before at the {record.get('stage')} stage ({record.get('error')}, "
            f"{record.get('time')}); it is not retried until the ONNX, TensorRT, GPU, precision, profile or "
            f"builder options change, or force_rebuild is set, or {paths.failure} is deleted")

