"""Engine cache: the key and its ingredients, the sidecar, stale/corrupt engines, the negative cache and the lock."""
import dataclasses
import json
import logging
import threading

import filelock
import pytest

from fake_tensorrt import calls_named
from synseg_core.deploy.backends.tensorrt import TensorRTError, create_tensorrt_backend
from synseg_core.deploy.backends.tensorrt.backend import engine_request
from synseg_core.deploy.backends.tensorrt.cache import EngineCache, engine_key
from synseg_core.deploy.backends.tensorrt.onnx_info import fingerprint_onnx
from synseg_core.deploy.backends.tensorrt.probe import TensorRTInfo
from tensorrt_helpers import (FAKE_GPU, export_tiny, install_fake, ort_reference, small_config,  # noqa: F401
                              tiny_onnx)

TRT_10 = TensorRTInfo("10.3.0", 10, "system")


def _create(onnx, config):
    return create_tensorrt_backend(onnx, ort_reference(onnx), config, device="cpu", device_info=FAKE_GPU)


def _paths(onnx, config, requested="fp32"):
    request = engine_request(requested, onnx, config, TRT_10, FAKE_GPU)
    return EngineCache(config.cache_dir).paths(onnx.stem, engine_key(request.ingredients()))


def test_key_changes_with_each_ingredient(tmp_path, tiny_onnx):
    config = small_config(tmp_path)
    base = engine_request("fp32", tiny_onnx, config, TRT_10, FAKE_GPU)
    other_onnx = export_tiny(tmp_path / "other.onnx", seed=1)
    variants = {
        "onnx content": dataclasses.replace(base, onnx_fingerprint=fingerprint_onnx(other_onnx)),
        "trt version": dataclasses.replace(base, tensorrt=TensorRTInfo("10.3.0.30", 10, "system")),
        "trt distribution": dataclasses.replace(base, tensorrt=TensorRTInfo("10.3.0", 10, "tensorrt-cu12")),
        "gpu name": dataclasses.replace(base, gpu=dataclasses.replace(FAKE_GPU, name="NVIDIA Orin")),
        "compute capability": dataclasses.replace(base, gpu=dataclasses.replace(FAKE_GPU, compute_capability="8.6")),
        "l4t release": dataclasses.replace(base, gpu=dataclasses.replace(FAKE_GPU, l4t_release="R36.4.3")),
        "precision": engine_request("fp16", tiny_onnx, config, TRT_10, FAKE_GPU),
        "opt categories": engine_request("fp32", tiny_onnx, dataclasses.replace(config, opt_categories=4), TRT_10,
                                         FAKE_GPU),
        "max categories": engine_request("fp32", tiny_onnx, dataclasses.replace(config, max_categories=9), TRT_10,
                                         FAKE_GPU),
        "max batch": engine_request("fp32", tiny_onnx, dataclasses.replace(config, max_batch=4), TRT_10, FAKE_GPU),
        "workspace": engine_request("fp32", tiny_onnx, dataclasses.replace(config, workspace_mb=256), TRT_10,
                                    FAKE_GPU),
        "optimisation level": engine_request("fp32", tiny_onnx, dataclasses.replace(config, optimization_level=1),
                                             TRT_10, FAKE_GPU),
        "tf32": engine_request("fp32", tiny_onnx, dataclasses.replace(config, tf32=False), TRT_10, FAKE_GPU),
    }
    base_key = engine_key(base.ingredients())
    keys = {name: engine_key(request.ingredients()) for name, request in variants.items()}
    assert all(key != base_key for key in keys.values()), [n for n, k in keys.items() if k == base_key]
    assert len(set(keys.values())) == len(keys)
    # Settings that do not change the engine leave the key alone.
    same = engine_request("fp32", tiny_onnx, dataclasses.replace(config, verify_seed=5, show_progress=True,
                                                                 cache_dir=str(tmp_path / "elsewhere")),
                          TRT_10, FAKE_GPU)
    assert engine_key(same.ingredients()) == base_key


def test_external_weight_files_are_part_of_the_fingerprint(tmp_path):
    onnx = export_tiny(tmp_path / "ext.onnx", external=True)
    data = tmp_path / "ext.onnx.data"
    before = fingerprint_onnx(onnx)
    assert list(before["external"]) == ["ext.onnx.data"]
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0xFF  # new weights, same .onnx file
    data.write_bytes(bytes(raw))
    after = fingerprint_onnx(onnx)
    assert after["sha256"] == before["sha256"] and after != before
    data.unlink()
    with pytest.raises(FileNotFoundError, match="stores weights in 'ext.onnx.data'"):
        fingerprint_onnx(onnx)


