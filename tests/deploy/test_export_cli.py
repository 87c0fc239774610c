"""training/export.py: one export per precision, the summary it prints, and its errors."""
import subprocess
import sys
from pathlib import Path

import pytest

from synseg_core.deploy.export import read_export_info

SCRIPT = Path(__file__).parents[2] / "training" / "export.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_exports_the_requested_precision(tmp_path, precision):
    out = tmp_path / f"tiny-{precision}.onnx"
    done = _run("--checkpoint", "tiny-test", "--input-size", "64", "--out", str(out), "--precision", precision)
    assert done.returncode == 0, done.stderr
    info = read_export_info(out)
    assert (info.precision, info.input_size) == (precision, 64)
    assert f"precision {precision}, opset 17" in done.stdout


def test_bad_precision_and_size_are_refused_with_the_reason(tmp_path):
    done = _run("--checkpoint", "tiny-test", "--out", str(tmp_path / "x.onnx"), "--precision", "int4")
    assert done.returncode == 2 and "invalid choice: 'int4'" in done.stderr
    done = _run("--checkpoint", "tiny-test", "--out", str(tmp_path / "x.onnx"), "--input-size", "50")
    assert done.returncode == 2 and "multiple of the patch size" in done.stderr
    assert not (tmp_path / "x.onnx").exists()
