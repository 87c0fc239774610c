#!/usr/bin/env bash
# The test command: sets up the environment if needed, then runs every test that can run on a CPU machine.
# Extra arguments go to pytest (for example: scripts/test.sh -m "not slow" tests/model).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
venv="${SYNSEG_VENV:-$root/.venv}"
# Each pytest run gets its own DDS domain so parallel runs on one machine never see each other's topics.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( $$ % 100 + 100 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
set +e
"$venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "[test] pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
