#!/usr/bin/env bash
# Builds .venv (Python 3.11) from the pinned requirements, installs synseg in editable mode and builds the node's
# messages (ros/synseg_msgs) into the venv.
# Idempotent: stamps of the requirements' and the messages' hashes make a second run a no-op when nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${SYNSEG_VENV:-$root/.venv}"
python="${SYNSEG_PYTHON:-python3.11}"
reqs=(requirements/runtime.txt requirements/train.txt requirements/ros.txt requirements/dev.txt requirements/lock.txt)
stamp="$venv/.synseg-requirements.sha256"
want="$(cat "${reqs[@]}" pyproject.toml | sha256sum | cut -d' ' -f1)"

step() { echo "[setup] $*"; }
fail() { echo "[setup] FAILED: $*" >&2; exit 1; }

# Checked from / so the checkout itself is not on sys.path: only a working editable install passes.
installed() { (cd / && "$venv/bin/python" -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('synseg_core') and u.find_spec('synseg_ros')))") 2>/dev/null; }
install_requirements() {
  command -v "$python" >/dev/null || fail "$python not found; install Python 3.11 or set SYNSEG_PYTHON"
  if [ ! -x "$venv/bin/python" ]; then
    step "creating virtual environment $venv with $python"
    "$python" -m venv "$venv" || fail "python -m venv $venv"
  fi
  step "installing pinned requirements (${reqs[*]})"
  "$venv/bin/python" -m pip install --quiet --no-warn-script-location \
      -c requirements/lock.txt -r requirements/runtime.txt -r requirements/train.txt -r requirements/ros.txt \
      -r requirements/dev.txt \
      2> >(grep -v "is neither a file nor a directory" >&2) \
    || fail "pip install of the requirements (see the pip output above)"
  step "installing synseg (editable)"
  "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e . \
      2> >(grep -v "is neither a file nor a directory" >&2) \
    || fail "pip install -e ."
  echo "$want" > "$stamp"
  step "done: $("$venv/bin/python" --version) in $venv"
}

# The node's messages, built with CMake straight into the venv (the prefix of the ROS wheels): the Python module
# lands in site-packages and the libraries in $venv/lib, which the wheels already put on the library path. A
# colcon workspace holding this repository builds the same package (ros/synseg_msgs) on its own.
msgs=ros/synseg_msgs
msgs_stamp="$venv/.synseg-msgs.sha256"
msgs_want="$(cat "$msgs/CMakeLists.txt" "$msgs/package.xml" "$msgs"/msg/*.msg | sha256sum | cut -d' ' -f1)"
msgs_installed() { (cd / && "$venv/bin/python" -c "import synseg_msgs.msg") 2>/dev/null; }
build_messages() {
  local build="$venv/.synseg-build/synseg_msgs" log="$venv/.synseg-build/synseg_msgs.log"
  step "building the messages ($msgs) into $venv (log: $log)"
  mkdir -p "$build"
  if ! (export PATH="$venv/bin:$PATH" CMAKE_PREFIX_PATH="$venv" AMENT_PREFIX_PATH="$venv"
        cmake -S "$msgs" -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$venv/bin/python" \
          -DBUILD_TESTING=OFF && cmake --build "$build" -j "$(nproc)" && cmake --install "$build") > "$log" 2>&1; then
    tail -n 30 "$log" >&2
    fail "building $msgs (cmake; full log: $log)"
  fi
  msgs_installed || fail "$msgs was built but 'import synseg_msgs.msg' fails (see $log)"
  echo "$msgs_want" > "$msgs_stamp"
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ] && installed; then
  step "environment up to date ($venv)"
else
  install_requirements
fi
if [ -f "$msgs_stamp" ] && [ "$(cat "$msgs_stamp")" = "$msgs_want" ] && msgs_installed; then
  step "messages up to date"
else
  command -v cmake >/dev/null || fail "cmake not found (needed to build $msgs): apt-get install cmake"
  build_messages
fi
