"""Two processes asking for the same engine at once: the file lock lets exactly one of them build it."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tensorrt_helpers import tiny_onnx  # noqa: F401

HERE = Path(__file__).parent
REPO = HERE.parents[1]

WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path[:0] = [{here!r}, {repo!r}]
    import tensorrt_helpers as h
    from fake_tensorrt import Behaviour, make_fake_tensorrt
    from synseg_core.deploy.backends.tensorrt import create_tensorrt_backend

    builds = Path({builds!r})
    ready = Path({ready!r})
    def on_build():
        with builds.open("a") as log:
            log.write("built\\n")
        deadline = time.monotonic() + 60
        while len(ready.read_text().split()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # hold the lock until the other process is about to ask for the engine too
        time.sleep(0.5)
    sys.modules["tensorrt"] = make_fake_tensorrt("10.3.0", Behaviour(on_build=on_build))
    onnx = Path({onnx!r})
    with ready.open("a") as marks:
        marks.write("ready ")
    backend = create_tensorrt_backend(onnx, h.ort_reference(onnx), h.small_config(Path({cache!r})), device="cpu",
                                      device_info=h.FAKE_GPU)
    print(backend.sidecar["key"])
""")


@pytest.mark.slow
def test_only_one_of_two_processes_builds(tmp_path, tiny_onnx):
    builds = tmp_path / "builds.log"
    ready = tmp_path / "ready"
    ready.write_text("")
    script = WORKER.format(here=str(HERE), repo=str(REPO), builds=str(builds), ready=str(ready),
                           onnx=str(tiny_onnx), cache=str(tmp_path / "cache"))
    workers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    results = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err[-2000:] for _, err in results]
    keys = {out.strip() for out, _ in results}
    assert len(keys) == 1  # both use the same engine
    assert builds.read_text().splitlines() == ["built"]
