"""training/build_engine.py: builds with progress and a summary, or fails with a clear message and exit code 2."""
import importlib.util
import sys
from pathlib import Path

import pytest

from synseg_core.deploy.backends.tensorrt import backend as backend_module
from tensorrt_helpers import FAKE_GPU, install_fake, tiny_onnx  # noqa: F401

SCRIPT = Path(__file__).parents[2] / "training" / "build_engine.py"


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("build_engine_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_builds_verifies_and_reports(monkeypatch, tmp_path, tiny_onnx, cli, capsys):
    install_fake(monkeypatch)
    monkeypatch.setattr(backend_module, "probe_device_info", lambda device: FAKE_GPU)  # no GPU on this machine
    argv = ["--onnx", str(tiny_onnx), "--precision", "fp16", "--cache-dir", str(tmp_path), "--max-categories", "5",
            "--opt-categories", "2", "--max-batch", "2", "--opt-batch", "1", "--device", "cpu", "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    plans = list((tmp_path / "engines").glob("*.plan"))
    assert len(plans) == 1 and f"{plans[0]} ready in" in out
    assert "precision fp16 (requested fp16), input 16, up to 2 images x 5 categories per call" in out
    assert "checked against onnxruntime (fp32, cpu): max |diff|" in out and "(1, 1), (1, 2), (2, 5)" in out
    assert cli.main(argv) == 0  # second run: the cached engine


@pytest.mark.parametrize("extra, message", [
    (["--onnx", "missing.onnx"], "ONNX file 'missing.onnx' does not exist"),
    (["--opt-categories", "9", "--max-categories", "4"], "must satisfy 1 <= opt_categories <= max_categories"),
    (["--optimization-level", "7"], "optimization_level=7 is outside 0..5"),
    (["--device", "cpu"], "TensorRT needs a CUDA device, got device 'cpu'"),
])
def test_bad_input_exits_2_with_the_reason(monkeypatch, tmp_path, tiny_onnx, cli, capsys, extra, message):
    install_fake(monkeypatch)
    assert cli.main(["--onnx", str(tiny_onnx), "--cache-dir", str(tmp_path)] + extra) == 2
    assert message in capsys.readouterr().err


def test_missing_tensorrt_exits_2_with_install_hint(monkeypatch, tmp_path, tiny_onnx, cli, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # importing it raises ImportError
    assert cli.main(["--onnx", str(tiny_onnx), "--cache-dir", str(tmp_path)]) == 2
    assert "tensorrt Python module cannot be imported" in capsys.readouterr().err
