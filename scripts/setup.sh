#!/usr/bin/env bash
# Builds .venv (Python 3.11) from the pinned requirements and installs synseg in editable mode.
# Idempotent: a stamp of the requirements' hash makes a second run a no-op when nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${SYNSEG_VENV:-$root/.venv}"
python="${SYNSEG_PYTHON:-python3.11}"
reqs=(requirements/core.txt requirements/ros.txt requirements/dev.txt requirements/lock.txt)
stamp="$venv/.synseg-requirements.sha256"
want="$(cat "${reqs[@]}" setup.py setup.cfg package.xml | sha256sum | cut -d' ' -f1)"

step() { echo "[setup] $*"; }
fail() { echo "[setup] FAILED: $*" >&2; exit 1; }

# Checked from / so the checkout itself is not on sys.path: only a working editable install passes.
installed() { (cd / && "$venv/bin/python" -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('synseg_core') and u.find_spec('synseg_ros')))") 2>/dev/null; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ] && installed; then
  step "environment up to date ($venv)"
  exit 0
fi
command -v "$python" >/dev/null || fail "$python not found; install Python 3.11 or set SYNSEG_PYTHON"
if [ ! -x "$venv/bin/python" ]; then
  step "creating virtual environment $venv with $python"
  "$python" -m venv "$venv" || fail "python -m venv $venv"
fi
step "installing pinned requirements (${reqs[*]})"
"$venv/bin/python" -m pip install --quiet --no-warn-script-location \
    -c requirements/lock.txt -r requirements/core.txt -r requirements/ros.txt -r requirements/dev.txt \
    2> >(grep -v "is neither a file nor a directory" >&2) \
  || fail "pip install of the requirements (see the pip output above)"
step "installing synseg (editable)"
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e . \
    2> >(grep -v "is neither a file nor a directory" >&2) \
  || fail "pip install -e ."
echo "$want" > "$stamp"
step "done: $("$venv/bin/python" --version) in $venv"
