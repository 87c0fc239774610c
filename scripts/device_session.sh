#!/usr/bin/env bash
# One lent-GPU session (the device tool's machine: torch + CUDA preinstalled, no internet, ~10 minutes per call):
#   1. the CUDA tests (pytest -m gpu);
#   2. only with STAGE1=1 (issue 8 is done; its CLIP is bundled): the stage-1 CLIP of the proof of learning trained
#      on the GPU: caption shards generated in parallel on the CPU cores, a short timing probe, then STAGE1_CONFIGS
#      trained side by side, sized to the time left, each exported and evaluated (zero-shot colour / shape);
#   3. speed figures on CUDA (segmenter_speed, backends_speed, multicamera_batching) for issues 3, 7 and 9.
# Everything lands in $OUT (at most 8 files): one tar per stage-1 config, logs.txt, figures.txt.
# FAST=1 runs the same steps with tiny settings (a CPU rehearsal: scripts/device_session.sh with OUT set).
#
# Missing Python packages travel as wheels in .whl/ (made here by scripts/device_wheels.sh); the repository root is put
# on PYTHONPATH, so nothing is installed into the machine's own environment.
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

if ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" .whl/*.whl \
    >>"$log" 2>&1 || { note "wheel install failed"; exit 1; }
  export PYTHONPATH="$work/site:$root"
else
  export PYTHONPATH="$root"
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
  timeout 120 "$py" -m pytest -m gpu -q -p no:cacheprovider tests/model tests/inference tests/serving tests/deploy tests/evaluation tests/training \
    tests/proof >"$work/pytest_gpu.txt" 2>&1
  echo "pytest -m gpu exit $?" >>"$figures"
  tail -25 "$work/pytest_gpu.txt" >>"$figures"
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

# --- 3. speed on CUDA ------------------------------------------------------------------------------------------
if [ "${FAST:-0}" != 1 ] && [ "${SKIP_CHECKS:-0}" != 1 ]; then
  # Each benchmark gets what is left of a 570-s session (the call's limit is 600 s), at most 100 s.
  for bench in "segmenter_speed --device cuda --repeats 5" "backends_speed --repeats 3" \
               "multicamera_batching --device cuda --precision fp16 --seconds 5"; do
    left=$((570 - $(elapsed))); [ "$left" -gt 100 ] && left=100
    if [ "$left" -lt 20 ]; then note "no time left for $bench"; continue; fi
    note "benchmark $bench (at most ${left}s)"
    { echo "== python -m benchmarks.$bench"; timeout "$left" "$py" -m benchmarks.$bench 2>&1 | grep -v Warning; } \
      >>"$figures"
  done
fi
[ -f "$work/pytest_gpu.txt" ] && cat "$work/pytest_gpu.txt" >>"$log"
note "all done"
