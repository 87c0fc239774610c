#!/usr/bin/env bash
# Wheels for the lent GPU machine (Python 3.12, torch/onnx/onnxruntime/numpy preinstalled, no network there) of the
# packages it lacks, at this project's locked versions, into .whl/ (git-ignored). Run here, where PyPI is reachable;
# then `run` scripts/device_session.sh with carry [".whl"].
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
packages=(open_clip_torch ftfy wcwidth webdataset braceexpand lemminflect onnxconverter-common)
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