def test_sidecar_records_key_ingredients_checksum_and_verification(monkeypatch, tmp_path, tiny_onnx):
    install_fake(monkeypatch)
    config = small_config(tmp_path)
    backend = _create(tiny_onnx, config)
    paths = _paths(tiny_onnx, config)
    sidecar = json.loads(paths.sidecar.read_text())
    assert sidecar == backend.sidecar and sidecar["key"] == paths.key
    assert sidecar["ingredients"]["tensorrt"]["version"] == "10.3.0"
    assert sidecar["ingredients"]["gpu"]["name"] == FAKE_GPU.name
    assert sidecar["ingredients"]["profile"][1] == ["text_embeddings", [1, 8], [3, 8], [5, 8]]
    verification = sidecar["verification"]
    assert verification["passed"] and [(p["batch"], p["categories"]) for p in verification["points"]] == [
        (1, 1), (2, 3), (3, 5)]  # the profile's min, opt and max
    assert sidecar["io"]["probabilities"]["input"] is False
    # Written atomically: no temporary files are left behind.
    assert sorted(p.name for p in paths.plan.parent.iterdir()) == sorted(
        [paths.plan.name, paths.sidecar.name, paths.lock.name])


def test_second_start_loads_the_cached_engine(monkeypatch, tmp_path, tiny_onnx):
    config = small_config(tmp_path)
    install_fake(monkeypatch)
    _create(tiny_onnx, config)
    fake = install_fake(monkeypatch)
    backend = _create(tiny_onnx, config)
    assert calls_named(fake, "Builder.build_serialized_network") == []
    assert len(calls_named(fake, "Runtime.deserialize_cuda_engine")) == 1
    assert backend.precision == "fp32"


def _rebuild_after(monkeypatch, tiny_onnx, config, damage, caplog, expected_log):
    install_fake(monkeypatch)
    _create(tiny_onnx, config)
    damage(_paths(tiny_onnx, config))
    fake = install_fake(monkeypatch)
    with caplog.at_level(logging.WARNING):
        backend = _create(tiny_onnx, config)
    assert len(calls_named(fake, "Builder.build_serialized_network")) == 1
    assert expected_log in caplog.text
    assert backend.sidecar["verification"]["passed"]


def test_truncated_plan_is_rebuilt(monkeypatch, tmp_path, tiny_onnx, caplog):
    def truncate(paths):
        paths.plan.write_bytes(paths.plan.read_bytes()[:10])
    _rebuild_after(monkeypatch, tiny_onnx, small_config(tmp_path), truncate, caplog,
                   "does not match the checksum in its sidecar")


def test_sidecar_of_another_tensorrt_is_rebuilt(monkeypatch, tmp_path, tiny_onnx, caplog):
    def other_version(paths):
        sidecar = json.loads(paths.sidecar.read_text())
        sidecar["ingredients"]["tensorrt"]["version"] = "10.2.0"
        paths.sidecar.write_text(json.dumps(sidecar))
    _rebuild_after(monkeypatch, tiny_onnx, small_config(tmp_path), other_version, caplog,
                   "sidecar ingredients differ in ['tensorrt']")


def test_missing_sidecar_is_rebuilt(monkeypatch, tmp_path, tiny_onnx, caplog):
    _rebuild_after(monkeypatch, tiny_onnx, small_config(tmp_path), lambda paths: paths.sidecar.unlink(), caplog,
                   "missing or unreadable")


def test_plan_tensorrt_refuses_to_deserialize_is_rebuilt_with_its_reason(monkeypatch, tmp_path, tiny_onnx, caplog):
    def foreign_plan(paths):
        # A plan from another TensorRT under a sidecar that vouches for it: only deserialization can tell.
        plan = paths.plan.read_bytes().replace(b'"version": "10.3.0"', b'"version": "10.2.0"')
        paths.plan.write_bytes(plan)
        sidecar = json.loads(paths.sidecar.read_text())
        sidecar["plan_sha256"] = __import__("hashlib").sha256(plan).hexdigest()
        paths.sidecar.write_text(json.dumps(sidecar))
    _rebuild_after(monkeypatch, tiny_onnx, small_config(tmp_path), foreign_plan, caplog,
                   "expecting library version 10.3.0 got 10.2.0, please rebuild")


def test_fresh_engine_that_cannot_be_deserialized_is_remembered(monkeypatch, tmp_path, tiny_onnx):
    fake = install_fake(monkeypatch)
    fake.behaviour.deserialize_returns_none = True
    config = small_config(tmp_path)
    with pytest.raises(TensorRTError, match=r"could not deserialize.*\[ERROR\] Error Code 1: Cuda Runtime"):
        _create(tiny_onnx, config)
    record = json.loads(_paths(tiny_onnx, config).failure.read_text())
    assert record["stage"] == "load" and any("out of memory" in line for line in record["tensorrt_messages"])


