"""Foundation checks: synseg_core stays ROS-free, rclpy works over DDS in this venv, the colcon-installed node
starts from the installed tree, and the launch file names that executable and parameter file."""
import ast
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml
from sensor_msgs.msg import Image

from synseg_ros.parameter_file import render
from synseg_ros.parameters import DESCRIPTIONS, INFERENCE_SETTINGS, PARAMETER_NAMES, NodeParameters
from synseg_test_utils import WAIT_S, header, image_message, stamp_of, wait_subscribed

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ROS_TOP_LEVEL = {"rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "diagnostic_msgs", "lifecycle_msgs",
                 "std_srvs", "builtin_interfaces", "rosidl_runtime_py", "launch", "launch_ros", "cv_bridge",
                 "vision_msgs"}


@pytest.mark.slow
def test_synseg_core_imports_in_a_fresh_interpreter_without_ros():
    code = ("import sys, synseg_core, synseg_core.inference.segmenter, synseg_core.inference.query, "
            "synseg_core.serving.scheduling\n"
            f"ros = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(ROS_TOP_LEVEL)!r})\n"
            "print('ROS modules:', ros)\n"
            "sys.exit(1 if ros else 0)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ROS modules: []" in result.stdout


def test_no_synseg_core_module_imports_ros():
    """Static check of every synseg_core file (including modules the import test does not load)."""
    offenders = []
    for path in sorted((REPO / "synseg_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in ROS_TOP_LEVEL]
    assert offenders == []


@pytest.mark.ros
def test_rclpy_publishes_and_receives_an_image_over_dds(ros, unique_ns):
    received = ros.subscribe(Image, f"{unique_ns}/camera")
    pub = ros.publisher(Image, f"{unique_ns}/camera")
    wait_subscribed(pub, "camera")
    array = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    pub.publish(image_message(array, "rgb8", header(3, "dds_test")))
    msg = received.wait_for(what="the image back over DDS")
    assert stamp_of(msg) == stamp_of(header(3)) and msg.header.frame_id == "dds_test"
    assert (msg.height, msg.width, msg.encoding) == (4, 6, "rgb8")
    assert bytes(msg.data) == array.tobytes()


def test_config_yaml_is_the_rendering_of_the_parameter_descriptions():
    shipped = (REPO / "config" / "synseg.yaml").read_text()
    assert shipped == render(), "regenerate: python -m synseg_ros.parameter_file --write config/synseg.yaml"
    values = yaml.safe_load(shipped)["/**"]["ros__parameters"]
    defaults = NodeParameters()
    unset = {name for name in PARAMETER_NAMES if getattr(defaults, name) is None}
    assert unset == set(INFERENCE_SETTINGS)  # the checkpoint decides these; the file shows them commented out
    assert sorted(values) == sorted(set(PARAMETER_NAMES) - unset)
    for name, value in values.items():
        assert value == getattr(defaults, name), f"config/synseg.yaml and NodeParameters disagree on {name!r}"
    for name, description in DESCRIPTIONS.items():  # each description is the file's comment above its parameter
        assert " ".join(description.split())[:60] in " ".join(line.strip(" #") for line in shipped.splitlines())


def test_launch_file_names_the_installed_executable_and_parameter_file():
    tree = ast.parse((REPO / "launch" / "segment.launch.py").read_text())
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    assert constants["PACKAGE"] == "synseg_ros" and constants["NODE_NAME"] == "synseg"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[constants["EXECUTABLE"]] == "synseg_ros.node:main"  # also the colcon package's console script
    assert "synseg.yaml" in (REPO / "launch" / "segment.launch.py").read_text()


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch/launch_ros are not installable from PyPI here (they come with a ROS install)")
def test_launch_description_loads_and_starts_the_node_with_the_parameter_file():
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("segment_launch", REPO / "launch" / "segment.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    arguments = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert {"params_file", "namespace", "image", "query_topic", "checkpoint", "backend", "cameras", "device",
            "precision", "categories", "log_level", "use_sim_time", "dds_profile"} <= arguments
    context = LaunchContext()
    params_file = str(REPO / "config" / "synseg.yaml")
    profile = str(REPO / "config" / "fastdds_large_frames.xml")
    context.launch_configurations.update(params_file=params_file, namespace="", image="/cam/image_raw",
                                         query_topic="", checkpoint="", backend="torch", cameras="", device="",
                                         precision="", categories="", use_sim_time="", log_level="debug",
                                         dds_profile=profile)
    [node] = module._node(context)
    assert node.node_package == "synseg_ros" and node.node_executable == "synseg_node"
    node._perform_substitutions(context)
    assert params_file in str(node._Node__parameters) and "'backend': 'torch'" in str(node._Node__parameters)
    assert "checkpoint" not in str(node._Node__parameters)  # not given, so the YAML value stays
    assert "cameras" not in str(node._Node__parameters) and "use_sim_time" not in str(node._Node__parameters)
    assert profile in str(node.additional_env) and "debug" in str(node._Node__ros_arguments)
    context.launch_configurations.update(cameras="front, rear,left")
    [node] = module._node(context)
    node._perform_substitutions(context)
    parameters = str(node._Node__parameters)
    assert "cameras" in parameters and all(f"'{name}'" in parameters for name in ("front", "rear", "left"))


def read_until(process, needle: str, lines: list, timeout: float) -> bool:
    """Collect the process's output lines until one contains `needle` (True) or the timeout (False)."""
    found = threading.Event()

    def reader():
        for line in process.stdout:
            lines.append(line)
            if needle in line:
                found.set()
                return
    threading.Thread(target=reader, daemon=True).start()
    return found.wait(timeout)


@pytest.mark.slow
@pytest.mark.ros
def test_colcon_build_installs_a_node_that_starts_from_the_installed_tree(tmp_path):
    # Without a ROS install the venv is the ROS prefix (README: building with colcon from the PyPI wheels).
    venv = str(VENV_BIN.parent)
    build_env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", CMAKE_PREFIX_PATH=venv,
                     AMENT_PREFIX_PATH=venv)
    build = subprocess.run(
        [str(VENV_BIN / "colcon"), "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(REPO),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        cwd=tmp_path, env=build_env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    assert "2 packages finished" in build.stdout  # synseg_msgs and synseg_ros, found in one crawl of the checkout
    msgs = tmp_path / "install" / "synseg_msgs"
    prefix = tmp_path / "install" / "synseg_ros"
    share = prefix / "share" / "synseg_ros"
    for relative in ("package.xml", "launch/segment.launch.py", "config/synseg.yaml"):
        assert (share / relative).is_file(), relative
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "synseg_ros").is_file()
    executable = prefix / "lib" / "synseg_ros" / "synseg_node"
    assert executable.is_file() and os.access(executable, os.X_OK)

    # What sourcing install/setup.bash would set, then `ros2 run synseg_ros synseg_node --ros-args --params-file`.
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = prefix / "lib" / python / "site-packages"
    msgs_site_packages = msgs / "lib" / python / "site-packages"
    env = dict(os.environ, PYTHONPATH=f"{site_packages}:{msgs_site_packages}",
               LD_LIBRARY_PATH=f"{msgs / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
               AMENT_PREFIX_PATH=f"{prefix}:{msgs}", PYTHONUNBUFFERED="1")
    probe = subprocess.run([sys.executable, "-c", "import synseg_msgs.msg as m; print(m.__file__); "
                            "print(m.Segmentation(categories=['a']).categories)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert probe.returncode == 0 and str(msgs_site_packages) in probe.stdout, probe.stdout + probe.stderr
    # Only the cache folder is redirected, so the automatic ONNX export stays inside tmp_path.
    command = [str(executable), "--ros-args", "--params-file", str(share / "config" / "synseg.yaml"),
               "-p", f"cache_dir:={tmp_path / 'cache'}"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    lines: list[str] = []
    try:
        started = read_until(process, "active: reading", lines, timeout=4 * WAIT_S)
        assert started, "".join(lines)
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=WAIT_S)
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    assert f"synseg_ros at {site_packages / 'synseg_ros'}" in output  # the installed copy ran, not the checkout
    assert "query 1 from parameter 'categories': 6 categories" in output  # the installed config was read
    assert "Traceback" not in output
    assert "from 'demo' loaded" in output and " on backend " in output  # the bundled demo model, packaged
