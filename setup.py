"""synseg: the ROS 2 package synseg_ros and the plain Python library synseg_core."""
from glob import glob

from setuptools import find_packages, setup

package_name = "synseg_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["synseg_core", "synseg_core.*", "synseg_ros", "synseg_ros.*"]),
    package_data={"synseg_core": ["model_configs/*.json", "resources/*", "resources/**/*", "deploy/backends/*.txt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="synseg developers",
    maintainer_email="dev@synseg.invalid",
    description="Open-vocabulary semantic segmentation (SynSeg) for ROS 2 robots.",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "synseg_node = synseg_ros.node:main",
        ],
    },
)
