#!/usr/bin/env bash
# The main job: start the real synseg ROS 2 node with the bundled demo model, play the sample frames on its image
# topic, send a query on /synseg/query, save the overlays and label images that come back, print per-frame latency
# and a summary (foreground IoU / mIoU against the frames' ground truth), and stop the node.
#
#   scripts/demo.sh                  # bundled demo model + 12 synthetic frames -> runs/demo/
#   scripts/demo.sh --short          # 3 frames (CI)
#   scripts/demo.sh --out DIR --query "red circle, green star"
#   scripts/demo.sh --demo DIR      # another demo folder (model/, frames/, node_params.yaml)
#   scripts/demo.sh --openai         # needs internet: open_clip ViT-B/16 `openai` + CLIPSeg decoder on real photos
#   scripts/demo.sh --openai --model-config tiny-test --clipseg FILE --photos-dir DIR   # the same path offline
#
# Options after --openai go to synseg_proof/cli/make_openai_demo.py. Environment: SYNSEG_VENV (default .venv),
# ROS_DOMAIN_ID (default: one per shell), SYNSEG_DEMO_TIMEOUT_S (seconds to wait for the node, default 300).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${SYNSEG_VENV:-$root/.venv}"
py="$venv/bin/python"
demo="$root/synseg_core/resources/demo"
out="$root/runs/demo"
limit=()
query=()
openai=0
openai_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --short) limit=(--limit 3); shift ;;
    --out) out="$2"; shift 2 ;;
    --query) query=(--query "$2"); shift 2 ;;
    --demo) demo="$(cd "$2" && pwd)"; shift 2 ;;
    --openai) openai=1; shift; openai_args=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "[demo] unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Set the environment up only when it cannot run the node (setup.sh installs from the package registries).
if ! "$py" -c "import synseg_core, synseg_ros, rclpy" 2>/dev/null; then
  bash scripts/setup.sh
fi
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( $$ % 100 + 100 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
# The robot's path: the player is a separate camera process sending 640x480 frames best effort; both processes use
# the shipped Fast DDS profile (README: "Camera images over DDS"), as the launch file does for the node.
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$root/config/fastdds_large_frames.xml}"
mkdir -p "$out"

if [ "$openai" -eq 1 ]; then
  assets="$out/assets"
  echo "[demo] preparing the --openai assets in $assets"
  "$py" -m synseg_proof.cli.make_openai_demo --out "$assets" "${openai_args[@]}"
  model="$assets/model"; frames="$assets/frames"; params="$assets/node_params.yaml"
else
  model="$demo/model"; frames="$demo/frames"; params="$demo/node_params.yaml"
fi
if [ ! -f "$model/config.json" ]; then
  echo "[demo] no model at $model (see synseg_proof/cli/make_demo_assets.py)" >&2
  exit 2
fi

node_cmd=("$venv/bin/synseg_node")
[ -x "${node_cmd[0]}" ] || node_cmd=("$py" -c "from synseg_ros.node import main; main()")
echo "[demo] starting the synseg node (model $model, ROS_DOMAIN_ID $ROS_DOMAIN_ID)"
"${node_cmd[@]}" --ros-args --params-file "$root/config/synseg.yaml" --params-file "$params" \
  -p "checkpoint:=$model" -p image_reliability:=best_effort -r "image:=/synseg_demo/image" > "$out/node.log" 2>&1 &
node_pid=$!
stop_node() {
  if kill -0 "$node_pid" 2>/dev/null; then
    kill -INT "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$node_pid" 2>/dev/null || true
  fi
  wait "$node_pid" 2>/dev/null || true
}
trap stop_node EXIT

set +e
"$py" -m synseg_ros.demo_player --frames "$frames" --out "$out" --image-topic /synseg_demo/image \
  --ready-timeout "${SYNSEG_DEMO_TIMEOUT_S:-300}" --node-pid "$node_pid" "${limit[@]}" "${query[@]}"
rc=$?
set -e
stop_node
trap - EXIT
if [ "$rc" -ne 0 ]; then
  echo "[demo] FAILED (exit $rc); the node's log is $out/node.log:" >&2
  tail -n 20 "$out/node.log" >&2
fi
exit "$rc"
