#!/usr/bin/env bash
# Wheels for the lent GPU machine (Python 3.12, torch/onnx/onnxruntime/numpy/opencv preinstalled, no network there) of
# the packages it lacks, at this project's locked versions, into .whl/ (git-ignored): the Python packages synseg_core
# imports, and the ROS 2 message runtime (sensor_msgs, std_msgs and what they load) that synseg_ros's image conversion
# and output messages import, so benchmarks/host_time.py can build the node's messages there (about 9 MB in all; the
# full rclpy stack would not fit beside the working tree in one call's 64 MiB). Run here, where PyPI is reachable;
# then `run` scripts/device_session.sh with carry [".whl"].
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
packages=(open_clip_torch ftfy wcwidth webdataset braceexpand lemminflect onnxconverter-common
  ros-sensor-msgs ros-std-msgs ros-builtin-interfaces ros-geometry-msgs ros-service-msgs ros-rosidl-runtime-c
  ros-rosidl-runtime-cpp ros-rosidl-typesupport-c ros-rosidl-typesupport-cpp ros-rosidl-typesupport-interface
  ros-rosidl-typesupport-introspection-c ros-rosidl-typesupport-fastrtps-c ros-rosidl-dynamic-typesupport
  ros-rosidl-generator-py ros-rosidl-parser ros-rcutils ros-rmw ros-fastcdr ros-rpyutils
  ros-type-description-interfaces ros-ament-index-python)
pins=()
for name in "${packages[@]}"; do
  pin=$(grep -i "^${name}==" requirements/lock.txt | head -1)
  [ -n "$pin" ] || { echo "[device_wheels] $name is not in requirements/lock.txt" >&2; exit 1; }
  pins+=("$pin")
done
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .whl "${pins[@]}"
ls -1 .whl