def _unsupported_onnx(tmp_path, tiny_onnx):
    import onnx
    proto = onnx.load(str(tiny_onnx))
    for node in proto.graph.node:
        if node.op_type in ("Sigmoid", "Transpose"):
            node.op_type = {"Sigmoid": "Det", "Transpose": "Compress"}[node.op_type]
    path = tmp_path / "unsupported.onnx"
    onnx.save(proto, str(path))
    return path


def test_parse_failure_is_remembered_until_an_ingredient_changes(monkeypatch, tmp_path, tiny_onnx):
    onnx_path = _unsupported_onnx(tmp_path, tiny_onnx)
    config = small_config(tmp_path)
    fake = install_fake(monkeypatch)
    with pytest.raises(TensorRTError, match=r"rejected .* with 4 error\(s\): node \d+ '/Transpose' \(Compress\): "
                                            r"UNSUPPORTED_NODE: No importer registered for op: Compress"):
        _create(onnx_path, config)
    assert json.loads(_paths(onnx_path, config).failure.read_text())["stage"] == "parse"
    assert len(calls_named(fake, "OnnxParser.parse_from_file")) == 1

    fake = install_fake(monkeypatch)  # next start: the failure is not repeated
    with pytest.raises(TensorRTError, match="failed before at the parse stage.*not retried until"):
        _create(onnx_path, config)
    assert calls_named(fake, "OnnxParser.parse_from_file") == []

    fake = install_fake(monkeypatch)  # another ingredient (the profile) -> another key -> tried again
    with pytest.raises(TensorRTError, match="rejected"):
        _create(onnx_path, dataclasses.replace(config, max_categories=6))
    assert len(calls_named(fake, "OnnxParser.parse_from_file")) == 1

    fake = install_fake(monkeypatch)  # force_rebuild retries the remembered key too
    with pytest.raises(TensorRTError, match="rejected"):
        _create(onnx_path, dataclasses.replace(config, force_rebuild=True))
    assert len(calls_named(fake, "OnnxParser.parse_from_file")) == 1


def test_force_rebuild_replaces_a_good_cached_engine(monkeypatch, tmp_path, tiny_onnx):
    config = small_config(tmp_path)
    install_fake(monkeypatch)
    _create(tiny_onnx, config)
    fake = install_fake(monkeypatch)
    _create(tiny_onnx, dataclasses.replace(config, force_rebuild=True))
    assert len(calls_named(fake, "Builder.build_serialized_network")) == 1


def test_lock_held_by_another_builder_times_out_with_a_clear_error(monkeypatch, tmp_path, tiny_onnx):
    install_fake(monkeypatch)
    config = small_config(tmp_path, lock_timeout_s=0.2)
    paths = _paths(tiny_onnx, config)
    paths.lock.parent.mkdir(parents=True)
    with filelock.FileLock(str(paths.lock)):
        with pytest.raises(TensorRTError, match=r"waited 0 s for .*\.lock, held by another process"):
            _create(tiny_onnx, config)


def test_waiting_builder_uses_the_engine_the_lock_holder_built(monkeypatch, tmp_path, tiny_onnx):
    config = small_config(tmp_path)
    built_elsewhere = small_config(tmp_path / "elsewhere")
    install_fake(monkeypatch)
    _create(tiny_onnx, built_elsewhere)  # same key: the cache directory is not an ingredient
    source, target = _paths(tiny_onnx, built_elsewhere), _paths(tiny_onnx, config)
    fake = install_fake(monkeypatch)
    waiting = threading.Event()

    class _WaitWatcher(logging.Handler):  # filelock logs each failed attempt at DEBUG
        def emit(self, record):
            if "not acquired" in record.getMessage():
                waiting.set()

    watcher = _WaitWatcher()
    filelock_logger = logging.getLogger("filelock")
    level = filelock_logger.level
    filelock_logger.setLevel(logging.DEBUG)
    filelock_logger.addHandler(watcher)
    result = {}
    target.lock.parent.mkdir(parents=True)
    try:
        with filelock.FileLock(str(target.lock)):  # "another process" is building this engine
            thread = threading.Thread(target=lambda: result.update(backend=_create(tiny_onnx, config)))
            thread.start()
            assert waiting.wait(timeout=60)
            target.plan.write_bytes(source.plan.read_bytes())  # ... and finishes it
            target.sidecar.write_text(source.sidecar.read_text())
        thread.join(timeout=60)
    finally:
        filelock_logger.removeHandler(watcher)
        filelock_logger.setLevel(level)
    assert result["backend"].precision == "fp32"
    assert calls_named(fake, "Builder.build_serialized_network") == []
