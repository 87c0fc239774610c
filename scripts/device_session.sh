#!/usr/bin/env bash
# One lent-GPU session (the device tool's machine: torch + CUDA preinstalled, no internet), one call of under 8 minutes:
#   1. the CUDA tests (pytest -m gpu: CUDA graphs, the image path on the device, transfers, ONNX Runtime I/O binding
#      where onnxruntime-gpu is installed, TensorRT where TensorRT is);
#   2. speed on CUDA, each benchmark under its own time limit: backends_speed (torch eager and CUDA graphs per
#      precision, TensorRT where installed), host_time (the node's per-frame host time outside the model, old and new
#      image path, and the whole in-process frame), multicamera_batching (three cameras batched in one process against
#      three processes); node_latency only in the FAST rehearsal (it needs the node's messages built, which the
#      carried wheels cannot do: host_time's whole-frame row stands in for it on the GPU machine);
#   3. only with STAGE1=1: the stage-1 CLIP of the proof of learning trained on the GPU: caption shards generated in
#      parallel on the CPU cores, a short timing probe, then STAGE1_CONFIGS trained side by side, sized to the time
#      left, each exported and evaluated (zero-shot colour / shape).
# Everything lands in $OUT (at most 8 files): figures.txt (every figure), logs.txt, one tar per stage-1 config.
# FAST=1 runs the same steps with tiny settings on whatever device there is (the CPU rehearsal:
#   OUT=/tmp/out FAST=1 WHEELS=0 PYTHON=.venv/bin/python scripts/device_session.sh).
#
# Missing Python packages travel as wheels in .whl/ (made here by scripts/device_wheels.sh: Python packages and the
# ROS 2 message runtime the node's image conversion uses); they are installed into a prefix under $WORK and put on
# PYTHONPATH and LD_LIBRARY_PATH, so nothing is installed into the machine's own environment. WHEELS=0 skips them.
set -uo pipefail
: "${OUT:?set OUT to the folder that receives the results}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
work="${WORK:-/tmp/synseg_device}"
rm -rf "$work" && mkdir -p "$work"
log="$OUT/logs.txt"
figures="$OUT/figures.txt"
started=$(date +%s)
elapsed() { echo $(( $(date +%s) - started )); }
note() { echo "[device $(elapsed)s] $*" | tee -a "$log"; }

