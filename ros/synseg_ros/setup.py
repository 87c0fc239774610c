"""colcon/ament_python package of the synseg node: installs the Python packages synseg_core and synseg_ros from the
repository root (their one home, also installed by `pip install -e .`), the launch file and the parameter file.
Names, version and package data come from the root pyproject.toml, so the two installs cannot drift apart."""
import tomllib
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "synseg_ros"
ROOT = "../.."  # relative: setuptools wants package folders relative to this file's folder
project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
tool = project["tool"]["setuptools"]

setup(
    name=PACKAGE,
    version=project["project"]["version"],
    packages=find_packages(where=ROOT, include=tool["packages"]["find"]["include"]),
    package_dir={"": ROOT},
    package_data=tool["package-data"],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob(f"{ROOT}/launch/*.launch.py")),
        ("share/" + PACKAGE + "/config", glob(f"{ROOT}/config/*.yaml") + glob(f"{ROOT}/config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="synseg developers",
    maintainer_email="dev@synseg.invalid",
    description=project["project"]["description"],
    license="Apache-2.0",
    entry_points={"console_scripts": [f"{name} = {target}" for name, target in project["project"]["scripts"].items()]},
)
