#!/usr/bin/env bash
# The main job: start the real synseg ROS 2 node with the bundled demo model, play the sample frames on its image
# topic, send a query on /synseg/query, save the overlays and label images that come back, print per-frame latency
# and a summary (foreground IoU / mIoU against the frames' ground truth), and stop the node.
#
#   scripts/demo.sh                  # bundled demo model + 12 synthetic frames -> runs/demo/
#   scripts/demo.sh --short          # 3 frames (CI)
#   scripts/demo.sh --out DIR --query "red circle, green star"
#   scripts/demo.sh --demo DIR      # another demo folder (model/, frames/, node_params.yaml)
#   scripts/demo.sh --model clipseg-rd64-refined --photos DIR   # a real model on your photos: fetched and converted
#                                    # on first use where online, or copied over (synseg-model download; README)
#   scripts/demo.sh --model CKPT_DIR --photos DIR --query "cup, table"   # any checkpoint folder
#
# Environment: SYNSEG_VENV (default .venv), ROS_DOMAIN_ID (default: one per shell), SYNSEG_DEMO_TIMEOUT_S (seconds to
# wait for the node, default 300), SYNSEG_MODEL_DIR (converted models, default ~/.cache/synseg/models).
set -euo pipefail
caller="$PWD"
abs() { case "$1" in /*) echo "$1" ;; *) echo "$caller/$1" ;; esac; }  # paths as the caller gave them
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${SYNSEG_VENV:-$root/.venv}"
py="$venv/bin/python"
demo="$root/synseg_core/resources/demo"
out="$root/runs/demo"
limit=()
query=()
model_arg=""
photos=""
photo_query="person, chair, table, floor, wall, cat, dog, car"  # --model's default query (real-world things)
while [ $# -gt 0 ]; do
  case "$1" in
    --short) limit=(--limit 3); shift ;;
    --out) out="$2"; shift 2 ;;
    --query) query=(--query "$2"); shift 2 ;;
    --demo) demo="$(cd "$2" && pwd)"; shift 2 ;;
    --model) model_arg="$2"; [ -d "$(abs "$2")" ] && model_arg="$(abs "$2")"; shift 2 ;;
    --photos) photos="$(abs "$2")"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
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

if [ -n "$model_arg" ]; then
  [ -d "$photos" ] || { echo "[demo] --model needs --photos DIR (a folder of .jpg/.png photos)" >&2; exit 2; }
  model="$model_arg"
  if [ ! -d "$model_arg" ]; then  # a pretrained model's name: fetched and converted once, then used from the cache
    echo "[demo] getting the pretrained model $model_arg"
    "$py" -m synseg_core.model.cli download "$model_arg"
  fi
  frames="$out/frames"
  rm -rf "$frames" && mkdir -p "$frames/images"
  find "$photos" -maxdepth 1 -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' \) \
    -exec ln -s {} "$frames/images/" \;
  [ -n "$(ls -A "$frames/images")" ] || { echo "[demo] $photos holds no .png/.jpg/.jpeg photos" >&2; exit 2; }
  echo "$photo_query" > "$frames/query.txt"
  params="$out/node_params.yaml"  # the query comes on the query topic; inference settings are the model's own
  printf '/**:\n  ros__parameters:\n    categories: ""\n' > "$params"
else
  model="$demo/model"; frames="$demo/frames"; params="$demo/node_params.yaml"
fi
if [ -z "$model_arg" ] && [ ! -f "$model/config.json" ]; then
  echo "[demo] no model at $model (see synseg_proof/cli/make_demo_assets.py)" >&2
  exit 2
fi

node_cmd=("$venv/bin/synseg_node")
[ -x "${node_cmd[0]}" ] || node_cmd=("$py" -c "from synseg_ros.node import main; main()")
echo "[demo] starting the synseg node (model $model, ROS_DOMAIN_ID $ROS_DOMAIN_ID)"
"${node_cmd[@]}" --ros-args --params-file "$root/config/synseg.yaml" --params-file "$params" \
  -p "checkpoint:=$model" -p image_reliability:=best_effort -r "image:=/synseg_demo/image" \
  -p exit_on_configure_failure:=false > "$out/node.log" 2>&1 &  # the player reports a failed start-up itself
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