export PYTHONPATH="$root"
if [ "${WHEELS:-1}" = 1 ] && ls .whl/*.whl >/dev/null 2>&1; then
  # --prefix, not --target: the ROS wheels put shared libraries and ament resources beside site-packages
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --prefix "$work/prefix" .whl/*.whl \
    >>"$log" 2>&1 || { note "wheel install failed"; exit 1; }
  site=$(find "$work/prefix" -type d \( -name site-packages -o -name dist-packages \) | paste -sd:)
  libs=$(find "$work/prefix" -name 'librcutils.so' -printf '%h\n' | sort -u | paste -sd:)
  export PYTHONPATH="$site:$root" LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
nvidia-smi >>"$figures" 2>&1 || note "no nvidia-smi"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" >>"$figures" 2>&1

# --- stage-1 data: shards generated in parallel in the background --------------------------------------------
stage1="${STAGE1:-0}"
if [ "${FAST:-0}" = 1 ]; then
  shards=2; per_shard=64; image_size=32; budget_s=20; probe_steps=6; max_steps=40
  base="--fast"
else
  shards=8; per_shard=5000; image_size=64; budget_s=${STAGE1_BUDGET_S:-220}; probe_steps=40; max_steps=20000
  base=""
fi
pids=()
[ "$stage1" = 1 ] && note "generating $shards x $per_shard caption images ($image_size px)"
for i in $(seq 0 $((shards - 1))); do
  [ "$stage1" = 1 ] || break
  "$py" -m synseg_proof.cli.make_dataset --out "$work/data/shard$i" --kind captions --domain source \
    --domain target --count "$per_shard" --seed $((900 + i)) --image-size "$image_size" --no-progress \
    >>"$log" 2>&1 &
  pids+=($!)
done

# --- 1. CUDA tests (while the shards are written) -------------------------------------------------------------
if [ "${SKIP_CHECKS:-0}" != 1 ]; then
  note "pytest -m gpu"
  timeout 150 "$py" -m pytest -m gpu -q -rs -p no:cacheprovider tests/model tests/inference tests/serving tests/deploy \
    tests/evaluation tests/training tests/proof >"$work/pytest_gpu.txt" 2>&1
  echo "== pytest -m gpu: exit $?" >>"$figures"
  tail -30 "$work/pytest_gpu.txt" >>"$figures"
fi

if [ "$stage1" = 1 ]; then
for pid in "${pids[@]}"; do wait "$pid" || note "a shard failed (pid $pid)"; done
train_dirs=("$work"/data/shard*)
note "shards ready: ${#train_dirs[@]}"

# --- 2. stage-1 CLIP configs side by side ----------------------------------------------------------------------
# name|settings (ClipPretrainConfig keys). 64-px images and 8-px patches keep the downstream CPU chain affordable.
CONFIGS=(
  "a_l4_b256|vision_layers=4 batch_size=256 lr=0.001"
  "b_l6_w192|vision_layers=6 vision_width=192 batch_size=256 lr=0.001"
  "c_l4_b512_swap2|vision_layers=4 batch_size=512 lr=0.002 shape_swap_weight=2.0"
)
common="image_size=$image_size patch_size=$((image_size / 8)) warmup_steps=200 eval_every=1000 checkpoint_every=500 threads=2"
[ "${FAST:-0}" = 1 ] && common="image_size=$image_size warmup_steps=2 eval_every=0 threads=1"
sets() { for kv in $1; do printf -- "--set %s " "$kv"; done; }

if [ -n "${STAGE1_STEPS:-}" ]; then  # known from an earlier probe on this kind of machine
  steps=$STAGE1_STEPS
else
note "timing probe ($probe_steps steps of config a)"
# shellcheck disable=SC2046
timeout 90 "$py" -m synseg_proof.cli.pretrain_clip $base --train "${train_dirs[@]}" --out "$work/probe" --no-progress \
  $(sets "$common ${CONFIGS[0]#*|} steps=$probe_steps log_every=1 eval_every=0") --stop-at "$probe_steps" >>"$log" 2>&1
step_s=$("$py" - "$work/probe/train_log.jsonl" <<'EOF'
import json, sys
h = [json.loads(l) for l in open(sys.argv[1])]
half = len(h) // 2
print(max((h[-1]["elapsed_s"] - h[half]["elapsed_s"]) / max(h[-1]["step"] - h[half]["step"], 1), 1e-3))
EOF
)
steps=$("$py" -c "s=$step_s; n=int($budget_s/(s*1.6)); print(max(min(($max_steps), n - n % 100 if n >= 200 else n), 4))")
note "probe: ${step_s}s/step alone -> $steps steps per config"
echo "stage-1 probe: $step_s s/step (config a alone); steps per config: $steps" >>"$figures"
fi

pids=()
for entry in "${CONFIGS[@]}"; do
  name="${entry%%|*}"; settings="${entry#*|}"
  # c uses twice the batch: half the steps keeps its images seen equal and its time similar.
  n=$steps; [[ "$settings" == *"batch_size=512"* ]] && n=$((steps / 2))
  # shellcheck disable=SC2046
  timeout "${STAGE1_TIMEOUT_S:-$((budget_s + 150))}" "$py" -m synseg_proof.cli.pretrain_clip $base --train "${train_dirs[@]}" \
    --out "$work/stage1_$name" --no-progress $(sets "$common $settings steps=$n") >"$work/stage1_$name.txt" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || note "a stage-1 run failed (pid $pid)"; done
for entry in "${CONFIGS[@]}"; do
  name="${entry%%|*}"
  { echo "== stage-1 $name"; tail -4 "$work/stage1_$name.txt"; } >>"$figures"
  tar -C "$work/stage1_$name" -cf "$OUT/stage1_$name.tar" --exclude trainer_state.pt . 2>>"$log"
  cat "$work/stage1_$name.txt" >>"$log"
done
note "stage-1 done"
fi

# --- 2. speed on CUDA -------------------------------------------------------------------------------------------
# name|limit in seconds|arguments. FAST: the tiny model, small sizes, short runs, on the device there is.
if [ "${FAST:-0}" = 1 ]; then
  device=$("$py" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
  BENCHES=(
    "backends_speed|120|--model tiny-test --size 64 --repeats 2"
    "host_time|120|--model tiny-test --device $device --frames 3 --warmup 1 --height 48 --width 64 --all-outputs"
    "multicamera_batching|180|--model tiny-test --device $device --seconds 2 --height 48 --width 64"
    "node_latency|120|--models tiny-test --frames 3 --warmup 1"
  )
else
  device=cuda
  BENCHES=(
    "backends_speed|110|--skip-cpu --repeats 5"
    "host_time|70|--device cuda --frames 30"
    "host_time|70|--device cuda --frames 30 --all-outputs"
    "multicamera_batching|120|--device cuda --precision fp16 --seconds 10"
  )
fi
if [ "${SKIP_CHECKS:-0}" != 1 ]; then
  for entry in "${BENCHES[@]}"; do
    IFS='|' read -r bench limit arguments <<<"$entry"
    left=$(( ${BUDGET_S:-460} - $(elapsed) )); [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 15 ]; then note "no time left for $bench $arguments"; continue; fi
    if [ "$bench" = node_latency ] && ! "$py" -c "import rclpy, synseg_msgs.msg" >>"$log" 2>&1; then
      echo "== node_latency not run: rclpy or the node's messages (synseg_msgs) do not import here" >>"$figures"
      continue
    fi
    note "benchmark $bench $arguments (at most ${limit}s)"
    # shellcheck disable=SC2086
    { echo "== python -m benchmarks.$bench $arguments"; timeout "$limit" "$py" -m "benchmarks.$bench" $arguments 2>&1 \
        | grep -v -e Warning -e "No pretrained weights"; echo "(exit ${PIPESTATUS[0]}, $(elapsed)s into the session)"; } \
      >>"$figures"
  done
fi
[ -f "$work/pytest_gpu.txt" ] && cat "$work/pytest_gpu.txt" >>"$log"
note "all done"
