#!/usr/bin/env bash
# bench_dist_compress.sh: top-k gradient compression at dp=4 (docs/DIST.md, figures in
# docs/PERFORMANCE.md): for the dense all-reduce and top-k at 5% and 1% density, each with
# uint32 indices + fp32 values and with varint-delta indices + bf16 values, one training
# run of STEPS steps; prints per run the bytes of a rank's message per step (indices
# included) against the dense gradient's, the ratio, the bytes sent per rank per step on
# the wire (ring all-reduce / all-gather count), and the last validation loss (with its
# gap to the dense run). The byte counts are exact counts, not timings.
# Usage: bench/bench_dist_compress.sh [BUILD_DIR=build] [OUT_DIR=runs/dist_compress]
# Env: STEPS (default 1000), DATA (text, default ../shared/data/tinyshakespeare.txt),
#      TOKENIZER (default gpt2: ../shared/data/gpt2 if present, else byte), NP (default 4),
#      MODEL (extra train flags, default a 4-layer d_model 128 llama), THREADS (per rank, 1),
#      RUNS (the runs to make, default all: dense k5_u32_f32 k5_delta_bf16 k1_u32_f32 k1_delta_bf16),
#      WARMUP (DGC density warm-up steps of the compressed runs, default STEPS/5; 0 = off),
#      VAL_BATCHES (validation micro-batches, default 20), NICE (niceness, default 10).
# Byte counts are means over the steps after the warm-up (at the target density).
set -euo pipefail
build=${1:-build}
out=${2:-runs/dist_compress}
root=$(cd "$(dirname "$0")/.." && pwd)
steps=${STEPS:-1000}
np=${NP:-4}
threads=${THREADS:-1}
data=${DATA:-$root/../shared/data/tinyshakespeare.txt}
tok=${TOKENIZER:-$root/../shared/data/gpt2}
[ -e "$tok" ] || tok=byte
model=${MODEL:---n-layer 4 --n-head 4 --d-model 128 --batch-size 1 --seq-len 64}
warmup=${WARMUP:-$((steps / 5))}
valb=${VAL_BATCHES:-20}
nice=${NICE:-10}
[ -x "$build/frugal" ] || { echo "bench_dist_compress.sh: $build/frugal missing" >&2; exit 2; }
[ -f "$data" ] || { echo "bench_dist_compress.sh: no corpus at $data (set DATA=...)" >&2; exit 2; }
command -v mpirun > /dev/null || { echo "bench_dist_compress.sh: mpirun missing (scripts/deps.sh)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive OMP_NUM_THREADS=$threads
mkdir -p "$out"
echo "== machine: $(nproc --all) cores, load $(cut -d" " -f1-3 /proc/loadavg), $(date -u +%FT%TZ); dp=$np, $steps steps, warm-up $warmup, tokenizer $tok, $model"
"$build/frugal" train --data "$data" --tokenizer "$tok" --out "$out/prep" --max-steps 1 --n-layer 1 --n-head 1 \
  --d-model 8 --overwrite 1 > /dev/null
shards="--train-shards $out/prep/data/train.bin --val-shards $out/prep/data/val.bin"
common="$shards --tokenizer $tok $model --grad-accum $np --max-steps $steps --val-every 0 --val-batches $valb --log-every 100000 --threads $threads --overwrite 1"

run() { # name flags...
  local name=$1
  shift
  nice -n "$nice" mpirun --oversubscribe -np "$np" "$build/frugal" train --dp "$np" $common "$@" --out "$out/$name" > "$out/$name.log" 2>&1
}
runs=${RUNS:-dense k5_u32_f32 k5_delta_bf16 k1_u32_f32 k1_delta_bf16}
for name in $runs; do
  case $name in
    dense) run dense ;;
    k5_u32_f32) run $name --compress-warmup $warmup --compress 0.05 --compress-delta 0 --compress-bf16 0 ;;
    k5_delta_bf16) run $name --compress-warmup $warmup --compress 0.05 --compress-delta 1 --compress-bf16 1 ;;
    k1_u32_f32) run $name --compress-warmup $warmup --compress 0.01 --compress-delta 0 --compress-bf16 0 ;;
    k1_delta_bf16) run $name --compress-warmup $warmup --compress 0.01 --compress-delta 1 --compress-bf16 1 ;;
    *) echo "bench_dist_compress.sh: unknown run $name" >&2; exit 2 ;;
  esac
done

# per run: mean of the per-step counters in metrics.jsonl over the steps after the
# warm-up (the dense run: all steps), last val_loss
stat() { # dir key [from_step]
  awk -v k="\"$2\": " -v from="${3:-0}" '{ st = substr($0, index($0, "\"step\": ") + 8) + 0; i = index($0, k)
    if (i && st > from) { s += substr($0, i + length(k)) + 0; n++ } } END { printf "%.0f", n ? s / n : 0 }' "$1/metrics.jsonl"
}
val() { grep -o '"val_loss": [0-9.]*' "$1/metrics.jsonl" | tail -1 | cut -d' ' -f2; }
dense_val=$(val "$out/dense")
dense_wire=$(stat "$out/dense" comm_bytes)
printf "%-16s %14s %14s %8s %14s %10s %8s\n" run "msg B/step" "dense B/step" ratio "wire B/step" val_loss "vs dense"
for name in $runs; do
  d="$out/$name"
  from=$warmup
  [ "$name" = dense ] && from=0
  wire=$(stat "$d" comm_bytes "$from")
  if [ "$name" = dense ]; then
    pay=$(awk "BEGIN{print 0}"); dn=$pay; ratio=1
  else
    pay=$(stat "$d" comm_payload_bytes "$from"); dn=$(stat "$d" comm_dense_bytes "$from")
    ratio=$(awk -v a="$dn" -v b="$pay" 'BEGIN{printf "%.1f", a / b}')
  fi
  v=$(val "$d")
  printf "%-16s %14s %14s %8s %14s %10s %7s%%\n" "$name" "$pay" "$dn" "$ratio" "$wire" "$v" \
    "$(awk -v a="$v" -v b="$dense_val" 'BEGIN{printf "%+.2f", 100 * (a - b) / b}')"
done
echo "(dense wire bytes per step: $dense_wire; the loss curves: metrics.jsonl of each run in $out)"
